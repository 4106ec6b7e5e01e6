import assert from 'node:assert/strict';
import { PrivateKey } from '@signalapp/libsignal-client';

describe('libsignal-client', () => {
  it('loads from CommonJS and signs with a fresh identity key', () => {
    const key = PrivateKey.generate();
    const msg = new TextEncoder().encode('hello');
    const sig = key.sign(msg);
    assert.ok(key.getPublicKey().verify(msg, sig));
  });
});
