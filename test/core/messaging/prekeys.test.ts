import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  IdentityKeyPair,
  PreKeyBundle,
  PreKeySignalMessage,
  ProtocolAddress,
  processPreKeyBundle,
  signalDecryptPreKey,
  signalEncrypt,
} from '@signalapp/libsignal-client';
import { silentLogger, type Logger } from '../../../core/log';
import type { IdentityKind, KeyUpload } from '../../../core/api';
import {
  PreKeyMaintenance,
  storePreKeyPorts,
  type PreKeyPorts,
} from '../../../core/messaging/prekeys';
import { KEY_GRACE_MS, type SignalStore } from '../../../core/store';
import { makeAccount, tempDir } from '../store/helpers';

const DAY = 24 * 60 * 60 * 1000;
const enc = (s: string) => new Uint8Array(Buffer.from(s));

function capturingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { ...silentLogger, warnings, warn: (msg: string) => void warnings.push(msg) };
}

/** A server that counts our one-time keys the way Signal's does: each upload replaces both lists. */
class FakeKeyServer {
  readonly puts: Array<{ kind: IdentityKind; keys: KeyUpload }> = [];
  readonly counts = new Map<IdentityKind, { count: number; pqCount: number }>();
  failNext = false;

  count(kind: IdentityKind): { count: number; pqCount: number } {
    return this.counts.get(kind) ?? { count: 0, pqCount: 0 };
  }

  async put(kind: IdentityKind, keys: KeyUpload): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('connection dropped');
    }
    this.puts.push({ kind, keys });
    const now = this.count(kind);
    this.counts.set(kind, {
      count: keys.preKeys ? keys.preKeys.length : now.count,
      pqCount: keys.pqPreKeys ? keys.pqPreKeys.length : now.pqCount,
    });
  }

  /** A peer fetched one bundle: one of each one-time key is gone from the server. */
  take(kind: IdentityKind, n: number): void {
    const c = this.count(kind);
    this.counts.set(kind, { count: c.count - n, pqCount: c.pqCount - n });
  }
}

function maintenanceFor(
  store: SignalStore,
  server: FakeKeyServer,
  clock: { now: number },
  extra: {
    threshold?: number;
    batchSize?: number;
    logger?: Logger;
    housekeeping?: () => void;
  } = {},
): PreKeyMaintenance {
  const ports = storePreKeyPorts({
    store,
    identityKey: (kind) => {
      const a = store.requireAccount();
      return IdentityKeyPair.deserialize(
        new Uint8Array(kind === 'aci' ? a.aciIdentityKeyPair : a.pniIdentityKeyPair),
      ).privateKey;
    },
    counts: async (kind) => server.count(kind),
    put: (kind, keys) => server.put(kind, keys),
    now: () => clock.now,
  });
  return new PreKeyMaintenance({
    ports,
    logger: extra.logger ?? silentLogger,
    now: () => clock.now,
    threshold: extra.threshold ?? 20,
    batchSize: extra.batchSize ?? 10,
    ...(extra.housekeeping ? { housekeeping: extra.housekeeping } : {}),
  });
}

/** The bundle a peer would fetch now: the newest signed and last-resort keys, no one-time key. */
async function currentBundle(store: SignalStore): Promise<PreKeyBundle> {
  const a = store.requireAccount();
  const identity = IdentityKeyPair.deserialize(new Uint8Array(a.aciIdentityKeyPair));
  const signedId = store.latestSignedPreKey('aci')?.keyId;
  assert.ok(signedId !== undefined);
  const row = store.db
    .prepare(
      'SELECT key_id FROM kyber_prekeys WHERE our_kind = ? AND last_resort = 1 ORDER BY created_at DESC, key_id DESC LIMIT 1',
    )
    .pluck()
    .get('aci') as number;
  const p = store.protocol('aci');
  const signed = await p.signedPreKeys.getSignedPreKey(signedId);
  const kyber = await p.kyberPreKeys.getKyberPreKey(row);
  return PreKeyBundle.new(
    a.aciRegistrationId,
    a.deviceId,
    null,
    null,
    signedId,
    signed.publicKey(),
    signed.signature(),
    identity.publicKey,
    row,
    kyber.publicKey(),
    kyber.signature(),
  );
}

