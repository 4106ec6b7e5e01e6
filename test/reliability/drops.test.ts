/**
 * The connection drops at random points while 500 messages go out and 500 come in: nothing lost,
 * nothing doubled, and the socket back within the backoff bound after every drop.
 */
import assert from 'node:assert/strict';
import type { ClientState } from '../../core/types';
import { linkClient, startSandbox, withTimeout, type Sandbox } from '../integration/helpers';

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('reliability: random connection drops', function () {
  this.timeout(300_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('500 sends and 500 receives under random drops: each exactly once, reconnects within the bound', async () => {
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

    // Signal's server stores what is PUT and answers 200; the recipient's own session drops a
    // message it has already decrypted. The mock decrypts on the spot and answers 500 for such a
    // duplicate (a send that went again after the connection dropped before the answer): answer
    // as the real server does, and count them.
    let duplicatesDropped = 0;
    const server = sandbox.server as unknown as {
      handlePreparedMultiDeviceMessage: (...args: unknown[]) => Promise<unknown>;
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
    // Outages: from leaving 'connected' to being back.
    const outages: number[] = [];
    let downSince: number | null = null;
    client.on('state', (s: ClientState) => {
      if (s === 'connected' && downSince !== null) {
        outages.push(Date.now() - downSince);
        downSince = null;
      } else if (s !== 'connected' && downSince === null) downSince = Date.now();
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

    const COUNT = 500;
    const r = prng(0xd209);
    let working = true;
    let drops = 0;
    const dropper = (async () => {
      while (working) {
        await new Promise((res) => setTimeout(res, 40 + Math.floor(r() * 120)));
        if (!working) break;
        if (client.state === 'connected') {
          client.dropConnectionForTesting();
          drops++;
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
            await client.send(bob.device.aci, `out ${i}`);
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
    assert.ok(drops >= 10, `the connection dropped often (${drops})`);
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
    // Each outage ended within the backoff bound: at most one full delay plus a connect.
    const bound = backoff.maxMs + 2000;
    assert.ok(outages.length >= drops, `${outages.length} reconnects for ${drops} drops`);
    assert.ok(
      outages.every((ms) => ms <= bound),
      `outages within ${bound} ms: ${outages.filter((ms) => ms > bound).join(', ')}`,
    );
    console.log(
      `      ${drops} drops, ${redelivered} redeliveries, ${duplicatesDropped} resent duplicates dropped by Bob, longest outage ${Math.max(...outages)} ms`,
    );
  });
});
