import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { DecryptionErrorMessage, ProtocolAddress, PublicKey } from '@signalapp/libsignal-client';
import { getKeyCounts } from '../../core/api';
import type { SignalClient } from '../../core/client';
import type { IncomingEvent } from '../../core/types';
import { Content, Envelope, Long } from '../../proto';
import {
  captureLogger,
  linkClient,
  openClient,
  startSandbox,
  retryRequestFor,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
  inspect,
} from './helpers';
import { until } from '../harness/wait';
import { introduce } from '../harness/mock-phone';

function collectBodies(client: SignalClient): string[] {
  const bodies: string[] = [];
  client.on('event', (ev: IncomingEvent) => {
    if (ev.type === 'message') bodies.push(ev.body);
  });
  return bodies;
}

/**
 * A retry request as Bob's app sends it: DecryptionErrorMessage for a message of ours (its timestamp,
 * and the ratchet key of the session it came on), as plaintext content (envelope type 8), handed to
 * the client's receiver as the chat socket would.
 */
async function deliverRetryRequest(
  client: SignalClient,
  from: string,
  request: DecryptionErrorMessage,
): Promise<void> {
  const content = Content.encode({ decryptionErrorMessage: request.serialize() }).finish();
  const padded = new Uint8Array(content.length + 16);
  padded.set(content);
  padded[content.length] = 0x80;
  const now = Date.now();
  const envelope = Envelope.encode({
    type: Envelope.Type.PLAINTEXT_CONTENT,
    sourceServiceId: from,
    sourceDeviceId: 1,
    destinationServiceId: client.account?.aci ?? '',
    clientTimestamp: Long.fromNumber(now, true),
    serverTimestamp: Long.fromNumber(now, true),
    serverGuid: randomUUID(),
    content: Uint8Array.of(0xc0, ...padded),
  }).finish();
  const receiver = inspect(client).receiver();
  assert.ok(receiver, 'a connected client');
  assert.equal(
    await receiver.handleRequest({
      verb: 'PUT',
      path: '/api/v1/message',
      body: envelope,
      headers: {},
    }),
    200,
  );
}

async function ratchetMatches(client: SignalClient, to: string, key: PublicKey): Promise<boolean> {
  const record = await inspect(client)
    .store()
    ?.protocol('aci')
    .sessions.getSession(ProtocolAddress.new(to, 1));
  if (!record?.hasCurrentState()) throw new Error(`no open session with ${to}.1`);
  return record.currentRatchetKeyMatches(key);
}

interface SentPut {
  serviceId: string;
  timestamp: number;
  devices: number[];
  sealed: boolean;
}

