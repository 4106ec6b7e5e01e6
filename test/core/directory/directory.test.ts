import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deriveAccessKey } from '../../../core/crypto/access-key';
import { SignalStore } from '../../../core/store';
import type {
  CdsiBackend,
  CdsiCredentials,
  CdsiEntries,
  CdsiQuery,
} from '../../../core/directory/cdsi';
import { disposeSharedNets, sharedNetCount } from '../../../core/directory/cdsi';
import {
  Directory,
  knownAccessKeys,
  type ContactsSource,
  type DirectoryOptions,
} from '../../../core/directory/directory';
import { resolveRecipient } from '../../../core/directory/recipient';
import { CancelledError, RateLimitedError, SignalError } from '../../../core/errors';

const uuid = (n: number): string => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

/** 10 numbers the way the mock server makes them (+141549 and five digits); even ones are registered. */
const POOL = Array.from({ length: 10 }, (_, i) => `+1415490${(1000 + i).toString()}`);
const REGISTRY = new Map(
  POOL.filter((_, i) => i % 2 === 0).map((n, i) => [n, { aci: uuid(i + 1), pni: uuid(i + 101) }]),
);

interface Call {
  credentials: CdsiCredentials;
  query: CdsiQuery;
}

/** Counts requests; answers from REGISTRY; `hold()` keeps the next requests open until released. */
class FakeCdsi implements CdsiBackend {
  calls: Call[] = [];
  failWith: Error | null = null;
  private gate: Promise<void> | null = null;
  private openGate: (() => void) | null = null;

  hold(): void {
    this.gate = new Promise((resolve) => (this.openGate = resolve));
  }

  release(): void {
    this.openGate?.();
    this.gate = null;
  }

  async lookup(credentials: CdsiCredentials, query: CdsiQuery): Promise<CdsiEntries> {
    this.calls.push({ credentials, query });
    const gate = this.gate;
    if (gate) {
      await new Promise<void>((resolve, reject) => {
        void gate.then(resolve);
        query.abortSignal?.addEventListener('abort', () => reject(new CancelledError('fake')), {
          once: true,
        });
      });
    }
    if (this.failWith) throw this.failWith;
    const out: CdsiEntries = new Map();
    for (const n of query.e164s) {
      const r = REGISTRY.get(n);
      out.set(n, { aci: r?.aci ?? null, pni: r?.pni ?? null });
    }
    return out;
  }
}

class FakeContacts implements ContactsSource {
  recorded: Array<{ number: string; aci: string | null; pni: string | null }> = [];
  reads = 0;
  constructor(readonly known = new Map<string, { aci: string | null; pni: string | null }>()) {}
  findByNumbers(e164s: string[]): Map<string, { aci: string | null; pni: string | null }> {
    this.reads++;
    return new Map(e164s.flatMap((n) => (this.known.has(n) ? [[n, this.known.get(n)!]] : [])));
  }
  recordLookup(results: Array<{ number: string; aci: string | null; pni: string | null }>): void {
    this.recorded.push(...results);
  }
}

const waitFor = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
};

