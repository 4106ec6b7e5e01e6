/**
 * The connection drops at random points while 1,000 messages go out and 1,000 come in: some drops
 * by the client (its socket closed under it), some by the server (the server's end of the stream
 * destroyed without a close frame). Nothing lost, nothing doubled, and after every drop the socket
 * is back within the backoff bound.
 */
import assert from 'node:assert/strict';
import type { ReconnectInfo } from '../../core/net/persistent';
import type { ClientState } from '../../core/types';
import {
  linkClient,
  startSandbox,
  withTimeout,
  type Sandbox,
  inspect,
} from '../integration/helpers';
import { prng } from './prng';

/** What the mock server keeps per connected device: its WebSocket over the HTTP/2 stream. */
type ServerSockets = Map<unknown, { ws: { terminate(): void } }>;

describe('reliability: random connection drops', function () {
  this.timeout(300_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('1,000 sends and 1,000 receives under random client and server drops: each exactly once, reconnects within the backoff bound', async () => {
    const backoff = { baseMs: 50, maxMs: 400 };
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const { client } = await linkClient(sandbox, alice, { connection: { backoff } });
    const account = client.account;
    assert.ok(account);
    const device = await sandbox.server.getDeviceByServiceId(
      account.aci as never,
      account.deviceId as never,
    );
    assert.ok(device);
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    const chat = inspect(client).chat();
    assert.ok(chat);

    // Signal's server stores what is PUT and answers 200; the recipient's own session drops a
    // message it has already decrypted. The mock decrypts on the spot and answers 500 for such a
    // duplicate (a send that went again after the connection dropped before the answer): answer
    // as the real server does, and count them.
    let duplicatesDropped = 0;
    const server = sandbox.server as unknown as {
      handlePreparedMultiDeviceMessage: (...args: unknown[]) => Promise<unknown>;
      webSockets: ServerSockets;
    };
    const handle = server.handlePreparedMultiDeviceMessage.bind(sandbox.server);
    server.handlePreparedMultiDeviceMessage = (...args) =>
      handle(...args).catch((e: unknown) => {
        if (!String((e as Error)?.message).includes('old counter')) throw e;
        duplicatesDropped++;
        return undefined;
      });

    const received = new Map<number, number>();
    client.on('event', (ev) => {
      if (ev.type === 'message' && ev.from.aci === bob.device.aci)
        received.set(ev.timestamp, (received.get(ev.timestamp) ?? 0) + 1);
    });
    // Outages: from leaving 'connected' to being back, with the retries scheduled meanwhile.
    const outages: Array<{ ms: number; retries: ReconnectInfo[] }> = [];
    let down: { since: number; retries: ReconnectInfo[] } | null = null;
    let outagesStarted = 0;
    const allRetries: ReconnectInfo[] = [];
    chat.on('reconnecting', (info) => {
      allRetries.push(info);
      down?.retries.push(info);
    });
    client.on('state', (s: ClientState) => {
      if (s === 'connected' && down) {
        outages.push({ ms: Date.now() - down.since, retries: down.retries });
        down = null;
      } else if (s !== 'connected' && !down) {
        down = { since: Date.now(), retries: [] };
        outagesStarted++;
      }
    });

    // Bob's side: as Signal's server does (and the mock does not), a message the client never
    // ACKed goes again, same timestamp.
    let redelivered = 0;
    const deliver = (timestamp: number, i: number): Promise<void> =>
      bob.sendText(device, `in ${i}`, { timestamp }).then(
        () => undefined,
        () => {
          redelivered++;
          return deliver(timestamp, i);
        },
      );

    const COUNT = 1000;
    const r = prng(0xd209);
    let working = true;
    const drops = { client: 0, server: 0 };
    // A server-side kill can find the server still holding the previous, already closed socket
    // (it forgets it on its own 'close' event): that kill hits nothing and is not counted.
    let staleServerSockets = 0;
    const dropper = (async () => {
      while (working) {
        await new Promise((res) => setTimeout(res, 40 + Math.floor(r() * 160)));
        if (!working) break;
        if (client.state !== 'connected') continue;
        const started = outagesStarted;
        const side = r() < 0.5 ? 'client' : 'server';
        if (side === 'client') {
          inspect(client).chat()?.dropConnection();
        } else {
          const socket = server.webSockets.get(device);
          if (!socket) continue;
          socket.ws.terminate();
        }
        drops[side]++;
        // One drop, one outage: wait until the client has noticed before the next one.
        const deadline = Date.now() + 5000;
        while (outagesStarted === started && Date.now() < deadline)
          await new Promise((res) => setTimeout(res, 5));
        if (outagesStarted === started && side === 'server') {
          drops.server--;
          staleServerSockets++;
        }
      }
    })();

    const base = Date.now();
    const incoming = (async () => {
      const all: Array<Promise<void>> = [];
      for (let i = 0; i < COUNT; i++) {
        all.push(deliver(base + i, i));
        if (i % 5 === 4) await new Promise((res) => setTimeout(res, 20));
      }
      await Promise.all(all);
    })();

    const bobGot = new Map<string, number>();
    const drain = (async () => {
      while (bobGot.size < COUNT) {
        const m = await bob.waitForMessage();
        bobGot.set(m.body, (bobGot.get(m.body) ?? 0) + 1);
      }
    })();
    let next = 0;
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < COUNT) {
          const i = next++;
          try {
            await client.send(bob.device.aci, { text: `out ${i}` });
          } catch (e) {
            failures.push(`out ${i}: ${(e as Error).message}`);
          }
        }
      }),
    );
    await withTimeout(incoming, 120_000, 'every incoming message ACKed');
    working = false;
    await dropper;
    await withTimeout(drain, 60_000, "Bob's messages");
    await client.idle();
    // A late duplicate would show up now.
    await new Promise((res) => setTimeout(res, 500));

    assert.deepEqual(failures, [], 'every send succeeded despite the drops');
    assert.ok(
      drops.client >= 10 && drops.server >= 10,
      `the connection dropped often, both ways (${JSON.stringify(drops)})`,
    );
    const missing = Array.from({ length: COUNT }, (_, i) => base + i).filter(
      (t) => !received.has(t),
    );
    const doubled = [...received].filter(([, n]) => n > 1);
    assert.deepEqual({ missing, doubled }, { missing: [], doubled: [] }, 'incoming');
    const outDoubled = [...bobGot].filter(([, n]) => n > 1);
    assert.deepEqual(
      { size: bobGot.size, outDoubled },
      { size: COUNT, outDoubled: [] },
      'outgoing',
    );

    // The backoff bound: every retry was scheduled within min(max, base·2^attempt), and each
    // outage lasted no longer than its scheduled delays plus, per attempt, the time to let the old
    // socket go and open a new one (generous: this is a loaded 2-core CI machine, not a benchmark).
    const ceiling = (attempt: number) =>
      Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(attempt, 30));
    const late = allRetries.filter((x) => x.delayMs > ceiling(x.attempt));
    assert.deepEqual(late, [], 'every retry scheduled within the backoff ceiling');
    const PER_ATTEMPT_MS = 3000;
    const total = drops.client + drops.server;
    assert.equal(outagesStarted, total, 'each drop was noticed');
    assert.equal(outages.length, total, `${outages.length} reconnects for ${total} drops`);
    const slow = outages.filter(
      (o) =>
        o.retries.length === 0 ||
        o.ms > o.retries.reduce((sum, x) => sum + x.delayMs, 0) + o.retries.length * PER_ATTEMPT_MS,
    );
    assert.deepEqual(
      slow.map((o) => ({ ms: o.ms, delays: o.retries.map((x) => x.delayMs) })),
      [],
      'every outage within its backoff bound',
    );
    console.log(
      `      ${drops.client} client drops, ${drops.server} server drops (${staleServerSockets} kills hit a stale socket), ${redelivered} redeliveries, ${duplicatesDropped} resent duplicates dropped by Bob, longest outage ${Math.max(...outages.map((o) => o.ms))} ms, most retries in one outage ${Math.max(...outages.map((o) => o.retries.length))}`,
    );
  });
});
