/** Credentials for contact discovery (CDSI, PROTOCOL.md §8). */
import type { ChatRequester } from '../net/types';
import { ajv, call, fail, parse } from './http';

const validateAuth = ajv.compile<{ username: string; password: string }>({
  type: 'object',
  properties: { username: { type: 'string' }, password: { type: 'string' } },
  required: ['username', 'password'],
});

/** GET /v2/directory/auth: the username and password CDSI takes, valid for a while. */
export async function getDirectoryAuth(
  requester: ChatRequester,
): Promise<{ username: string; password: string }> {
  const res = await call(requester, 'GET', '/v2/directory/auth');
  if (res.status !== 200) fail(res, 'Fetching contact discovery credentials');
  const r = parse(res, validateAuth, 'Fetching contact discovery credentials');
  return { username: r.username, password: r.password };
}
