/**
 * Storage service encryption (read side), as Signal's apps derive it from the account master key:
 * storage key = HMAC-SHA256(masterKey, "Storage Service Encryption"); the manifest's key =
 * HMAC-SHA256(storageKey, "Manifest_<version>"); a record's key = HKDF-SHA256(recordIkm, no salt,
 * info "20240801_SIGNAL_STORAGE_SERVICE_ITEM_" ‖ raw key, 32 bytes) when the manifest carries a
 * recordIkm, else HMAC-SHA256(storageKey, "Item_" + base64(raw key)). Values are AES-256-GCM
 * `iv(12) ‖ ciphertext ‖ tag(16)`.
 */
import crypto from 'node:crypto';
import { ProtocolError } from '../errors';

const ITEM_INFO_PREFIX = '20240801_SIGNAL_STORAGE_SERVICE_ITEM_';

const hmac = (key: Uint8Array, data: string) =>
  new Uint8Array(crypto.createHmac('sha256', key).update(data, 'utf8').digest());

export function deriveStorageKey(masterKey: Uint8Array): Uint8Array {
  if (masterKey.length !== 32) throw new ProtocolError('The account master key is not 32 bytes');
  return hmac(masterKey, 'Storage Service Encryption');
}

export function deriveManifestKey(
  storageKey: Uint8Array,
  version: bigint | number | string,
): Uint8Array {
  return hmac(storageKey, `Manifest_${version.toString()}`);
}

export function deriveItemKey(
  storageKey: Uint8Array,
  rawKey: Uint8Array,
  recordIkm?: Uint8Array | null,
): Uint8Array {
  if (recordIkm && recordIkm.length > 0) {
    const info = Buffer.concat([Buffer.from(ITEM_INFO_PREFIX, 'utf8'), Buffer.from(rawKey)]);
    return new Uint8Array(crypto.hkdfSync('sha256', recordIkm, Buffer.alloc(0), info, 32));
  }
  return hmac(storageKey, `Item_${Buffer.from(rawKey).toString('base64')}`);
}

/** AES-256-GCM open of `iv ‖ ciphertext ‖ tag`; a ProtocolError naming `what` when it fails. */
export function openStorageValue(key: Uint8Array, sealed: Uint8Array, what: string): Uint8Array {
  if (sealed.length < 12 + 16) throw new ProtocolError(`${what}: too short to be encrypted`);
  try {
    const decipher = crypto.createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    return new Uint8Array(
      Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]),
    );
  } catch (e) {
    throw new ProtocolError(`${what}: could not be decrypted with the account's storage key`, {
      cause: e,
    });
  }
}
