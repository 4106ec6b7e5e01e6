/**
 * Encrypted device names (PROTOCOL.md §3 step 5): the name shown in the phone's linked-devices list is
 * encrypted to the account's ACI identity key, so the server never sees it.
 *   ephemeral key pair; secret = ECDH(ephemeral private, ACI identity public)
 *   syntheticIv = HMAC(HMAC(secret, "auth"), plaintext)[0..16]
 *   cipherKey   = HMAC(HMAC(secret, "cipher"), syntheticIv)
 *   ciphertext  = AES-256-CTR(cipherKey, iv = 0, plaintext)
 *   DeviceName{ephemeralPublic, syntheticIv, ciphertext}, base64.
 */
import crypto from 'node:crypto';
import { PrivateKey, PublicKey } from '@signalapp/libsignal-client';
import { DeviceName } from '../../proto';
import { ProtocolError } from '../errors';

const hmac = (key: Uint8Array, data: Uint8Array | string) =>
  crypto.createHmac('sha256', key).update(data).digest();
const ctr = (key: Uint8Array, data: Uint8Array) => {
  const c = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(data), c.final()]);
};

export function encryptDeviceName(name: string, aciIdentityPublic: PublicKey): string {
  const ephemeral = PrivateKey.generate();
  const secret = ephemeral.agree(aciIdentityPublic);
  const plaintext = Buffer.from(name, 'utf8');
  const syntheticIv = hmac(hmac(secret, 'auth'), plaintext).subarray(0, 16);
  const cipherKey = hmac(hmac(secret, 'cipher'), syntheticIv);
  const proto = DeviceName.encode({
    ephemeralPublic: ephemeral.getPublicKey().serialize(),
    syntheticIv,
    ciphertext: ctr(cipherKey, plaintext),
  }).finish();
  return Buffer.from(proto).toString('base64');
}

export function decryptDeviceName(encoded: string, aciIdentityPrivate: PrivateKey): string {
  let proto: DeviceName;
  try {
    proto = DeviceName.decode(Buffer.from(encoded, 'base64'));
  } catch (e) {
    throw new ProtocolError('Device name is malformed', { cause: e });
  }
  if (!proto.ephemeralPublic || !proto.syntheticIv || !proto.ciphertext)
    throw new ProtocolError('Device name is incomplete');
  const secret = aciIdentityPrivate.agree(
    PublicKey.deserialize(new Uint8Array(proto.ephemeralPublic)),
  );
  const cipherKey = hmac(hmac(secret, 'cipher'), proto.syntheticIv);
  const plaintext = ctr(cipherKey, proto.ciphertext);
  const check = hmac(hmac(secret, 'auth'), plaintext).subarray(0, 16);
  if (!crypto.timingSafeEqual(check, Buffer.from(proto.syntheticIv)))
    throw new ProtocolError('Device name MAC mismatch');
  return plaintext.toString('utf8');
}
