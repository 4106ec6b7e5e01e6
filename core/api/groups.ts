/**
 * The group server (groups v2, issue 16): group auth credentials over the authenticated chat socket
 * (`GET /v1/certificate/auth/group`), and the group state and its change log from the storage
 * service over HTTPS (`GET /v2/groups`, `GET /v2/groups/logs/<from>`), protobuf both ways, with Basic
 * auth `hex(groupPublicParams):hex(authCredentialPresentation)`. This layer moves bytes and maps
 * statuses; core/groups decrypts.
 */
import { GroupNotFoundError, NotAMemberError, ProtocolError } from '../errors';
import type { ChatRequester, ChatResponse } from '../net/types';
import { GroupChanges, GroupResponse } from '../../proto';
import { ajv, basicAuth, call, fail, fromB64, parse } from './http';

export interface GroupCredentialsAnswer {
  /** Our PNI as the server knows it (bare uuid), when it sent one. */
  pni?: string;
  /** One serialized AuthCredentialWithPniResponse per day, at its redemption time (epoch seconds). */
  credentials: Array<{ credential: Uint8Array; redemptionTime: number }>;
}

interface CredentialsJson {
  pni?: string | null;
  credentials: Array<{ credential: string; redemptionTime: number }>;
}

const validateCredentials = ajv.compile<CredentialsJson>({
  type: 'object',
  required: ['credentials'],
  properties: {
    pni: { type: 'string', nullable: true },
    credentials: {
      type: 'array',
      items: {
        type: 'object',
        required: ['credential', 'redemptionTime'],
        properties: { credential: { type: 'string' }, redemptionTime: { type: 'integer' } },
      },
    },
  },
});

/**
 * The group auth credentials for the days `startSeconds` … `endSeconds` (epoch seconds at UTC
 * midnight; Signal's server issues at most a week ahead), over the authenticated socket.
 */
export async function getGroupCredentials(
  chat: ChatRequester,
  startSeconds: number,
  endSeconds: number,
): Promise<GroupCredentialsAnswer> {
  const what = 'Fetching group credentials';
  const res = await call(
    chat,
    'GET',
    `/v1/certificate/auth/group?redemptionStartSeconds=${startSeconds}&redemptionEndSeconds=${endSeconds}`,
  );
  if (res.status !== 200) fail(res, what);
  const r = parse(res, validateCredentials, what);
  return {
    ...(r.pni ? { pni: r.pni } : {}),
    credentials: r.credentials.map((c) => ({
      credential: fromB64(c.credential),
      redemptionTime: c.redemptionTime,
    })),
  };
}

/** What authorizes one group call: the group's public params and a credential presentation. */
export interface GroupAuth {
  publicParams: Uint8Array;
  presentation: Uint8Array;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function groupHeaders(auth: GroupAuth, extra: Record<string, string> = {}): Record<string, string> {
  return {
    Authorization: basicAuth(hex(auth.publicParams), hex(auth.presentation)),
    Accept: 'application/x-protobuf',
    ...extra,
  };
}

/** 403: not (or no longer) a member; 404: no such group. */
function groupFail(res: ChatResponse, groupId: string, what: string): never {
  if (res.status === 404) throw new GroupNotFoundError(groupId, 'is unknown to the group server');
  if (res.status === 403) throw new NotAMemberError(groupId);
  return fail(res, what, 'the group credential');
}

function decode<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new ProtocolError(`${what}: the server's answer is not a valid protobuf`, { cause: e });
  }
}

/** `GET /v2/groups`: the group's encrypted state and, for a member, its send endorsements. */
export async function getGroup(
  storage: ChatRequester,
  groupId: string,
  auth: GroupAuth,
): Promise<GroupResponse> {
  const what = `Fetching group ${groupId}`;
  const res = await call(storage, 'GET', '/v2/groups', undefined, groupHeaders(auth));
  if (res.status !== 200) groupFail(res, groupId, what);
  return decode(what, () => GroupResponse.decode(res.body));
}

/**
 * `GET /v2/groups/logs/<from>`: the changes since revision `from`, each with the group's state after
 * it. `cachedEndorsementsExpiration`: the expiration (epoch seconds) of the endorsements we hold, 0
 * for none (the header is required).
 */
export async function getGroupLogs(
  storage: ChatRequester,
  groupId: string,
  auth: GroupAuth,
  from: number,
  cachedEndorsementsExpiration: number,
): Promise<GroupChanges> {
  const what = `Fetching the changes of group ${groupId}`;
  const res = await call(
    storage,
    'GET',
    `/v2/groups/logs/${from}`,
    undefined,
    groupHeaders(auth, { 'Cached-Send-Endorsements': String(cachedEndorsementsExpiration) }),
  );
  if (res.status !== 200 && res.status !== 206) groupFail(res, groupId, what);
  return decode(what, () => GroupChanges.decode(res.body));
}