describe('directory: lookups', () => {
  let directory: Directory | null = null;
  let cdsi: FakeCdsi;
  let contacts: FakeContacts;
  let clock: number;
  let authCalls: number;

  function make(options: Partial<DirectoryOptions> = {}): Directory {
    directory = new Directory({
      environment: { name: 'production', cdsi: 'production' },
      auth: async () => {
        authCalls++;
        return { username: `user${authCalls}`, password: 'pw' };
      },
      contacts,
      cdsi,
      now: () => clock,
      cacheTtl: { positiveMs: 24 * 3600_000, negativeMs: 3600_000 },
      ...options,
    });
    return directory;
  }

  beforeEach(() => {
    cdsi = new FakeCdsi();
    contacts = new FakeContacts();
    clock = 1_000_000;
    authCalls = 0;
  });

  afterEach(() => {
    cdsi.release();
    directory?.close();
    directory = null;
  });

  it('50 concurrent lookups of overlapping numbers make ONE request, each caller gets its own numbers in its own order', async () => {
    const d = make();
    const asks = Array.from({ length: 50 }, (_, i) => [
      POOL[i % 10] as string,
      // Other spellings of the same numbers, and a duplicate within one call.
      (POOL[(i * 7 + 3) % 10] as string).replace(/^\+1(\d{3})(\d{3})(\d{4})$/, '+1 ($1) $2-$3'),
      POOL[i % 10] as string,
    ]);
    const results = await Promise.all(asks.map((a) => d.lookup(a)));
    assert.equal(cdsi.calls.length, 1, 'one CDSI request');
    assert.equal(authCalls, 1, 'one set of credentials, fetched for that request');
    const sent = cdsi.calls[0]?.query.e164s ?? [];
    assert.deepEqual([...sent].sort(), [...POOL].sort(), 'the union, each number once');
    assert.equal(cdsi.calls[0]?.credentials.username, 'user1');
    results.forEach((rs, i) => {
      assert.equal(rs.length, 3);
      const wanted = [POOL[i % 10], POOL[(i * 7 + 3) % 10], POOL[i % 10]];
      assert.deepEqual(
        rs.map((r) => r.number),
        wanted,
      );
      for (const r of rs) {
        const reg = REGISTRY.get(r.number);
        assert.equal(r.registered, reg !== undefined);
        assert.equal(r.aci, reg?.aci ?? null);
        assert.equal(r.pni, reg?.pni ?? null);
        assert.equal(r.source, 'cdsi');
      }
    });
    // Registered answers go back to the contacts table, unregistered ones do not.
    assert.deepEqual(contacts.recorded.map((r) => r.number).sort(), [...REGISTRY.keys()].sort());
  });

  it('a repeat within the cache lifetime makes no request and says source "cache"', async () => {
    const d = make();
    const first = await d.lookup([POOL[0] as string, POOL[1] as string]);
    clock += 30 * 60_000;
    const again = await d.lookup([POOL[1] as string, POOL[0] as string]);
    assert.equal(cdsi.calls.length, 1);
    assert.deepEqual(
      again.map((r) => [r.number, r.registered, r.source]),
      [
        [POOL[1], false, 'cache'],
        [POOL[0], true, 'cache'],
      ],
    );
    assert.equal(again[1]?.aci, first[0]?.aci);
  });

  it('after the negative TTL a negative is asked again while a positive is still cached', async () => {
    const d = make();
    const [pos, neg] = [POOL[0] as string, POOL[1] as string];
    await d.lookup([pos, neg]);
    clock += 3600_000 + 1;
    const rs = await d.lookup([pos, neg]);
    assert.equal(cdsi.calls.length, 2);
    assert.deepEqual(cdsi.calls[1]?.query.e164s, [neg]);
    assert.deepEqual(
      rs.map((r) => r.source),
      ['cache', 'cdsi'],
    );
    clock += 24 * 3600_000;
    await d.lookup([pos]);
    assert.equal(cdsi.calls.length, 3, 'the positive expires after its own TTL');
    assert.deepEqual(cdsi.calls[2]?.query.e164s, [pos]);
  });

  it('lookups made while a request is in flight join it or share the next one', async () => {
    const d = make();
    cdsi.hold();
    const first = d.lookup([POOL[0] as string, POOL[1] as string]);
    await waitFor(() => cdsi.calls.length === 1);
    // While the first is in flight: one number it carries, and new ones from three callers.
    const joined = d.lookup([POOL[1] as string]);
    const later = [
      d.lookup([POOL[0] as string, POOL[2] as string]),
      d.lookup([POOL[3] as string]),
      d.lookup([POOL[2] as string, POOL[4] as string]),
    ];
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(cdsi.calls.length, 1, 'nothing else goes out while one request is in flight');
    cdsi.release();
    const [r1, r2, ...rest] = await Promise.all([first, joined, ...later]);
    assert.equal(cdsi.calls.length, 2);
    assert.deepEqual([...(cdsi.calls[1]?.query.e164s ?? [])].sort(), [POOL[2], POOL[3], POOL[4]]);
    assert.deepEqual(
      r1?.map((r) => r.source),
      ['cdsi', 'cdsi'],
    );
    assert.deepEqual(
      r2?.map((r) => [r.number, r.source]),
      [[POOL[1], 'cdsi']],
    );
    assert.deepEqual(
      rest.map((rs) => rs.map((r) => r.number)),
      [[POOL[0], POOL[2]], [POOL[3]], [POOL[2], POOL[4]]],
    );
  });

  it("one caller's cancellation does not cancel the shared request for the others", async () => {
    const d = make();
    cdsi.hold();
    const controller = new AbortController();
    const leaving = d.lookup([POOL[0] as string], { signal: controller.signal });
    const staying = d.lookup([POOL[0] as string, POOL[2] as string]);
    await waitFor(() => cdsi.calls.length === 1);
    controller.abort();
    await assert.rejects(
      leaving,
      (e: unknown) => e instanceof SignalError && e.code === 'CANCELLED',
    );
    assert.equal(cdsi.calls[0]?.query.abortSignal?.aborted, false);
    cdsi.release();
    const rs = await staying;
    assert.deepEqual(
      rs.map((r) => [r.number, r.registered]),
      [
        [POOL[0], true],
        [POOL[2], true],
      ],
    );
  });

  it('when every caller has left, the request in flight is aborted and a collecting one never goes out', async () => {
    const d = make({ batchWindowMs: 30 });
    cdsi.hold();
    const c1 = new AbortController();
    const p1 = d.lookup([POOL[0] as string], { signal: c1.signal });
    await waitFor(() => cdsi.calls.length === 1);
    c1.abort();
    await assert.rejects(p1, /cancelled/);
    assert.equal(cdsi.calls[0]?.query.abortSignal?.aborted, true);

    const c2 = new AbortController();
    const p2 = d.lookup([POOL[4] as string], { signal: c2.signal });
    c2.abort();
    await assert.rejects(p2, (e: unknown) => e instanceof SignalError && e.code === 'CANCELLED');
    cdsi.release();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(cdsi.calls.length, 1, 'the abandoned batch was never sent');

    // The directory still works, and does not reuse the aborted request.
    const rs = await d.lookup([POOL[0] as string]);
    assert.equal(rs[0]?.registered, true);
    assert.equal(cdsi.calls.length, 2);
  });

  it('an invalid number fails with INVALID_NUMBER, naming it, before any network call', async () => {
    const d = make();
    await assert.rejects(
      d.lookup([POOL[0] as string, '+1 555 12']),
      (e: unknown) =>
        e instanceof SignalError && e.code === 'INVALID_NUMBER' && e.message.includes('+1 555 12'),
    );
    await assert.rejects(
      d.lookup(['call me']),
      (e: unknown) => e instanceof SignalError && e.code === 'INVALID_NUMBER',
    );
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(cdsi.calls.length, 0);
    assert.equal(authCalls, 0);
    await assert.rejects(
      d.lookup('+14154901000' as unknown as string[]),
      (e: unknown) => e instanceof SignalError && e.code === 'INVALID_INPUT',
    );
  });

  it('numbers known as registered in contacts need no CDSI request; CDSI errors are not cached', async () => {
    contacts.known.set(POOL[1] as string, { aci: uuid(77), pni: `PNI:${uuid(78)}` });
    const d = make();
    cdsi.failWith = new RateLimitedError(30, 'Contact discovery');
    const rs = await d.lookup([POOL[1] as string]);
    assert.deepEqual(rs, [
      { number: POOL[1], aci: uuid(77), pni: uuid(78), registered: true, source: 'contacts' },
    ]);
    assert.equal(cdsi.calls.length, 0, 'cache, then contacts, then CDSI');
    // A number the contacts do not know: the CDSI error itself, never a guessed "not registered".
    for (let i = 1; i <= 2; i++) {
      await assert.rejects(
        d.lookup([POOL[1] as string, POOL[3] as string]),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 30,
      );
      assert.equal(cdsi.calls.length, i, 'failures are not cached');
    }
  });

  it('a failing auth() fails the lookup with its error', async () => {
    const d = make({
      auth: async () => {
        throw new SignalError('UNAUTHORIZED', 'no credentials');
      },
    });
    await assert.rejects(
      d.lookup([POOL[0] as string]),
      (e: unknown) => e instanceof SignalError && e.code === 'UNAUTHORIZED',
    );
    assert.equal(cdsi.calls.length, 0);
  });

  it('sends the known ACIs and access keys along', async () => {
    const keys = [{ aci: uuid(5), accessKey: Buffer.alloc(16, 1).toString('base64') }];
    const d = make({ knownAccessKeys: () => keys });
    await d.lookup([POOL[0] as string]);
    assert.deepEqual(cdsi.calls[0]?.query.acisAndAccessKeys, keys);
  });

  it('close() fails pending lookups with CLOSED and refuses new ones', async () => {
    const d = make();
    cdsi.hold();
    const pending = d.lookup([POOL[0] as string]);
    await waitFor(() => cdsi.calls.length === 1);
    d.close();
    await assert.rejects(pending, (e: unknown) => e instanceof SignalError && e.code === 'CLOSED');
    await assert.rejects(
      d.lookup([POOL[0] as string]),
      (e: unknown) => e instanceof SignalError && e.code === 'CLOSED',
    );
  });
});

