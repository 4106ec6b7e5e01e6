/**
 * Sending to a group (issue 16) against the mock's phones: one multi-recipient sealed-sender
 * message with our sender key that every member decrypts (the mock reports the inner envelope type
 * `SenderKey`), the sync transcript to our phone, a member's new device (409) and a removed member
 * (the key is reset), the 1:1 fallback, and the rich kinds with their group context.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  CiphertextMessageType,
  DecryptionErrorMessage,
  ProtocolAddress,
} from '@signalapp/libsignal-client';
import type { SendResult } from '../../core/types';
import type { signalservice } from '../../proto';
import { StorageState } from '@signalapp/mock-server';
import {
  inspect,
  linkClient,
  startSandbox,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
} from './helpers';
import { makeGroup, startGroupWorld, type GroupWorld } from './group-world';
import { ourDevice, reinstallPhone } from '../harness/mock-phone';
import { decryptReceived } from '../harness/cdn-attachment';

type Entry = Awaited<ReturnType<PrimaryDevice['waitForMessage']>>;

const next = (phone: PrimaryDevice, what: string): Promise<Entry> =>
  withTimeout(phone.waitForMessage(), 15_000, what);

function masterKeyOf(entry: Entry): Buffer {
  const key = entry.dataMessage.groupV2?.masterKey;
  assert.ok(key, 'the message carries its group context');
  return Buffer.from(key);
}

/** How many 1:1 PUTs the sender made to each service id while `fn` ran. */
async function countingPuts(world: GroupWorld, fn: () => Promise<unknown>) {
  const api = inspect(world.client).senderApi();
  assert.ok(api);
  const original = api.sendMessages;
  const counts = new Map<string, number>();
  api.sendMessages = (sid, body, key) => {
    counts.set(sid, (counts.get(sid) ?? 0) + 1);
    return original(sid, body, key);
  };
  try {
    await fn();
  } finally {
    api.sendMessages = original;
  }
  return counts;
}

/** The mock's sync entry's `sent` (its protos keep SyncMessage's oneof under `content`). */
function sentOf(entry: {
  syncMessage: unknown;
}): signalservice.SyncMessage.ISent | null | undefined {
  return (entry.syncMessage as { content?: { sent?: signalservice.SyncMessage.ISent } }).content
    ?.sent;
}

function byMember(result: SendResult) {
  const out = new Map((result.recipients ?? []).map((r) => [r.serviceId, r]));
  return out;
}

