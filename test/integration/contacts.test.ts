import assert from 'node:assert/strict';
import type { CdsiBackend } from '../../core/directory';
import { linkClient, startSandbox, withTimeout, type Sandbox, inspect } from './helpers';
import { until } from '../harness/wait';

describe('integration: contacts sync and sending to a phone number', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it("learns the phone's contacts after linking, and send('+1…') reaches that contact", async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const carol = await sandbox.createPrimary({ profileName: 'Carol' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob, carol] });
    const { client } = await linkClient(sandbox, alice);
    const store = inspect(client).store();
    assert.ok(store);
    const bobNumber = String(bob.device.number);
    const carolNumber = String(carol.device.number);
    await until(
      () => Boolean(store.contacts.findByNumber(carolNumber)),
      10_000,
      'contacts synced from the phone',
    );
    const [b, c] = await client.lookup([bobNumber, carolNumber]);
    assert.deepEqual(
      [b?.aci, c?.aci, b?.source, b?.registered],
      [bob.device.aci, carol.device.aci, 'contacts', true],
    );
    // A number as people write it: spaces and brackets are fine.
    const written = bobNumber.replace(/^\+1(\d{3})(\d{3})/, '+1 ($1) $2-');
    const sent = await client.send(written, { text: 'to your number' });
    assert.equal(sent.serviceId, bob.device.aci);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, 'to your number');
    // A number nobody synced: not guessed as "not registered".
    await assert.rejects(
      client.send('+15550009999', { text: 'x' }),
      (e: unknown) => (e as { code?: string }).code === 'CDSI_UNAVAILABLE',
    );
    await assert.rejects(
      client.send('+1 2', { text: 'x' }),
      (e: unknown) => (e as { code?: string }).code === 'INVALID_NUMBER',
    );
  });
});

describe('integration: sending to a number right after linking', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('waits for the phone’s contacts instead of failing CDSI_UNAVAILABLE', async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    const { client } = await linkClient(sandbox, alice);
    const bobNumber = String(bob.device.number);
    // No waiting here: the contacts sync was only requested when link() resolved.
    assert.equal(inspect(client).store()?.contacts.findByNumber(bobNumber), undefined);
    const sent = await withTimeout(client.send(bobNumber, { text: 'at once' }), 15_000, 'send');
    assert.equal(sent.serviceId, bob.device.aci);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, 'at once');
    // Once they arrived, nothing waits: a number nobody synced fails at once, as before.
    const start = Date.now();
    await assert.rejects(client.lookup(['+15550009999']), { code: 'CDSI_UNAVAILABLE' });
    assert.ok(Date.now() - start < 5_000);
    await client.close();
  });
});

