/**
 * Group messages sent with sender keys, as Signal's apps send them to a group (PROTOCOL.md §6): the
 * sender first hands each member device its SenderKeyDistributionMessage, then one SenderKey message
 * sealed (sealed sender v2) whose Content names the group by its master key.
 */
import assert from 'node:assert/strict';
import { ProtocolAddress } from '@signalapp/libsignal-client';
import { EMPTY_DATA_MESSAGE } from '@signalapp/mock-server';
import type { SignalClient } from '../../core/client';
import type { ReceiverStorePort } from '../../core/messaging/receiver';
import type { IncomingEvent, MessageEvent } from '../../core/types';
import { linkedWithBobPerTest, withTimeout, type PrimaryDevice, inspect } from './helpers';
import type { MockDevice } from '../harness/mock-phone';
import { until } from '../harness/wait';

/** The mock's own libsignal copy (0.100): its objects must not mix with ours (PROTOCOL.md §11). */
type MockLibsignal = typeof import('@signalapp/libsignal-client');
const mockLibsignal = require(
  require.resolve('@signalapp/libsignal-client', {
    paths: [require.resolve('@signalapp/mock-server')],
  }),
) as MockLibsignal;

function messages(client: SignalClient): MessageEvent[] {
  const seen: MessageEvent[] = [];
  client.on('event', (ev: IncomingEvent) => {
    if (ev.type === 'message') seen.push(ev);
  });
  return seen;
}

async function hasSenderKey(
  client: SignalClient,
  from: PrimaryDevice,
  distributionId: string,
): Promise<boolean> {
  const store = inspect(client).store();
  assert.ok(store);
  const record = await store
    .protocol('aci')
    .senderKeys.getSenderKey(
      ProtocolAddress.new(from.device.aci, from.device.deviceId),
      distributionId,
    );
  return record !== null;
}

/** Bob's SKDM for `distributionId`, as his app builds it, without sending it. */
async function senderKeyMessageOf(
  phone: PrimaryDevice,
  target: MockDevice,
  distributionId: string,
): Promise<Uint8Array> {
  const stores = (phone as unknown as { senderKeys: Map<string, unknown> }).senderKeys.get('ACI');
  assert.ok(stores, 'the mock phone keeps its ACI sender keys under "ACI"');
  const skdm = await mockLibsignal.SenderKeyDistributionMessage.create(
    target.address as never,
    distributionId,
    stores as never,
  );
  return skdm.serialize();
}

