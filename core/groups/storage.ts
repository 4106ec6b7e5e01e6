/**
 * Listing the account's groups from the storage service (read only): the manifest, decrypted with
 * the key derived from the account master key, names the records; the GROUPV2 records give the
 * groups' master keys, the CONTACT records their profile keys. A linked device never writes the
 * user's storage (its phone owns it).
 */
import {
  deriveItemKey,
  deriveManifestKey,
  deriveStorageKey,
  openStorageValue,
} from '../crypto/storage';
import { ProtocolError } from '../errors';
import { ManifestRecord, StorageRecord, toDecimalString, type signalservice } from '../../proto';
import type { StorageAuth } from '../api';

/** The storage service calls this needs (core/api/storage.ts over the account's sockets). */
export interface StorageReadPort {
  auth(): Promise<StorageAuth>;
  manifest(auth: StorageAuth): Promise<signalservice.StorageManifest | null>;
  read(auth: StorageAuth, keys: Uint8Array[]): Promise<signalservice.StorageItems>;
}

export interface StorageListing {
  version: string;
  groupMasterKeys: Uint8Array[];
  contacts: Array<{ aci: string; profileKey: Uint8Array }>;
  /** Records that did not decrypt or parse, skipped. */
  unreadable: number;
}

/** At most this many keys per read (Signal-Server's storage service limit is larger). */
const READ_BATCH = 100;

const Type = ManifestRecord.Identifier.Type;

export async function readStorage(
  port: StorageReadPort,
  accountMasterKey: Uint8Array,
): Promise<StorageListing | null> {
  const storageKey = deriveStorageKey(accountMasterKey);
  const auth = await port.auth();
  const manifest = await port.manifest(auth);
  if (!manifest) return null;
  const version = toDecimalString(manifest.version);
  const plain = openStorageValue(
    deriveManifestKey(storageKey, version),
    manifest.value ?? new Uint8Array(),
    'The storage manifest',
  );
  let record: ManifestRecord;
  try {
    record = ManifestRecord.decode(plain);
  } catch (e) {
    throw new ProtocolError('The storage manifest is not a ManifestRecord', { cause: e });
  }
  const wanted = (record.keys ?? []).filter(
    (k) => (k.type === Type.GROUPV2 || k.type === Type.CONTACT) && k.raw && k.raw.length > 0,
  );
  const listing: StorageListing = { version, groupMasterKeys: [], contacts: [], unreadable: 0 };
  for (let i = 0; i < wanted.length; i += READ_BATCH) {
    const keys = wanted.slice(i, i + READ_BATCH).map((k) => k.raw as Uint8Array);
    const items = await port.read(auth, keys);
    for (const item of items.items ?? []) {
      if (!item.key || !item.value) continue;
      // One record that does not open or parse is skipped (and counted), not the whole listing.
      let r: StorageRecord;
      try {
        r = StorageRecord.decode(
          openStorageValue(
            deriveItemKey(storageKey, item.key, record.recordIkm),
            item.value,
            'A storage record',
          ),
        );
      } catch {
        listing.unreadable++;
        continue;
      }
      const mk = r.groupV2?.masterKey;
      if (mk && mk.length === 32) listing.groupMasterKeys.push(new Uint8Array(mk));
      const c = r.contact;
      if (c?.aci && c.profileKey && c.profileKey.length === 32) {
        listing.contacts.push({
          aci: c.aci.toLowerCase(),
          profileKey: new Uint8Array(c.profileKey),
        });
      }
    }
  }
  return listing;
}
