import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import {
  CiphertextMessageType,
  Direction,
  IdentityChange,
  IdentityKeyPair,
  PreKeySignalMessage,
  ProtocolAddress,
  SignalMessage,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from '@signalapp/libsignal-client';
import { SignalStore, MIGRATIONS, schemaVersion, openDatabase } from '../../../core/store';
import { silentLogger } from '../../../core/log';
import { makeAccount, publishKeys, tempDir } from './helpers';
import { generatePreKeys } from '../../../core/crypto/keys';

const enc = (s: string) => new Uint8Array(Buffer.from(s));
const dec = (b: Uint8Array) => Buffer.from(b).toString();

function addressOf(store: SignalStore): ProtocolAddress {
  const a = store.requireAccount();
  return ProtocolAddress.new(a.aci, a.deviceId);
}

async function send(from: SignalStore, to: SignalStore, text: string): Promise<string> {
  const p = from.protocol('aci');
  const ct = await signalEncrypt(
    enc(text),
    addressOf(to),
    addressOf(from),
    p.sessions,
    p.identities,
  );
  const q = to.protocol('aci');
  const bytes = ct.serialize();
  const plain =
    ct.type() === CiphertextMessageType.PreKey
      ? await signalDecryptPreKey(
          PreKeySignalMessage.deserialize(bytes),
          addressOf(from),
          addressOf(to),
          q.sessions,
          q.identities,
          q.preKeys,
          q.signedPreKeys,
          q.kyberPreKeys,
        )
      : await signalDecrypt(
          SignalMessage.deserialize(bytes),
          addressOf(from),
          addressOf(to),
          q.sessions,
          q.identities,
        );
  return dec(plain);
}

describe('store', () => {
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

  it('carries a real libsignal conversation across closing and reopening both databases', async () => {
    const aliceFile = path.join(dir, 'alice.db');
    const bobFile = path.join(dir, 'bob.db');
    let alice = track(makeAccount(aliceFile));
    let bob = track(makeAccount(bobFile));
    const published = publishKeys(bob);
    const a = alice.protocol('aci');
    await processPreKeyBundle(
      published.bundle,
      addressOf(bob),
      addressOf(alice),
      a.sessions,
      a.identities,
    );
    assert.equal(await send(alice, bob, 'hello bob'), 'hello bob');
    assert.equal(await send(bob, alice, 'hi alice'), 'hi alice');
    assert.equal(await send(alice, bob, 'second'), 'second');
    alice.close();
    bob.close();
    open.length = 0;
    alice = track(SignalStore.open(aliceFile));
    bob = track(SignalStore.open(bobFile));
    for (let i = 0; i < 3; i++) {
      assert.equal(await send(alice, bob, `after reopen ${i}`), `after reopen ${i}`);
      assert.equal(await send(bob, alice, `reply ${i}`), `reply ${i}`);
    }
    assert.deepEqual(alice.deviceIds(bob.requireAccount().aci), [1]);
  });

  it('throws when a prekey is missing and removes a consumed one-time prekey and Kyber key', async () => {
    const alice = track(makeAccount(path.join(dir, 'a.db')));
    const bob = track(makeAccount(path.join(dir, 'b.db')));
    const p = bob.protocol('aci');
    await assert.rejects(p.preKeys.getPreKey(4242), /one-time prekey 4242 not found/);
    await assert.rejects(p.signedPreKeys.getSignedPreKey(4242), /signed prekey 4242 not found/);
    await assert.rejects(p.kyberPreKeys.getKyberPreKey(4242), /Kyber prekey 4242 not found/);
    const published = publishKeys(bob);
    await p.preKeys.getPreKey(published.preKeyId);
    const a = alice.protocol('aci');
    await processPreKeyBundle(
      published.bundle,
      addressOf(bob),
      addressOf(alice),
      a.sessions,
      a.identities,
    );
    await send(alice, bob, 'consume');
    await assert.rejects(p.preKeys.getPreKey(published.preKeyId), /not found/);
    await assert.rejects(p.kyberPreKeys.getKyberPreKey(published.kyberId), /not found/);
    assert.deepEqual(bob.countKeys('aci'), { preKeys: 0, kyberOneTime: 0, kyberLastResort: 0 });
  });

  it('rejects a replayed PreKey message that used the last-resort Kyber key', async () => {
    const alice = track(makeAccount(path.join(dir, 'a.db')));
    const bob = track(makeAccount(path.join(dir, 'b.db')));
    const published = publishKeys(bob, { lastResortKyber: true, withPreKey: false });
    const a = alice.protocol('aci');
    await processPreKeyBundle(
      published.bundle,
      addressOf(bob),
      addressOf(alice),
      a.sessions,
      a.identities,
    );
    const ct = await signalEncrypt(
      enc('once'),
      addressOf(bob),
      addressOf(alice),
      a.sessions,
      a.identities,
    );
    const bytes = ct.serialize();
    const q = bob.protocol('aci');
    const decryptIt = () =>
      signalDecryptPreKey(
        PreKeySignalMessage.deserialize(bytes),
        addressOf(alice),
        addressOf(bob),
        q.sessions,
        q.identities,
        q.preKeys,
        q.signedPreKeys,
        q.kyberPreKeys,
      );
    assert.equal(dec(await decryptIt()), 'once');
    // The last-resort key stays for other senders…
    await q.kyberPreKeys.getKyberPreKey(published.kyberId);
    // …but the same base key may not use it again, even with the session gone.
    bob.deleteSession(alice.requireAccount().aci, 1);
    await assert.rejects(decryptIt(), /replayed use of last-resort Kyber prekey/);
  });

  it('saveIdentity reports new, unchanged and changed keys', async () => {
    const store = track(makeAccount(path.join(dir, 'a.db')));
    const ids = store.protocol('aci').identities;
    const peer = ProtocolAddress.new(randomUUID(), 1);
    const k1 = IdentityKeyPair.generate().publicKey;
    const k2 = IdentityKeyPair.generate().publicKey;
    assert.equal(await ids.saveIdentity(peer, k1), IdentityChange.NewOrUnchanged);
    assert.equal(await ids.saveIdentity(peer, k1), IdentityChange.NewOrUnchanged);
    assert.equal(await ids.saveIdentity(peer, k2), IdentityChange.ReplacedExisting);
    assert.ok((await ids.getIdentity(peer))?.equals(k2));
  });

  it('accept policy: a changed identity is trusted for sending and reported', async () => {
    const changed: string[] = [];
    const store = track(
      makeAccount(path.join(dir, 'a.db'), {
        identityTrust: 'accept',
        onIdentityChange: (s) => changed.push(s),
      }),
    );
    const ids = store.protocol('aci').identities;
    const peer = ProtocolAddress.new(randomUUID(), 1);
    const k1 = IdentityKeyPair.generate().publicKey;
    const k2 = IdentityKeyPair.generate().publicKey;
    await ids.saveIdentity(peer, k1);
    assert.equal(await ids.isTrustedIdentity(peer, k2, Direction.Sending), true);
    await ids.saveIdentity(peer, k2);
    assert.deepEqual(changed, [peer.name()]);
    assert.equal(await ids.isTrustedIdentity(peer, k2, Direction.Sending), true);
  });

  it('block policy: a changed identity blocks sending until approved; receiving stays trusted', async () => {
    const changed: string[] = [];
    const store = track(
      makeAccount(path.join(dir, 'a.db'), {
        identityTrust: 'block',
        onIdentityChange: (s) => changed.push(s),
      }),
    );
    const ids = store.protocol('aci').identities;
    const peer = ProtocolAddress.new(randomUUID(), 1);
    const k1 = IdentityKeyPair.generate().publicKey;
    const k2 = IdentityKeyPair.generate().publicKey;
    assert.equal(
      await ids.isTrustedIdentity(peer, k1, Direction.Sending),
      true,
      'first use is trusted',
    );
    await ids.saveIdentity(peer, k1);
    assert.equal(
      await ids.isTrustedIdentity(peer, k2, Direction.Sending),
      false,
      'an unseen new key is not',
    );
    assert.equal(await ids.isTrustedIdentity(peer, k2, Direction.Receiving), true);
    await ids.saveIdentity(peer, k2);
    assert.deepEqual(changed, [peer.name()]);
    assert.equal(store.identityTrustOf(peer.name()), 'untrusted-changed');
    assert.equal(
      await ids.isTrustedIdentity(peer, k2, Direction.Sending),
      false,
      'blocked until approved',
    );
    assert.equal(store.approveIdentity(peer.name()), true);
    assert.equal(await ids.isTrustedIdentity(peer, k2, Direction.Sending), true);
  });

  it('migrates a new file to the latest version and an older file forward, keeping its data', () => {
    const fresh = path.join(dir, 'fresh.db');
    track(SignalStore.open(fresh));
    const check = new Database(fresh, { readonly: true });
    assert.equal(schemaVersion(check), MIGRATIONS.length);
    check.close();

    const old = path.join(dir, 'old.db');
    const v1 = openDatabase(old, { targetVersion: 1 });
    assert.equal(schemaVersion(v1), 1);
    v1.prepare(
      `INSERT INTO received_log (sender, device, sent_at, server_guid, state, events, received_at) VALUES ('x', 1, 5, NULL, 'pending', '[]', 1)`,
    ).run();
    assert.equal(
      v1
        .prepare(`SELECT count(*) FROM sqlite_master WHERE name = 'received_log_pending'`)
        .pluck()
        .get(),
      0,
    );
    v1.close();
    const store = track(SignalStore.open(old));
    assert.equal(schemaVersion(store.db), MIGRATIONS.length);
    assert.equal(
      store.db
        .prepare(`SELECT count(*) FROM sqlite_master WHERE name = 'received_log_pending'`)
        .pluck()
        .get(),
      1,
    );
    assert.deepEqual(store.received.listPending(), [
      { sender: 'x', device: 1, timestamp: 5, events: [] },
    ]);
  });

  it('sync() makes a fully synced (FULL) commit and leaves the store at NORMAL', () => {
    const store = track(makeAccount(path.join(dir, 'sync.db')));
    const level = () => store.db.pragma('synchronous', { simple: true });
    assert.equal(level(), 1, 'NORMAL: commits survive a process crash, fsync at checkpoints');
    const mark = () => store.db.prepare('SELECT n FROM sync_mark').pluck().get() as number;
    // The marker write carries the fsync: it must happen between switching to FULL and back.
    const seen: string[] = [];
    const pragma = store.db.pragma.bind(store.db);
    store.db.pragma = ((source: string, options?: { simple?: boolean }) => {
      seen.push(`${source} @${mark()}`);
      return pragma(source, options);
    }) as typeof store.db.pragma;
    store.sync();
    assert.deepEqual(seen, ['synchronous = FULL @0', 'synchronous = NORMAL @1']);
    store.db.pragma = pragma;
    assert.equal(level(), 1);
    assert.throws(() => store.transaction(() => store.sync()), /inside a transaction/);
  });

  it('never hands out a prekey id again once its key was consumed or pruned', () => {
    const store = track(makeAccount(path.join(dir, 'ids.db')));
    const first = store.nextKeyIds('aci');
    const batch = generatePreKeys(first.preKey, 5);
    store.savePreKeys('aci', batch.records);
    const last = first.preKey + 4;
    assert.equal(store.nextKeyIds('aci').preKey, last + 1);
    // Every one-time key used up and gone: max(key_id) would fall back and repeat these ids.
    store.db.prepare('DELETE FROM prekeys').run();
    assert.equal(store.nextKeyIds('aci').preKey, last + 1);
    assert.equal(store.nextKeyIds('pni').preKey, first.preKey, 'each identity counts its own');
  });

  it('migration v4 starts the key-id counters after the keys already stored', () => {
    const file = path.join(dir, 'v3.db');
    const v3 = openDatabase(file, { targetVersion: 3 });
    v3.prepare(
      `INSERT INTO prekeys (our_kind, key_id, record, created_at) VALUES ('aci', 41, x'00', 1)`,
    ).run();
    v3.close();
    const store = track(SignalStore.open(file));
    assert.equal(store.nextKeyIds('aci').preKey, 42);
  });

  it('refuses a file from a newer schema instead of guessing', () => {
    const file = path.join(dir, 'future.db');
    const db = openDatabase(file);
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    assert.throws(() => SignalStore.open(file), /newer than this package knows/);
  });

  it('creates the database 0600 in a 0700 folder', () => {
    const file = path.join(dir, 'nested', 'acct.db');
    const store = track(makeAccount(file));
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
    store.contacts.upsert({ e164: '+15550000001', source: 'manual' });
    for (const f of [`${file}-wal`, `${file}-shm`]) {
      if (fs.existsSync(f))
        assert.equal(fs.statSync(f).mode & 0o077, 0, `${f} not readable by others`);
    }
  });

  it('unit of work: commit is atomic with its extra write; discard leaves the database untouched', async () => {
    const alice = track(makeAccount(path.join(dir, 'a.db')));
    const bob = track(makeAccount(path.join(dir, 'b.db')));
    const published = publishKeys(bob);
    const a = alice.protocol('aci');
    await processPreKeyBundle(
      published.bundle,
      addressOf(bob),
      addressOf(alice),
      a.sessions,
      a.identities,
    );
    const ct = await signalEncrypt(
      enc('x'),
      addressOf(bob),
      addressOf(alice),
      a.sessions,
      a.identities,
    );
    const aliceAci = alice.requireAccount().aci;
    const decryptWith = async () => {
      const uow = bob.unitOfWork('aci');
      const plain = await signalDecryptPreKey(
        PreKeySignalMessage.deserialize(ct.serialize()),
        addressOf(alice),
        addressOf(bob),
        uow.sessions,
        uow.identities,
        uow.preKeys,
        uow.signedPreKeys,
        uow.kyberPreKeys,
      );
      return { uow, plain };
    };
    // Discard: nothing written, the one-time keys are still there.
    const first = await decryptWith();
    assert.equal(dec(first.plain), 'x');
    first.uow.discard();
    assert.deepEqual(bob.deviceIds(aliceAci), []);
    assert.equal(bob.countKeys('aci').preKeys, 1);
    // A failing extra rolls the session write back too.
    const second = await decryptWith();
    assert.throws(
      () =>
        second.uow.commit(() => {
          bob.received.insertPending({ sender: aliceAci, device: 1, timestamp: 1 }, [], null);
          throw new Error('boom');
        }),
      /boom/,
    );
    assert.deepEqual(bob.deviceIds(aliceAci), []);
    assert.equal(bob.received.state({ sender: aliceAci, device: 1, timestamp: 1 }), 'none');
    // A successful commit writes the session, consumes the keys and the extra row together.
    const third = await decryptWith();
    third.uow.commit(() =>
      bob.received.insertPending({ sender: aliceAci, device: 1, timestamp: 1 }, [], null),
    );
    assert.deepEqual(bob.deviceIds(aliceAci), [1]);
    assert.equal(bob.countKeys('aci').preKeys, 0);
    assert.equal(bob.received.state({ sender: aliceAci, device: 1, timestamp: 1 }), 'pending');
  });

  it('received log: a duplicate insert is refused; pending rows replay until marked emitted', () => {
    const store = track(makeAccount(path.join(dir, 'a.db')));
    const key = { sender: randomUUID(), device: 2, timestamp: 1000 };
    const ev = { type: 'identity-change' as const, serviceId: 'x', timestamp: 1, blocked: false };
    assert.equal(store.received.insertPending(key, [ev], 'guid'), true);
    assert.equal(store.received.insertPending(key, [], null), false);
    assert.deepEqual(store.received.pendingEvents(key), [ev]);
    assert.equal(store.received.listPending().length, 1);
    store.received.markEmitted(key);
    assert.equal(store.received.state(key), 'emitted');
    assert.deepEqual(store.received.listPending(), []);
  });

  it('sent log: finds by recipient and timestamp; prune removes only entries past retention', () => {
    let now = 1_000_000_000_000;
    const store = track(makeAccount(path.join(dir, 'a.db'), { now: () => now }));
    const bob = randomUUID();
    store.sent.add({
      timestamp: 1,
      recipient: bob,
      devices: [1, 2],
      content: new Uint8Array([1, 2, 3]),
    });
    now += 15 * 24 * 3600 * 1000;
    store.sent.add({ timestamp: 2, recipient: bob, devices: [1], content: new Uint8Array([4]) });
    assert.deepEqual(store.sent.find(bob, 1)?.devices, [1, 2]);
    assert.equal(store.sent.prune(), 1);
    assert.equal(store.sent.find(bob, 1), undefined);
    assert.deepEqual(store.sent.find(bob, 2)?.content, new Uint8Array([4]));
  });

  it('received log: prune deletes emitted rows past 45 days and never a pending one', () => {
    let now = 1_700_000_000_000;
    const store = track(makeAccount(path.join(dir, 'a.db'), { now: () => now }));
    const key = (t: number) => ({ sender: 'peer', device: 1, timestamp: t });
    store.received.insertPending(key(1), [], null);
    store.received.markEmitted(key(1));
    store.received.insertPending(key(2), [], null); // never emitted (a crash before the emit)
    now += 44 * 24 * 3600 * 1000;
    store.received.insertPending(key(3), [], null);
    store.received.markEmitted(key(3));
    assert.equal(store.received.prune(), 0, 'nothing is 45 days old yet');
    now += 2 * 24 * 3600 * 1000;
    assert.deepEqual(store.prune(), { sent: 0, received: 1, keys: 0 });
    assert.equal(store.received.state(key(1)), 'none');
    assert.equal(store.received.state(key(2)), 'pending', 'a pending row stays until emitted');
    assert.equal(store.received.state(key(3)), 'emitted');
  });

  it('contacts: a repeat of what is known writes nothing; a new profile key or number writes once', () => {
    const store = track(makeAccount(path.join(dir, 'a.db')));
    // Count real writes to the table, independent of what upsert() reports.
    store.db.exec(`
      CREATE TEMP TABLE contact_writes (n INTEGER);
      CREATE TEMP TRIGGER count_insert AFTER INSERT ON main.contacts BEGIN INSERT INTO contact_writes VALUES (1); END;
      CREATE TEMP TRIGGER count_update AFTER UPDATE ON main.contacts BEGIN INSERT INTO contact_writes VALUES (1); END;
    `);
    const writes = () => store.db.prepare('SELECT count(*) FROM contact_writes').pluck().get();
    const aci = randomUUID();
    const key = new Uint8Array(32).fill(7);
    for (let i = 0; i < 100; i++)
      store.contacts.upsert({ aci, profileKey: new Uint8Array(key), source: 'message' });
    assert.equal(writes(), 1, '100 messages with the same profile key: one write');
    assert.equal(
      store.contacts.upsert({ aci, profileKey: new Uint8Array(32).fill(8), source: 'message' }),
      true,
    );
    assert.equal(store.contacts.upsert({ aci, e164: '+15551230001', source: 'certificate' }), true);
    assert.equal(
      store.contacts.upsert({ aci, e164: '+15551230001', source: 'certificate' }),
      false,
    );
    assert.equal(writes(), 3);
  });

  it('contacts: the source never drops to a less authoritative one', () => {
    const store = track(makeAccount(path.join(dir, 'a.db')));
    const aci = randomUUID();
    store.contacts.upsert({ aci, e164: '+15551230002', name: 'Bob', source: 'sync' });
    store.contacts.upsert({ aci, profileKey: new Uint8Array(32).fill(1), source: 'message' });
    const c = store.contacts.findByServiceId(aci);
    assert.equal(c?.source, 'sync');
    assert.equal(c?.profileKey?.length, 32, 'what it brought is still recorded');
    store.contacts.upsert({ aci, source: 'manual' });
    assert.equal(store.contacts.findByServiceId(aci)?.source, 'manual');
    assert.deepEqual(
      store.contacts.withProfileKeys().map((k) => k.aci),
      [aci],
    );
  });

  it('warns once about an existing folder others can read, without changing it; an existing file is made 0600', () => {
    const shared = path.join(dir, 'shared');
    fs.mkdirSync(shared, { mode: 0o755 });
    fs.chmodSync(shared, 0o755);
    const file = path.join(shared, 'acct.db');
    fs.writeFileSync(file, '');
    fs.chmodSync(file, 0o644);
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (m: string) => void warnings.push(m) };
    track(SignalStore.open(file, { logger })).close();
    track(SignalStore.open(path.join(shared, 'other.db'), { logger }));
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(shared).mode & 0o777, 0o755, "the user's folder is left alone");
    assert.equal(warnings.length, 1, 'once per folder');
    assert.ok(warnings[0]?.includes(shared), 'names the folder');
    // A private folder: no warning.
    const own = path.join(dir, 'own');
    fs.mkdirSync(own, { mode: 0o700 });
    track(SignalStore.open(path.join(own, 'x.db'), { logger }));
    assert.equal(warnings.length, 1);
  });

  it('contacts: merges what is learned about one person from different sources', () => {
    const store = track(makeAccount(path.join(dir, 'a.db')));
    const aci = randomUUID();
    const pni = randomUUID();
    store.contacts.upsert({ e164: '+15551230000', source: 'sync', name: 'Bob' });
    store.contacts.upsert({ aci, profileKey: new Uint8Array(32).fill(1), source: 'message' });
    store.contacts.upsert({ e164: '+15551230000', aci, pni: `PNI:${pni}`, source: 'cdsi' });
    assert.equal(store.contacts.count(), 1);
    const c = store.contacts.findByNumber('+15551230000');
    assert.equal(c?.aci, aci);
    assert.equal(c?.pni, pni);
    assert.equal(c?.name, 'Bob');
    assert.equal(c?.profileKey?.length, 32);
    assert.equal(store.contacts.findByServiceId(`PNI:${pni}`)?.e164, '+15551230000');
    assert.deepEqual(
      [...store.contacts.findByNumbers(['+15551230000', '+15559999999']).keys()],
      ['+15551230000'],
    );
  });
});