/** Records the client's PUTs (who, when, sealed or not) from here on. */
function recordPuts(client: SignalClient): SentPut[] {
  const api = inspect(client).senderApi();
  assert.ok(api, 'a connected client');
  const puts: SentPut[] = [];
  const put = api.sendMessages.bind(api);
  api.sendMessages = (serviceId, body, accessKey) => {
    puts.push({
      serviceId,
      timestamp: body.timestamp,
      devices: body.messages.map((m) => m.destinationDeviceId),
      sealed: accessKey !== undefined,
    });
    return put(serviceId, body, accessKey);
  };
  return puts;
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
        inspect(client).chat()?.dropConnection();
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
    assert.ok((inspect(client).chat()?.connections ?? 0) >= 3, 'reconnected after each drop');
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

  it('a queue drained at connect: one sync covers many envelopes, and nothing is ACKed or emitted before its sync', async () => {
    const device = await introduce(sandbox, client, bob);
    await client.close();
    // Queued while we are offline: the server hands them over all at once when we connect.
    const base = Date.now();
    const sends = Array.from({ length: 60 }, (_, i) =>
      bob.sendText(device, `q${i}`, { timestamp: base + i }),
    );
    const restarted = await openClient(sandbox, dataFile);
    const bodies = collectBodies(restarted);
    const store = inspect(restarted).store();
    assert.ok(store);
    const sync = store.sync.bind(store);
    const emittedAtSync: number[] = [];
    store.sync = () => {
      emittedAtSync.push(bodies.length);
      sync();
    };
    await restarted.connect();
    await until(() => bodies.length >= 60, 20_000, 'all 60');
    await Promise.all(sends);
    const receiver = inspect(restarted).receiver();
    assert.ok(receiver);
    assert.deepEqual(
      bodies,
      Array.from({ length: 60 }, (_, i) => `q${i}`),
      'in order, once',
    );
    assert.ok(receiver.syncs >= 1 && receiver.syncs < 30, `${receiver.syncs} syncs for 60`);
    assert.equal(emittedAtSync[0], 0, 'no message emitted before the first sync');
    await restarted.close();
  });

  it('a failed sync ACKs nothing: the server delivers again and each message is emitted once', async () => {
    const device = await introduce(sandbox, client, bob);
    const bodies = collectBodies(client);
    const store = inspect(client).store();
    assert.ok(store);
    const sync = store.sync.bind(store);
    let calls = 0;
    store.sync = () => {
      if (++calls === 1) throw new Error('disk full');
      sync();
    };
    // Answered 500, the envelope goes back to the server's queue (the mock keeps it for the next
    // connection; Signal's server redelivers it too). The send resolves once it is delivered.
    const sent = bob.sendText(device, 'after a failed sync');
    await until(() => calls === 1, 10_000, 'the failed sync');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(bodies, [], 'not emitted: its commit was never made durable');
    inspect(client).chat()?.dropConnection();
    await withTimeout(sent, 10_000, 'redelivery');
    await until(() => bodies.length > 0, 10_000, 'the message');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(bodies, ['after a failed sync'], 'once');
  });

  it('a lost session is healed by the retry-receipt exchange, and the next message gets through', async () => {
    const device = await introduce(sandbox, client, bob);
    const bodies = collectBodies(client);
    await bob.sendText(device, 'first');
    await until(() => bodies.includes('first'), 10_000, 'first');
    // Our side loses the session (a corrupted or restored store): Bob's next message cannot decrypt.
    inspect(client).store()?.deleteSession(bob.device.aci, 1);
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
    await client.send(bob.device.aci, { text: 'original text' });
    const first = await withTimeout(bob.waitForMessage(), 10_000, 'original');
    const timestamp = Number(first.dataMessage.timestamp);
    const device = await introduce(sandbox, client, bob);
    // Bob's DecryptionErrorMessage, built the way his app would, from a message on our current ratchet.
    const request = await retryRequestFor(client, bob.device.aci, timestamp);
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
    const store = inspect(client).store();
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
    const chat = inspect(client).chat();
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

  describe('answering retry requests', () => {
    it('archives the session the request names, and resends the original on a fresh one', async () => {
      const sent = await client.send(bob.device.aci, { text: 'original text' });
      await withTimeout(bob.waitForMessage(), 10_000, 'original');
      const request = await retryRequestFor(client, bob.device.aci, sent.timestamp);
      const ratchet = request.ratchetKey();
      assert.ok(ratchet);
      assert.equal(await ratchetMatches(client, bob.device.aci, ratchet), true);
      await deliverRetryRequest(client, bob.device.aci, request);
      const resent = await withTimeout(bob.waitForMessage(), 10_000, 'resent original');
      assert.equal(resent.body, 'original text');
      assert.equal(Number(resent.dataMessage.timestamp), sent.timestamp);
      assert.equal(await ratchetMatches(client, bob.device.aci, ratchet), false, 'archived');
    });

    it('leaves a session alone when the request names another ratchet, and resends on it', async () => {
      const sent = await client.send(bob.device.aci, { text: 'original text' });
      await withTimeout(bob.waitForMessage(), 10_000, 'original');
      const current = (await retryRequestFor(client, bob.device.aci, sent.timestamp)).ratchetKey();
      assert.ok(current);
      // A ratchet key from another session (ours with Alice's phone, from the sync transcript).
      const account = client.account;
      assert.ok(account);
      const other = await retryRequestFor(client, account.aci, sent.timestamp);
      const otherRatchet = other.ratchetKey();
      assert.ok(otherRatchet);
      assert.equal(await ratchetMatches(client, bob.device.aci, otherRatchet), false);
      await deliverRetryRequest(client, bob.device.aci, other);
      const resent = await withTimeout(bob.waitForMessage(), 10_000, 'resent original');
      assert.equal(resent.body, 'original text');
      assert.equal(await ratchetMatches(client, bob.device.aci, current), true, 'not archived');
    });

    it('sends a null message on a fresh session when the original is no longer in the sent log', async () => {
      const sent = await client.send(bob.device.aci, { text: 'original text' });
      await withTimeout(bob.waitForMessage(), 10_000, 'original');
      const lines: string[] = [];
      const log = captureLogger(lines);
      client.logger.info = log.info;
      const puts = recordPuts(client);
      const gone = sent.timestamp - 60_000; // a message of ours the sent log does not hold
      assert.equal(inspect(client).store()?.sent.find(bob.device.aci, gone), undefined);
      const request = await retryRequestFor(client, bob.device.aci, gone);
      const ratchet = request.ratchetKey();
      assert.ok(ratchet);
      await deliverRetryRequest(client, bob.device.aci, request);
      // The log line follows the PUT's answer; the PUT itself is recorded when it starts.
      await until(
        () => puts.length > 0 && lines.some((l) => l.includes('sent a null message')),
        10_000,
        'the answer to the retry request',
      );
      const [answer] = puts;
      assert.ok(answer);
      assert.equal(answer.serviceId, bob.device.aci);
      assert.deepEqual(answer.devices, [1]);
      assert.ok(answer.timestamp > sent.timestamp, 'a new message, not a resend of either');
      assert.ok(
        lines.some((l) => l.includes(`sent a null message to ${bob.device.aci}.1`)),
        lines.join('\n'),
      );
      assert.equal(await ratchetMatches(client, bob.device.aci, ratchet), false, 'archived');
      // Nothing for Bob to show, and the new session carries the next message.
      await client.send(bob.device.aci, { text: 'next' });
      assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'next')).body, 'next');
    });

    it('resends sealed when the original went sealed (the recipient shared a profile key)', async () => {
      const device = await introduce(sandbox, client, bob);
      const bodies = collectBodies(client);
      await bob.sendText(device, 'here is my profile key', { withProfileKey: true });
      await until(() => bodies.length === 1, 10_000, "Bob's message");
      // Our delivery receipt for it goes out within a second: let it, so the PUTs below are ours.
      await withTimeout(bob.waitForReceipt(), 10_000, 'delivery receipt');
      const sent = await client.send(bob.device.aci, { text: 'sealed original' });
      assert.equal(sent.sealed, true);
      await withTimeout(bob.waitForMessage(), 10_000, 'original');
      const puts = recordPuts(client);
      await deliverRetryRequest(
        client,
        bob.device.aci,
        await retryRequestFor(client, bob.device.aci, sent.timestamp),
      );
      const resent = await withTimeout(bob.waitForMessage(), 10_000, 'resent');
      assert.equal(resent.body, 'sealed original');
      const toBob = puts.filter((p) => p.serviceId === bob.device.aci);
      assert.deepEqual(
        toBob.map((p) => [p.timestamp, p.sealed]),
        [[sent.timestamp, true]],
      );
    });

    it("finds an original sent to Bob's PNI from his ACI's retry request, and resends it there", async () => {
      const pni = bob.device.pni;
      assert.ok(pni);
      const to = pni.startsWith('PNI:') ? pni : `PNI:${pni}`;
      // What contact discovery records: his ACI and PNI on one contact.
      inspect(client).store()?.contacts.upsert({ aci: bob.device.aci, pni: to, source: 'cdsi' });
      const sent = await client.send(to, { text: 'to your number' });
      await withTimeout(bob.waitForMessage(), 10_000, 'original');
      const request = await retryRequestFor(client, to, sent.timestamp);
      const ratchet = request.ratchetKey();
      assert.ok(ratchet);
      const puts = recordPuts(client);
      await deliverRetryRequest(client, bob.device.aci, request);
      const resent = await withTimeout(bob.waitForMessage(), 10_000, 'resent on the PNI');
      assert.equal(resent.body, 'to your number');
      assert.equal(String(resent.serviceIdKind), 'PNI');
      assert.equal(Number(resent.dataMessage.timestamp), sent.timestamp);
      assert.deepEqual(
        puts.map((p) => [p.serviceId, p.timestamp]),
        [[to, sent.timestamp]],
      );
      assert.equal(
        await ratchetMatches(client, to, ratchet),
        false,
        'the PNI session was archived',
      );
    });
  });
});
