/**
 * The HTTP/2 transport (RFC 8441 extended CONNECT) and the HTTPS downloader against Signal's own mock
 * server, which takes WebSocket only over HTTP/2 (PROTOCOL.md §2, §11). Started here directly so
 * that the transport is tested without the rest of the sandbox.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { ProvisioningAddress } from '../../../proto';
import { resolveEnvironment, signalRootCa, type Environment } from '../../../core/config';
import { ChatConnection } from '../../../core/net/connection';
import { httpsGet } from '../../../core/net/https';
import { PersistentChat, type ChatState } from '../../../core/net/persistent';
import { detectTransport } from '../../../core/net/transport';
import type { IncomingRequest } from '../../../core/net/types';
import { NetworkError, ServerError, UnauthorizedError } from '../../../core/errors';
import { silentLogger } from '../../../core/log';
import { installPolyfills } from '../../harness/polyfill';

installPolyfills();
// Loaded after the polyfill: the mock server needs Promise.withResolvers on Node 20.
const mock = require('@signalapp/mock-server') as typeof import('@signalapp/mock-server');

const certDir = path.join(
  path.dirname(require.resolve('@signalapp/mock-server/package.json')),
  'certs',
);

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('net over HTTP/2 (Signal mock server)', function () {
  this.timeout(30_000);
  let server: InstanceType<typeof mock.Server>;
  let cdn3Path: string;
  let url: string;
  let caCert: string;
  let envFor: (transport: 'http2' | 'auto') => Environment;
  const closers: Array<() => Promise<unknown> | unknown> = [];

  before(async () => {
    cdn3Path = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-net-cdn3-'));
    server = new mock.Server({ cdn3Path });
    await server.listen(0, '127.0.0.1');
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    url = `https://127.0.0.1:${port}`;
    const certs = await mock.loadCertificates();
    caCert = certs.certificateAuthority;
    const trustRoot = String(certs.serverTrustRoots[0]);
    envFor = (transport) =>
      resolveEnvironment({
        server: 'custom',
        serviceUrl: url,
        caCert,
        trustRoots: [trustRoot],
        transport,
      });
  });

  afterEach(async () => {
    // HTTP/2 sessions must be gone before server.close(), or it waits for them (PROTOCOL.md §11).
    for (const c of closers.splice(0).reverse()) await c();
  });

  after(async () => {
    await server?.close();
    if (cdn3Path) fs.rmSync(cdn3Path, { recursive: true, force: true });
  });

  it('opens the provisioning socket unauthenticated and ACKs the server’s PUT /v1/address', async () => {
    const got = deferred<IncomingRequest>();
    const conn = await ChatConnection.open({
      env: envFor('http2'),
      path: '/v1/websocket/provisioning/',
      logger: silentLogger,
      keepalive: false,
      handler: (req) => {
        got.resolve(req);
        return 200;
      },
    });
    closers.push(() => conn.close());
    assert.equal(conn.transportKind, 'http2');
    const req = await got.promise;
    assert.equal(req.verb, 'PUT');
    assert.equal(req.path, '/v1/address');
    const address = ProvisioningAddress.decode(req.body).address;
    assert.ok(address && address.length >= 16, 'a provisioning address');
    // Our own request on the same stream, answered by id.
    const res = await conn.request({ verb: 'GET', path: '/v1/keepalive', timeoutMs: 10_000 });
    assert.equal(res.status, 200);
    await conn.close();
    assert.equal(conn.isOpen, false);
  });

  for (const transport of ['http2', 'auto'] as const) {
    it(`the chat socket (${transport}) refuses a server whose certificate does not chain to the CA`, async () => {
      // Signal's own root instead of the mock's CA: the mock's certificate must not be accepted.
      const env = { ...envFor(transport), caCert: signalRootCa() };
      await assert.rejects(
        ChatConnection.open({
          env,
          path: '/v1/websocket/',
          logger: silentLogger,
          keepalive: false,
        }),
        (e: unknown) => e instanceof NetworkError && /certificate/i.test(e.message),
      );
    });
  }

  it('picks HTTP/2 by ALPN for the auto transport', async () => {
    const env = envFor('auto');
    assert.equal(await detectTransport(env, 10_000), 'http2');
    const conn = await ChatConnection.open({
      env,
      path: '/v1/websocket/',
      logger: silentLogger,
      keepalive: false,
    });
    closers.push(() => conn.close());
    assert.equal(conn.transportKind, 'http2');
    const res = await conn.request({ verb: 'GET', path: '/v1/keepalive', timeoutMs: 10_000 });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(Buffer.from(res.body).toString()), { ok: true });
  });

  it('stops as unlinked when the server closes with 3000 (wrong credentials), without retrying', async () => {
    const chat = new PersistentChat({
      env: envFor('http2'),
      auth: { username: '00000000-0000-4000-8000-000000000000.2', password: 'wrong' },
      logger: silentLogger,
      backoff: { baseMs: 20, maxMs: 50 },
    });
    closers.push(() => chat.close());
    const states: ChatState[] = [];
    const unlinked = deferred<unknown>();
    chat.on('state', (s, err) => {
      states.push(s);
      if (s === 'unlinked') unlinked.resolve(err);
    });
    chat.start();
    assert.ok((await unlinked.promise) instanceof UnauthorizedError);
    assert.equal(chat.state, 'unlinked');
    // Many backoff periods later, still exactly the one attempt.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(chat.attempts, 1);
    assert.deepEqual(states, ['connecting', 'connected', 'unlinked']);
    await assert.rejects(chat.waitConnected(1000), UnauthorizedError);
  });

  it('downloads an attachment over HTTP/2 and maps a missing one to ServerError 404', async () => {
    const blob = Buffer.from('attachment bytes '.repeat(1000));
    // The mock stores CDN 0 attachments this way when a device uploads one; no public setter.
    const store = server as unknown as { storeAttachment(b: Buffer): Promise<string> };
    const key = await store.storeAttachment(blob);
    const env = envFor('http2');
    const body = await httpsGet(env, `${url}/attachments/${key}`, { timeoutMs: 10_000 });
    assert.deepEqual(Buffer.from(body), blob);
    await assert.rejects(
      httpsGet(env, `${url}/attachments/${key}`, { maxBytes: 100 }),
      (e: unknown) => e instanceof NetworkError && /larger than 100 bytes/.test(e.message),
    );
    await assert.rejects(
      httpsGet(env, `${url}/attachments/no-such-key`),
      (e: unknown) => e instanceof ServerError && e.status === 404,
    );
  });

  describe('against a plain HTTP/2 server', () => {
    let h2: http2.Http2SecureServer;
    let h2Env: Environment;
    let connects = 0;
    before(async () => {
      h2 = http2.createSecureServer({
        key: fs.readFileSync(path.join(certDir, 'key.pem')),
        cert: fs.readFileSync(path.join(certDir, 'cert.pem')),
        settings: { enableConnectProtocol: true },
      });
      h2.on('stream', (stream, headers) => {
        if (headers[':method'] === 'CONNECT') connects++;
        stream.respond({ ':status': 403 });
        stream.end();
      });
      await new Promise<void>((r) => h2.listen(0, '127.0.0.1', () => r()));
      const address = h2.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      h2Env = { ...envFor('http2'), chatUrl: `https://127.0.0.1:${port}` };
    });
    after(async () => {
      await new Promise<void>((r) => h2.close(() => r()));
    });

    it('maps a 403 answer to the extended CONNECT to unlinked, with no reconnect', async () => {
      const chat = new PersistentChat({
        env: h2Env,
        auth: { username: 'aci.2', password: 'pw' },
        logger: silentLogger,
        backoff: { baseMs: 20, maxMs: 50 },
      });
      closers.push(() => chat.close());
      await assert.rejects(
        chat.waitConnected(10_000),
        (e: unknown) => e instanceof UnauthorizedError && /HTTP 403/.test(e.message),
      );
      assert.equal(chat.state, 'unlinked');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(connects, 1);
      assert.equal(chat.attempts, 1);
    });
  });
});
