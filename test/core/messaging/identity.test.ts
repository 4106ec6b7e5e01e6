import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { IdentityKeyPair, ProtocolAddress, processPreKeyBundle } from '@signalapp/libsignal-client';
import { IdentityChangedError } from '../../../core/errors';
import { mapEncryptError } from '../../../core/messaging/sender';
import { SignalStore } from '../../../core/store';
import { makeAccount, publishKeys, tempDir } from '../store/helpers';

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

  it('block: a new safety number fails with IDENTITY_CHANGED until approved, then works', async () => {
    const { alice, bobAci, build, changes, newKey } = await setup('block');
    const err = await build().then(
      () => null,
      (e: unknown) => mapEncryptError(e, bobAci),
    );
    assert.ok(err instanceof IdentityChangedError, `got ${String(err)}`);
    assert.equal(err.code, 'IDENTITY_CHANGED');
    assert.match(err.message, /safety number/);
    assert.deepEqual(changes, [], 'libsignal refused before saving');
    // The receive side sees the new key first (a message from Bob): saved as untrusted, reported.
    // Here, approval is the user's decision through the engine call:
    const ids = alice.protocol('aci').identities;
    await ids.saveIdentity(ProtocolAddress.new(bobAci, 1), newKey());
    assert.deepEqual(changes, [bobAci]);
    assert.equal(alice.identityTrustOf(bobAci), 'untrusted-changed');
    assert.equal(alice.approveIdentity(bobAci), true);
    assert.equal(alice.identityTrustOf(bobAci), 'trusted');
    await build(); // sends work again
  });

  it('accept: a new safety number is accepted, saved and reported', async () => {
    const { alice, bobAci, build, changes } = await setup('accept');
    await build();
    assert.deepEqual(changes, [bobAci]);
    assert.equal(alice.identityTrustOf(bobAci), 'trusted');
  });
});
