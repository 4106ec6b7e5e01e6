import assert from 'node:assert/strict';
import { ServerPublicParams } from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { PublicKey } from '@signalapp/libsignal-client';
import { parseTrustRoots, resolveEnvironment, USER_AGENT } from '../../core/config';
import { deviceCapabilities } from '../../core/account/capabilities';
import { projectRoot } from '../harness/node-red';

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

  it("names the storage service and the zkgroup server params: Signal's own, or a custom server's", () => {
    const prod = resolveEnvironment({ server: 'production' });
    assert.equal(prod.storageUrl, 'https://storage.signal.org');
    assert.equal(
      resolveEnvironment({ server: 'staging' }).storageUrl,
      'https://storage-staging.signal.org',
    );
    for (const env of [prod, resolveEnvironment({ server: 'staging' })]) {
      assert.ok(env.serverPublicParams);
      // Real ServerPublicParams: zkgroup reads them.
      assert.doesNotThrow(
        () =>
          new ServerPublicParams(
            new Uint8Array(Buffer.from(env.serverPublicParams as string, 'base64')),
          ),
      );
    }
    const pem = prod.caCert;
    const root = 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF';
    const base = { server: 'custom' as const, caCert: pem, trustRoots: root };
    const mockLike = resolveEnvironment({ ...base, serviceUrl: 'https://127.0.0.1:9000' });
    assert.equal(
      mockLike.storageUrl,
      'https://127.0.0.1:9000/storageService',
      "the mock's path by default",
    );
    assert.equal(mockLike.serverPublicParams, null, 'none given: groups cannot be fetched');
    const own = resolveEnvironment({
      ...base,
      serviceUrl: 'https://chat.example',
      storageUrl: 'https://storage.example/base/',
      serverPublicParams: prod.serverPublicParams,
    });
    assert.equal(own.storageUrl, 'https://storage.example/base');
    assert.equal(own.serverPublicParams, prod.serverPublicParams);
    assert.throws(
      () => resolveEnvironment({ ...base, serviceUrl: 'https://x', storageUrl: 'http://x' }),
      /Storage URL "http:\/\/x" must use https/,
    );
    assert.throws(
      () =>
        resolveEnvironment({ ...base, serviceUrl: 'https://x', serverPublicParams: 'not params!' }),
      /server public params must be base64/,
    );
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

describe('config: how the client names itself', () => {
  const pem = resolveEnvironment({ server: 'production' }).caCert;
  const custom = {
    server: 'custom' as const,
    serviceUrl: 'https://signal.example',
    caCert: pem,
    trustRoots: 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF',
  };

  it("names sigflow and libsignal with their installed versions, never one of Signal's apps", () => {
    const ownVersion = (
      JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
    const libsignal = (require('@signalapp/libsignal-client/package.json') as { version: string })
      .version;
    assert.equal(USER_AGENT, `sigflow/${ownVersion} libsignal/${libsignal}`);
    // Signal-Server's RemoteDeprecationFilter pattern for its own apps (PROTOCOL.md §12).
    assert.doesNotMatch(USER_AGENT, /^Signal-(Android|Desktop|iOS)\/([^ ]+)( (.+))?$/i);
    for (const server of ['production', 'staging'] as const)
      assert.equal(resolveEnvironment({ server }).userAgent, USER_AGENT);
    assert.equal(resolveEnvironment(custom).userAgent, USER_AGENT);
  });

  it('a custom server may be given another User-Agent, but not a Signal app name or control bytes', () => {
    assert.equal(
      resolveEnvironment({ ...custom, userAgent: ' my-gateway/2 ' }).userAgent,
      'my-gateway/2',
    );
    assert.throws(
      () => resolveEnvironment({ ...custom, userAgent: 'Signal-Desktop/7.80.0' }),
      /names one of Signal's own apps/,
    );
    assert.throws(
      () => resolveEnvironment({ ...custom, userAgent: 'a\r\nX-Injected: 1' }),
      /printable ASCII/,
    );
  });

  it('declares one capability set for link and registration: spqr, and only what the engine does', () => {
    const claimed = Object.entries(deviceCapabilities())
      .filter(([, on]) => on)
      .map(([name]) => name);
    assert.deepEqual(claimed, ['spqr', 'usernameChangeSyncMessage']);
    assert.equal(deviceCapabilities().attachmentBackfill, false);
    for (const unimplemented of [
      'deleteSync',
      'versionedExpirationTimer',
      'storageServiceEncryptionV2Capability',
      'ssre2',
    ])
      assert.equal(deviceCapabilities()[unimplemented], undefined, unimplemented);
  });
});
