/**
 * signal-in with what real phones send besides 1:1 sealed text: a group message encrypted with a
 * sender key (its group id on msg.signal), and an unsealed message from a contact synced from the
 * phone (its number as msg.topic and msg.signal.from.number).
 */
import assert from 'node:assert/strict';
import { ProtocolAddress } from '@signalapp/libsignal-client';
import accountNode = require('../../nodes/signal-account');
import inNode = require('../../nodes/signal-in');
import { introduce } from '../harness/mock-phone';
import { until } from '../harness/wait';
import {
  accountConfig,
  freshDataDirPerTest,
  helper,
  linkThroughAdminRoutes,
  nextInput,
  type AccountTestNode,
  type TestNode,
  phonesPerSuite,
  inspectNodeClients,
} from './support';
import { inspect } from '../integration/helpers';

describe('nodes: signal-in with group and synced-contact messages', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  inspectNodeClients();
  freshDataDirPerTest('sigflow-signal-in-');

  const flow = () => [
    accountConfig(world.sandbox, 'acct1', 'Alice'),
    { id: 'in1', type: 'signal-in', account: 'acct1', types: 'message', wires: [['inSink']] },
    { id: 'inSink', type: 'helper' },
  ];

  async function linked() {
    await helper.load([accountNode, inNode], flow());
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    const client = await (helper.getNode('acct1') as AccountTestNode).client();
    const store = inspect(client).store();
    assert.ok(store);
    await until(
      () => Boolean(store.contacts.findByNumber(String(world.bob.device.number))),
      10_000,
      'contacts synced from the phone',
    );
    return { client, device: await introduce(world.sandbox, client, world.bob) };
  }

  it("a sender-key group message arrives with the group's id on msg.signal.group, msg.to the group", async () => {
    const { client, device } = await linked();
    const group = await world.bob.createGroup({
      title: 'Garden club',
      members: [world.bob, world.alice],
    });
    const inSink = helper.getNode('inSink') as TestNode;
    const distributionId = await world.bob.sendSenderKey(device);
    const received = nextInput(inSink);
    // The mock sends the key without waiting for it: let it be stored before the message goes.
    const senderKeys = inspect(client).store()?.protocol('aci').senderKeys;
    assert.ok(senderKeys);
    const bobAddress = ProtocolAddress.new(world.bob.device.aci, world.bob.device.deviceId);
    await until(
      async () => (await senderKeys.getSenderKey(bobAddress, distributionId)) !== null,
      10_000,
      'sender key stored',
    );
    await world.bob.sendText(device, 'hello group', { group, sealed: true, distributionId });
    const msg = await received;
    assert.equal(msg.payload, 'hello group');
    // A reply goes to the group; the topic stays the sender.
    assert.equal(msg.to, `group:${group.id}`);
    assert.equal(msg.topic, world.bob.device.number);
    const signal = msg.signal as {
      type: string;
      groupId?: string;
      group?: { id: string };
      sealed: boolean;
    };
    assert.equal(signal.type, 'message');
    assert.equal(signal.groupId, group.id);
    assert.equal(signal.group?.id, group.id);
    assert.equal(signal.sealed, true);
    assert.equal(world.bob.getDecryptionErrorQueueSize(), 0, 'no retry request went to Bob');
  });

  it("an unsealed message from a synced contact has the contact's number as msg.topic", async () => {
    const { device } = await linked();
    const inSink = helper.getNode('inSink') as TestNode;
    const received = nextInput(inSink);
    await world.bob.sendText(device, 'hi from your contacts');
    const msg = await received;
    assert.equal(msg.payload, 'hi from your contacts');
    assert.equal(msg.topic, world.bob.device.number);
    assert.equal(msg.to, world.bob.device.aci, 'replies still go to the ACI');
    const signal = msg.signal as { sealed: boolean; from: Record<string, unknown> };
    assert.equal(signal.sealed, false);
    assert.deepEqual(signal.from, {
      aci: world.bob.device.aci,
      device: 1,
      number: world.bob.device.number,
      name: 'Bob',
    });
  });
});
