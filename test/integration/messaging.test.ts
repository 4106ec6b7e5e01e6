import assert from 'node:assert/strict';
import {
  KEMPublicKey,
  PreKeyBundle,
  ProtocolAddress,
  PublicKey,
  processPreKeyBundle,
} from '@signalapp/libsignal-client';
import { getPreKeyBundles } from '../../core/api';
import type { SignalClient } from '../../core/client';
import type { IncomingEvent, MessageEvent } from '../../core/types';
import {
  captureLogger,
  linkClient,
  startSandbox,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
  inspect,
} from './helpers';
import { introduce, reinstallPhone } from '../harness/mock-phone';

function nextMessage(
  client: SignalClient,
  predicate: (e: MessageEvent) => boolean = () => true,
): Promise<MessageEvent> {
  return new Promise((resolve) => {
    const on = (ev: IncomingEvent) => {
      if (ev.type === 'message' && predicate(ev)) {
        client.off('event', on);
        resolve(ev);
      }
    };
    client.on('event', on);
  });
}

/** Counts the key fetches the client's sender makes (its network calls, by kind). */
function spyOnSender(client: SignalClient): { bundleFetches: string[]; puts: string[] } {
  const api = inspect(client).senderApi();
  assert.ok(api, 'a connected client');
  const seen = { bundleFetches: [] as string[], puts: [] as string[] };
  const get = api.getPreKeyBundles.bind(api);
  const put = api.sendMessages.bind(api);
  api.getPreKeyBundles = (sid, device, accessKey) => {
    seen.bundleFetches.push(`${sid}.${device}`);
    return get(sid, device, accessKey);
  };
  api.sendMessages = (sid, body, accessKey) => {
    seen.puts.push(sid);
    return put(sid, body, accessKey);
  };
  return seen;
}

