/** The account this device belongs to (PROTOCOL.md §3). */
import type { ChatRequester } from '../net/types';
import { ajv, call, fail, parse, stripPni } from './http';

interface WhoAmI {
  uuid: string;
  pni: string;
  number: string;
}
const validateWhoAmI = ajv.compile<WhoAmI>({
  type: 'object',
  properties: { uuid: { type: 'string' }, pni: { type: 'string' }, number: { type: 'string' } },
  required: ['uuid', 'pni', 'number'],
});

/** GET /v1/accounts/whoami on the authenticated socket. */
export async function whoami(
  requester: ChatRequester,
): Promise<{ aci: string; pni: string; number: string }> {
  const res = await call(requester, 'GET', '/v1/accounts/whoami');
  if (res.status !== 200) fail(res, 'Who am I');
  const r = parse(res, validateWhoAmI, 'Who am I');
  return { aci: r.uuid, pni: stripPni(r.pni), number: r.number };
}
