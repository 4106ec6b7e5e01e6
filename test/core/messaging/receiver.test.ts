/**
 * The receiver against a live linked client: envelopes handed straight to its request handler, as the
 * chat socket would. Regressions found by the reliability fuzzer (test/reliability/fuzz.test.ts).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { CiphertextMessageType, PlaintextContent } from '@signalapp/libsignal-client';
import type { SignalClient } from '../../../core/client';
import type { Receiver, ReceiverStorePort } from '../../../core/messaging/receiver';
import type { IncomingEvent } from '../../../core/types';
import { Content, Envelope, Long } from '../../../proto';
import {
  captureLogger,
  linkClient,
  ourNextCiphertext,
  retryRequestFor,
  startSandbox,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
  inspect,
} from '../../integration/helpers';
import { introduce, ourDevice } from '../../harness/mock-phone';

/** A PLAINTEXT_CONTENT envelope (type 8) from `from` device 1: 0xC0, the Content, then padding. */
function plaintextEnvelope(client: SignalClient, from: string, content: Uint8Array): Uint8Array {
  const padded = new Uint8Array(content.length + 16);
  padded.set(content);
  padded[content.length] = 0x80;
  const timestamp = Date.now() - 1000;
  return Envelope.encode({
    type: Envelope.Type.PLAINTEXT_CONTENT,
    sourceServiceId: from,
    sourceDeviceId: 1,
    destinationServiceId: client.account?.aci ?? '',
    clientTimestamp: Long.fromNumber(timestamp, true),
    serverTimestamp: Long.fromNumber(timestamp + 10, true),
    serverGuid: randomUUID(),
    content: Uint8Array.of(0xc0, ...padded),
  }).finish();
}

