import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { ErrorCode, LibSignalErrorBase, Net } from '@signalapp/libsignal-client';
import * as Native from '@signalapp/libsignal-client/dist/Native.js';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  cdsiLookup,
  convertCdsiResponse,
  disposeSharedNets,
  mapCdsiError,
  NetCdsiBackend,
  sharedNet,
  sharedNetCount,
} from '../../../core/directory/cdsi';
import { Directory, type ContactsSource } from '../../../core/directory/directory';
import { RateLimitedError, SignalError } from '../../../core/errors';

/** A real libsignal error object, as the native CDSI code raises it. */
function nativeError(name: string): unknown {
  try {
    Native.TESTING_CdsiLookupErrorConvert(name);
  } catch (e) {
    return e;
  }
  throw new Error(`TESTING_CdsiLookupErrorConvert(${name}) did not throw`);
}

describe('directory/cdsi: libsignal errors → SignalErrors', () => {
  it('maps every CDSI error libsignal can raise to a stable code', () => {
    const cases: Array<[string, ErrorCode, string]> = [
      ['RetryAfter42Seconds', ErrorCode.RateLimitedError, 'RATE_LIMITED'],
      ['InvalidToken', ErrorCode.CdsiInvalidToken, 'CDSI_INVALID_TOKEN'],
      ['AttestationDataError', ErrorCode.Generic, 'CDSI_ATTESTATION'],
      ['InvalidArgument', ErrorCode.Generic, 'PROTOCOL'],
      ['Protocol', ErrorCode.IoError, 'NETWORK'],
      ['CdsiProtocol', ErrorCode.IoError, 'NETWORK'],
      ['TcpConnectFailed', ErrorCode.IoError, 'NETWORK'],
      ['WebSocketIdleTooLong', ErrorCode.IoError, 'NETWORK'],
      ['AllConnectionAttemptsFailed', ErrorCode.IoError, 'NETWORK'],
      ['ServerCrashed', ErrorCode.IoError, 'NETWORK'],
    ];
    for (const [name, nativeCode, code] of cases) {
      const raw = nativeError(name);
      assert.ok(raw instanceof LibSignalErrorBase, `${name} is a libsignal error`);
      assert.equal(raw.code, nativeCode, `${name}: native code`);
      const mapped = mapCdsiError(raw);
      assert.ok(mapped instanceof SignalError);
      assert.equal(mapped.code, code, `${name} → ${code}`);
      assert.equal(mapped.cause, raw, `${name}: keeps the native error as cause`);
      if (code !== 'RATE_LIMITED')
        assert.ok(mapped.message.includes(raw.message), `${name}: message says what happened`);
    }
  });

  it('keeps the rate limit’s retry-after', () => {
    const mapped = mapCdsiError(nativeError('RetryAfter42Seconds'));
    assert.ok(mapped instanceof RateLimitedError);
    assert.equal(mapped.retryAfterSeconds, 42);
  });

  it('a cancellation is CANCELLED, or TIMEOUT when our own timer caused it', () => {
    const cancelled = new LibSignalErrorBase('Promise cancelled', 'Cancelled', 'cdsiLookup');
    assert.equal(cancelled.code, ErrorCode.Cancelled);
    assert.equal(mapCdsiError(cancelled).code, 'CANCELLED');
    const timeout = mapCdsiError(cancelled, { timedOut: true, timeoutMs: 1234 });
    assert.equal(timeout.code, 'TIMEOUT');
    assert.match(timeout.message, /1234 ms/);
  });

  it('anything else is CDSI_UNAVAILABLE with its cause; a SignalError passes through', () => {
    const odd = new TypeError('boom');
    const mapped = mapCdsiError(odd);
    assert.equal(mapped.code, 'CDSI_UNAVAILABLE');
    assert.equal(mapped.cause, odd);
    const ours = new RateLimitedError(5);
    assert.equal(mapCdsiError(ours), ours);
  });
});

describe('directory/cdsi: response conversion', () => {
  it('turns the native response into bare ACI and PNI UUIDs', async () => {
    const ctx = new Net.TokioAsyncContext(Native.TokioAsyncContext_new());
    const raw = await ctx.makeCancellable(undefined, Native.TESTING_CdsiLookupResponseConvert(ctx));
    assert.equal(raw.entries.get('+18005551011')?.pni?.startsWith('PNI:'), true);
    const entries = convertCdsiResponse(raw);
    assert.deepEqual(
      [...entries],
      [
        [
          '+18005551011',
          {
            aci: '9d0652a3-dcc3-4d11-975f-74d61598733f',
            pni: '796abedb-ca4e-4f18-8803-1fde5b921f9f',
          },
        ],
        ['+18005551012', { aci: null, pni: '796abedb-ca4e-4f18-8803-1fde5b921f9f' }],
      ],
    );
  });
});

describe('directory/cdsi: one shared Net per environment', () => {
  afterEach(() => disposeSharedNets());

  it('is made on first use, shared, one per environment, and disposable', () => {
    disposeSharedNets();
    assert.equal(sharedNetCount(), 0);
    // A backend alone makes no Net: only a lookup does.
    new NetCdsiBackend('staging');
    assert.equal(sharedNetCount(), 0);
    const staging = sharedNet('staging');
    assert.equal(sharedNet('staging'), staging);
    const production = sharedNet('production');
    assert.notEqual(production, staging);
    assert.equal(sharedNetCount(), 2);
    disposeSharedNets();
    assert.equal(sharedNetCount(), 0);
    assert.notEqual(sharedNet('staging'), staging);
  });
});

// ---------------------------------------------------------------------------------- local server

type Mode = 'garbage' | 'silent' | 'http429' | 'http500';