describe('directory: custom server (no CDSI)', () => {
  const custom = { name: 'custom' as const, cdsi: null };

  it('answers from contacts, and a number not among them is CDSI_UNAVAILABLE naming it', async () => {
    const contacts = new FakeContacts(
      new Map([
        ['+14154901001', { aci: uuid(1), pni: null }],
        ['+14154901002', { aci: null, pni: uuid(2) }],
      ]),
    );
    const d = new Directory({
      environment: custom,
      auth: async () => assert.fail('no credentials are needed without CDSI'),
      contacts,
    });
    assert.equal(d.hasContactDiscovery, false);
    const rs = await d.lookup(['+1 415 490 1002', '+14154901001']);
    assert.deepEqual(rs, [
      { number: '+14154901002', aci: null, pni: uuid(2), registered: true, source: 'contacts' },
      { number: '+14154901001', aci: uuid(1), pni: null, registered: true, source: 'contacts' },
    ]);
    await assert.rejects(d.lookup(['+14154901001', '+14154901009']), (e: unknown) => {
      assert.ok(e instanceof SignalError);
      assert.equal(e.code, 'CDSI_UNAVAILABLE');
      assert.match(e.message, /\+14154901009/);
      assert.doesNotMatch(e.message, /\+14154901001/);
      assert.match(e.message, /custom server/);
      assert.match(e.message, /only contacts synced from the phone/);
      return true;
    });
    d.close();
  });

  it('production defaults to the Net backend without making a Net until a lookup needs one', () => {
    disposeSharedNets();
    const d = new Directory({
      environment: { name: 'production', cdsi: 'production' },
      auth: async () => ({ username: 'u', password: 'p' }),
      contacts: new FakeContacts(),
    });
    assert.equal(d.hasContactDiscovery, true);
    assert.equal(sharedNetCount(), 0);
    d.close();
  });
});

