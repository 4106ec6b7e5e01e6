/**
 * Unidentified-access key (PROTOCOL.md §5): the first 16 bytes of AES-256-GCM(key = the recipient's
 * profile key, nonce = 12 zero bytes, plaintext = 16 zero bytes). Knowing someone's profile key is
 * what entitles us to send to them with sealed sender.
 */
import crypto from 'node:crypto';
import { InvalidInputError } from '../errors';

export function deriveAccessKey(profileKey: Uint8Array): Uint8Array {
  if (profileKey.length !== 32)
    throw new InvalidInputError(`A profile key has 32 bytes, not ${profileKey.length}`);
  const cipher = crypto.createCipheriv('aes-256-gcm', profileKey, Buffer.alloc(12));
  return new Uint8Array(
    Buffer.concat([cipher.update(Buffer.alloc(16)), cipher.final()]).subarray(0, 16),
  );
}

/**
 * The combined access key a multi-recipient send carries (`Unidentified-Access-Key`): the XOR of
 * every recipient's 16-byte access key, as Signal-Server's MessageController recomputes it.
 */
export function combineAccessKeys(keys: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(16);
  for (const k of keys) {
    if (k.length !== 16) throw new InvalidInputError(`An access key has 16 bytes, not ${k.length}`);
    for (let i = 0; i < 16; i++) out[i] = (out[i] ?? 0) ^ (k[i] ?? 0);
  }
  return out;
}
