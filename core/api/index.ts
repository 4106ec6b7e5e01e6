/**
 * Typed REST calls over the chat socket (PROTOCOL.md §3–§8). Each takes a ChatRequester (the
 * authenticated or the unauthenticated socket), validates the server's JSON with ajv, and maps the
 * statuses that matter to the engine's typed errors.
 */
import Ajv, { type JSONSchemaType, type ValidateFunction } from 'ajv';
import {
  ChallengeRequiredError,
  ClientTooOldError,
  InvalidInputError,
  NotOnSignalError,
  ProtocolError,
  RateLimitedError,
  ServerError,
  UnauthorizedError,
} from '../errors';
import type { ChatRequester, ChatResponse, HttpVerb } from '../net/types';
import type { BundleResponse, OutgoingMessage } from '../messaging/sender';
import { MismatchedDevices, StaleDevices, UnidentifiedAccessRejected } from '../messaging/sender';

const ajv = new Ajv({ allErrors: false, coerceTypes: false });

function parse<T>(res: ChatResponse, validate: ValidateFunction<T>, what: string): T {
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(res.body).toString('utf8'));
  } catch (e) {
    throw new ProtocolError(`${what}: the server's answer is not JSON`, { cause: e });
  }
  if (!validate(data)) {
    throw new ProtocolError(
      `${what}: unexpected answer from the server (${ajv.errorsText(validate.errors)})`,
    );
  }
  return data;
}

function retryAfter(res: ChatResponse): number {
  const v = Number(res.headers['retry-after']);
  return Number.isFinite(v) && v >= 0 ? Math.ceil(v) : 60;
}

/** The statuses any call may meet; call-specific ones are handled before this. */
function fail(res: ChatResponse, what: string): never {
  if (res.status === 499) throw new ClientTooOldError(what);
  if (res.status === 401 || res.status === 403) {
    throw new UnauthorizedError(
      `${what}: the server refused this device's credentials (${res.status})`,
    );
  }
  if (res.status === 413 || res.status === 429) throw new RateLimitedError(retryAfter(res), what);
  throw new ServerError(res.status, what);
}

