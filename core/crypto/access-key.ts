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
