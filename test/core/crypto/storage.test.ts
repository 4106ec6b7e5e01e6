import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { SvrKey } from '@signalapp/libsignal-client/dist/AccountKeys.js';
import {
  deriveItemKey,
  deriveManifestKey,
  deriveStorageKey,
  openStorageValue,
} from '../../../core/crypto/storage';
import { ManifestRecord, StorageRecord } from '../../../proto';
import { ProtocolError } from '../../../core/errors';

/** The mock server's own storage-service crypto (what its phones encrypt with): an oracle. */
const mockCrypto = require(
  require.resolve('@signalapp/mock-server/src/crypto', {
    paths: [require.resolve('@signalapp/mock-server')],
  }),
) as {
  deriveStorageKey(masterKey: Buffer): Buffer;
  deriveStorageItemKey(o: { storageKey: Buffer; recordIkm?: Buffer; key: Buffer }): Buffer;
  encryptStorageManifest(
    storageKey: Buffer,
    record: Record<string, unknown>,
  ): { version: bigint; value: Uint8Array };
  encryptStorageItem(o: {
    storageKey: Buffer;
    key: Buffer;
    recordIkm?: Buffer;
    record: Record<string, unknown>;
  }): { key: Uint8Array; value: Uint8Array };
};

const masterKey = new Uint8Array(crypto.randomBytes(32));

describe('crypto/storage: storage service keys', () => {
  it("derives the storage key as libsignal's SvrKey.deriveStorageServiceKey and the mock do", () => {
    const ours = deriveStorageKey(masterKey);
    assert.equal(ours.length, 32);
    assert.deepEqual(
      Buffer.from(ours),
      Buffer.from(new SvrKey(new Uint8Array(masterKey)).deriveStorageServiceKey()),
    );
    assert.deepEqual(Buffer.from(ours), mockCrypto.deriveStorageKey(Buffer.from(masterKey)));
    assert.throws(() => deriveStorageKey(new Uint8Array(31)), ProtocolError);
  });

  it('derives item keys with and without a recordIkm as the mock does, and they differ', () => {
    const storageKey = Buffer.from(deriveStorageKey(masterKey));
    const raw = crypto.randomBytes(16);
    const ikm = crypto.randomBytes(32);
    const legacy = deriveItemKey(storageKey, raw);
    const hkdf = deriveItemKey(storageKey, raw, ikm);
    assert.deepEqual(
      Buffer.from(legacy),
      mockCrypto.deriveStorageItemKey({ storageKey, key: raw }),
    );
    assert.deepEqual(
      Buffer.from(hkdf),
      mockCrypto.deriveStorageItemKey({ storageKey, recordIkm: ikm, key: raw }),
    );
    assert.notDeepEqual(Buffer.from(legacy), Buffer.from(hkdf));
    assert.deepEqual(
      Buffer.from(deriveItemKey(storageKey, raw, new Uint8Array())),
      Buffer.from(legacy),
    );
  });

  it("opens a manifest and a record the mock's phone encrypted; a wrong key is a ProtocolError", () => {
    const storageKey = Buffer.from(deriveStorageKey(masterKey));
    const raw = crypto.randomBytes(16);
    const ikm = crypto.randomBytes(32);
    const manifest = mockCrypto.encryptStorageManifest(storageKey, {
      version: 7n,
      sourceDevice: 1,
      // The mock's protos name ManifestRecord.keys `identifiers`.
      identifiers: [{ raw, type: ManifestRecord.Identifier.Type.GROUPV2 }],
      recordIkm: ikm,
    });
    const opened = ManifestRecord.decode(
      openStorageValue(deriveManifestKey(storageKey, 7n), manifest.value, 'manifest'),
    );
    assert.equal(String(opened.version), '7');
    assert.deepEqual(Buffer.from(opened.keys[0]?.raw ?? []), raw);
    assert.deepEqual(Buffer.from(opened.recordIkm), ikm);
    const groupMasterKey = crypto.randomBytes(32);
    const item = mockCrypto.encryptStorageItem({
      storageKey,
      key: raw,
      recordIkm: ikm,
      record: {
        // The mock's protos put the oneof under `record`.
        record: { groupV2: { masterKey: groupMasterKey, whitelisted: true } },
      },
    });
    const record = StorageRecord.decode(
      openStorageValue(deriveItemKey(storageKey, raw, opened.recordIkm), item.value, 'record'),
    );
    assert.deepEqual(Buffer.from(record.groupV2?.masterKey ?? []), groupMasterKey);
    assert.throws(
      () => openStorageValue(deriveManifestKey(storageKey, 8), manifest.value, 'The manifest'),
      (e: unknown) =>
        e instanceof ProtocolError && /The manifest: could not be decrypted/.test(e.message),
    );
    assert.throws(() => openStorageValue(storageKey, new Uint8Array(10), 'x'), /too short/);
  });
});