async function call(
  requester: ChatRequester,
  verb: HttpVerb,
  path: string,
  body?: object,
  headers?: Record<string, string>,
): Promise<ChatResponse> {
  return requester.request({
    verb,
    path,
    ...(body ? { body } : {}),
    ...(headers ? { headers } : {}),
  });
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

// ---- devices ----

export interface UploadSignedKey {
  keyId: number;
  publicKey: string;
  signature: string;
}
export interface UploadKey {
  keyId: number;
  publicKey: string;
}

export interface AccountAttributes {
  fetchesMessages: boolean;
  registrationId: number;
  pniRegistrationId: number;
  name?: string;
  capabilities: Record<string, boolean>;
  unidentifiedAccessKey?: string;
  unrestrictedUnidentifiedAccess?: boolean;
  discoverableByPhoneNumber?: boolean;
}

interface LinkResponse {
  deviceId: number;
  uuid: string;
  pni: string;
}
const linkSchema: JSONSchemaType<LinkResponse> = {
  type: 'object',
  properties: {
    deviceId: { type: 'integer', minimum: 1 },
    uuid: { type: 'string' },
    pni: { type: 'string' },
  },
  required: ['deviceId', 'uuid', 'pni'],
};
const validateLink = ajv.compile(linkSchema);

/** PUT /v1/devices/link on an UNauthenticated socket, authorized by the new credentials (§3 step 5). */
export async function linkDevice(
  requester: ChatRequester,
  args: {
    aci: string;
    password: string;
    verificationCode: string;
    accountAttributes: AccountAttributes;
    aciSignedPreKey: UploadSignedKey;
    pniSignedPreKey: UploadSignedKey;
    aciPqLastResortPreKey: UploadSignedKey;
    pniPqLastResortPreKey: UploadSignedKey;
  },
): Promise<{ deviceId: number; aci: string; pni: string }> {
  const { aci, password, ...body } = args;
  const res = await call(requester, 'PUT', '/v1/devices/link', body, {
    Authorization: basicAuth(aci, password),
  });
  if (res.status === 403)
    throw new UnauthorizedError('Linking refused: the code from the phone was not accepted');
  // Signal-Server's DeviceController answers 409 when the new device lacks a capability it requires
  // of new devices, or one every device of the account has (PROTOCOL.md §12): the fault is this
  // client's, not the phone's.
  if (res.status === 409)
    throw new ServerError(
      409,
      'Linking (Signal requires a device capability this client lacks: update @sigflow/node-red-signal)',
    );
  if (res.status === 411)
    throw new ServerError(411, 'Linking (the account already has the most linked devices)');
  if (res.status !== 200) fail(res, 'Linking');
  const r = parse(res, validateLink, 'Linking');
  return { deviceId: r.deviceId, aci: r.uuid, pni: r.pni.replace(/^PNI:/, '') };
}

// ---- accounts ----

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

export async function whoami(
  requester: ChatRequester,
): Promise<{ aci: string; pni: string; number: string }> {
  const res = await call(requester, 'GET', '/v1/accounts/whoami');
  if (res.status !== 200) fail(res, 'Who am I');
  const r = parse(res, validateWhoAmI, 'Who am I');
  return { aci: r.uuid, pni: r.pni.replace(/^PNI:/, ''), number: r.number };
}

// ---- keys ----

export type IdentityKind = 'aci' | 'pni';

export interface KeyUpload {
  preKeys?: UploadKey[];
  pqPreKeys?: UploadSignedKey[];
  signedPreKey?: UploadSignedKey;
  pqLastResortPreKey?: UploadSignedKey;
}

const kindQuery = (kind: IdentityKind) => (kind === 'pni' ? '?identity=pni' : '');

/** PUT /v2/keys[?identity=pni] (§3 step 6, §4). */
export async function uploadKeys(
  requester: ChatRequester,
  kind: IdentityKind,
  keys: KeyUpload,
): Promise<void> {
  const res = await call(requester, 'PUT', `/v2/keys${kindQuery(kind)}`, keys);
  if (res.status !== 200 && res.status !== 204) fail(res, `Uploading ${kind.toUpperCase()} keys`);
}

const validateCounts = ajv.compile<{ count: number; pqCount: number }>({
  type: 'object',
  properties: { count: { type: 'integer' }, pqCount: { type: 'integer' } },
  required: ['count', 'pqCount'],
});

export async function getKeyCounts(
  requester: ChatRequester,
  kind: IdentityKind,
): Promise<{ count: number; pqCount: number }> {
  const res = await call(requester, 'GET', `/v2/keys${kindQuery(kind)}`);
  if (res.status !== 200) fail(res, `Counting ${kind.toUpperCase()} keys`);
  const r = parse(res, validateCounts, 'Counting keys');
  return { count: r.count, pqCount: r.pqCount };
}

interface RawBundle {
  identityKey: string;
  devices: Array<{
    deviceId: number;
    registrationId: number;
    preKey?: { keyId: number; publicKey: string } | null;
    signedPreKey: { keyId: number; publicKey: string; signature: string };
    pqPreKey: { keyId: number; publicKey: string; signature: string };
  }>;
}
const signedKeySchema = {
  type: 'object',
  properties: {
    keyId: { type: 'integer' },
    publicKey: { type: 'string' },
    signature: { type: 'string' },
  },
  required: ['keyId', 'publicKey', 'signature'],
} as const;
const validateBundle = ajv.compile<RawBundle>({
  type: 'object',
  properties: {
    identityKey: { type: 'string' },
    devices: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          deviceId: { type: 'integer' },
          registrationId: { type: 'integer' },
          preKey: {
            type: ['object', 'null'],
            properties: { keyId: { type: 'integer' }, publicKey: { type: 'string' } },
            required: ['keyId', 'publicKey'],
          },
          signedPreKey: signedKeySchema,
          pqPreKey: signedKeySchema,
        },
        required: ['deviceId', 'registrationId', 'signedPreKey', 'pqPreKey'],
      },
    },
  },
  required: ['identityKey', 'devices'],
});

/** GET /v2/keys/<serviceId>/<device|*> (§4). Kyber is mandatory: a bundle without it fails validation. */
export async function getPreKeyBundles(
  requester: ChatRequester,
  serviceId: string,
  device: number | '*',
  accessKey?: Uint8Array,
): Promise<BundleResponse> {
  const headers = accessKey ? { 'Unidentified-Access-Key': b64(accessKey) } : undefined;
  const res = await call(requester, 'GET', `/v2/keys/${serviceId}/${device}`, undefined, headers);
  if (res.status === 404) throw new NotOnSignalError(serviceId);
  if (res.status === 401 && accessKey) throw new UnidentifiedAccessRejected();
  if (res.status !== 200) fail(res, `Fetching ${serviceId}'s keys`);
  const r = parse(res, validateBundle, 'Fetching keys');
  return {
    identityKey: fromB64(r.identityKey),
    devices: r.devices.map((d) => ({
      deviceId: d.deviceId,
      registrationId: d.registrationId,
      preKey: d.preKey ? { keyId: d.preKey.keyId, publicKey: fromB64(d.preKey.publicKey) } : null,
      signedPreKey: {
        keyId: d.signedPreKey.keyId,
        publicKey: fromB64(d.signedPreKey.publicKey),
        signature: fromB64(d.signedPreKey.signature),
      },
      pqPreKey: {
        keyId: d.pqPreKey.keyId,
        publicKey: fromB64(d.pqPreKey.publicKey),
        signature: fromB64(d.pqPreKey.signature),
      },
    })),
  };
}

