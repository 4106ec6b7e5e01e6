import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  decryptProfileName,
  displayName,
  encryptProfileName,
  paddedName,
} from '../../../core/crypto/profile-name';

const key = new Uint8Array(crypto.randomBytes(32));

describe('crypto/profile-name', () => {
  it('pads given\\0family with NULs to 53 bytes, or 257 for longer names, as Signal pads them', () => {
    const short = paddedName({ given: 'Ada', family: 'Lovelace' });
    assert.equal(short.length, 53);
    assert.equal(short.subarray(0, 12).toString('latin1'), 'Ada\0Lovelace');
    assert.ok(short.subarray(12).every((b) => b === 0));
    assert.equal(paddedName({ given: 'x'.repeat(60) }).length, 257);
    assert.equal(paddedName({ given: 'x'.repeat(128), family: 'y'.repeat(128) }).length, 257);
    assert.throws(() => paddedName({ given: 'x'.repeat(129) }), /at most 128/);
    assert.throws(() => paddedName({ given: '  ' }), /given name/);
  });

  it('encrypts as nonce ‖ AES-256-GCM ciphertext ‖ tag and decrypts both parts back', () => {
    const blob = encryptProfileName(key, { given: 'Zoë', family: 'Ünal' });
    assert.equal(blob.length, 12 + 53 + 16);
    assert.deepEqual(decryptProfileName(key, blob), { given: 'Zoë', family: 'Ünal' });
    assert.equal(displayName({ given: 'Zoë', family: 'Ünal' }), 'Zoë Ünal');
    assert.equal(displayName({ given: 'Zoë' }), 'Zoë');
  });

  it('decrypts an unpadded name (as the mock server stores it), and refuses a wrong key', () => {
    const nonce = crypto.randomBytes(12);
    const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce);
    const ct = Buffer.concat([cipher.update('Carol'), cipher.final()]);
    const blob = new Uint8Array(Buffer.concat([nonce, ct, cipher.getAuthTag()]));
    assert.deepEqual(decryptProfileName(key, blob), { given: 'Carol' });
    assert.equal(decryptProfileName(new Uint8Array(32), blob), null);
    assert.equal(decryptProfileName(key, new Uint8Array(10)), null);
  });
});
