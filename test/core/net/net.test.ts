import assert from 'node:assert/strict';
import { ChatConnection } from '../../../core/net/connection';
import { PersistentChat, backoffDelay } from '../../../core/net/persistent';
import { detectTransport } from '../../../core/net/transport';
import { resolveEnvironment } from '../../../core/config';
import { silentLogger } from '../../../core/log';
import { startFakeChatServer, type FakeChatServer } from './fake-server';

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
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
      await chat.waitConnected(5000);
      server.dropAll();
      await until(() => chat.state === 'disconnected', 2000, 'noticed the drop');
      const dropped = Date.now();
      // A request made while disconnected waits for the new socket.
      const res = await chat.request({ verb: 'GET', path: '/v1/after', timeoutMs: 5000 });
      assert.equal(res.status, 200);
      assert.equal(chat.connections, 2);
      // Bound: the first retry waits at most baseMs (plus the connect itself).
      assert.ok(Date.now() - dropped < 2000, 'reconnected within the backoff bound');
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

    it('does not reconnect after close(), and leaves no timer behind', async () => {
      const chat = new PersistentChat({ env: server.env, logger: silentLogger, ...fast });
      await chat.waitConnected(5000);
      const upgrades = server.upgrades;
      server.dropAll();
      await chat.close();
      assert.equal(chat.state, 'closed');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(server.upgrades, upgrades, 'no reconnect after close');
      await assert.rejects(chat.request({ verb: 'GET', path: '/v1/x' }), /closed/);
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
