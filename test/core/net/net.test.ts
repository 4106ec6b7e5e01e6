import assert from 'node:assert/strict';
import { ChatConnection } from '../../../core/net/connection';
import {
  EXPIRED_RETRY_MS,
  PersistentChat,
  backoffDelay,
  type ReconnectInfo,
} from '../../../core/net/persistent';
import { detectTransport } from '../../../core/net/transport';
import { resolveEnvironment, signalRootCa } from '../../../core/config';
import {
  CancelledError,
  ClientTooOldError,
  ClosedError,
  NetworkError,
  ServerError,
  TimeoutError,
} from '../../../core/errors';
import { httpsGet } from '../../../core/net/https';
import { silentLogger } from '../../../core/log';
import { startFakeChatServer, type FakeChatServer } from './fake-server';
import { until } from '../../harness/wait';

/**
 * What keeps the process alive (timers, sockets, servers), sorted; unref'd timers do not count,
 * nor do passing file-system requests (the test runner reading files).
 */
function activeResources(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((r) => !r.startsWith('FSReq'))
    .sort();
}

/** A baseline taken after a turn of the event loop: mocha arms its own test timer only then. */
async function activeResourcesNow(): Promise<string[]> {
  await new Promise((r) => setImmediate(r));
  return activeResources();
}

