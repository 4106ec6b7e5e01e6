/**
 * The provisioning cipher (PROTOCOL.md §3 step 3): what the phone encrypts for a new linked device.
 *   ECDH(our ephemeral private, their public) → HKDF-SHA256(info "TextSecure Provisioning Message",
 *   no salt, 64 bytes) → AES key (32) ‖ MAC key (32);
 *   body = 0x01 ‖ iv(16) ‖ AES-256-CBC/PKCS7 ciphertext ‖ HMAC-SHA256(macKey, everything before)(32).
 * The MAC is checked, in constant time, before anything is decrypted.
 */
import crypto from 'node:crypto';
import { PrivateKey, PublicKey } from '@signalapp/libsignal-client';
import { ProvisionMessage, type signalservice } from '../../proto';
import { ProtocolError } from '../errors';

const INFO = Buffer.from('TextSecure Provisioning Message');
const VERSION = 1;

function keys(shared: Uint8Array): { aesKey: Buffer; macKey: Buffer } {
  // RFC 5869: an absent salt is a string of HashLen zeros, the same as an empty salt.
  const okm = Buffer.from(crypto.hkdfSync('sha256', shared, Buffer.alloc(32), INFO, 64));
  return { aesKey: okm.subarray(0, 32), macKey: okm.subarray(32, 64) };
}

export function decryptProvisionEnvelope(
  ourEphemeral: PrivateKey,
  envelope: { publicKey?: Uint8Array | null; body?: Uint8Array | null },
): ProvisionMessage {
  if (!envelope.publicKey || !envelope.body)
    throw new ProtocolError('Provisioning envelope is missing its key or body');
  const body = Buffer.from(envelope.body);
  if (body.length < 1 + 16 + 16 + 32) throw new ProtocolError('Provisioning envelope is too short');
  if (body[0] !== VERSION)
    throw new ProtocolError(`Unknown provisioning envelope version ${body[0]}`);
  let theirs: PublicKey;
  try {
    theirs = PublicKey.deserialize(new Uint8Array(envelope.publicKey));
  } catch (e) {
    throw new ProtocolError('Provisioning envelope has an invalid public key', { cause: e });
  }
  const { aesKey, macKey } = keys(ourEphemeral.agree(theirs));
  const signed = body.subarray(0, body.length - 32);
  const mac = body.subarray(body.length - 32);
  const expected = crypto.createHmac('sha256', macKey).update(signed).digest();
  if (!crypto.timingSafeEqual(mac, expected))
    throw new ProtocolError('Provisioning envelope MAC mismatch');
  const iv = body.subarray(1, 17);
  const ciphertext = body.subarray(17, body.length - 32);
  let plaintext: Buffer;
  try {
    const decipher = crypto.createDecipheriv('aes-256-cbc', aesKey, iv);
    plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch (e) {
    throw new ProtocolError('Provisioning envelope could not be decrypted', { cause: e });
  }
  try {
    return ProvisionMessage.decode(plaintext);
  } catch (e) {
    throw new ProtocolError('Provisioning message is malformed', { cause: e });
  }
}

/** The phone's side, for tests and tools: encrypts a ProvisionMessage to a device's ephemeral key. */
export function encryptProvisionMessage(
  theirPublic: PublicKey,
  message: signalservice.IProvisionMessage,
): { publicKey: Uint8Array; body: Uint8Array } {
  const ours = PrivateKey.generate();
  const { aesKey, macKey } = keys(ours.agree(theirPublic));
  const iv = crypto.randomBytes(16);
  const cipher = crypto.createCipheriv('aes-256-cbc', aesKey, iv);
  const ciphertext = Buffer.concat([
    cipher.update(ProvisionMessage.encode(message).finish()),
    cipher.final(),
  ]);
  const signed = Buffer.concat([Buffer.from([VERSION]), iv, ciphertext]);
  const mac = crypto.createHmac('sha256', macKey).update(signed).digest();
  return { publicKey: ours.getPublicKey().serialize(), body: Buffer.concat([signed, mac]) };
}
