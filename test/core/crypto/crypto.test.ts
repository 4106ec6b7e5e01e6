import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { IdentityKeyPair, PrivateKey, PublicKey } from '@signalapp/libsignal-client';
import { ProvisionMessage } from '../../../proto';
import {
  decryptProvisionEnvelope,
  encryptProvisionMessage,
} from '../../../core/crypto/provisioning';
import { decryptDeviceName, encryptDeviceName } from '../../../core/crypto/device-name';
import { padMessage, unpadMessage } from '../../../core/crypto/padding';
import { deriveAccessKey } from '../../../core/crypto/access-key';
import { decryptAttachment, encryptAttachment } from '../../../core/crypto/attachment';
import {
  generateKyberPreKey,
  generatePassword,
  generatePreKeys,
  generateRegistrationId,
  generateSignedPreKey,
} from '../../../core/crypto/keys';

// Signal's mock server carries its own libsignal copy: exchange bytes with it, never objects.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const mockCrypto: any = require('@signalapp/mock-server/src/crypto');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const mockLibsignal: any = require(
  require.resolve('@signalapp/libsignal-client', {
    paths: [require.resolve('@signalapp/mock-server')],
  }),
);

describe('crypto', () => {
  describe('provisioning cipher', () => {
    it("decrypts what Signal's mock server encrypts for a linking device", () => {
      const ephemeral = PrivateKey.generate();
      const message = ProvisionMessage.encode({
        number: '+15550001234',
        provisioningCode: 'code-123',
      }).finish();
      const theirPub = mockLibsignal.PublicKey.deserialize(
        Buffer.from(ephemeral.getPublicKey().serialize()),
      );
      const { body, ephemeralKey } = mockCrypto.encryptProvisionMessage(
        Buffer.from(message),
        theirPub,
      );
      const decoded = decryptProvisionEnvelope(ephemeral, { publicKey: ephemeralKey, body });
      assert.equal(decoded.number, '+15550001234');
      assert.equal(decoded.provisioningCode, 'code-123');
    });

    it('round-trips, and refuses a flipped bit, a wrong version, a wrong key and a short body', () => {
      const ephemeral = PrivateKey.generate();
      const env = encryptProvisionMessage(ephemeral.getPublicKey(), { number: '+15550009999' });
      assert.equal(decryptProvisionEnvelope(ephemeral, env).number, '+15550009999');
      const tampered = Buffer.from(env.body);
      tampered[20] = (tampered[20] ?? 0) ^ 1;
      assert.throws(
        () => decryptProvisionEnvelope(ephemeral, { ...env, body: tampered }),
        /MAC mismatch/,
      );
      const version = Buffer.from(env.body);
      version[0] = 2;
      assert.throws(
        () => decryptProvisionEnvelope(ephemeral, { ...env, body: version }),
        /version 2/,
      );
      assert.throws(() => decryptProvisionEnvelope(PrivateKey.generate(), env), /MAC mismatch/);
      assert.throws(
        () => decryptProvisionEnvelope(ephemeral, { ...env, body: env.body.subarray(0, 40) }),
        /too short/,
      );
      assert.throws(() => decryptProvisionEnvelope(ephemeral, { body: env.body }), /missing/);
    });
  });

  describe('device name', () => {
    it('round-trips through the ACI identity key and fails with another key', () => {
      const identity = IdentityKeyPair.generate();
      const encoded = encryptDeviceName('Node-RED ✓', identity.publicKey);
      assert.equal(decryptDeviceName(encoded, identity.privateKey), 'Node-RED ✓');
      assert.throws(
        () => decryptDeviceName(encoded, IdentityKeyPair.generate().privateKey),
        /MAC mismatch/,
      );
      assert.ok(
        !Buffer.from(encoded, 'base64').toString('utf8').includes('Node-RED'),
        'not in the clear',
      );
    });
  });

  describe('padding', () => {
    it('pads to multiples of 160 with 0x80 and strips it again', () => {
      for (const n of [0, 1, 158, 159, 160, 500]) {
        const content = crypto.randomBytes(n);
        const padded = padMessage(content);
        assert.equal(padded.length % 160, 0);
        assert.ok(padded.length > n);
        assert.deepEqual(Buffer.from(unpadMessage(padded)), content);
      }
    });
    it('rejects padding without the 0x80 marker', () => {
      assert.throws(() => unpadMessage(new Uint8Array(160)), /Malformed message padding/);
      assert.throws(() => unpadMessage(new Uint8Array([1, 2, 3])), /Malformed message padding/);
    });
  });

  it("derives the same access key as Signal's mock server", () => {
    const profileKey = crypto.randomBytes(32);
    assert.deepEqual(
      Buffer.from(deriveAccessKey(profileKey)),
      Buffer.from(mockCrypto.deriveAccessKey(profileKey)),
    );
    assert.equal(deriveAccessKey(profileKey).length, 16);
    assert.throws(() => deriveAccessKey(new Uint8Array(31)), /32 bytes/);
  });

  describe('attachments', () => {
    it('decrypts an attachment the mock server encrypted, checking MAC and digest, cut to size', () => {
      const cleartext = crypto.randomBytes(1000);
      const { key, blob, digest, size } = mockCrypto.encryptAttachment(cleartext);
      assert.deepEqual(Buffer.from(decryptAttachment(blob, key, digest, size)), cleartext);
    });
    it('refuses a tampered file and a wrong digest', () => {
      const enc = encryptAttachment(crypto.randomBytes(100));
      assert.equal(decryptAttachment(enc.file, enc.keys, enc.digest, enc.size).length, 100);
      const tampered = Buffer.from(enc.file);
      tampered[30] = (tampered[30] ?? 0) ^ 1;
      assert.throws(() => decryptAttachment(tampered, enc.keys, enc.digest), /MAC mismatch/);
      assert.throws(
        () => decryptAttachment(enc.file, enc.keys, new Uint8Array(32)),
        /digest mismatch/,
      );
      assert.throws(() => decryptAttachment(enc.file, enc.keys, null), /no digest/);
    });
  });

  describe('keys', () => {
    it('makes registration ids in 1..16383 and distinct random passwords', () => {
      for (let i = 0; i < 200; i++) {
        const id = generateRegistrationId();
        assert.ok(id >= 1 && id <= 16383);
      }
      assert.notEqual(generatePassword(), generatePassword());
      assert.ok(Buffer.from(generatePassword(), 'base64').length >= 16);
    });
    it('signs signed and Kyber prekeys with the identity key, in the upload form', () => {
      const identity = IdentityKeyPair.generate();
      const signed = generateSignedPreKey(identity.privateKey, 7);
      const kyber = generateKyberPreKey(identity.privateKey, 9);
      for (const k of [signed.upload, kyber.upload]) {
        assert.ok(
          identity.publicKey.verify(
            Buffer.from(k.publicKey, 'base64'),
            Buffer.from(k.signature, 'base64'),
          ),
          'signature verifies',
        );
      }
      assert.equal(signed.record.id(), 7);
      assert.equal(kyber.record.id(), 9);
      assert.ok(
        PublicKey.deserialize(new Uint8Array(Buffer.from(signed.upload.publicKey, 'base64'))),
      );
      const batch = generatePreKeys(0xfffffd, 4);
      assert.deepEqual(
        batch.upload.map((u) => u.keyId),
        [0xfffffd, 0xfffffe, 1, 2],
      );
    });
  });
});