/** A bundle with one of our one-time keys (EC id and Kyber id as the server would hand them out). */
async function oneTimeBundle(
  store: SignalStore,
  preKeyId: number,
  kyberId: number,
): Promise<PreKeyBundle> {
  const a = store.requireAccount();
  const identity = IdentityKeyPair.deserialize(new Uint8Array(a.aciIdentityKeyPair));
  const signedId = store.latestSignedPreKey('aci')?.keyId as number;
  const p = store.protocol('aci');
  const signed = await p.signedPreKeys.getSignedPreKey(signedId);
  const pre = await p.preKeys.getPreKey(preKeyId);
  const kyber = await p.kyberPreKeys.getKyberPreKey(kyberId);
  return PreKeyBundle.new(
    a.aciRegistrationId,
    a.deviceId,
    preKeyId,
    pre.publicKey(),
    signedId,
    signed.publicKey(),
    signed.signature(),
    identity.publicKey,
    kyberId,
    kyber.publicKey(),
    kyber.signature(),
  );
}

const address = (s: SignalStore) =>
  ProtocolAddress.new(s.requireAccount().aci, s.requireAccount().deviceId);

/** Alice encrypts a first (PreKey) message to Bob from `bundle`; returns its bytes. */
async function firstMessage(
  alice: SignalStore,
  bob: SignalStore,
  bundle: PreKeyBundle,
  text: string,
): Promise<Uint8Array<ArrayBuffer>> {
  const a = alice.protocol('aci');
  await processPreKeyBundle(bundle, address(bob), address(alice), a.sessions, a.identities);
  const ct = await signalEncrypt(enc(text), address(bob), address(alice), a.sessions, a.identities);
  alice.deleteSession(bob.requireAccount().aci, bob.requireAccount().deviceId);
  return ct.serialize();
}

async function decrypt(
  bob: SignalStore,
  alice: SignalStore,
  bytes: Uint8Array<ArrayBuffer>,
): Promise<string> {
  const q = bob.protocol('aci');
  const plain = await signalDecryptPreKey(
    PreKeySignalMessage.deserialize(bytes),
    address(alice),
    address(bob),
    q.sessions,
    q.identities,
    q.preKeys,
    q.signedPreKeys,
    q.kyberPreKeys,
  );
  return Buffer.from(plain).toString();
}

const oneTimeIds = (store: SignalStore, table: 'prekeys' | 'kyber_prekeys'): number[] =>
  store.db
    .prepare(
      `SELECT key_id FROM ${table} WHERE our_kind = 'aci'${table === 'kyber_prekeys' ? ' AND last_resort = 0' : ''} ORDER BY key_id`,
    )
    .pluck()
    .all() as number[];

