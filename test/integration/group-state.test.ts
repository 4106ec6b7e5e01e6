/**
 * Groups v2 state on the receive side (issue 16): a linked device lists its phone's groups from the
 * storage service (the group's master key in a GroupV2Record) and fetches each from the group server
 * (`GET /v2/groups` with a group auth credential's presentation); a group message carries the
 * group's id and title; a group change (a new timer) is refetched and emitted as `group-update`; a
 * group unknown at link time is fetched when its first message arrives.
 */
import assert from 'node:assert/strict';
import { ProtocolAddress } from '@signalapp/libsignal-client';
import { StorageState } from '@signalapp/mock-server';
import type { SignalClient } from '../../core/client';
import type { GroupUpdateEvent, IncomingEvent, MessageEvent } from '../../core/types';
import {
  ClientZkAuthOperations,
  ServerPublicParams,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import * as api from '../../core/api';
import { resolveEnvironment } from '../../core/config';
import { GroupNotFoundError, InvalidInputError, NotAMemberError } from '../../core/errors';
import { GroupCredentials } from '../../core/groups/credentials';
import { decryptGroup, groupKeys } from '../../core/groups/state';
import { storageRequester } from '../../core/net/https';
import { inspect, linkClient, startSandbox, type PrimaryDevice, type Sandbox } from './helpers';
import { introduce, type MockDevice } from '../harness/mock-phone';
import { until } from '../harness/wait';

interface World {
  sandbox: Sandbox;
  alice: PrimaryDevice;
  bob: PrimaryDevice;
  client: SignalClient;
  device: MockDevice;
  group: Awaited<ReturnType<PrimaryDevice['createGroup']>>;
  events: IncomingEvent[];
}

/** Alice's phone has the group "Alerts" (Alice, Bob) in its storage state before the client links. */
async function world(opts: { inStorage: boolean }): Promise<World> {
  const sandbox = await startSandbox();
  const bob = await sandbox.createPrimary({ profileName: 'Bob' });
  const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
  const group = await alice.createGroup({ title: 'Alerts', members: [alice, bob] });
  if (opts.inStorage) {
    await alice.setStorageState(StorageState.getEmpty().addGroup(group, { whitelisted: true }));
  }
  const { client } = await linkClient(sandbox, alice);
  const events: IncomingEvent[] = [];
  client.on('event', (ev: IncomingEvent) => events.push(ev));
  const device = await introduce(sandbox, client, bob);
  return { sandbox, alice, bob, client, device, group, events };
}

async function senderKeyText(w: World, text: string): Promise<MessageEvent> {
  const distributionId = await w.bob.sendSenderKey(w.device);
  const store = inspect(w.client).store();
  assert.ok(store);
  await until(
    async () =>
      (await store
        .protocol('aci')
        .senderKeys.getSenderKey(
          ProtocolAddress.new(w.bob.device.aci, w.bob.device.deviceId),
          distributionId,
        )) !== null,
    10_000,
    'sender key stored',
  );
  await w.bob.sendText(w.device, text, { group: w.group, sealed: true, distributionId });
  await until(
    () => w.events.some((e) => e.type === 'message' && e.body === text),
    10_000,
    `the message "${text}"`,
  );
  return w.events.find((e) => e.type === 'message' && e.body === text) as MessageEvent;
}

describe('integration: group state (list, fetch, updates)', function () {
  this.timeout(90_000);
  let w: World | undefined;
  afterEach(async () => {
    const fired = w?.sandbox.conformance.firedRules ?? [];
    await w?.sandbox.close();
    w = undefined;
    assert.deepEqual(fired, [], 'the strict sandbox refused nothing');
  });

  it("lists the phone's group from the storage service after linking, with title, members and revision", async () => {
    w = await world({ inStorage: true });
    const client = w.client;
    await until(async () => (await client.groups()).length === 1, 20_000, 'the group listed');
    const [info] = await client.groups();
    assert.ok(info);
    assert.equal(info.id, w.group.id);
    assert.equal(info.title, 'Alerts');
    assert.equal(info.revision, 0);
    assert.equal(info.timerSeconds, 0);
    assert.deepEqual(
      [...info.members].sort(),
      [w.alice.device.aci, w.bob.device.aci].map((a) => a.toLowerCase()).sort(),
    );
    // The port the sender uses: from the store, with the members' profile keys and endorsements.
    const record = await client.groupDirectory().get(w.group.id);
    assert.deepEqual(Buffer.from(record.masterKey), Buffer.from(w.group.masterKey));
    const bob = record.members.find((m) => m.aci === w?.bob.device.aci.toLowerCase());
    assert.ok(bob?.profileKey, "Bob's profile key from the group state");
    assert.deepEqual(
      Buffer.from(bob.profileKey),
      Buffer.from(w.bob.profileKey.serialize()),
      "Bob's profile key as his phone has it",
    );
    assert.ok(record.endorsements, 'the send endorsements of a member');
    assert.ok(record.endorsements.expiration > Date.now(), 'endorsements not yet expired');
    // Bob's contact gets his profile key (sealed sender, profile names).
    const contact = inspect(client).store()?.contacts.findByServiceId(w.bob.device.aci);
    assert.ok(contact?.profileKey);
    // A change nobody announced: the stored state stays until a caller asks for a newer revision.
    await w.bob.modifyGroupDisappearingMessageTimer(w.group, 30, { sendUpdateTo: [] } as never);
    assert.equal((await client.groupDirectory().get(w.group.id)).revision, 0, 'from the store');
    const newer = await client.groupDirectory().get(w.group.id, 1);
    assert.equal(newer.revision, 1, 'fetched: the stored one was older than asked');
    assert.equal(newer.timerSeconds, 30);
    info.revision = 1;
    info.timerSeconds = 30;
    // refresh: true reads the storage again and refetches: the same list.
    const refreshed = await client.groups({ refresh: true });
    assert.deepEqual(refreshed, [info]);
  });

  it('a sender-key group message from a member arrives with the group id and title', async () => {
    w = await world({ inStorage: true });
    const client = w.client;
    await until(async () => (await client.groups()).length === 1, 20_000, 'the group listed');
    const ev = await senderKeyText(w, 'hi group');
    assert.equal(ev.groupId, w.group.id);
    assert.deepEqual(ev.group, { id: w.group.id, title: 'Alerts' });
  });

  it('a timer change by a member is refetched: a group-update event and the stored timer', async () => {
    w = await world({ inStorage: true });
    const client = w.client;
    await until(async () => (await client.groups()).length === 1, 20_000, 'the group listed');
    const updated = await w.bob.modifyGroupDisappearingMessageTimer(w.group, 3600, {
      sendUpdateTo: [{ device: w.device }],
    } as never);
    await until(
      () => w?.events.some((e) => e.type === 'group-update') ?? false,
      20_000,
      'the group-update event',
    );
    const ev = w.events.find((e) => e.type === 'group-update') as GroupUpdateEvent;
    assert.equal(ev.groupId, w.group.id);
    assert.deepEqual(ev.group, { id: w.group.id, title: 'Alerts' });
    assert.equal(ev.revision, updated.revision);
    assert.equal(ev.revision, 1);
    assert.equal(ev.previousRevision, 0);
    assert.equal(ev.timerSeconds, 3600);
    assert.equal(ev.title, undefined, 'the title did not change');
    assert.equal(ev.membersAdded, undefined);
    assert.equal(ev.from.aci, w.bob.device.aci);
    const [info] = await client.groups();
    assert.equal(info?.revision, 1);
    assert.equal(info?.timerSeconds, 3600);
    const store = inspect(client).store();
    assert.equal(store?.conversations.timerOf(`group:${w.group.id}`).seconds, 3600);
  });

  it("the phone's own change arrives as a sync transcript: refetched too, group-update from ourselves", async () => {
    w = await world({ inStorage: true });
    const client = w.client;
    await until(async () => (await client.groups()).length === 1, 20_000, 'the group listed');
    // Alice's phone changes the timer and tells her own devices (a SyncMessage.sent transcript).
    await w.alice.modifyGroupDisappearingMessageTimer(w.group, 60, {
      sendUpdateTo: [{ device: w.device }],
    } as never);
    await until(
      () => w?.events.some((e) => e.type === 'group-update') ?? false,
      20_000,
      'the group-update event',
    );
    const ev = w.events.find((e) => e.type === 'group-update') as GroupUpdateEvent;
    assert.equal(ev.timerSeconds, 60);
    assert.equal(ev.from.aci, w.alice.device.aci);
    assert.equal((await client.groups())[0]?.timerSeconds, 60);
  });

  it('the group log (GET /v2/groups/logs/<from>, Cached-Send-Endorsements) lists the changes since a revision', async () => {
    w = await world({ inStorage: false });
    await w.bob.modifyGroupDisappearingMessageTimer(w.group, 120, { sendUpdateTo: [] } as never);
    const env = resolveEnvironment(w.sandbox.environment);
    const chat = inspect(w.client).chat();
    const account = w.client.account;
    assert.ok(chat && account && env.serverPublicParams);
    const serverParams = new ServerPublicParams(
      new Uint8Array(Buffer.from(env.serverPublicParams, 'base64')),
    );
    const credentials = new GroupCredentials({
      serverParams,
      aci: account.aci,
      pni: account.pni,
      fetch: (start, end) => api.getGroupCredentials(chat, start, end),
      now: Date.now,
    });
    const keys = groupKeys(w.group.masterKey);
    const presentation = new ClientZkAuthOperations(
      serverParams,
    ).createAuthCredentialWithPniPresentation(keys.secretParams, await credentials.today());
    const auth = { publicParams: keys.publicParams, presentation: presentation.serialize() };
    const storage = storageRequester(env);
    const log = await api.getGroupLogs(storage, keys.id, auth, 0, 0);
    const versions = (log.groupChanges ?? []).map((c) => c.groupState?.version ?? 0);
    assert.deepEqual(versions, [0, 1]);
    const last = decryptGroup(keys, log.groupChanges.at(-1)?.groupState ?? {});
    assert.equal(last.timerSeconds, 120);
    assert.ok(log.groupSendEndorsementResponse.length > 0, 'endorsements for a member without any');
    // Not our group: the server refuses a presentation for another group's params (the mock says
    // 403 for a bad presentation as for a non-member; either way we are not in it).
    const stranger = groupKeys(new Uint8Array(32).fill(3));
    await assert.rejects(
      api.getGroup(storage, stranger.id, { ...auth, publicParams: stranger.publicParams }),
      (e: unknown) => e instanceof NotAMemberError && e.groupId === stranger.id,
    );
  });

  it('the phone says its storage changed (fetchLatest STORAGE_MANIFEST): the new group is listed', async () => {
    w = await world({ inStorage: false });
    const client = w.client;
    await client.groupDirectory().idle();
    assert.deepEqual(await client.groups(), []);
    await w.alice.setStorageState(StorageState.getEmpty().addGroup(w.group, { whitelisted: true }));
    await w.alice.sendFetchStorage({ timestamp: Date.now() });
    await until(async () => (await client.groups()).length === 1, 20_000, 'the group listed');
    assert.equal((await client.groups())[0]?.title, 'Alerts');
  });

  it('a group unknown at link time is fetched when its first message arrives', async () => {
    w = await world({ inStorage: false });
    const client = w.client;
    const directory = client.groupDirectory();
    await directory.idle();
    assert.deepEqual(await client.groups(), [], 'nothing in the storage service');
    await assert.rejects(directory.get(w.group.id), GroupNotFoundError);
    await assert.rejects(directory.get('not a group'), InvalidInputError);
    const ev = await senderKeyText(w, 'first');
    assert.equal(ev.groupId, w.group.id);
    assert.deepEqual(ev.group, { id: w.group.id }, 'no title yet: the state is fetched after');
    await until(async () => (await client.groups()).length === 1, 20_000, 'the group fetched');
    const [info] = await client.groups();
    assert.equal(info?.title, 'Alerts');
    assert.equal(
      w.events.filter((e) => e.type === 'group-update').length,
      0,
      'a group new to us without a change is no update',
    );
    const second = await senderKeyText(w, 'second');
    assert.deepEqual(second.group, { id: w.group.id, title: 'Alerts' });
  });
});