describe('integration: 1:1 messages with mock phones', function () {
  this.timeout(90_000);
  let sandbox: Sandbox;
  let alice: PrimaryDevice;
  let bob: PrimaryDevice;
  let client: SignalClient;

  beforeEach(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    ({ client } = await linkClient(sandbox, alice));
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('sends to Bob, and Alice (our own phone) gets the sync transcript', async () => {
    const result = await client.send(bob.device.aci, { text: 'hello bob' });
    assert.equal(result.serviceId, bob.device.aci);
    assert.deepEqual(result.devices, [1]);
    const got = await withTimeout(bob.waitForMessage(), 10_000, 'bob.waitForMessage');
    assert.equal(got.body, 'hello bob');
    assert.equal(got.source.aci, alice.device.aci);
    const sync = await withTimeout(
      alice.waitForSyncMessage((e) => Boolean(e.syncMessage.content?.sent)),
      10_000,
      'sync',
    );
    assert.equal(sync.syncMessage.content?.sent?.message?.body, 'hello bob');
    assert.equal(Number(sync.syncMessage.content?.sent?.timestamp), result.timestamp);
    assert.ok(
      inspect(client).store()?.sent.find(bob.device.aci, result.timestamp),
      'logged for retries',
    );
  });

  it('receives from Bob unsealed and sealed, learns his profile key, then sends to him sealed', async () => {
    const device = await introduce(sandbox, client, bob);
    const first = nextMessage(client);
    await bob.sendText(device, 'unsealed hi', { withProfileKey: true });
    const ev1 = await withTimeout(first, 10_000, 'unsealed message');
    assert.equal(ev1.body, 'unsealed hi');
    assert.equal(ev1.sealed, false);
    assert.equal(ev1.from.aci, bob.device.aci);
    const second = nextMessage(client);
    await bob.sendText(device, 'sealed hi', { sealed: true });
    const ev2 = await withTimeout(second, 10_000, 'sealed message');
    assert.equal(ev2.body, 'sealed hi');
    assert.equal(ev2.sealed, true);
    assert.equal(ev2.from.aci, bob.device.aci);
    assert.equal(ev2.from.number, bob.device.number, 'the sender certificate names the number');
    // The profile key Bob shared makes our next send sealed.
    const reply = await client.send(bob.device.aci, { text: 'sealed reply' });
    assert.equal(reply.sealed, true);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, 'sealed reply');
  });

  it('a new contact (Carol) reaches us through our one-time prekeys, and we answer her', async () => {
    const carol = await sandbox.createPrimary({ profileName: 'Carol' });
    const device = await introduce(sandbox, client, carol);
    const got = nextMessage(client, (e) => e.from.aci === carol.device.aci);
    await carol.sendText(device, 'hi, I am Carol');
    assert.equal((await withTimeout(got, 10_000, 'carol')).body, 'hi, I am Carol');
    await client.send(carol.device.aci, { text: 'hello Carol' });
    assert.equal(
      (await withTimeout(carol.waitForMessage(), 10_000, 'carol receives')).body,
      'hello Carol',
    );
  });

  it('recovers from 409 (a device was added) and 410 (a device re-registered)', async () => {
    await client.send(bob.device.aci, { text: 'before' });
    await withTimeout(bob.waitForMessage(), 10_000, 'before');
    // 409: Bob links a second device the client does not know about.
    const bob2 = await sandbox.server.createSecondaryDevice(bob);
    const r = await client.send(bob.device.aci, { text: 'after adding a device' });
    assert.deepEqual(r.devices, [1, bob2.deviceId]);
    assert.equal(
      (await withTimeout(bob.waitForMessage(), 10_000, 'after 409')).body,
      'after adding a device',
    );
    // 410: our session with device 1 names a registration id the server no longer has.
    const store = inspect(client).store();
    assert.ok(store);
    const address = ProtocolAddress.new(bob.device.aci, 1);
    const good = await store.protocol('aci').sessions.getSession(address);
    assert.ok(good);
    // Replace the session by one built for a different registration id (as after a reinstall).
    const chat = inspect(client).chat();
    assert.ok(chat);
    const bundle = await getPreKeyBundles(chat, bob.device.aci, 1);
    const d = bundle.devices[0];
    assert.ok(d);
    store.deleteSession(bob.device.aci, 1);
    await processPreKeyBundle(
      PreKeyBundle.new(
        ((d.registrationId + 1) % 16383) + 1,
        1,
        d.preKey?.keyId ?? null,
        d.preKey ? PublicKey.deserialize(new Uint8Array(d.preKey.publicKey)) : null,
        d.signedPreKey.keyId,
        PublicKey.deserialize(new Uint8Array(d.signedPreKey.publicKey)),
        new Uint8Array(d.signedPreKey.signature),
        PublicKey.deserialize(new Uint8Array(bundle.identityKey)),
        d.pqPreKey.keyId,
        KEMPublicKey.deserialize(new Uint8Array(d.pqPreKey.publicKey)),
        new Uint8Array(d.pqPreKey.signature),
      ),
      address,
      ProtocolAddress.new(client.account?.aci ?? '', client.account?.deviceId ?? 0),
      store.protocol('aci').sessions,
      store.protocol('aci').identities,
    );
    const r2 = await client.send(bob.device.aci, { text: 'after 410' });
    assert.deepEqual(r2.devices, [1, bob2.deviceId]);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'after 410')).body, 'after 410');
  });

  it('maps 404 to NOT_ON_SIGNAL and 428 to CHALLENGE_REQUIRED with the token', async () => {
    const dave = await sandbox.createPrimary({ profileName: 'Dave' });
    sandbox.server.unregister(dave);
    await assert.rejects(
      client.send(dave.device.aci, { text: 'hi' }),
      (e: unknown) => (e as { code?: string }).code === 'NOT_ON_SIGNAL',
    );
    sandbox.server.rateLimit({ source: alice.device.aci, target: bob.device.aci });
    await assert.rejects(client.send(bob.device.aci, { text: 'hi' }), (e: unknown) => {
      const err = e as { code?: string; token?: string };
      return err.code === 'CHALLENGE_REQUIRED' && err.token === 'token';
    });
  });

  it('an established recipient who unregistered: NOT_ON_SIGNAL from the PUT, no key fetch', async () => {
    await client.send(bob.device.aci, { text: 'while registered' });
    await withTimeout(bob.waitForMessage(), 10_000, 'first');
    const spy = spyOnSender(client);
    sandbox.server.unregister(bob);
    await assert.rejects(client.send(bob.device.aci, { text: 'after' }), (e: unknown) => {
      const err = e as { code?: string; recipient?: string };
      return err.code === 'NOT_ON_SIGNAL' && err.recipient === bob.device.aci;
    });
    assert.deepEqual(spy.bundleFetches, [], 'the session existed: only the PUT answered');
    assert.deepEqual(spy.puts, [bob.device.aci]);
  });

  it("sends to Bob's PNI: service id, and he receives it on his PNI identity", async () => {
    const pni = bob.device.pni;
    assert.ok(pni);
    const to = pni.startsWith('PNI:') ? pni : `PNI:${pni}`;
    const result = await client.send(to, { text: 'to your number' });
    assert.equal(result.serviceId, to);
    assert.equal(result.sealed, false);
    const got = await withTimeout(bob.waitForMessage(), 10_000, 'bob on PNI');
    assert.equal(got.body, 'to your number');
    assert.equal(String(got.serviceIdKind), 'PNI');
    assert.ok(inspect(client).store()?.sent.find(to, result.timestamp), 'logged under the PNI');
  });

  it('block: Bob reinstalls and we send first: IDENTITY_CHANGED, one blocked identity-change event, approve, then he gets it', async () => {
    const lines: string[] = [];
    const { client: guarded } = await linkClient(sandbox, alice, {
      identityTrust: 'block',
      logger: captureLogger(lines),
    });
    const events: IncomingEvent[] = [];
    guarded.on('event', (ev) => events.push(ev));
    // A second listener with a bug: logged by the client, not an uncaught exception.
    guarded.on('event', (ev) => {
      if (ev.type === 'identity-change') throw new Error('listener bug');
    });
    await guarded.send(bob.device.aci, { text: 'before' });
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'before')).body, 'before');
    assert.equal(guarded.approveIdentity(bob.device.aci), false, 'nothing to approve yet');
    await reinstallPhone(bob);
    const blocked = (e: unknown) => {
      const err = e as { code?: string; serviceId?: string; message?: string };
      return (
        err.code === 'IDENTITY_CHANGED' &&
        err.serviceId === bob.device.aci &&
        Boolean(err.message?.includes(bob.device.aci))
      );
    };
    await assert.rejects(guarded.send(bob.device.aci, { text: 'unapproved' }), blocked);
    await assert.rejects(guarded.send(bob.device.aci, { text: 'unapproved again' }), blocked);
    await new Promise((r) => setImmediate(r));
    const changes = events.filter((e) => e.type === 'identity-change');
    assert.equal(changes.length, 1, JSON.stringify(changes));
    assert.deepEqual(
      changes.map((e) => e.type === 'identity-change' && [e.serviceId, e.blocked]),
      [[bob.device.aci, true]],
    );
    assert.ok(
      lines.some((l) => l.startsWith('error identity-change event listener threw')),
      lines.join('\n'),
    );
    assert.equal(guarded.approveIdentity(bob.device.aci), true);
    const result = await guarded.send(bob.device.aci, { text: 'approved' });
    assert.deepEqual(result.devices, [1]);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'approved')).body, 'approved');
  });
});