interface Upgrade {
  url: string;
  headers: IncomingHttpHeaders;
}

const CERTS = path.join(
  path.dirname(require.resolve('@signalapp/mock-server/package.json')),
  'certs',
);

describe('directory/cdsi: wiring with Net against a local TLS WebSocket server', function () {
  this.timeout(30_000);
  let server: https.Server;
  let wss: WebSocketServer;
  let net: InstanceType<typeof Net.Net>;
  let mode: Mode = 'garbage';
  const upgrades: Upgrade[] = [];
  const sockets = new Set<WebSocket>();

  before(async () => {
    server = https.createServer({
      key: fs.readFileSync(path.join(CERTS, 'key.pem')),
      cert: fs.readFileSync(path.join(CERTS, 'full-cert.pem')),
    });
    wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
      upgrades.push({ url: req.url ?? '', headers: req.headers });
      if (mode === 'http429') {
        socket.end(
          'HTTP/1.1 429 Too Many Requests\r\nRetry-After: 42\r\nContent-Length: 0\r\n\r\n',
        );
        return;
      }
      if (mode === 'http500') {
        socket.end('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        sockets.add(ws);
        ws.on('close', () => sockets.delete(ws));
        // Where a real enclave would start its attestation handshake; these bytes are no protobuf.
        if (mode === 'garbage') ws.send(Buffer.from('no enclave here'));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });

  beforeEach(() => {
    upgrades.length = 0;
    // A fresh Net per test: within one Net, libsignal backs off from a route that just failed.
    const port = (server.address() as AddressInfo).port;
    const ca = new X509Certificate(fs.readFileSync(path.join(CERTS, 'ca-cert.pem')));
    net = new Net.Net({
      localTestServer: true,
      userAgent: 'sigflow-test',
      TESTING_localServer_chatPort: port,
      TESTING_localServer_cdsiPort: port,
      TESTING_localServer_svr2Port: port,
      TESTING_localServer_svrBPort: port,
      TESTING_localServer_rootCertificateDer: new Uint8Array(ca.raw),
    });
  });

  afterEach(() => {
    for (const ws of sockets) ws.terminate();
  });

  after(async () => {
    for (const ws of sockets) ws.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const noContacts: ContactsSource = {
    findByNumbers: () => new Map(),
    recordLookup: () => {},
  };

  it('a directory lookup sends GET /v1/<enclave>/discovery with Basic auth from auth(), and the failed attestation surfaces as CDSI_ATTESTATION', async () => {
    mode = 'garbage';
    let authCalls = 0;
    const directory = new Directory({
      environment: { name: 'staging', cdsi: 'staging' },
      auth: async () => {
        authCalls++;
        return { username: 'cdsi-user', password: 'cdsi-secret' };
      },
      contacts: noContacts,
      cdsi: new NetCdsiBackend(net),
      timeoutMs: 15_000,
    });
    try {
      await assert.rejects(directory.lookup(['+1 (415) 490-1234']), (e: unknown) => {
        assert.ok(e instanceof SignalError, 'a SignalError');
        assert.equal(e.code, 'CDSI_ATTESTATION');
        assert.match(e.message, /attest/i);
        return true;
      });
    } finally {
      directory.close();
    }
    assert.equal(authCalls, 1);
    assert.equal(upgrades.length, 1);
    const [upgrade] = upgrades;
    assert.match(upgrade?.url ?? '', /^\/v1\/[0-9a-f]+\/discovery$/);
    assert.equal(
      upgrade?.headers.authorization,
      `Basic ${Buffer.from('cdsi-user:cdsi-secret').toString('base64')}`,
    );
  });

  it('a server that never answers is cut off by the timeout (TIMEOUT, not a hang)', async () => {
    mode = 'silent';
    await assert.rejects(
      cdsiLookup(
        net,
        { username: 'u', password: 'p' },
        { e164s: ['+14154901234'], timeoutMs: 500 },
      ),
      (e: unknown) => e instanceof SignalError && e.code === 'TIMEOUT' && /500 ms/.test(e.message),
    );
    assert.equal(upgrades.length, 1);
  });

  it("the caller's AbortSignal cancels a lookup in progress (CANCELLED)", async () => {
    mode = 'silent';
    const controller = new AbortController();
    const pending = cdsiLookup(
      net,
      { username: 'u', password: 'p' },
      { e164s: ['+14154901234'], abortSignal: controller.signal, timeoutMs: 20_000 },
    );
    while (upgrades.length === 0) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    await assert.rejects(
      pending,
      (e: unknown) => e instanceof SignalError && e.code === 'CANCELLED',
    );
  });

  it('HTTP 429 on the upgrade is RATE_LIMITED with its Retry-After', async () => {
    mode = 'http429';
    await assert.rejects(
      cdsiLookup(net, { username: 'u', password: 'p' }, { e164s: ['+14154901234'] }),
      (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 42,
    );
  });

  it('a refused connection is NETWORK', async () => {
    mode = 'http500';
    await assert.rejects(
      cdsiLookup(net, { username: 'u', password: 'p' }, { e164s: ['+14154901234'] }),
      (e: unknown) => e instanceof SignalError && e.code === 'NETWORK',
    );
  });

  it('asks nothing for nothing, and refuses an already aborted signal before connecting', async () => {
    assert.equal((await cdsiLookup(net, { username: 'u', password: 'p' }, { e164s: [] })).size, 0);
    await assert.rejects(
      cdsiLookup(
        net,
        { username: 'u', password: 'p' },
        { e164s: ['+14154901234'], abortSignal: AbortSignal.abort() },
      ),
      (e: unknown) => e instanceof SignalError && e.code === 'CANCELLED',
    );
    assert.equal(upgrades.length, 0);
  });
});