describe('messaging: receiver', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let bob: PrimaryDevice;
  let client: SignalClient;
  let receiver: Receiver;
  let lines: string[];
  let events: IncomingEvent[];

  beforeEach(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    lines = [];
    ({ client } = await linkClient(sandbox, alice, { logger: captureLogger(lines) }));
    const made = inspect(client).receiver();
    assert.ok(made);
    receiver = made;
    events = [];
    client.on('event', (ev) => events.push(ev));
  });
  afterEach(async () => {
    await sandbox.close();
  });

  const put = (body: Uint8Array) =>
    receiver.handleRequest({ verb: 'PUT', path: '/api/v1/message', body, headers: {} });

  it('drops plaintext content that carries a message (unauthenticated), and says why', async () => {
    const forged = Content.encode({ dataMessage: { body: 'forged', timestamp: 5 } }).finish();
    assert.equal(await put(plaintextEnvelope(client, bob.device.aci, forged)), 200);
    await client.idle();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events, [], 'nothing emitted');
    assert.ok(
      lines.some((l) =>
        /dropped envelope \(malformed-content\).*only a retry request, not dataMessage/.test(l),
      ),
      lines.join('\n'),
    );
  });

  it('drops a retry request that does not parse as malformed content, with a logged reason', async () => {
    const garbage = Content.encode({ decryptionErrorMessage: Uint8Array.of(1, 2, 3) }).finish();
    assert.equal(await put(plaintextEnvelope(client, bob.device.aci, garbage)), 200);
    await client.idle();
    assert.ok(
      lines.some((l) => l.includes('dropped envelope (malformed-content)')),
      lines.join('\n'),
    );
    assert.ok(!lines.some((l) => l.includes('follow-up action failed')), lines.join('\n'));
  });

  it('drops an envelope whose source device id libsignal cannot address (no 500, no redelivery loop)', async () => {
    const envelope = Envelope.encode({
      type: Envelope.Type.DOUBLE_RATCHET,
      sourceServiceId: bob.device.aci,
      sourceDeviceId: 128,
      destinationServiceId: client.account?.aci ?? '',
      clientTimestamp: Long.fromNumber(Date.now(), true),
      serverTimestamp: Long.fromNumber(Date.now(), true),
      content: new Uint8Array(60).fill(7),
    }).finish();
    assert.equal(await put(envelope), 200);
    assert.ok(
      lines.some((l) => /dropped envelope \(malformed-envelope\): source .*\.128/.test(l)),
      lines.join('\n'),
    );
  });

  it('drops a sealed envelope whose server timestamp is beyond 2^53 (no 500, no redelivery loop)', async () => {
    const device = await introduce(sandbox, client, bob);
    // Keep the real sealed envelope Bob's message arrives in.
    const inner = receiver as unknown as { processEnvelope: (b: Uint8Array) => Promise<number> };
    const original = inner.processEnvelope.bind(receiver);
    let sealed: Uint8Array | undefined;
    inner.processEnvelope = (b) => {
      sealed ??= Uint8Array.from(b);
      return original(b);
    };
    void bob.sendText(device, 'sealed', { sealed: true });
    const deadline = Date.now() + 10_000;
    while (!events.some((e) => e.type === 'message')) {
      assert.ok(Date.now() < deadline, 'the sealed message arrived');
      await new Promise((r) => setTimeout(r, 10));
    }
    inner.processEnvelope = original;
    assert.ok(sealed);
    const e = Envelope.decode(sealed);
    assert.equal(e.type, Envelope.Type.UNIDENTIFIED_SENDER);
    e.serverTimestamp = Long.MAX_UNSIGNED_VALUE;
    e.clientTimestamp = Long.fromNumber(Date.now() + 1, true);
    assert.equal(await put(Envelope.encode(e).finish()), 200);
    assert.ok(
      lines.some((l) =>
        l.includes('dropped envelope (malformed-envelope): timestamp out of range'),
      ),
      lines.join('\n'),
    );
  });

  it('honours a plaintext retry request: the session is archived and the original goes again on a fresh one', async () => {
    await client.send(bob.device.aci, { text: 'original text' });
    const first = await withTimeout(bob.waitForMessage(), 10_000, 'original');
    const timestamp = Number(first.dataMessage.timestamp);
    // Bob's retry request for a message on our current ratchet, as his app would build it.
    const account = client.account;
    assert.ok(account);
    const request = await retryRequestFor(client, bob.device.aci, timestamp);
    const body = PlaintextContent.from(request).body();
    const envelope = Envelope.encode({
      type: Envelope.Type.PLAINTEXT_CONTENT,
      sourceServiceId: bob.device.aci,
      sourceDeviceId: 1,
      destinationServiceId: account.aci,
      clientTimestamp: Long.fromNumber(Date.now(), true),
      serverTimestamp: Long.fromNumber(Date.now(), true),
      serverGuid: randomUUID(),
      content: Uint8Array.of(0xc0, ...body),
    }).finish();
    assert.equal(await put(envelope), 200);
    const resent = await withTimeout(bob.waitForMessage(), 10_000, 'resent original');
    assert.equal(resent.body, 'original text');
    assert.ok(!lines.some((l) => l.includes('dropped envelope')), lines.join('\n'));
  });

  it('sends the retry request for an undecryptable envelope after its ACK, outside the peer lock, without holding up the next envelope from that peer', async () => {
    const account = client.account;
    assert.ok(account);
    const device = await ourDevice(sandbox, client);
    // A session with Bob, so that we can write a well-formed message he never sent (below).
    await client.send(bob.device.aci, { text: 'hello' });
    await withTimeout(bob.waitForMessage(), 10_000, 'hello');
    // Bob's real message, kept (and ACKed to the server unprocessed) to hand in later ourselves.
    const inner = receiver as unknown as { processEnvelope: (b: Uint8Array) => Promise<number> };
    const original = inner.processEnvelope.bind(receiver);
    let message: Uint8Array | undefined;
    inner.processEnvelope = (b) => {
      message ??= Uint8Array.from(b);
      return Promise.resolve(200);
    };
    void bob.sendText(device, 'after the failure');
    const deadline = Date.now() + 10_000;
    while (!message) {
      assert.ok(Date.now() < deadline, 'the message arrived');
      await new Promise((r) => setTimeout(r, 10));
    }
    inner.processEnvelope = original;

    // The retry request waits on the network until released; meanwhile it checks Bob's lock is free.
    const lock = inspect(client).lock();
    assert.ok(lock);
    const calls = inspect(client).receiverCalls();
    assert.ok(calls);
    const order: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let lockFree: boolean | undefined;
    calls.sendRetryRequest = async () => {
      order.push('retry request');
      lockFree = await Promise.race([
        lock.run(bob.device.aci, () => Promise.resolve(true)),
        new Promise<boolean>((r) => setTimeout(() => r(false), 500)),
      ]);
      await released;
    };
    // record → sync → ACK → emit → mark emitted, seen on the store port the inbox writes through.
    const port = (receiver as unknown as { opts: { store: ReceiverStorePort } }).opts.store;
    const wrap = <K extends 'insertReceived' | 'sync' | 'markEmitted'>(name: K) => {
      const fn = port[name] as (...a: unknown[]) => unknown;
      (port as unknown as Record<K, unknown>)[name] = (...a: unknown[]) => {
        order.push(name);
        return fn(...a);
      };
    };
    wrap('insertReceived');
    wrap('sync');
    wrap('markEmitted');
    client.on('event', (ev) => {
      if (ev.type === 'message') order.push('emit');
    });

    // Well-formed (so a retry request can name it, §6) but not from Bob's ratchet: undecryptable.
    const probe = await ourNextCiphertext(client, bob.device.aci);
    const garbage = Envelope.encode({
      type:
        probe.type() === CiphertextMessageType.PreKey
          ? Envelope.Type.PREKEY_MESSAGE
          : Envelope.Type.DOUBLE_RATCHET,
      sourceServiceId: bob.device.aci,
      sourceDeviceId: 1,
      destinationServiceId: account.aci,
      clientTimestamp: Long.fromNumber(Date.now() - 5000, true),
      serverTimestamp: Long.fromNumber(Date.now() - 5000, true),
      serverGuid: randomUUID(),
      content: probe.serialize(),
    }).finish();
    assert.equal(await withTimeout(put(garbage), 2000, 'ACK of the undecryptable envelope'), 200);
    order.push('ACK dropped');
    assert.equal(await withTimeout(put(message), 2000, 'ACK of the next envelope'), 200);
    order.push('ACK message');
    const until = Date.now() + 2000;
    while (!order.includes('markEmitted') || lockFree === undefined) {
      assert.ok(Date.now() < until, order.join(', '));
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(lockFree, true, 'the retry request runs outside the peer lock');
    assert.deepEqual(
      order.filter((o) => o !== 'retry request'),
      ['sync', 'ACK dropped', 'insertReceived', 'sync', 'ACK message', 'emit', 'markEmitted'],
    );
    assert.ok(order.indexOf('retry request') > order.indexOf('ACK dropped'), order.join(', '));
    assert.ok(events.some((e) => e.type === 'message' && e.body === 'after the failure'));
    release();
    await withTimeout(client.idle(), 2000, 'idle once the follow-up is done');
    assert.equal(receiver.drops.get('decrypt-failed'), 1);
  });
});
