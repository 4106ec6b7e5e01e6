/**
 * A server that stops answering: between the client and Signal's mock server sits a TCP relay
 * that can go silent on the connections it carries (the server's bytes stop arriving, as with a
 * dead NAT mapping or a hung front end). The client must notice through its keepalives, replace
 * the socket, and go on receiving. The unit-level counterpart (PersistentChat against the fake chat
 * server: 'declares a connection dead when keepalives go unanswered, and replaces it') is in
 * test/core/net/net.test.ts; this one runs a whole SignalClient against Signal's mock server.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import net from 'node:net';
import type { ClientState } from '../../core/types';
import {
  linkClient,
  openClient,
  startSandbox,
  withTimeout,
  type Sandbox,
} from '../integration/helpers';

interface Relay {
  port: number;
  connections: number;
  /** From now on, nothing the server sends on the open connections reaches the client. */
  silenceOpen(): void;
  close(): Promise<void>;
}

async function startRelay(targetPort: number): Promise<Relay> {
  const open = new Set<{ silent: boolean; a: net.Socket; b: net.Socket }>();
  const server = net.createServer((a) => {
    relay.connections++;
    const b = net.connect(targetPort, '127.0.0.1');
    const pair = { silent: false, a, b };
    open.add(pair);
    a.on('data', (d) => b.write(d));
    b.on('data', (d) => {
      if (!pair.silent) a.write(d);
    });
    const end = () => {
      open.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on('close', end).on('error', end);
    b.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const relay: Relay = {
    port: typeof address === 'object' && address ? address.port : 0,
    connections: 0,
    silenceOpen: () => {
      for (const p of open) p.silent = true;
    },
    close: async () => {
      for (const p of open) {
        p.a.destroy();
        p.b.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return relay;
}

describe('reliability: a server that stops answering', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  let relay: Relay | null = null;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
    await relay?.close();
  });

  it('is detected by unanswered keepalives and replaced; messages keep coming', async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const linked = await linkClient(sandbox, alice);
    const account = linked.client.account;
    assert.ok(account);
    const device = await sandbox.server.getDeviceByServiceId(
      account.aci as never,
      account.deviceId as never,
    );
    assert.ok(device);
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    await linked.client.close();

    relay = await startRelay(sandbox.port);
    // The account is bound to the URL it was linked on (ENVIRONMENT_MISMATCH elsewhere): record the
    // relay's, as if it had been linked through the relay, which forwards to the same server.
    const relayUrl = `https://127.0.0.1:${relay.port}`;
    const db = new Database(linked.dataFile);
    db.prepare('UPDATE account SET environment = ?').run(`custom ${relayUrl}`);
    db.close();
    const client = await openClient(sandbox, linked.dataFile, {
      environment: { ...sandbox.environment, serviceUrl: relayUrl },
      connection: {
        keepalive: { intervalMs: 300, timeoutMs: 400, silenceMs: 3000 },
        backoff: { baseMs: 50, maxMs: 200 },
      },
    });
    const states: ClientState[] = [];
    client.on('state', (s) => states.push(s));
    await client.connect();
    const before = relay.connections;

    relay.silenceOpen();
    const detectedAt = Date.now();
    await withTimeout(
      new Promise<void>((resolve) => {
        const on = (s: ClientState) => {
          if (s === 'disconnected' || s === 'connecting') {
            client.off('state', on);
            resolve();
          }
        };
        client.on('state', on);
      }),
      5000,
      'dead connection detected',
    );
    const detectionMs = Date.now() - detectedAt;
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = () => {
          if (client.state === 'connected' && (relay?.connections ?? 0) > before) resolve();
          else setTimeout(check, 20);
        };
        check();
      }),
      10_000,
      'replaced by a new connection',
    );
    // Within a keepalive interval plus its timeout (plus scheduling slack).
    assert.ok(detectionMs <= 300 + 400 + 1000, `detected after ${detectionMs} ms`);

    const got = new Promise<string>((resolve) =>
      client.on('event', (ev) => {
        if (ev.type === 'message') resolve(ev.body ?? '');
      }),
    );
    void bob.sendText(device, 'after the replacement');
    assert.equal(await withTimeout(got, 10_000, 'a message'), 'after the replacement');
    assert.ok(states.lastIndexOf('connected') > states.indexOf('disconnected'));
  });
});
