import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { PublicKey } from '@signalapp/libsignal-client';
import { parseTrustRoots, resolveEnvironment } from '../../core/config';

describe('config: environments', () => {
  it("production pins Signal's own root CA and its two sealed-sender trust roots", () => {
    const env = resolveEnvironment({ server: 'production' });
    assert.equal(env.chatUrl, 'https://chat.signal.org');
    const ca = new X509Certificate(env.caCert);
    assert.match(ca.subject, /O=Signal Messenger\\, LLC/);
    assert.ok(ca.ca, 'a CA certificate');
    assert.equal(env.trustRoots.length, 2);
    for (const root of env.trustRoots)
      PublicKey.deserialize(new Uint8Array(Buffer.from(root, 'base64')));
    assert.equal(env.cdsi, 'production');
    assert.equal(env.transport, 'http1');
  });

  it('staging uses staging hosts and trust roots with the same pinned CA', () => {
    const env = resolveEnvironment({ server: 'staging' });
    assert.equal(env.chatUrl, 'https://chat.staging.signal.org');
    assert.notDeepEqual(env.trustRoots, resolveEnvironment({ server: 'production' }).trustRoots);
    assert.equal(env.cdsi, 'staging');
  });

  it('custom needs an https URL, a CA PEM and a trust root, and names what is wrong', () => {
    const pem = resolveEnvironment({ server: 'production' }).caCert;
    const root = 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF';
    assert.throws(
      () =>
        resolveEnvironment({ server: 'custom', serviceUrl: 'nope', caCert: pem, trustRoots: root }),
      /"nope" is not a valid URL/,
    );
    assert.throws(
      () =>
        resolveEnvironment({
          server: 'custom',
          serviceUrl: 'http://x',
          caCert: pem,
          trustRoots: root,
        }),
      /must use https/,
    );
    assert.throws(
      () =>
        resolveEnvironment({
          server: 'custom',
          serviceUrl: 'https://x',
          caCert: '',
          trustRoots: root,
        }),
      /CA certificate/,
    );
    assert.throws(
      () =>
        resolveEnvironment({
          server: 'custom',
          serviceUrl: 'https://x',
          caCert: pem,
          trustRoots: '',
        }),
      /trust root/,
    );
    const env = resolveEnvironment({
      server: 'custom',
      serviceUrl: 'https://signal.example:8443/ignored',
      caCert: pem,
      trustRoots: `${root},\n${root}`,
    });
    assert.equal(env.chatUrl, 'https://signal.example:8443');
    assert.equal(env.cdsi, null, 'libsignal Net cannot reach a custom server');
    assert.equal(env.transport, 'auto');
    assert.throws(() => resolveEnvironment({ server: 'moon' as never }), /Unknown server "moon"/);
  });

  it('parses trust roots separated by commas, spaces or newlines and rejects bad keys', () => {
    assert.deepEqual(
      parseTrustRoots(' a b '.replace(/[ab]/g, 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF')),
      [
        'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF',
        'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF',
      ],
    );
    assert.throws(() => parseTrustRoots('abcd'), /not a base64 33-byte public key/);
  });
});
