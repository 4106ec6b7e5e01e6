/** The key routes (PROTOCOL.md §3 step 6, §4): upload our prekeys, count them, fetch a recipient's. */
import { NotOnSignalError } from '../errors';
import type { ChatRequester } from '../net/types';
import { UnidentifiedAccessRejected } from './errors';
import { accessKeyHeaders, ajv, call, fail, fromB64, parse } from './http';

export type IdentityKind = 'aci' | 'pni';

/** A prekey as PUT /v2/keys and the link and registration bodies carry it: the key in base64. */
export interface UploadPreKey {
  keyId: number;
  publicKey: string;
}
/** A signed prekey or Kyber prekey in upload form: signature in base64 too. */
export interface UploadSignedKey extends UploadPreKey {
  signature: string;
}

export interface KeyUpload {
  preKeys?: UploadPreKey[];
  pqPreKeys?: UploadSignedKey[];
  signedPreKey?: UploadSignedKey;
  pqLastResortPreKey?: UploadSignedKey;
}

/** One device's keys from GET /v2/keys, decoded. */
export interface DeviceBundle {
  deviceId: number;
  registrationId: number;
  preKey: { keyId: number; publicKey: Uint8Array } | null;
  signedPreKey: { keyId: number; publicKey: Uint8Array; signature: Uint8Array };
  pqPreKey: { keyId: number; publicKey: Uint8Array; signature: Uint8Array };
}

export interface BundleResponse {
  identityKey: Uint8Array;
  devices: DeviceBundle[];
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

type RawSignedKey = { keyId: number; publicKey: string; signature: string };
interface RawBundle {
  identityKey: string;
  devices: Array<{
    deviceId: number;
    registrationId: number;
    preKey?: { keyId: number; publicKey: string } | null;
    signedPreKey: RawSignedKey;
    pqPreKey: RawSignedKey;
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

const signedKey = (k: RawSignedKey) => ({
  keyId: k.keyId,
  publicKey: fromB64(k.publicKey),
  signature: fromB64(k.signature),
});

/** GET /v2/keys/<serviceId>/<device|*> (§4). Kyber is mandatory: a bundle without it fails validation. */
export async function getPreKeyBundles(
  requester: ChatRequester,
  serviceId: string,
  device: number | '*',
  accessKey?: Uint8Array,
): Promise<BundleResponse> {
  const headers = accessKeyHeaders(accessKey);
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
      signedPreKey: signedKey(d.signedPreKey),
      pqPreKey: signedKey(d.pqPreKey),
    })),
  };
}
