/**
 * Delivery receipts to the sender of each message (the second tick on their phone), batched per
 * sender, sent apart from the receive path.
 */
import assert from 'node:assert/strict';
import { ReceiptType, ServiceIdKind } from '@signalapp/mock-server';
import type { SignalClient } from '../../core/client';
import { WireType } from '../../core/messaging/sender';
import type { IncomingEvent, MessageEvent } from '../../core/types';
import { linkedWithBobPerTest, withTimeout, type PrimaryDevice, inspect } from './helpers';
import { introduce } from '../harness/mock-phone';
import { until } from '../harness/wait';

function messages(client: SignalClient): MessageEvent[] {
  const seen: MessageEvent[] = [];
  client.on('event', (ev: IncomingEvent) => {
    if (ev.type === 'message') seen.push(ev);
  });
  return seen;
}

/** The delivery receipts `phone` receives until every one of `timestamps` was covered. */
async function receiptsCovering(phone: PrimaryDevice, timestamps: number[]): Promise<number[][]> {
  const want = new Set(timestamps);
  const got: number[][] = [];
  while (want.size > 0) {
    const r = await withTimeout(phone.waitForReceipt(), 10_000, 'delivery receipt');
    assert.equal(r.receiptMessage.type, 0, 'DELIVERY');
    const ts = (r.receiptMessage.timestamp ?? []).map(Number);
    got.push(ts);
    for (const t of ts) want.delete(t);
  }
  return got;
}

/** The wire types of each PUT the client's sender makes to `to`. */
function putTypes(client: SignalClient, to: string): number[][] {
  const api = inspect(client).senderApi();
  assert.ok(api, 'a connected client');
  const seen: number[][] = [];
  const put = api.sendMessages.bind(api);
  api.sendMessages = (sid, body, accessKey) => {
    if (sid === to) seen.push(body.messages.map((m) => m.type));
    return put(sid, body, accessKey);
  };
  return seen;
}

/** Longer than the receipt window: what has not come by then is not coming. */
const AFTER_WINDOW_MS = 1_500;

