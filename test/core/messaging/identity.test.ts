import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { IdentityKeyPair, ProtocolAddress, processPreKeyBundle } from '@signalapp/libsignal-client';
import { IdentityChangedError } from '../../../core/errors';
import { StaleDevices } from '../../../core/api';
import { mapEncryptError } from '../../../core/messaging/sessions';
import { SignalStore } from '../../../core/store';
import { makeAccount, publishKeys, tempDir } from '../store/helpers';
import { makePair, type Pair } from './fake-api';

/** Bob reinstalls: same ACI, new identity key and prekeys. */
function reinstall(bob: SignalStore): void {
  bob.account.update({ aciIdentityKeyPair: IdentityKeyPair.generate().serialize() });
  bob.accountChanged();
}

describe('messaging: identity changes follow the trust policy', () => {
  let dir: string;
  const stores: SignalStore[] = [];
  beforeEach(() => (dir = tempDir()));
  afterEach(() => {
    for (const s of stores.splice(0)) s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function setup(policy: 'accept' | 'block') {
    const changes: string[] = [];
    const alice = makeAccount(path.join(dir, `alice-${policy}.db`), {
      identityTrust: policy,
      onIdentityChange: (s) => changes.push(s),
    });
    const bob = makeAccount(path.join(dir, `bob-${policy}.db`));
    stores.push(alice, bob);
    const a = alice.protocol('aci');
    const bobAci = bob.requireAccount().aci;
    const bobAddress = ProtocolAddress.new(bobAci, 1);
    const local = ProtocolAddress.new(alice.requireAccount().aci, 1);
    await processPreKeyBundle(publishKeys(bob).bundle, bobAddress, local, a.sessions, a.identities);
    reinstall(bob);
    const build = () =>
      processPreKeyBundle(publishKeys(bob).bundle, bobAddress, local, a.sessions, a.identities);
    const newKey = () =>
      IdentityKeyPair.deserialize(new Uint8Array(bob.requireAccount().aciIdentityKeyPair))
        .publicKey;
    return { alice, bobAci, build, changes, newKey };
  }

  it('libsignal alone refuses a changed identity under block before saving it (why the sender records it)', async () => {
    const { alice, bobAci, build, changes } = await setup('block');
    const err = await build().then(
      () => null,
      (e: unknown) => mapEncryptError(e, bobAci),
    );
    assert.ok(err instanceof IdentityChangedError, `got ${String(err)}`);
    assert.match(err.message, /safety number/);
    assert.deepEqual(changes, [], 'nothing saved, nothing reported');
    assert.equal(alice.identityTrustOf(bobAci), 'trusted', 'still the old key');
  });

  it('accept: a new safety number is accepted, saved and reported', async () => {
    const { alice, bobAci, build, changes } = await setup('accept');
    await build();
    assert.deepEqual(changes, [bobAci]);
    assert.equal(alice.identityTrustOf(bobAci), 'trusted');
  });
});

describe('messaging: a contact reinstalls and we send first', () => {
  let dir: string;
  let pair: Pair | undefined;
  beforeEach(() => (dir = tempDir()));
  afterEach(() => {
    pair?.close();
    pair = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function setup(policy: 'accept' | 'block') {
    const changes: string[] = [];
    pair = makePair(dir, {
      alice: { identityTrust: policy, onIdentityChange: (s) => changes.push(s) },
    });
    return { p: pair, changes };
  }

  it('block: IDENTITY_CHANGED naming Bob, reported once, pending for approval; approved, the next send reaches him', async () => {
    const { p, changes } = setup('block');
    await p.sender.sendText(p.bobAci, 'before');
    p.reinstallBob();
    // Our session still names his old registration id: the server answers 410.
    p.api.putScript = [new StaleDevices([1])];
    const fail = () =>
      assert.rejects(p.sender.sendText(p.bobAci, 'after'), (e: unknown) => {
        assert.ok(e instanceof IdentityChangedError, `got ${String(e)}`);
        assert.equal(e.serviceId, p.bobAci);
        assert.ok(e.message.includes(p.bobAci));
        return true;
      });
    await fail();
    assert.deepEqual(changes, [p.bobAci], 'the change is reported');
    assert.equal(p.alice.identityTrustOf(p.bobAci), 'untrusted-changed');
    const pending = await p.alice
      .protocol('aci')
      .identities.getIdentity(ProtocolAddress.new(p.bobAci, 1));
    assert.deepEqual(pending?.serialize(), newKeyOf(p.bob).serialize(), 'the new key is pending');
    // Until approved, every send fails the same way, and the change is not reported again.
    await fail();
    assert.deepEqual(changes, [p.bobAci]);
    assert.equal(p.alice.approveIdentity(p.bobAci), true);
    const result = await p.sender.sendText(p.bobAci, 'approved');
    assert.deepEqual(result.devices, [1]);
    const put = p.api.puts.filter((x) => x.serviceId === p.bobAci).at(-1);
    const message = put?.messages[0];
    assert.ok(message);
    assert.equal((await p.decrypt(message)).dataMessage?.body, 'approved');
    assert.deepEqual(changes, [p.bobAci]);
  });

  it('accept: the send goes to the new identity and the change is reported once', async () => {
    const { p, changes } = setup('accept');
    await p.sender.sendText(p.bobAci, 'before');
    p.reinstallBob();
    p.api.putScript = [new StaleDevices([1])];
    await p.sender.sendText(p.bobAci, 'after');
    assert.deepEqual(changes, [p.bobAci]);
    assert.equal(p.alice.identityTrustOf(p.bobAci), 'trusted');
  });
});

describe('store: identity changes are reported after the commit that saves them', () => {
  let dir: string;
  const stores: SignalStore[] = [];
  beforeEach(() => (dir = tempDir()));
  afterEach(() => {
    for (const s of stores.splice(0)) s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function known(onIdentityChange: (s: string) => void) {
    const alice = makeAccount(path.join(dir, 'alice.db'), { onIdentityChange });
    stores.push(alice);
    const bob = 'b0b00000-0000-4000-8000-000000000001';
    const old = IdentityKeyPair.generate().publicKey;
    await alice.protocol('aci').identities.saveIdentity(ProtocolAddress.new(bob, 1), old);
    return { alice, bob, old, next: IdentityKeyPair.generate().publicKey };
  }

  it('a unit of work reports a changed key once, after commit, not while buffered', async () => {
    const changes: string[] = [];
    const { alice, bob, next } = await known((s) => changes.push(s));
    const uow = alice.unitOfWork('aci');
    // libsignal saves the key on every decrypt: twice here, and for a second device.
    await uow.identities.saveIdentity(ProtocolAddress.new(bob, 1), next);
    await uow.identities.saveIdentity(ProtocolAddress.new(bob, 1), next);
    await uow.identities.saveIdentity(ProtocolAddress.new(bob, 2), next);
    assert.deepEqual(changes, [], 'nothing reported before the commit');
    uow.commit();
    assert.deepEqual(changes, [bob]);
  });

  it('a discarded unit of work (a rolled-back decrypt) reports nothing and keeps the old key', async () => {
    const changes: string[] = [];
    const { alice, bob, old, next } = await known((s) => changes.push(s));
    const uow = alice.unitOfWork('aci');
    await uow.identities.saveIdentity(ProtocolAddress.new(bob, 1), next);
    uow.discard();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(changes, []);
    const stored = await alice.protocol('aci').identities.getIdentity(ProtocolAddress.new(bob, 1));
    assert.deepEqual(stored?.serialize(), old.serialize());
  });

  it('a listener that throws does not fail the commit that saved the key', async () => {
    const { alice, bob, next } = await known(() => {
      throw new Error('listener bug');
    });
    const uow = alice.unitOfWork('aci');
    await uow.identities.saveIdentity(ProtocolAddress.new(bob, 1), next);
    uow.commit();
    const stored = await alice.protocol('aci').identities.getIdentity(ProtocolAddress.new(bob, 1));
    assert.deepEqual(stored?.serialize(), next.serialize(), 'committed');
  });
});

function newKeyOf(store: SignalStore) {
  return IdentityKeyPair.deserialize(new Uint8Array(store.requireAccount().aciIdentityKeyPair))
    .publicKey;
}