describe('directory: resolveRecipient', () => {
  const cdsi = new FakeCdsi();
  const directory = new Directory({
    environment: { name: 'staging', cdsi: 'staging' },
    auth: async () => ({ username: 'u', password: 'p' }),
    contacts: new FakeContacts(),
    cdsi,
  });
  after(() => directory.close());

  it('passes service ids through and resolves numbers, ACI first', async () => {
    const aci = uuid(42).toUpperCase();
    assert.equal(await resolveRecipient(directory, ` ${aci} `), aci.toLowerCase());
    assert.equal(await resolveRecipient(directory, `ACI:${aci}`), aci.toLowerCase());
    assert.equal(await resolveRecipient(directory, `pni:${aci}`), `PNI:${aci.toLowerCase()}`);
    assert.equal(cdsi.calls.length, 0);
    assert.equal(
      await resolveRecipient(directory, '+1 (415) 490-1000'),
      REGISTRY.get('+14154901000')?.aci,
    );
  });

  it('falls back to the PNI when only that is known', async () => {
    const only = new Directory({
      environment: { name: 'custom', cdsi: null },
      auth: async () => ({ username: 'u', password: 'p' }),
      contacts: new FakeContacts(new Map([['+14154901005', { aci: null, pni: uuid(9) }]])),
    });
    assert.equal(await resolveRecipient(only, '+14154901005'), `PNI:${uuid(9)}`);
    only.close();
  });

  it('an unregistered number is NOT_ON_SIGNAL naming it; garbage is INVALID_NUMBER', async () => {
    await assert.rejects(
      resolveRecipient(directory, '0014154901001'),
      (e: unknown) =>
        e instanceof SignalError && e.code === 'NOT_ON_SIGNAL' && /\+14154901001/.test(e.message),
    );
    await assert.rejects(
      resolveRecipient(directory, 'bob'),
      (e: unknown) => e instanceof SignalError && e.code === 'INVALID_NUMBER',
    );
    await assert.rejects(
      resolveRecipient(directory, '  '),
      (e: unknown) => e instanceof SignalError && e.code === 'INVALID_INPUT',
    );
  });
});

