/**
 * The storage service's records (read only: a linked device never writes the user's storage):
 * `GET /v1/storage/auth` over the authenticated chat socket for its Basic credentials, then over
 * HTTPS `GET /v1/storage/manifest` and `PUT /v1/storage/read` (a ReadOperation), protobuf. The
 * manifest and the records arrive encrypted; core/groups decrypts them.
 */
import { ProtocolError } from '../errors';
import type { ChatRequester } from '../net/types';
import { ReadOperation, StorageItems, StorageManifest } from '../../proto';
import { ajv, basicAuth, call, fail, parse } from './http';

export interface StorageAuth {
  username: string;
  password: string;
}

const validateAuth = ajv.compile<StorageAuth>({
  type: 'object',
  required: ['username', 'password'],
  properties: { username: { type: 'string' }, password: { type: 'string' } },
});

export async function getStorageAuth(chat: ChatRequester): Promise<StorageAuth> {
  const what = 'Fetching storage service credentials';
  const res = await call(chat, 'GET', '/v1/storage/auth');
  if (res.status !== 200) fail(res, what);
  const r = parse(res, validateAuth, what);
  return { username: r.username, password: r.password };
}

const headers = (auth: StorageAuth) => ({
  Authorization: basicAuth(auth.username, auth.password),
  Accept: 'application/x-protobuf',
});

function decode<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new ProtocolError(`${what}: the server's answer is not a valid protobuf`, { cause: e });
  }
}

/** The encrypted manifest, or null when the account has none (404: nothing was ever stored). */
export async function getStorageManifest(
  storage: ChatRequester,
  auth: StorageAuth,
): Promise<StorageManifest | null> {
  const what = 'Fetching the storage manifest';
  const res = await call(storage, 'GET', '/v1/storage/manifest', undefined, headers(auth));
  if (res.status === 404) return null;
  if (res.status !== 200) fail(res, what, 'the storage credentials');
  return decode(what, () => StorageManifest.decode(res.body));
}

/** The encrypted records with these keys (`PUT /v1/storage/read`). */
export async function readStorageItems(
  storage: ChatRequester,
  auth: StorageAuth,
  keys: Uint8Array[],
): Promise<StorageItems> {
  const what = 'Reading storage records';
  const body = ReadOperation.encode({ readKey: keys }).finish();
  const res = await call(storage, 'PUT', '/v1/storage/read', body, {
    ...headers(auth),
    'Content-Type': 'application/x-protobuf',
  });
  if (res.status !== 200) fail(res, what, 'the storage credentials');
  return decode(what, () => StorageItems.decode(res.body));
}