describe('integration: lookup through contact discovery', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('asks CDSI with fresh directory credentials, merges, caches, and send() resolves through it', async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const bobNumber = String(bob.device.number);
    const pni = (p: string) => p.replace(/^PNI:/, '').toLowerCase();
    // The enclave cannot run here (attestation needs Signal's SGX servers; the Net wiring is tested
    // in test/core/directory against a local TLS server): this backend answers from the mock's own
    // accounts and records what the client sent it.
    const calls: Array<{ username: string; e164s: string[] }> = [];
    const cdsi: CdsiBackend = {
      lookup: async (credentials, query) => {
        calls.push({ username: credentials.username, e164s: [...query.e164s] });
        const entries = new Map<string, { aci: string | null; pni: string | null }>();
        for (const n of query.e164s)
          if (n === bobNumber)
            entries.set(n, { aci: bob.device.aci, pni: pni(String(bob.device.pni)) });
        return entries;
      },
    };
    const { client } = await linkClient(sandbox, alice, { cdsi });
    const unknown = '+15550001234';
    const [first, second] = await Promise.all([
      client.lookup([bobNumber]),
      client.lookup([unknown, bobNumber]),
    ]);
    assert.equal(calls.length, 1, 'lookups issued together share one CDSI request');
    assert.deepEqual(calls[0]?.e164s.sort(), [bobNumber, unknown].sort());
    assert.equal(calls[0]?.username, sandbox.directoryCredentials.at(-1)?.username);
    assert.deepEqual(first, [
      {
        number: bobNumber,
        aci: bob.device.aci,
        pni: pni(String(bob.device.pni)),
        registered: true,
        source: 'cdsi',
      },
    ]);
    assert.deepEqual(
      second.map((r) => [r.number, r.registered, r.aci]),
      [
        [unknown, false, null],
        [bobNumber, true, bob.device.aci],
      ],
    );
    // Registered answers go to the contacts table; the next lookup is served from the cache.
    assert.equal(inspect(client).store()?.contacts.findByNumber(bobNumber)?.aci, bob.device.aci);
    const [cached] = await client.lookup([bobNumber]);
    assert.equal(cached?.source, 'cache');
    assert.equal(calls.length, 1);

    const sent = await client.send(bobNumber, { text: 'found you through CDSI' });
    assert.equal(sent.serviceId, bob.device.aci);
    assert.equal(
      (await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body,
      'found you through CDSI',
    );
    await assert.rejects(client.send(unknown, { text: 'x' }), (e: unknown) => {
      const err = e as { code?: string; message?: string };
      return err.code === 'NOT_ON_SIGNAL' && String(err.message).includes(unknown);
    });
    assert.equal(calls.length, 1, 'the unregistered answer was cached too');
  });
});

describe('integration: contacts learned from messages', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('100 messages from one sender with the same profile key write the contact once', async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const { client } = await linkClient(sandbox, alice);
    const store = inspect(client).store();
    const account = client.account;
    assert.ok(store && account);
    // Count the table's real writes, whoever makes them; the profile fetch's own write (its name,
    // once a day, off the receive path: core/directory/profiles.ts) is counted apart.
    store.db.exec(`
      CREATE TEMP TABLE contact_writes (aci TEXT);
      CREATE TEMP TABLE profile_writes (aci TEXT);
      CREATE TEMP TRIGGER count_insert AFTER INSERT ON main.contacts BEGIN INSERT INTO contact_writes VALUES (new.aci); END;
      CREATE TEMP TRIGGER count_update AFTER UPDATE OF e164, aci, pni, name, profile_key, source, updated_at ON main.contacts BEGIN INSERT INTO contact_writes VALUES (new.aci); END;
      CREATE TEMP TRIGGER count_profile AFTER UPDATE OF profile_name, profile_fetched_at ON main.contacts BEGIN INSERT INTO profile_writes VALUES (new.aci); END;
    `);
    const device = await sandbox.server.getDeviceByServiceId(
      account.aci as never,
      account.deviceId as never,
    );
    assert.ok(device);
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    let received = 0;
    client.on('event', (ev) => {
      if (ev.type === 'message') received++;
    });
    for (let i = 0; i < 100; i++) await bob.sendText(device, `m${i}`, { withProfileKey: true });
    await until(() => received === 100, 30_000, '100 messages');
    const writes = store.db
      .prepare('SELECT count(*) FROM contact_writes WHERE aci = ?')
      .pluck()
      .get(bob.device.aci);
    assert.equal(writes, 1, 'one write: the first message brought the profile key');
    const profileWrites = store.db
      .prepare('SELECT count(*) FROM profile_writes WHERE aci = ?')
      .pluck()
      .get(bob.device.aci) as number;
    assert.ok(profileWrites <= 1, `the profile was fetched at most once (${profileWrites})`);
    assert.equal(store.contacts.findByServiceId(bob.device.aci)?.profileKey?.length, 32);
    // And a send to Bob now goes sealed.
    const sent = await client.send(bob.device.aci, { text: 'sealed now' });
    assert.equal(sent.sealed, true);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, 'sealed now');
  });
});