// ---- messages ----

const validateMismatch = ajv.compile<{ missingDevices?: number[]; extraDevices?: number[] }>({
  type: 'object',
  properties: {
    missingDevices: { type: 'array', items: { type: 'integer' }, nullable: true },
    extraDevices: { type: 'array', items: { type: 'integer' }, nullable: true },
  },
});
const validateStale = ajv.compile<{ staleDevices?: number[] }>({
  type: 'object',
  properties: { staleDevices: { type: 'array', items: { type: 'integer' }, nullable: true } },
});
const validateChallenge = ajv.compile<{ token: string; options?: string[] }>({
  type: 'object',
  properties: {
    token: { type: 'string' },
    options: { type: 'array', items: { type: 'string' }, nullable: true },
  },
  required: ['token'],
});

/** PUT /v1/messages/<serviceId> (§5), with the recoverable statuses as typed errors. */
export async function sendMessages(
  requester: ChatRequester,
  serviceId: string,
  body: { messages: OutgoingMessage[]; timestamp: number; online: boolean; urgent: boolean },
  accessKey?: Uint8Array,
): Promise<void> {
  const headers = accessKey ? { 'Unidentified-Access-Key': b64(accessKey) } : undefined;
  const res = await call(requester, 'PUT', `/v1/messages/${serviceId}`, body, headers);
  switch (res.status) {
    case 200:
    case 204:
      return;
    case 404:
      throw new NotOnSignalError(serviceId);
    case 409: {
      const r = parse(res, validateMismatch, 'Sending');
      throw new MismatchedDevices(r.missingDevices ?? [], r.extraDevices ?? []);
    }
    case 410: {
      const r = parse(res, validateStale, 'Sending');
      throw new StaleDevices(r.staleDevices ?? []);
    }
    case 428: {
      const r = parse(res, validateChallenge, 'Sending');
      throw new ChallengeRequiredError(r.token, r.options ?? []);
    }
    case 401:
      if (accessKey) throw new UnidentifiedAccessRejected();
      return fail(res, 'Sending');
    default:
      return fail(res, 'Sending');
  }
}

// ---- challenges ----

/**
 * `PUT /v1/challenge` (PROTOCOL.md §12): answers a 428 with a solved captcha, after which the
 * refused sends can go again. 428 here means the captcha did not pass.
 */
export async function submitCaptchaChallenge(
  requester: ChatRequester,
  args: { token: string; captcha: string },
): Promise<void> {
  const what = 'Answering the challenge';
  const res = await call(requester, 'PUT', '/v1/challenge', {
    type: 'captcha',
    token: args.token,
    captcha: args.captcha,
  });
  if (res.status === 200) return;
  if (res.status === 428)
    throw new ChallengeRequiredError(
      args.token,
      ['captcha'],
      undefined,
      'The captcha did not pass',
    );
  if (res.status === 400 || res.status === 422)
    throw new InvalidInputError(`${what}: the server refused the token or captcha (${res.status})`);
  fail(res, what);
}

// ---- certificate, directory ----

const validateCertificate = ajv.compile<{ certificate: string }>({
  type: 'object',
  properties: { certificate: { type: 'string' } },
  required: ['certificate'],
});

export async function getSenderCertificate(requester: ChatRequester): Promise<Uint8Array> {
  // Without includeE164=false Signal-Server puts the account's phone number into every sealed-sender
  // certificate (CertificateController defaults it to true); Signal's apps ask for it this way
  // unless the user shares their number, and this engine never shares it.
  const res = await call(requester, 'GET', '/v1/certificate/delivery?includeE164=false');
  if (res.status !== 200) fail(res, 'Fetching the sender certificate');
  return fromB64(parse(res, validateCertificate, 'Fetching the sender certificate').certificate);
}

const validateAuth = ajv.compile<{ username: string; password: string }>({
  type: 'object',
  properties: { username: { type: 'string' }, password: { type: 'string' } },
  required: ['username', 'password'],
});

export async function getDirectoryAuth(
  requester: ChatRequester,
): Promise<{ username: string; password: string }> {
  const res = await call(requester, 'GET', '/v2/directory/auth');
  if (res.status !== 200) fail(res, 'Fetching contact discovery credentials');
  const r = parse(res, validateAuth, 'Fetching contact discovery credentials');
  return { username: r.username, password: r.password };
}
