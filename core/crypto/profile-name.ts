/**
 * Profile names (PROTOCOL.md, profiles): the plaintext is the given name, a NUL, and the family name
 * (UTF-8), padded with NULs to 53 or 257 bytes as Signal's apps pad it, so that every name on the
 * server has one of two lengths (each name part is at most 128 bytes: 128 + 1 + 128 = 257). It is
 * encrypted with AES-256-GCM under the owner's 32-byte profile key, a random 12-byte nonce, and
 * stored as nonce ‖ ciphertext ‖ tag(16). Decoding accepts unpadded names too (Signal's mock server
 * stores them so).
 */
import crypto from 'node:crypto';
import { InvalidInputError } from '../errors';

/** The lengths Signal's apps pad a name to (Signal-iOS OWSUserProfile, Desktop's crypto module). */
export const NAME_PADDED_LENGTHS = [53, 257] as const;
/** The most UTF-8 bytes of one name part. */
export const MAX_NAME_PART_BYTES = 128;

const NONCE = 12;
const TAG = 16;

export interface ProfileName {
  given: string;
  family?: string;
}

function checkKey(profileKey: Uint8Array): void {
  if (profileKey.length !== 32)
    throw new InvalidInputError(`A profile key has 32 bytes, not ${profileKey.length}`);
}

/** The padded plaintext of a name: given ‖ 0x00 ‖ family, padded with NULs to 53 or 257 bytes. */
export function paddedName(name: ProfileName): Buffer {
  const given = Buffer.from(name.given.trim(), 'utf8');
  const family = Buffer.from((name.family ?? '').trim(), 'utf8');
  if (given.length === 0) throw new InvalidInputError('A profile name needs a given name');
  for (const [what, part] of [
    ['given', given],
    ['family', family],
  ] as const) {
    if (part.length > MAX_NAME_PART_BYTES) {
      throw new InvalidInputError(
        `The ${what} name is ${part.length} bytes long, and Signal takes at most ${MAX_NAME_PART_BYTES} (UTF-8)`,
      );
    }
    if (part.includes(0)) throw new InvalidInputError(`The ${what} name contains a NUL character`);
  }
  const plain = family.length > 0 ? Buffer.concat([given, Buffer.from([0]), family]) : given;
  const padded = NAME_PADDED_LENGTHS.find((n) => n >= plain.length) ?? NAME_PADDED_LENGTHS[1];
  return Buffer.concat([plain, Buffer.alloc(padded - plain.length)]);
}

/** AES-256-GCM under the profile key: nonce ‖ ciphertext ‖ tag. */
export function encryptProfileName(
  profileKey: Uint8Array,
  name: ProfileName,
  nonce: Uint8Array = crypto.randomBytes(NONCE),
): Uint8Array {
  checkKey(profileKey);
  const cipher = crypto.createCipheriv('aes-256-gcm', profileKey, nonce);
  const ct = Buffer.concat([cipher.update(paddedName(name)), cipher.final()]);
  return new Uint8Array(Buffer.concat([nonce, ct, cipher.getAuthTag()]));
}

/**
 * The name in an encrypted profile name, or null when it does not decrypt under this key (an old
 * key, a corrupt value) or is empty. Trailing NULs (padding) are dropped; given and family split at
 * the first NUL.
 */
export function decryptProfileName(profileKey: Uint8Array, blob: Uint8Array): ProfileName | null {
  checkKey(profileKey);
  if (blob.length < NONCE + TAG) return null;
  let plain: Buffer;
  try {
    const decipher = crypto.createDecipheriv('aes-256-gcm', profileKey, blob.subarray(0, NONCE));
    decipher.setAuthTag(blob.subarray(blob.length - TAG));
    plain = Buffer.concat([
      decipher.update(blob.subarray(NONCE, blob.length - TAG)),
      decipher.final(),
    ]);
  } catch {
    return null;
  }
  let end = plain.length;
  while (end > 0 && plain[end - 1] === 0) end--;
  const text = plain.subarray(0, end);
  const sep = text.indexOf(0);
  const given = (sep === -1 ? text : text.subarray(0, sep)).toString('utf8');
  const family = sep === -1 ? '' : text.subarray(sep + 1).toString('utf8');
  if (!given && !family) return null;
  return { given, ...(family ? { family } : {}) };
}

/** How Signal's apps show a name: "given family", or either part alone. */
export function displayName(name: ProfileName): string {
  return [name.given, name.family].filter((p) => p && p.length > 0).join(' ');
}