describe('messaging: prekey maintenance', () => {
  let dir: string;
  const open: SignalStore[] = [];
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    for (const s of open.splice(0)) s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const track = (s: SignalStore) => (open.push(s), s);

  describe('scheduling', () => {
    function countingPorts(gate?: Promise<void>) {
      const stats = { checks: 0, active: 0, maxActive: 0 };
      const ports: PreKeyPorts = {
        counts: async () => {
          stats.checks++;
          stats.active++;
          stats.maxActive = Math.max(stats.maxActive, stats.active);
          if (gate) await gate;
          stats.active--;
          return { count: 100, pqCount: 100 };
        },
        generateOneTime: () => ({}),
        signedPreKeyCreatedAt: () => Date.now(),
        generateRotation: () => ({}),
        upload: async () => {},
      };
      return { ports, stats };
    }

    const until = async (cond: () => boolean, what: string) => {
      const deadline = Date.now() + 2000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`${what}: not reached`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };

    it('checks after every (re)connect, not only the first', async () => {
      const { ports, stats } = countingPorts();
      const m = new PreKeyMaintenance({ ports, logger: silentLogger, intervalMs: 3_600_000 });
      m.start(); // first connect: one check per identity (ACI, PNI)
      await until(() => stats.checks === 2 && stats.active === 0, 'first check');
      m.start(); // a reconnect: the server may have handed out keys while we were away
      await until(() => stats.checks === 4 && stats.active === 0, 'check after the reconnect');
      m.start();
      await until(() => stats.checks === 6 && stats.active === 0, 'check after the next one');
      m.stop();
      m.start(); // stopped (unlinked): no more checks
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(stats.checks, 6);
    });

    it('keeps checking periodically between connects', async () => {
      const { ports, stats } = countingPorts();
      const m = new PreKeyMaintenance({ ports, logger: silentLogger, intervalMs: 15 });
      m.start();
      m.start();
      await until(() => stats.checks >= 8, 'periodic checks');
      m.stop();
      assert.equal(stats.maxActive, 1);
    });

    it('never runs two checks at once; a reconnect during a check gets one more check after it', async () => {
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const { ports, stats } = countingPorts(gate);
      const m = new PreKeyMaintenance({ ports, logger: silentLogger });
      m.start();
      m.start();
      m.start();
      const all = m.check();
      open();
      await all;
      assert.equal(stats.maxActive, 1);
      // The first check (2 identities) plus exactly one more for the starts made while it ran.
      assert.equal(stats.checks, 4);
      m.stop();
    });

    it('runs the store upkeep with each check and logs its failure without stopping the check', async () => {
      const { ports, stats } = countingPorts();
      let upkeep = 0;
      const logger = capturingLogger();
      const m = new PreKeyMaintenance({
        ports,
        logger,
        housekeeping: () => {
          upkeep++;
          if (upkeep === 2) throw new Error('disk full');
        },
      });
      await m.check();
      await m.check();
      await m.check();
      assert.equal(upkeep, 3);
      assert.equal(stats.checks, 6);
      assert.equal(logger.warnings.length, 1);
      assert.match(logger.warnings[0] ?? '', /upkeep failed/);
    });
  });

  describe('against a store', () => {
    it('rotates the signed prekey and Kyber last-resort key after two days, keeps the old ones for the grace period, then deletes them', async () => {
      const clock = { now: 1_700_000_000_000 };
      const bob = track(makeAccount(path.join(dir, 'bob.db'), { now: () => clock.now }));
      const alice = track(makeAccount(path.join(dir, 'alice.db')));
      const server = new FakeKeyServer();
      server.counts.set('aci', { count: 100, pqCount: 100 });
      server.counts.set('pni', { count: 100, pqCount: 100 });
      const m = maintenanceFor(bob, server, clock);

      await m.check(); // no signed prekey yet: the first check makes one
      const first = server.puts.find((p) => p.kind === 'aci')?.keys;
      assert.ok(first?.signedPreKey && first.pqLastResortPreKey);
      const oldSigned = first.signedPreKey.keyId;
      const oldKyber = first.pqLastResortPreKey.keyId;
      // A peer builds a first message on the keys of that day…
      const lateMessage = await firstMessage(alice, bob, await currentBundle(bob), 'built on old');

      server.puts.length = 0;
      clock.now += DAY;
      await m.check();
      assert.equal(server.puts.length, 0, 'nothing to do after one day');

      clock.now += DAY;
      await m.check();
      const rotation = server.puts.find((p) => p.kind === 'aci')?.keys;
      assert.ok(rotation?.signedPreKey && rotation.pqLastResortPreKey, 'PUT /v2/keys after 2 days');
      assert.equal(rotation.preKeys, undefined, 'counts were fine: no one-time keys with it');
      assert.notEqual(rotation.signedPreKey.keyId, oldSigned);
      assert.notEqual(rotation.pqLastResortPreKey.keyId, oldKyber);
      assert.ok(server.puts.some((p) => p.kind === 'pni' && p.keys.signedPreKey));
      assert.deepEqual(bob.latestSignedPreKey('aci'), {
        keyId: rotation.signedPreKey.keyId,
        createdAt: clock.now,
      });
      assert.equal(bob.countKeys('aci').kyberLastResort, 2, 'the new one is stored beside the old');

      // …and it arrives after the rotation: it still decrypts.
      clock.now += 10 * DAY;
      bob.prune();
      assert.equal(await decrypt(bob, alice, lateMessage), 'built on old');

      // Past the grace period the superseded keys go; the current ones stay.
      clock.now += KEY_GRACE_MS;
      await m.check(); // rotates again
      bob.prune();
      const p = bob.protocol('aci');
      await assert.rejects(p.signedPreKeys.getSignedPreKey(oldSigned), /not found/);
      await assert.rejects(p.kyberPreKeys.getKyberPreKey(oldKyber), /not found/);
      await p.signedPreKeys.getSignedPreKey(rotation.signedPreKey.keyId);
      assert.equal(bob.countKeys('aci').kyberLastResort, 2);
      assert.equal(
        bob.db.prepare('SELECT count(*) FROM kyber_used').pluck().get(),
        0,
        'the replay record of the deleted last-resort key went with it',
      );
    });

    it('retries a rotation whose upload failed at the next check, not two days later', async () => {
      const clock = { now: 1_700_000_000_000 };
      const bob = track(makeAccount(path.join(dir, 'bob.db'), { now: () => clock.now }));
      const server = new FakeKeyServer();
      server.counts.set('aci', { count: 100, pqCount: 100 });
      server.counts.set('pni', { count: 100, pqCount: 100 });
      const logger = capturingLogger();
      const m = maintenanceFor(bob, server, clock, { logger });
      server.failNext = true;
      await m.check();
      assert.equal(logger.warnings.length, 1, 'the failed upload is logged');
      assert.ok(!server.puts.some((p) => p.kind === 'aci'));
      clock.now += 60_000;
      await m.check();
      assert.ok(server.puts.some((p) => p.kind === 'aci' && p.keys.signedPreKey));
    });

    it('marks the one-time keys a refill replaced and deletes them after the grace period: the store stays bounded over many refills', async () => {
      const clock = { now: 1_700_000_000_000 };
      const bob = track(makeAccount(path.join(dir, 'bob.db'), { now: () => clock.now }));
      const alice = track(makeAccount(path.join(dir, 'alice.db')));
      const server = new FakeKeyServer();
      const m = maintenanceFor(bob, server, clock, {
        threshold: 5,
        batchSize: 10,
        housekeeping: () => bob.prune(),
      });
      await m.check();
      assert.equal(bob.countKeys('aci').preKeys, 10);
      const firstBatch = oneTimeIds(bob, 'prekeys');
      const firstKyber = oneTimeIds(bob, 'kyber_prekeys');
      // A peer fetched one of the first batch just before the next refill replaced it.
      const fetched = await oneTimeBundle(bob, firstBatch[0] as number, firstKyber[0] as number);
      const late = await firstMessage(alice, bob, fetched, 'from the old batch');

      for (let i = 0; i < 10; i++) {
        clock.now += 7 * DAY;
        server.take('aci', 6); // peers used keys: below the threshold
        await m.check();
        const counts = bob.countKeys('aci');
        // The current batch, and the batches replaced within the grace period (30 days: 5).
        assert.ok(counts.preKeys <= 10 * 6, `EC keys bounded (${counts.preKeys})`);
        assert.ok(counts.kyberOneTime <= 10 * 6, `Kyber keys bounded (${counts.kyberOneTime})`);
        if (i === 0) {
          // Replaced, not deleted yet: the message built on it still decrypts.
          assert.equal(await decrypt(bob, alice, late), 'from the old batch');
        }
      }
      assert.equal(server.puts.filter((p) => p.kind === 'aci').length, 11);
      // Without the clean-up all eleven batches would still be here (less the one key used).
      assert.ok(bob.countKeys('aci').preKeys <= 60);
      assert.deepEqual(
        firstBatch.filter((id) => oneTimeIds(bob, 'prekeys').includes(id)),
        [],
        'the first batch is gone',
      );
      // The batch the server holds now is all still here.
      const current = server.puts.filter((p) => p.kind === 'aci').at(-1)?.keys;
      const local = new Set(oneTimeIds(bob, 'prekeys'));
      assert.ok(current?.preKeys?.every((k) => local.has(k.keyId)));
    });

    it('keeps the one-time keys when the upload failed, and caps replaced keys when refills come quickly', async () => {
      const clock = { now: 1_700_000_000_000 };
      const bob = track(makeAccount(path.join(dir, 'bob.db'), { now: () => clock.now }));
      const server = new FakeKeyServer();
      const m = maintenanceFor(bob, server, clock, { threshold: 5, batchSize: 10 });
      await m.check();
      const before = oneTimeIds(bob, 'prekeys');
      server.take('aci', 6);
      server.failNext = true;
      await m.check();
      // The failed batch is stored (the server may have taken it) but nothing was marked replaced.
      const marked = bob.db
        .prepare(`SELECT count(*) FROM prekeys WHERE our_kind = 'aci' AND replaced_at IS NOT NULL`)
        .pluck()
        .get();
      assert.equal(marked, 0);
      assert.ok(before.every((id) => oneTimeIds(bob, 'prekeys').includes(id)));
      // Many refills within minutes (someone draining our keys): capped, not one batch more each.
      for (let i = 0; i < 6; i++) {
        clock.now += 60_000;
        server.take('aci', 6);
        await m.check();
      }
      assert.equal(bob.pruneKeys(KEY_GRACE_MS, 25) >= 0, true);
      assert.ok(bob.countKeys('aci').preKeys <= 10 + 25, `${bob.countKeys('aci').preKeys}`);
      assert.ok(bob.countKeys('aci').kyberOneTime <= 10 + 25);
    });
  });
});
