/**
 * Key and credential generation for linking, registration and prekey maintenance (PROTOCOL.md §3,
 * §4). Upload forms are what PUT /v2/keys, /v1/devices/link and /v1/registration take: base64 keys,
 * each signed key signed by its identity's private key over the serialized public key.
 */
import crypto from 'node:crypto';
import {
  KEMKeyPair,
  KyberPreKeyRecord,
  PreKeyRecord,
  PrivateKey,
  SignedPreKeyRecord,
} from '@signalapp/libsignal-client';

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

export interface UploadPreKey {
  keyId: number;
  publicKey: string;
}
export interface UploadSignedPreKey extends UploadPreKey {
  signature: string;
}

/** Registration ids are random in 1..16383 (14 bits, never 0). */
export function generateRegistrationId(): number {
  return crypto.randomInt(1, 16384);
}

/** The device's server password: random, never shown or logged. */
export function generatePassword(): string {
  return crypto.randomBytes(18).toString('base64');
}

export function generateProfileKey(): Uint8Array {
  return new Uint8Array(crypto.randomBytes(32));
}

export function generateSignedPreKey(
  identity: PrivateKey,
  keyId: number,
  now = Date.now(),
): { record: SignedPreKeyRecord; upload: UploadSignedPreKey } {
  const key = PrivateKey.generate();
  const pub = key.getPublicKey();
  const signature = identity.sign(pub.serialize());
  return {
    record: SignedPreKeyRecord.new(keyId, now, pub, key, signature),
    upload: { keyId, publicKey: b64(pub.serialize()), signature: b64(signature) },
  };
}

export function generateKyberPreKey(
  identity: PrivateKey,
  keyId: number,
  now = Date.now(),
): { record: KyberPreKeyRecord; upload: UploadSignedPreKey } {
  const pair = KEMKeyPair.generate();
  const pub = pair.getPublicKey().serialize();
  const signature = identity.sign(pub);
  return {
    record: KyberPreKeyRecord.new(keyId, now, pair, signature),
    upload: { keyId, publicKey: b64(pub), signature: b64(signature) },
  };
}

/** `count` one-time EC prekeys with consecutive ids from `startId` (ids stay within 24 bits). */
export function generatePreKeys(
  startId: number,
  count: number,
): { records: PreKeyRecord[]; upload: UploadPreKey[] } {
  const records: PreKeyRecord[] = [];
  const upload: UploadPreKey[] = [];
  for (let i = 0; i < count; i++) {
    const id = ((startId - 1 + i) % 0xfffffe) + 1;
    const key = PrivateKey.generate();
    records.push(PreKeyRecord.new(id, key.getPublicKey(), key));
    upload.push({ keyId: id, publicKey: b64(key.getPublicKey().serialize()) });
  }
  return { records, upload };
}

export function generateKyberPreKeys(
  identity: PrivateKey,
  startId: number,
  count: number,
): { records: KyberPreKeyRecord[]; upload: UploadSignedPreKey[] } {
  const records: KyberPreKeyRecord[] = [];
  const upload: UploadSignedPreKey[] = [];
  for (let i = 0; i < count; i++) {
    const k = generateKyberPreKey(identity, ((startId - 1 + i) % 0xfffffe) + 1);
    records.push(k.record);
    upload.push(k.upload);
  }
  return { records, upload };
}
