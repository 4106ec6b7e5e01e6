import assert from 'node:assert/strict';
import {
  CiphertextMessageType,
  DecryptionErrorMessage,
  ProtocolAddress,
  signalEncrypt,
} from '@signalapp/libsignal-client';
import { getKeyCounts } from '../../core/api';
import type { SignalClient } from '../../core/client';
import type { IncomingEvent } from '../../core/types';
import {
  linkClient,
  openClient,
  startSandbox,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
} from './helpers';

type Device = NonNullable<Awaited<ReturnType<Sandbox['server']['getDeviceByServiceId']>>>;

async function introduce(
  sandbox: Sandbox,
  client: SignalClient,
  from: PrimaryDevice,
): Promise<Device> {
  const account = client.account;
  assert.ok(account);
  const device = await sandbox.server.getDeviceByServiceId(
    account.aci as never,
    account.deviceId as never,
  );
  assert.ok(device);
  await from.addSingleUseKey(device, await device.popSingleUseKey());
  return device;
}

function collectBodies(client: SignalClient): string[] {
  const bodies: string[] = [];
  client.on('event', (ev: IncomingEvent) => {
    if (ev.type === 'message') bodies.push(ev.body);
  });
  return bodies;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('integration: delivery guarantees and session repair', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  let alice: PrimaryDevice;
  let bob: PrimaryDevice;
  let client: SignalClient;
  let dataFile: string;

  beforeEach(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    ({ client, dataFile } = await linkClient(sandbox, alice, {
      connection: { backoff: { baseMs: 50, maxMs: 200 } },
      prekeys: { threshold: 98 },
    }));
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('200 messages while the socket drops twice mid-stream: all emitted, in order, none twice', async () => {
    const device = await introduce(sandbox, client, bob);
    const bodies = collectBodies(client);
    const drops: number[] = [];
    client.on('event', () => {
      if (
        (bodies.length === 60 && drops.length === 0) ||
        (bodies.length === 130 && drops.length === 1)
      ) {
        drops.push(bodies.length);
        client.dropConnectionForTesting();
      }
    });
    for (let i = 0; i < 200; i++) await bob.sendText(device, `m${i}`);
    await until(() => bodies.length >= 200, 60_000, '200 messages');
    await client.idle();
    await new Promise((r) => setTimeout(r, 300)); // any late duplicate would show up here
    assert.deepEqual(drops, [60, 130]);
    assert.equal(bodies.length, 200, 'none twice');
    assert.deepEqual(
      bodies,
      Array.from({ length: 200 }, (_, i) => `m${i}`),
      'in order',
    );
    assert.ok((client.chatForTesting?.connections ?? 0) >= 3, 'reconnected after each drop');
  });

  it('closing in the middle of a stream loses nothing and doubles nothing across a restart', async () => {
    const device = await introduce(sandbox, client, bob);
    const seen: string[] = [];
    let closing: Promise<void> | undefined;
    client.on('event', (ev: IncomingEvent) => {
      if (ev.type !== 'message') return;
      seen.push(ev.body);
      // Close from inside a listener while envelopes are arriving and emits are scheduled.
      if (seen.length === 5) closing = client.close();
    });
    // The mock's send resolves once delivered: fire all 40, the rest wait for the restart.
    // Distinct timestamps, as Signal's clients guarantee (the timestamp is the message's id).
    const base = Date.now();
    const sends = Array.from({ length: 40 }, (_, i) =>
      bob.sendText(device, `s${i}`, { timestamp: base + i }),
    );
    await until(() => closing !== undefined, 20_000, 'first five');
    await closing;
    const restarted = await openClient(sandbox, dataFile);
    restarted.on('event', (ev: IncomingEvent) => {
      if (ev.type === 'message') seen.push(ev.body);
    });
    await restarted.connect();
    await until(() => seen.length >= 40, 20_000, 'all 40 across both runs').catch((e: Error) => {
      throw new Error(`${e.message}: ${seen.length} seen: ${seen.join(' ')}`);
    });
    await Promise.all(sends);
    await restarted.idle();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(seen.length, 40, 'none twice');
    assert.deepEqual(
      [...seen].sort(),
      Array.from({ length: 40 }, (_, i) => `s${i}`).sort(),
      'none lost',
    );
  });

  it('a lost session is healed by the retry-receipt exchange, and the next message gets through', async () => {
    const device = await introduce(sandbox, client, bob);
    const bodies = collectBodies(client);
    await bob.sendText(device, 'first');
    await until(() => bodies.includes('first'), 10_000, 'first');
    // Our side loses the session (a corrupted or restored store): Bob's next message cannot decrypt.
    client.storeForTesting?.deleteSession(bob.device.aci, 1);
    await bob.sendText(device, 'undecryptable');
    const request = await withTimeout(bob.waitForDecryptionError(), 10_000, 'retry request at Bob');
    // It names the message that failed: sent by Bob's device 1, at its timestamp; and it came from us.
    assert.equal(request.senderDevice, 1);
    assert.equal(request.source.aci, client.account?.aci);
    // Bob's side of §6: start a fresh session from one of our prekeys.
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    await bob.sendText(device, 'after repair');
    await until(() => bodies.includes('after repair'), 10_000, 'message after repair');
    assert.ok(!bodies.includes('undecryptable'));
  });

  it('answers a retry request by archiving the session and resending the original from the sent log', async () => {
    await client.send(bob.device.aci, 'original text');
    const first = await withTimeout(bob.waitForMessage(), 10_000, 'original');
    const timestamp = Number(first.dataMessage.timestamp);
    const device = await introduce(sandbox, client, bob);
    // Build Bob's DecryptionErrorMessage the way his app would, from a message on our current ratchet.
    const store = client.storeForTesting;
    const account = client.account;
    assert.ok(store && account);
    const p = store.protocol('aci');
    const probe = await signalEncrypt(
      new Uint8Array([1]),
      ProtocolAddress.new(bob.device.aci, 1),
      ProtocolAddress.new(account.aci, account.deviceId),
      p.sessions,
      p.identities,
    );
    const request = DecryptionErrorMessage.forOriginal(
      probe.serialize(),
      probe.type() as CiphertextMessageType,
      timestamp,
      account.deviceId,
    );
    await bob.sendRaw(device, {
      content: { decryptionErrorMessage: Buffer.from(request.serialize()) },
      pniSignatureMessage: null,
      senderKeyDistributionMessage: null,
    } as never);
    const resent = await withTimeout(bob.waitForMessage(), 10_000, 'resent original');
    assert.equal(resent.body, 'original text');
    assert.equal(Number(resent.dataMessage.timestamp), timestamp);
  });

  it('refills one-time prekeys after first messages from new contacts consumed them', async () => {
    const store = client.storeForTesting;
    assert.ok(store);
    const before = store.countKeys('aci').preKeys;
    const contacts = await Promise.all(
      ['Carol', 'Dan', 'Erin'].map((name) => sandbox.createPrimary({ profileName: name })),
    );
    const bodies = collectBodies(client);
    for (const c of contacts) {
      const device = await introduce(sandbox, client, c);
      await c.sendText(device, `hi from ${c.device.aci}`);
    }
    await until(() => bodies.length === 3, 10_000, 'three first messages');
    assert.equal(
      store.countKeys('aci').preKeys,
      before - 3,
      'each first message consumed a one-time key',
    );
    const chat = client.chatForTesting;
    assert.ok(chat);
    // This client refills below 98 keys (linkClient below): 97 left on the server is under it.
    assert.equal((await getKeyCounts(chat, 'aci')).count, 97);
    await client.refreshPreKeys();
    const after = await getKeyCounts(chat, 'aci');
    assert.equal(after.count, 100);
    assert.equal(after.pqCount, 100);
    assert.equal(
      store.countKeys('aci').preKeys,
      197,
      'the new batch is stored beside the unused old keys',
    );
  });
});