describe('integration: sending to a group', function () {
  this.timeout(120_000);
  let world: GroupWorld;

  beforeEach(async () => {
    world = await startGroupWorld(3);
  });
  afterEach(async () => {
    await world?.sandbox.close();
  });

  it('reaches every member with ONE multi-recipient sender-key message and syncs one transcript to the phone', async () => {
    const [bob, carol, dave] = world.phones as [PrimaryDevice, PrimaryDevice, PrimaryDevice];
    const { group, to } = await makeGroup(world, [bob, carol, dave]);
    let result!: SendResult;
    const puts = await countingPuts(world, async () => {
      result = await world.client.send(to, { text: 'hello group' });
    });
    for (const phone of [bob, carol, dave]) {
      const entry = await next(phone, 'the group message');
      assert.equal(entry.envelopeType, 'SenderKey');
      assert.equal(entry.body, 'hello group');
      assert.ok(masterKeyOf(entry).equals(group.masterKey));
      assert.equal(Number(entry.dataMessage.timestamp), result.timestamp);
    }
    const multi = world.sandbox.multiRecipient;
    assert.equal(multi.length, 1, 'one multi-recipient request');
    assert.equal(multi[0]?.status, 200);
    assert.equal(multi[0]?.auth, 'group-send-token');
    assert.deepEqual(
      [...(multi[0]?.recipients ?? [])].sort(),
      [bob, carol, dave].map((p) => p.device.aci).sort(),
    );
    // The SKDM went 1:1 to each member once, and one transcript to our own account.
    for (const phone of [bob, carol, dave]) assert.equal(puts.get(phone.device.aci), 1);
    assert.equal(puts.get(world.alice.device.aci), 1);
    assert.equal(result.serviceId, to);
    assert.equal(result.sealed, true);
    const members = byMember(result);
    assert.equal(members.size, 3);
    for (const r of members.values()) {
      assert.equal(r.via, 'sender-key');
      assert.equal(r.error, undefined);
      assert.deepEqual(r.devices, [1]);
    }
    const sync = await withTimeout(
      world.alice.waitForSyncMessage((e) => !!sentOf(e)?.message?.groupV2),
      15_000,
      'the transcript',
    );
    const sent = sentOf(sync);
    assert.ok(sent?.message?.groupV2?.masterKey);
    assert.ok(Buffer.from(sent.message.groupV2.masterKey).equals(group.masterKey));
    assert.equal(sent.message.body, 'hello group');
    assert.ok(!sent.destinationServiceId && !sent.destinationServiceIdBinary?.length);
    assert.equal(sent.unidentifiedStatus?.length, 3);
    assert.ok(sent.unidentifiedStatus?.every((s) => s.unidentified === true));
    assert.deepEqual(world.sandbox.conformance.firedRules, []);

    // A second message: the same key, no SKDM again, still one request.
    const again = await countingPuts(world, () => world.client.send(to, { text: 'second' }));
    for (const phone of [bob, carol, dave]) {
      const entry = await next(phone, 'the second message');
      assert.equal(entry.envelopeType, 'SenderKey');
      assert.equal(entry.body, 'second');
      assert.equal(again.get(phone.device.aci), undefined, 'no second SKDM');
    }
    assert.equal(world.sandbox.multiRecipient.length, 2);
  });

  it("handles a member's new device (409): the device gets the key and nothing is lost", async () => {
    const [bob, carol] = world.phones as [PrimaryDevice, PrimaryDevice];
    const { to } = await makeGroup(world, [bob, carol]);
    await world.client.send(to, { text: 'one' });
    for (const phone of [bob, carol]) assert.equal((await next(phone, 'one')).body, 'one');
    const second = await world.sandbox.server.createSecondaryDevice(bob);
    assert.equal(second.deviceId, 2);
    const puts = await countingPuts(world, async () => {
      const result = await world.client.send(to, { text: 'two' });
      assert.deepEqual(byMember(result).get(bob.device.aci)?.devices, [1, 2]);
    });
    for (const phone of [bob, carol]) {
      const entry = await next(phone, 'two');
      assert.equal(entry.envelopeType, 'SenderKey');
      assert.equal(entry.body, 'two');
    }
    assert.deepEqual(
      world.sandbox.multiRecipient.map((r) => r.status),
      [200, 409, 200],
    );
    assert.equal(puts.get(bob.device.aci), 1, "the SKDM again to Bob's devices");
    assert.equal(puts.get(carol.device.aci), undefined);
    const store = inspect(world.client).store();
    const state = store?.groupSends.get(to.slice(6));
    assert.ok(
      state?.devices.some((d) => d.serviceId === bob.device.aci && d.deviceId === 2),
      "Bob's device 2 is marked as having the key",
    );
  });

  it('a removed member no longer receives, and the sender key is reset', async () => {
    const [bob, carol, dave] = world.phones as [PrimaryDevice, PrimaryDevice, PrimaryDevice];
    const { record, to } = await makeGroup(world, [bob, carol, dave]);
    await world.client.send(to, { text: 'all of us' });
    for (const phone of [bob, carol, dave]) await next(phone, 'all of us');
    const store = inspect(world.client).store();
    assert.ok(store);
    const before = store.groupSends.get(record.id);
    assert.ok(before);
    const ours = ProtocolAddress.new(world.alice.device.aci, world.client.account?.deviceId ?? 0);
    const keyBefore = await store
      .protocol('aci')
      .senderKeys.getSenderKey(ours, before.distributionId);
    assert.ok(keyBefore);
    world.records.set(record.id, {
      ...record,
      revision: record.revision + 1,
      members: record.members.filter((m) => m.aci !== dave.device.aci),
    });
    const puts = await countingPuts(world, () => world.client.send(to, { text: 'without dave' }));
    for (const phone of [bob, carol]) {
      const entry = await next(phone, 'without dave');
      assert.equal(entry.envelopeType, 'SenderKey');
      assert.equal(entry.body, 'without dave');
    }
    assert.ok(
      !world.sandbox.multiRecipient.at(-1)?.recipients.includes(dave.device.aci),
      'Dave is not a recipient',
    );
    await world.client.idle();
    assert.equal(dave.getMessageQueueSize(), 0, 'Dave received nothing');
    assert.equal(puts.get(dave.device.aci), undefined, 'not even the new key');
    for (const phone of [bob, carol]) assert.equal(puts.get(phone.device.aci), 1, 'the new SKDM');
    const after = store.groupSends.get(record.id);
    assert.ok(after);
    assert.equal(after.distributionId, before.distributionId, 'the distribution id is kept');
    assert.ok(after.devices.every((d) => d.serviceId !== dave.device.aci));
    const keyAfter = await store
      .protocol('aci')
      .senderKeys.getSenderKey(ours, after.distributionId);
    assert.ok(keyAfter);
    assert.notDeepEqual(keyAfter.serialize(), keyBefore.serialize(), 'a new sender key');
  });

  it("recovers from a member's reinstall (410): new session, the key again, nothing lost", async () => {
    const [bob, carol] = world.phones as [PrimaryDevice, PrimaryDevice];
    const { to } = await makeGroup(world, [bob, carol]);
    await world.client.send(to, { text: 'before' });
    for (const phone of [bob, carol]) await next(phone, 'before');
    await reinstallPhone(bob);
    const puts = await countingPuts(world, () => world.client.send(to, { text: 'after' }));
    for (const phone of [bob, carol]) {
      const entry = await next(phone, 'after');
      assert.equal(entry.envelopeType, 'SenderKey');
      assert.equal(entry.body, 'after');
    }
    assert.deepEqual(
      world.sandbox.multiRecipient.map((r) => r.status),
      [200, 410, 200],
    );
    assert.equal(puts.get(bob.device.aci), 1, 'the SKDM again, over the new session');
    assert.equal(puts.get(carol.device.aci), undefined);
  });

  it('reports a member who is not on Signal any more, and still delivers to the others', async () => {
    const [bob, carol, dave] = world.phones as [PrimaryDevice, PrimaryDevice, PrimaryDevice];
    const { to } = await makeGroup(world, [bob, carol, dave]);
    await world.client.send(to, { text: 'all here' });
    for (const phone of [bob, carol, dave]) await next(phone, 'all here');
    world.sandbox.server.unregister(dave);
    const result = await world.client.send(to, { text: 'still here?' });
    for (const phone of [bob, carol]) {
      const entry = await next(phone, 'still here?');
      assert.equal(entry.body, 'still here?');
      assert.notEqual(entry.envelopeType, 'SenderKey', '1:1 after the 404');
    }
    // Signal-Server answers 404 to the whole multi-recipient message: the engine goes 1:1.
    assert.deepEqual(
      world.sandbox.multiRecipient.map((r) => r.status),
      [200, 404],
    );
    const members = byMember(result);
    assert.equal(members.get(dave.device.aci)?.error?.code, 'NOT_ON_SIGNAL');
    assert.equal(members.get(bob.device.aci)?.error, undefined);
    assert.equal(members.get(carol.device.aci)?.error, undefined);
    // Without sessions, an unregistered member is found before the multi-recipient send.
    const fresh = await makeGroup(world, [bob, carol, dave]);
    const r2 = await world.client.send(fresh.to, { text: 'new group' });
    for (const phone of [bob, carol])
      assert.equal((await next(phone, 'new group')).envelopeType, 'SenderKey');
    assert.equal(byMember(r2).get(dave.device.aci)?.error?.code, 'NOT_ON_SIGNAL');
    assert.ok(!world.sandbox.multiRecipient.at(-1)?.recipients.includes(dave.device.aci));
    // Everyone unreachable: the send itself fails.
    world.sandbox.server.unregister(bob);
    world.sandbox.server.unregister(carol);
    await assert.rejects(world.client.send(to, { text: 'nobody' }), /not registered/);
  });

  it('makes a new sender key once the current one is older than 90 days', async () => {
    const [bob, carol] = world.phones as [PrimaryDevice, PrimaryDevice];
    const { record, to } = await makeGroup(world, [bob, carol]);
    await world.client.send(to, { text: 'fresh' });
    for (const phone of [bob, carol]) await next(phone, 'fresh');
    const store = inspect(world.client).store();
    assert.ok(store);
    const old = Date.now() - 91 * 86_400_000;
    store.db
      .prepare('UPDATE group_send_state SET created_at = ? WHERE group_id = ?')
      .run(old, record.id);
    const puts = await countingPuts(world, () => world.client.send(to, { text: 'renewed' }));
    for (const phone of [bob, carol]) {
      assert.equal((await next(phone, 'renewed')).envelopeType, 'SenderKey');
      assert.equal(puts.get(phone.device.aci), 1, 'the new key to every member');
    }
    const state = store.groupSends.get(record.id);
    assert.ok(state && state.createdAt > old + 90 * 86_400_000);
  });

  it('sends 1:1 to each member when fewer than 2 can take sender keys, each with the group context', async () => {
    const [bob, carol] = world.phones as [PrimaryDevice, PrimaryDevice];
    const small = await makeGroup(world, [bob]);
    const result = await world.client.send(small.to, { text: 'just us' });
    const entry = await next(bob, 'just us');
    assert.notEqual(entry.envelopeType, 'SenderKey');
    assert.ok(masterKeyOf(entry).equals(small.group.masterKey));
    assert.equal(byMember(result).get(bob.device.aci)?.via, 'direct');
    // No endorsements and only Bob's profile key: one capable recipient, so both go 1:1.
    const keyless = await makeGroup(world, [bob, carol], {
      endorsements: false,
      withoutProfileKey: [carol],
    });
    const r2 = await world.client.send(keyless.to, { text: 'one by one' });
    for (const phone of [bob, carol]) {
      const e = await next(phone, 'one by one');
      assert.notEqual(e.envelopeType, 'SenderKey');
      assert.ok(masterKeyOf(e).equals(keyless.group.masterKey));
    }
    assert.deepEqual(
      [...byMember(r2).values()].map((r) => r.via),
      ['direct', 'direct'],
    );
    assert.equal(world.sandbox.multiRecipient.length, 0, 'no multi-recipient request');
  });

  it('authorizes with the combined access key when the group has no endorsements', async () => {
    const [bob, carol, dave] = world.phones as [PrimaryDevice, PrimaryDevice, PrimaryDevice];
    const { to } = await makeGroup(world, [bob, carol, dave], { endorsements: false });
    await world.client.send(to, { text: 'by access key' });
    for (const phone of [bob, carol, dave]) {
      const entry = await next(phone, 'by access key');
      assert.equal(entry.envelopeType, 'SenderKey');
    }
    assert.deepEqual(
      world.sandbox.multiRecipient.map((r) => [r.status, r.auth]),
      [[200, 'access-key']],
    );
    assert.deepEqual(world.sandbox.conformance.firedRules, []);
  });

  it('sends reactions, edits and deletes for everyone to the group, each with its group context', async () => {
    const [bob, carol] = world.phones as [PrimaryDevice, PrimaryDevice];
    const { group, to } = await makeGroup(world, [bob, carol]);
    const sent = await world.client.send(to, { text: 'original' });
    for (const phone of [bob, carol]) await next(phone, 'original');
    const self = world.alice.device.aci;
    await world.client.react(to, {
      emoji: '👍',
      targetAuthor: self,
      targetTimestamp: sent.timestamp,
    });
    for (const phone of [bob, carol]) {
      const e = await next(phone, 'the reaction');
      assert.equal(e.envelopeType, 'SenderKey');
      assert.equal(e.dataMessage.reaction?.emoji, '👍');
      assert.equal(Number(e.dataMessage.reaction?.targetSentTimestamp), sent.timestamp);
      assert.ok(masterKeyOf(e).equals(group.masterKey));
    }
    await world.client.edit(to, sent.timestamp, { text: 'edited' });
    for (const phone of [bob, carol]) {
      const e = await withTimeout(phone.waitForEditMessage(), 15_000, 'the edit');
      assert.equal(e.envelopeType, 'SenderKey');
      assert.equal(Number(e.editMessage.targetSentTimestamp), sent.timestamp);
      assert.equal(e.editMessage.dataMessage?.body, 'edited');
      const key = e.editMessage.dataMessage?.groupV2?.masterKey;
      assert.ok(key && Buffer.from(key).equals(group.masterKey));
    }
    await world.client.deleteForEveryone(to, sent.timestamp);
    for (const phone of [bob, carol]) {
      const e = await next(phone, 'the delete');
      assert.equal(Number(e.dataMessage.delete?.targetSentTimestamp), sent.timestamp);
      assert.ok(masterKeyOf(e).equals(group.masterKey));
    }
    // Receipts name a sender, not a group; a group's timer is not set with a message.
    await assert.rejects(world.client.markRead(to, [sent.timestamp]), /not to a group/);
    await assert.rejects(
      world.client.send(to, { text: 'x', expiresInSeconds: 60 }),
      /group's settings/,
    );
    await assert.rejects(world.client.send('group:abc', { text: 'x' }), /is not a group/);
  });

  it("answers a member's retry request for a group message: resent 1:1 with its group context, and the key again next time", async () => {
    const [bob, carol] = world.phones as [PrimaryDevice, PrimaryDevice];
    const { group, to } = await makeGroup(world, [bob, carol]);
    const sent = await world.client.send(to, { text: 'lost on one device' });
    for (const phone of [bob, carol]) await next(phone, 'the group message');
    // Bob's app could not decrypt the sender-key message: his retry request names its timestamp.
    const request = DecryptionErrorMessage.forOriginal(
      new Uint8Array(64),
      CiphertextMessageType.SenderKey,
      sent.timestamp,
      world.client.account?.deviceId ?? 0,
    );
    const device = await ourDevice(world.sandbox, world.client);
    await bob.sendRaw(device, {
      content: { decryptionErrorMessage: Buffer.from(request.serialize()) },
      pniSignatureMessage: null,
      senderKeyDistributionMessage: null,
    } as never);
    const resent = await next(bob, 'the resent group message');
    assert.notEqual(resent.envelopeType, 'SenderKey', 'resent 1:1');
    assert.equal(resent.body, 'lost on one device');
    assert.equal(Number(resent.dataMessage.timestamp), sent.timestamp);
    assert.ok(masterKeyOf(resent).equals(group.masterKey), 'still shown in the group');
    assert.equal(carol.getMessageQueueSize(), 0, 'only the member who asked');
    // The next group message brings Bob's device our sender key again, and Carol's not.
    const puts = await countingPuts(world, () => world.client.send(to, { text: 'after' }));
    for (const phone of [bob, carol]) assert.equal((await next(phone, 'after')).body, 'after');
    assert.equal(puts.get(bob.device.aci), 1, 'the key again to Bob');
    assert.equal(puts.get(carol.device.aci), undefined, 'Carol still holds it');
  });

  it('sends an attachment and a long text to the group: every member gets the same pointers, bytes equal', async () => {
    const [bob, carol] = world.phones as [PrimaryDevice, PrimaryDevice];
    const { group, to } = await makeGroup(world, [bob, carol]);
    const bytes = crypto.randomBytes(70_000);
    const text = 'x'.repeat(2500);
    await world.client.send(to, {
      text,
      attachments: [{ data: bytes, contentType: 'application/pdf', fileName: 'report.pdf' }],
    });
    const keys = new Set<string>();
    for (const phone of [bob, carol]) {
      const e = await next(phone, 'the group attachment');
      assert.equal(e.envelopeType, 'SenderKey');
      assert.ok(masterKeyOf(e).equals(group.masterKey));
      const pointers = e.dataMessage.attachments ?? [];
      const long = pointers.find((p) => p.contentType === 'text/x-signal-plain');
      const pdf = pointers.find((p) => p.contentType === 'application/pdf');
      assert.ok(long && pdf, 'a long-text and a PDF pointer');
      assert.equal(pdf.fileName, 'report.pdf');
      assert.ok(decryptReceived(world.sandbox, pdf).equals(bytes));
      assert.equal(decryptReceived(world.sandbox, long).toString('utf8'), text);
      keys.add(String(pdf.attachmentIdentifier?.cdnKey));
    }
    assert.equal(keys.size, 1, 'uploaded once, the same pointer for every member');
  });
});