describe('integration: delivery receipts', function () {
  this.timeout(60_000);
  const world = linkedWithBobPerTest();

  it("answers Bob's message with a delivery receipt naming its timestamp, sealed once his profile key is known", async () => {
    const seen = messages(world.client);
    const puts = putTypes(world.client, world.bob.device.aci);
    const timestamp = Date.now();
    await world.bob.sendText(world.device, 'did you get this?', {
      timestamp,
      withProfileKey: true,
    });
    const receipt = await withTimeout(world.bob.waitForReceipt(), 10_000, 'delivery receipt');
    assert.equal(receipt.receiptMessage.type, 0, 'DELIVERY');
    assert.deepEqual((receipt.receiptMessage.timestamp ?? []).map(Number), [timestamp]);
    assert.equal(receipt.source.aci, world.alice.device.aci, 'from our account');
    // (The mock reports the inner type of a sealed envelope: the PUT shows how it went.)
    assert.deepEqual(puts, [[WireType.UNIDENTIFIED]], 'one PUT, sealed');
    assert.equal(seen.length, 1);
  });

  it('a burst of messages is answered with fewer receipt messages, covering every timestamp', async () => {
    const seen = messages(world.client);
    const base = Date.now();
    const timestamps = [0, 1, 2, 3, 4, 5].map((i) => base + i);
    for (const [i, timestamp] of timestamps.entries())
      await world.bob.sendText(world.device, `burst ${i}`, { timestamp });
    const receipts = await receiptsCovering(world.bob, timestamps);
    assert.equal(seen.length, timestamps.length);
    assert.ok(
      receipts.length < timestamps.length,
      `${receipts.length} receipt messages for ${timestamps.length} messages`,
    );
    assert.deepEqual(receipts.flat().sort(), [...timestamps].sort(), 'each named once');
  });

  it('no receipt for a receipt, for a redelivered duplicate, or for what our own phone syncs', async () => {
    const receiver = inspect(world.client).receiver();
    assert.ok(receiver);
    // Keep the envelope Bob's first message arrives in, to hand it in again later.
    const inner = receiver as unknown as { processEnvelope: (b: Uint8Array) => Promise<number> };
    const original = inner.processEnvelope.bind(receiver);
    let first: Uint8Array | undefined;
    inner.processEnvelope = (b) => {
      first ??= Uint8Array.from(b);
      return original(b);
    };
    const seen = messages(world.client);
    const timestamp = Date.now();
    await world.bob.sendText(world.device, 'once', { timestamp });
    await receiptsCovering(world.bob, [timestamp]);
    inner.processEnvelope = original;
    assert.ok(first);
    const put = () =>
      receiver.handleRequest({ verb: 'PUT', path: '/api/v1/message', body: first!, headers: {} });
    assert.equal(await put(), 200);
    assert.equal(receiver.drops.get('duplicate'), 1);
    await world.bob.sendReceipt(world.device, {
      type: ReceiptType.Delivery,
      messageTimestamps: [timestamp],
    });
    const ourPhone = await introduce(world.sandbox, world.client, world.alice);
    await world.alice.sendText(ourPhone, 'a note from our own phone');
    await until(() => seen.length === 2, 10_000, "our phone's message");
    await world.client.idle();
    await new Promise((r) => setTimeout(r, AFTER_WINDOW_MS));
    assert.equal(world.bob.getReceiptQueueSize(), 0, 'nothing more for Bob');
    assert.equal(world.alice.getReceiptQueueSize(), 0, 'nothing for our own phone');
    assert.equal(receiver.receipts?.failed, 0);
  });

  it('no receipt for a message to our PNI (it would tell a number-only sender our ACI)', async () => {
    const seen = messages(world.client);
    await world.bob.addSingleUseKey(
      world.device,
      await world.device.popSingleUseKey(ServiceIdKind.PNI),
      ServiceIdKind.PNI,
    );
    await world.bob.sendText(world.device, 'to your number', { serviceIdKind: ServiceIdKind.PNI });
    await until(() => seen.length === 1, 10_000, 'the message to our PNI');
    await new Promise((r) => setTimeout(r, AFTER_WINDOW_MS));
    assert.equal(world.bob.getReceiptQueueSize(), 0, 'no receipt');
    // The control: the same sender, to our ACI, gets one.
    const timestamp = Date.now();
    await world.bob.sendText(world.device, 'to your account', { timestamp });
    assert.deepEqual(await receiptsCovering(world.bob, [timestamp]), [[timestamp]]);
  });

  it('a receipt send that hangs holds nothing back, and close() leaves no receipt timer behind', async () => {
    const hung: string[] = [];
    // Every receipt send from now on never answers.
    const calls = inspect(world.client).receiverCalls();
    assert.ok(calls);
    calls.sendDeliveryReceipt = (to) => {
      hung.push(to);
      return new Promise<void>(() => undefined);
    };
    const receiver = inspect(world.client).receiver();
    assert.ok(receiver);
    const receipts = receiver.receipts;
    assert.ok(receipts);
    const seen = messages(world.client);
    await world.bob.sendText(world.device, 'one');
    await until(() => hung.length === 1, 5_000, 'first receipt sent');
    await world.bob.sendText(world.device, 'two');
    await world.bob.sendText(world.device, 'three');
    await until(() => seen.length === 3, 10_000, 'every message emitted meanwhile');
    assert.ok(receipts.pendingCount > 0, 'the later receipts wait in their window');
    const start = Date.now();
    await world.client.close();
    assert.ok(Date.now() - start < 5_000, 'close is not held up by the hung send');
    assert.equal((receipts as unknown as { timer: unknown }).timer, null, 'no timer left');
    assert.equal(receipts.pendingCount, 0, 'pending receipts dropped');
  });
});