describe('directory: access keys from the contacts table', () => {
  it("gives CDSI each known contact's ACI with the access key derived from its profile key", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-dir-'));
    const store = SignalStore.open(path.join(dir, 'a.db'));
    const cdsi = new FakeCdsi();
    const withKey = uuid(11);
    const profileKey = new Uint8Array(32).fill(3);
    store.contacts.upsert({ aci: withKey, profileKey, source: 'message' });
    store.contacts.upsert({ aci: uuid(12), e164: POOL[1] as string, source: 'sync' }); // no key
    // The contacts source as SignalClient wires it.
    const directory = new Directory({
      environment: { name: 'production', cdsi: 'production' },
      auth: async () => ({ username: 'u', password: 'p' }),
      contacts: {
        findByNumbers: (e164s) => store.contacts.findByNumbers(e164s),
        recordLookup: () => {},
        withProfileKeys: () => store.contacts.withProfileKeys(),
      },
      cdsi,
    });
    try {
      await directory.lookup([POOL[0] as string]);
      assert.deepEqual(cdsi.calls[0]?.query.acisAndAccessKeys, [
        { aci: withKey, accessKey: Buffer.from(deriveAccessKey(profileKey)).toString('base64') },
      ]);
      // A profile key learned later rides the next request.
      store.contacts.upsert({
        aci: uuid(12),
        profileKey: new Uint8Array(32).fill(4),
        source: 'message',
      });
      await directory.lookup([POOL[2] as string]);
      assert.deepEqual(
        cdsi.calls[1]?.query.acisAndAccessKeys?.map((k) => k.aci).sort(),
        [withKey, uuid(12)].sort(),
      );
    } finally {
      directory.close();
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('skips a profile key of the wrong length instead of failing the lookup', () => {
    assert.deepEqual(
      knownAccessKeys([
        { aci: uuid(1), profileKey: new Uint8Array(31) },
        { aci: uuid(2).toUpperCase(), profileKey: new Uint8Array(32) },
      ]).map((k) => k.aci),
      [uuid(2)],
    );
  });
});