describe('integration: sending to a group the client knows from its phone (group directory)', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  afterEach(async () => {
    await sandbox?.close();
  });

  it('lists the group after linking, fetches its state, and reaches both members with one sender-key message', async () => {
    sandbox = await startSandbox();
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const carol = await sandbox.createPrimary({ profileName: 'Carol' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob, carol] });
    const group = await alice.createGroup({ title: 'On call', members: [alice, bob, carol] });
    await alice.setStorageState(StorageState.getEmpty().addGroup(group, { whitelisted: true }));
    const { client } = await linkClient(sandbox, alice);
    const groups = await client.groups({ refresh: true });
    assert.deepEqual(
      groups.map((g) => [g.id, g.title]),
      [[group.id, 'On call']],
    );
    const result = await client.send(`group:${group.id}`, { text: 'paging on call' });
    for (const phone of [bob, carol]) {
      const entry = await next(phone, 'the page');
      assert.equal(entry.envelopeType, 'SenderKey');
      assert.equal(entry.body, 'paging on call');
      assert.ok(masterKeyOf(entry).equals(group.masterKey));
    }
    // The endorsements came with the fetched state: the token authorized the one request.
    assert.deepEqual(
      sandbox.multiRecipient.map((r) => [r.status, r.auth]),
      [[200, 'group-send-token']],
    );
    assert.equal(result.recipients?.length, 2);
    assert.deepEqual(sandbox.conformance.firedRules, []);
  });
});