describe('net', function () {
  this.timeout(20_000);
  let server: FakeChatServer;
  const closers: Array<() => Promise<void> | void> = [];
  beforeEach(async () => {
    server = await startFakeChatServer();
  });
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
    await server.close();
  });

  describe('HTTP/1.1 transport and WebSocketMessage framing', () => {
    it('multiplexes requests by id, with JSON bodies, and answers pushed requests with the handler status', async () => {
      const pushed: string[] = [];
      const conn = await ChatConnection.open({
        env: server.env,
        path: '/v1/websocket/',
        auth: { username: 'aci.2', password: 'pw' },
        logger: silentLogger,
        keepalive: false,
        handler: (req) => {
          pushed.push(`${req.verb} ${req.path} ${Buffer.from(req.body).toString()}`);
          return req.path === '/api/v1/message' ? 200 : 400;
        },
      });
      closers.push(() => conn.close());
      assert.equal(conn.transportKind, 'http1');
      const [a, b] = await Promise.all([
        conn.request({ verb: 'PUT', path: '/v1/a', body: { n: 1 } }),
        conn.request({ verb: 'GET', path: '/v1/missing' }),
      ]);
      assert.equal(a.status, 200);
      assert.equal(a.headers['content-type'], 'application/json');
      assert.deepEqual(JSON.parse(Buffer.from(a.body).toString()), { echo: '{"n":1}' });
      assert.equal(b.status, 404);
      assert.equal(await server.push('PUT', '/api/v1/message', Buffer.from('env')), 200);
      assert.equal(await server.push('PUT', '/api/v1/unknown'), 400);
      assert.deepEqual(pushed, ['PUT /api/v1/message env', 'PUT /api/v1/unknown ']);
    });

    it('refuses a server whose certificate does not chain to the CA, before any frame', async () => {
      const env = { ...server.env, caCert: signalRootCa() };
      await assert.rejects(
        ChatConnection.open({
          env,
          path: '/v1/websocket/',
          auth: { username: 'aci.2', password: 'pw' },
          logger: silentLogger,
          keepalive: false,
        }),
        (e: unknown) => e instanceof NetworkError && /certificate/i.test(e.message),
      );
    });

    it('answers 500 when the handler fails, so the server keeps the item', async () => {
      const conn = await ChatConnection.open({
        env: server.env,
        path: '/v1/websocket/',
        logger: silentLogger,
        keepalive: false,
        handler: async () => {
          throw new Error('store is full');
        },
      });
      closers.push(() => conn.close());
      assert.equal(await server.push('PUT', '/api/v1/message'), 500);
    });

    it('times a request out with a TIMEOUT error naming it', async () => {
      const conn = await ChatConnection.open({
        env: server.env,
        path: '/v1/websocket/',
        logger: silentLogger,
        keepalive: false,
      });
      closers.push(() => conn.close());
      await assert.rejects(
        conn.request({ verb: 'GET', path: '/v1/slow', timeoutMs: 100 }),
        (e: unknown) => {
          const err = e as { code?: string; message: string };
          return (
            err.code === 'TIMEOUT' && /GET \/v1\/slow timed out after 100 ms/.test(err.message)
          );
        },
      );
    });

    it('a request whose frame cannot be sent fails at once as NETWORK and leaves no timer behind', async () => {
      const conn = await ChatConnection.open({
        env: server.env,
        path: '/v1/websocket/',
        logger: silentLogger,
        keepalive: false,
      });
      closers.push(() => conn.close());
      const before = await activeResourcesNow();
      const transport = (conn as unknown as { transport: { send(data: Uint8Array): void } })
        .transport;
      transport.send = () => {
        throw new Error('socket is not writable');
      };
      await assert.rejects(
        conn.request({ verb: 'GET', path: '/v1/a', timeoutMs: 60_000 }),
        (e: unknown) =>
          e instanceof NetworkError && /GET \/v1\/a: could not be sent/.test(e.message),
      );
      assert.deepEqual(activeResources(), before, 'the 60 s request timer was cleared');
      assert.equal((conn as unknown as { pending: Map<string, unknown> }).pending.size, 0);
    });

    it('detects HTTP/1.1 by ALPN for the auto transport', async () => {
      const env = resolveEnvironment({
        ...server.env,
        server: 'custom',
        serviceUrl: server.env.chatUrl,
        transport: 'auto',
      });
      assert.equal(await detectTransport(env, 5000), 'http1');
    });
  });

  describe('auto transport', () => {
    it('falls back to HTTP/1.1 when an HTTP/2 server does not enable extended CONNECT', async () => {
      const front = await startFakeChatServer({ http2Front: true });
      closers.push(() => front.close());
      const env = { ...front.env, transport: 'auto' as const };
      assert.equal(await detectTransport(env, 5000), 'http2', 'ALPN offers h2');
      const conn = await ChatConnection.open({
        env,
        path: '/v1/websocket/',
        logger: silentLogger,
        keepalive: false,
      });
      closers.push(() => conn.close());
      assert.equal(conn.transportKind, 'http1');
      assert.equal((await conn.request({ verb: 'GET', path: '/v1/a' })).status, 200);
      // Remembered: the next probe does not ask again.
      assert.equal(await detectTransport(env, 5000), 'http1');
    });
  });

  describe('httpsGet over HTTP/1.1', () => {
    it('downloads a body, verified against the environment CA', async () => {
      const body = await httpsGet(server.env, `${server.env.chatUrl}/bytes/70000`);
      assert.equal(body.length, 70000);
      assert.ok(body.every((b) => b === 7));
    });

    it('refuses a server whose certificate does not chain to the CA', async () => {
      const env = { ...server.env, caCert: signalRootCa() };
      await assert.rejects(
        httpsGet(env, `${server.env.chatUrl}/bytes/10`),
        (e: unknown) => e instanceof NetworkError && /certificate/i.test(e.message),
      );
    });

    it('maps statuses, sizes, timeouts and cancellation to typed errors', async () => {
      const base = server.env.chatUrl;
      await assert.rejects(
        httpsGet(server.env, `${base}/nothing`),
        (e: unknown) => e instanceof ServerError && e.status === 404,
      );
      await assert.rejects(
        httpsGet(server.env, `${base}/bytes/5000`, { maxBytes: 4999 }),
        /larger than 4999 bytes/,
      );
      await assert.rejects(httpsGet(server.env, `${base}/hang`, { timeoutMs: 200 }), TimeoutError);
      const abort = new AbortController();
      const pending = httpsGet(server.env, `${base}/hang`, { signal: abort.signal });
      setTimeout(() => abort.abort(), 50);
      await assert.rejects(pending, CancelledError);
      await assert.rejects(httpsGet(server.env, 'http://127.0.0.1/x'), /non-https/);
    });
  });

  describe('persistent connection', () => {
    const fast = {
      keepalive: { intervalMs: 100, timeoutMs: 150, silenceMs: 1000 },
      backoff: { baseMs: 50, maxMs: 200 },
    };

    it('declares a connection dead when keepalives go unanswered, and replaces it', async () => {
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      closers.push(() => chat.close());
      const states: string[] = [];
      chat.on('state', (s) => states.push(s));
      await chat.waitConnected(5000);
      server.silent = true;
      await until(() => states.includes('disconnected'), 5000, 'dead connection detected');
      assert.equal(chat.lastError?.code, 'TIMEOUT');
      server.silent = false;
      await until(() => chat.connections >= 2 && chat.state === 'connected', 5000, 'replaced');
      assert.ok(server.requests.filter((r) => r === 'GET /v1/keepalive').length >= 2);
    });

    it('declares a connection dead after a silence longer than the limit', async () => {
      const chat = new PersistentChat({
        env: server.env,
        logger: silentLogger,
        keepalive: { intervalMs: 60_000, timeoutMs: 20_000, silenceMs: 200 },
        backoff: fast.backoff,
      });
      closers.push(() => chat.close());
      await chat.waitConnected(5000);
      await until(() => chat.connections >= 2, 5000, 'reconnected after silence');
      assert.match(chat.lastError?.message ?? '', /no traffic from the server/);
    });

    it('reconnects after a server drop within the backoff bound, and requests wait for it', async () => {
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      closers.push(() => chat.close());
      const retries: ReconnectInfo[] = [];
      chat.on('reconnecting', (r) => retries.push(r));
      await chat.waitConnected(5000);
      server.dropAll();
      await until(() => chat.state === 'disconnected', 2000, 'noticed the drop');
      // A request made while disconnected waits for the new socket.
      const res = await chat.request({ verb: 'GET', path: '/v1/after', timeoutMs: 5000 });
      assert.equal(res.status, 200);
      assert.equal(chat.connections, 2);
      // The first retry after a drop was scheduled within the bound, and it was the one that worked.
      assert.equal(retries.length, 1);
      assert.equal(retries[0]?.attempt, 0);
      assert.ok(retries[0]!.delayMs <= fast.backoff.baseMs);
      assert.equal(chat.attempts, 2);
    });

    it('backs off exponentially, capped, while the server refuses, then connects', async () => {
      const backoff = { baseMs: 10, maxMs: 40 };
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, backoff });
      closers.push(() => chat.close());
      const retries: ReconnectInfo[] = [];
      chat.on('reconnecting', (r) => retries.push(r));
      server.refuseWith = 503;
      chat.start();
      await until(() => retries.length >= 5, 5000, 'five retries');
      server.refuseWith = null;
      await chat.waitConnected(5000);
      assert.deepEqual(
        retries.slice(0, 5).map((r) => r.attempt),
        [0, 1, 2, 3, 4],
      );
      for (const r of retries) {
        assert.ok(r.delayMs <= Math.min(backoff.maxMs, backoff.baseMs * 2 ** r.attempt));
        assert.ok(r.delayMs >= Math.min(backoff.maxMs, backoff.baseMs * 2 ** r.attempt) / 2);
        assert.equal(r.error.code, 'NETWORK');
      }
      assert.equal(chat.attempts, retries.length + 1);
      assert.equal(server.upgrades, chat.attempts);
    });

    it('fails a request made while the server is unreachable with a TIMEOUT naming the cause', async () => {
      server.refuseWith = 503;
      const chat = new PersistentChat({
        env: server.env,
        logger: silentLogger,
        backoff: { baseMs: 20, maxMs: 50 },
      });
      closers.push(() => chat.close());
      await assert.rejects(
        chat.request({ verb: 'GET', path: '/v1/x', timeoutMs: 500 }),
        (e: unknown) =>
          e instanceof TimeoutError && /Connecting \(.*HTTP 503.*\) timed out/.test(e.message),
      );
      assert.equal(chat.connections, 0);
      assert.ok(chat.attempts >= 1);
    });

    it('backoff doubles from the base to the cap, jittered between 50 % and 100 %', () => {
      const b = { baseMs: 1000, maxMs: 60_000 };
      assert.equal(
        backoffDelay(0, b, () => 1),
        1000,
      );
      assert.equal(
        backoffDelay(0, b, () => 0),
        500,
      );
      assert.equal(
        backoffDelay(3, b, () => 1),
        8000,
      );
      assert.equal(
        backoffDelay(10, b, () => 1),
        60_000,
      );
      assert.equal(
        backoffDelay(50, b, () => 0),
        30_000,
      );
    });

    it('a state listener that throws is reported, not an unhandled rejection, and reconnects go on', async () => {
      const errors: string[] = [];
      const logger = { ...silentLogger, error: (msg: string) => void errors.push(msg) };
      const chat = new PersistentChat({ env: server.env, logger, ...fast });
      closers.push(() => chat.close());
      const states: string[] = [];
      chat.on('state', (s) => {
        states.push(s);
        throw new Error(`listener broke on ${s}`);
      });
      chat.on('reconnecting', () => {
        throw new Error('listener broke on reconnecting');
      });
      await chat.waitConnected(5000);
      server.dropAll();
      await until(() => chat.connections >= 2 && chat.state === 'connected', 5000, 'reconnected');
      server.dropAll();
      await until(() => chat.connections >= 3 && chat.state === 'connected', 5000, 'again');
      assert.deepEqual(states.slice(0, 4), [
        'connecting',
        'connected',
        'disconnected',
        'connecting',
      ]);
      assert.ok(errors.some((m) => /'state' listener failed/.test(m)));
      assert.ok(errors.some((m) => /'reconnecting' listener failed/.test(m)));
      assert.equal((await chat.request({ verb: 'GET', path: '/v1/a' })).status, 200);
    });

    it('does not reconnect after close()', async () => {
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      await chat.waitConnected(5000);
      const upgrades = server.upgrades;
      server.dropAll();
      await chat.close();
      assert.equal(chat.state, 'closed');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(server.upgrades, upgrades, 'no reconnect after close');
      await assert.rejects(chat.request({ verb: 'GET', path: '/v1/x' }), ClosedError);
    });

    it('leaves no timer or socket behind after close(), and nothing fires afterwards', async () => {
      const before = await activeResourcesNow();
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      const events: string[] = [];
      chat.on('state', (s) => events.push(s));
      await chat.waitConnected(5000);
      assert.equal((await chat.request({ verb: 'GET', path: '/v1/a' })).status, 200);
      // Keepalive, silence and request timers are all running now.
      assert.notDeepEqual(activeResources(), before);
      await chat.close();
      await until(
        () => JSON.stringify(activeResources()) === JSON.stringify(before),
        5000,
        'back to the resources before connecting',
      );
      const upgrades = server.upgrades;
      const seen = events.length;
      await new Promise((r) => setTimeout(r, 5 * fast.keepalive.intervalMs));
      assert.equal(events.length, seen, 'no state change after close');
      assert.equal(events.at(-1), 'closed');
      assert.equal(server.upgrades, upgrades);
    });

    it('close() clears a pending retry timer', async () => {
      const before = await activeResourcesNow();
      server.refuseWith = 503;
      const chat = new PersistentChat({
        env: server.env,
        logger: silentLogger,
        backoff: { baseMs: 60_000, maxMs: 60_000 },
      });
      const retry = new Promise<ReconnectInfo>((r) => chat.once('reconnecting', r));
      chat.start();
      assert.ok((await retry).delayMs >= 30_000);
      await chat.close();
      await until(
        () => JSON.stringify(activeResources()) === JSON.stringify(before),
        5000,
        'retry timer and sockets gone',
      );
      assert.equal(chat.attempts, 1);
    });

    it('close() aborts a connection attempt in flight', async () => {
      const before = await activeResourcesNow();
      server.hangUpgrades = true;
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      const states: string[] = [];
      chat.on('state', (s) => states.push(s));
      const waiting = chat.waitConnected(30_000);
      await until(() => server.upgrades === 1, 5000, 'upgrade request sent');
      await chat.close();
      await assert.rejects(waiting, ClosedError);
      assert.deepEqual(states, ['connecting', 'closed']);
      await until(
        () => JSON.stringify(activeResources()) === JSON.stringify(before),
        5000,
        'the half-open socket is gone',
      );
    });

    it('stops as unlinked when the upgrade is refused with 403, without a reconnect loop', async () => {
      server.refuseWith = 403;
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      closers.push(() => chat.close());
      await assert.rejects(
        chat.waitConnected(3000),
        (e: unknown) => (e as { code?: string }).code === 'UNAUTHORIZED',
      );
      assert.equal(chat.state, 'unlinked');
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(server.upgrades, 1);
    });

    it('a 499 on the upgrade stops it as expired (CLIENT_TOO_OLD), with one retry an hour, no loop', async () => {
      server.refuseWith = 499;
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      closers.push(() => chat.close());
      const retries: ReconnectInfo[] = [];
      chat.on('reconnecting', (r) => retries.push(r));
      await assert.rejects(
        chat.waitConnected(3000),
        (e: unknown) => e instanceof ClientTooOldError && e.code === 'CLIENT_TOO_OLD',
      );
      assert.equal(chat.state, 'expired');
      assert.match(chat.lastError?.message ?? '', /HTTP 499.*update @sigflow\/node-red-signal/);
      // The fast backoff would have retried a dozen times by now; an expired client waits an hour.
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(server.upgrades, 1);
      assert.deepEqual(
        retries.map((r) => r.delayMs),
        [EXPIRED_RETRY_MS],
      );
      assert.ok(EXPIRED_RETRY_MS >= 60 * 60 * 1000);
      // Requests fail at once with the reason instead of waiting for a connection.
      await assert.rejects(
        chat.request({ verb: 'GET', path: '/v1/x', timeoutMs: 5000 }),
        (e: unknown) => (e as { code?: string }).code === 'CLIENT_TOO_OLD',
      );
      assert.equal(server.upgrades, 1);
    });

    it('after a 499 it looks again once per retry period, and connects once the server serves it', async () => {
      server.refuseWith = 499;
      const chat = new PersistentChat({
        env: server.env,
        logger: silentLogger,
        ...fast,
        expiredRetryMs: 300,
      });
      closers.push(() => chat.close());
      chat.start();
      await until(() => chat.state === 'expired', 3000, 'expired');
      await until(() => server.upgrades === 2, 3000, 'the one retry');
      await until(() => chat.state === 'expired', 3000, 'expired again');
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(server.upgrades, 2, 'no retry before the period is over');
      server.refuseWith = null;
      await until(() => chat.state === 'connected', 3000, 'served again');
      assert.equal(server.upgrades, 3);
    });

    it('a 499 answer to a request stops the socket as expired; the caller still gets the answer', async () => {
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      closers.push(() => chat.close());
      await chat.waitConnected(5000);
      const res = await chat.request({ verb: 'GET', path: '/v1/too-old' });
      assert.equal(res.status, 499);
      assert.equal(chat.state, 'expired');
      assert.equal(chat.lastError?.code, 'CLIENT_TOO_OLD');
      await until(() => server.sockets.length === 0, 3000, 'the socket is closed');
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(server.upgrades, 1, 'no reconnect');
    });

    it('stops on close code 3000 (bad credentials) and reports 4409 without fighting over it', async () => {
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      closers.push(() => chat.close());
      await chat.waitConnected(5000);
      server.dropAll(3000);
      await until(() => chat.state === 'unlinked', 3000, 'unlinked on 3000');
      assert.equal(chat.lastError?.code, 'UNAUTHORIZED');

      const other = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      closers.push(() => other.close());
      await other.waitConnected(5000);
      const upgrades = server.upgrades;
      server.dropAll(4409);
      await until(() => other.lastError?.code === 'CONNECTED_ELSEWHERE', 3000, '4409 reported');
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(server.upgrades, upgrades, 'no reconnect fight');
    });
  });
});