describe('integration: group messages with sender keys', function () {
  this.timeout(90_000);
  const world = linkedWithBobPerTest();

  it('stores the sender key Bob distributes, decrypts his sealed group message, emits it once with the group id', async () => {
    const group = await world.bob.createGroup({
      title: 'Garden club',
      members: [world.bob, world.alice],
    });
    const seen = messages(world.client);
    const distributionId = await world.bob.sendSenderKey(world.device);
    // The mock sends the key without waiting for it (`void sendRaw`): the test waits for it to be
    // stored, so that the group message cannot overtake it on the way.
    await until(
      () => hasSenderKey(world.client, world.bob, distributionId),
      10_000,
      'sender key stored',
    );
    const timestamp = Date.now();
    await world.bob.sendText(world.device, 'hello group', {
      group,
      sealed: true,
      distributionId,
      timestamp,
    });
    await until(() => seen.length > 0, 10_000, 'the group message');
    await world.client.idle();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(seen.length, 1, 'emitted once');
    const [ev] = seen;
    assert.ok(ev);
    assert.equal(ev.body, 'hello group');
    assert.equal(ev.groupId, group.id, "the mock's group identifier");
    assert.equal(ev.sealed, true);
    assert.equal(ev.from.aci, world.bob.device.aci);
    assert.equal(ev.timestamp, timestamp);
    const receiver = inspect(world.client).receiver();
    assert.ok(receiver);
    assert.equal(receiver.drops.get('decrypt-failed') ?? 0, 0);
    assert.equal(world.bob.getDecryptionErrorQueueSize(), 0, 'no retry request went to Bob');
  });

  it('takes a sender key that arrives beside a message in one Content', async () => {
    const group = await world.bob.createGroup({
      title: 'Chess',
      members: [world.bob, world.alice],
    });
    const seen = messages(world.client);
    const distributionId = await world.bob.sendSenderKey(world.device, {
      skipSkdmSend: true,
    } as never);
    const skdm = await senderKeyMessageOf(world.bob, world.device, distributionId);
    await world.bob.sendRaw(world.device, {
      content: {
        dataMessage: {
          ...EMPTY_DATA_MESSAGE,
          body: 'first, one to one',
          groupV2: group.toContext(),
          timestamp: BigInt(Date.now()),
        },
      },
      pniSignatureMessage: null,
      senderKeyDistributionMessage: skdm,
    } as never);
    await until(() => seen.length === 1, 10_000, 'the 1:1 group message');
    assert.equal(seen[0]?.body, 'first, one to one');
    assert.equal(seen[0]?.groupId, group.id);
    assert.ok(
      await hasSenderKey(world.client, world.bob, distributionId),
      'stored with that message',
    );
    await world.bob.sendText(world.device, 'then with the key', {
      group,
      sealed: true,
      distributionId,
    });
    await until(() => seen.length === 2, 10_000, 'the sender-key message');
    assert.equal(seen[1]?.body, 'then with the key');
    assert.equal(seen[1]?.groupId, group.id);
    assert.equal(world.bob.getDecryptionErrorQueueSize(), 0, 'no retry request went to Bob');
  });

  it('a sender key is committed with its envelope or not at all: a failed commit is redelivered and then stored', async () => {
    const group = await world.bob.createGroup({
      title: 'Atomic',
      members: [world.bob, world.alice],
    });
    const seen = messages(world.client);
    const receiver = inspect(world.client).receiver();
    assert.ok(receiver);
    const port = (receiver as unknown as { opts: { store: ReceiverStorePort } }).opts.store;
    const insert = port.insertReceived.bind(port);
    let calls = 0;
    port.insertReceived = (...args) => {
      if (++calls === 1) throw new Error('disk I/O error');
      insert(...args);
    };
    const distributionId = await world.bob.sendSenderKey(world.device);
    await until(() => calls === 1, 10_000, 'the failed commit');
    await world.client.idle();
    assert.equal(
      await hasSenderKey(world.client, world.bob, distributionId),
      false,
      'rolled back with the log row (answered 500: the server keeps the envelope)',
    );
    // The next connection gets the envelope again (PROTOCOL.md §2).
    inspect(world.client).chat()?.dropConnection();
    await until(
      () => hasSenderKey(world.client, world.bob, distributionId),
      10_000,
      'stored on redelivery',
    );
    await world.bob.sendText(world.device, 'after the redelivery', {
      group,
      sealed: true,
      distributionId,
    });
    await until(() => seen.length === 1, 10_000, 'the group message');
    assert.equal(seen[0]?.body, 'after the redelivery');
    assert.equal(world.bob.getDecryptionErrorQueueSize(), 0, 'no retry request went to Bob');
  });

  it('without the sender key, asks Bob for a resend and emits nothing (the control for the above)', async () => {
    const group = await world.bob.createGroup({
      title: 'Quiet',
      members: [world.bob, world.alice],
    });
    const seen = messages(world.client);
    const distributionId = await world.bob.sendSenderKey(world.device, {
      skipSkdmSend: true,
    } as never);
    const timestamp = Date.now();
    await world.bob.sendText(world.device, 'no key for this', {
      group,
      sealed: true,
      distributionId,
      timestamp,
    });
    const request = await withTimeout(world.bob.waitForDecryptionError(), 10_000, 'retry request');
    assert.equal(request.timestamp, timestamp);
    await world.client.idle();
    assert.deepEqual(seen, []);
  });
});
