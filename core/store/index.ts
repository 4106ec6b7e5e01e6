/**
 * SignalStore: one SQLite database per account (file 0600 in a 0700 folder) holding the account,
 * the protocol state of both local identities (ACI and PNI), contacts, and the received/sent logs.
 */
import {
  IdentityKeyPair,
  KyberPreKeyRecord,
  PreKeyRecord,
  SignedPreKeyRecord,
} from '@signalapp/libsignal-client';
import { SignalError } from '../errors';
import type { IdentityTrust } from '../types';
import { openDatabase, type Db, type OpenOptions } from './database';
import {
  BufferedBackend,
  DbBackend,
  SqliteIdentityKeyStore,
  SqliteKyberPreKeyStore,
  SqlitePreKeyStore,
  SqliteSenderKeyStore,
  SqliteSessionStore,
  SqliteSignedPreKeyStore,
  type IdentityKind,
  type LocalIdentity,
  type ProtocolBackend,
} from './protocol';
import { AccountTable, ContactsTable, type AccountRecord } from './records';
import { ConversationsTable, ReceivedLog, SentLog } from './logs';
import { GroupSendTable } from './group-send';
import { GroupsTable } from './groups';

export * from './records';
export * from './logs';
export * from './group-send';
export * from './groups';
export type { IdentityKind, TrustState } from './protocol';
export { openDatabase, schemaVersion, migrate } from './database';
export { MIGRATIONS } from './migrations';

/**
 * How long a key the server no longer hands out is kept: a PreKey message built on it may wait in
 * our queue while we are offline (Signal's server keeps queued messages about 30 days).
 */
export const KEY_GRACE_MS = 30 * 24 * 60 * 60 * 1000;
/** At most this many replaced one-time keys per list are kept within the grace period. */
export const MAX_REPLACED_ONE_TIME_KEYS = 1000;

export interface ProtocolStores {
  sessions: SqliteSessionStore;
  identities: SqliteIdentityKeyStore;
  preKeys: SqlitePreKeyStore;
  signedPreKeys: SqliteSignedPreKeyStore;
  kyberPreKeys: SqliteKyberPreKeyStore;
  senderKeys: SqliteSenderKeyStore;
}

export interface UnitOfWork extends ProtocolStores {
  /** Applies the buffered protocol writes and `extra` in one transaction. */
  commit(extra?: () => void): void;
  discard(): void;
}

/** A contact's changed identity waiting for approval (trust 'untrusted-changed', block policy). */
export interface PendingIdentity {
  serviceId: string;
  /** From the contacts table, when this service id is a known contact with a number / name. */
  number?: string;
  name?: string;
  /** When the changed key was saved (ms since the epoch). */
  changedAt: number;
}

export interface SignalStoreOptions extends OpenOptions {
  identityTrust?: IdentityTrust;
  /** Called when a remote identity key changed (after it was saved). */
  onIdentityChange?: (serviceId: string) => void;
  now?: () => number;
}

export class SignalStore {
  readonly db: Db;
  readonly account: AccountTable;
  readonly contacts: ContactsTable;
  readonly received: ReceivedLog;
  readonly sent: SentLog;
  readonly conversations: ConversationsTable;
  readonly groups: GroupsTable;
  /** Our sender-key state per group (group sends). */
  readonly groupSends: GroupSendTable;
  identityTrust: IdentityTrust;
  onIdentityChange: ((serviceId: string) => void) | undefined;
  private readonly backend: DbBackend;
  private readonly persistent = new Map<IdentityKind, ProtocolStores>();
  private readonly keyPairs = new Map<IdentityKind, IdentityKeyPair>();
  private readonly now: () => number;
  private readonly s;

  private constructor(
    readonly file: string,
    options: SignalStoreOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.db = openDatabase(file, options);
    this.identityTrust = options.identityTrust ?? 'accept';
    this.onIdentityChange = options.onIdentityChange;
    this.backend = new DbBackend(this.db, this.now);
    this.account = new AccountTable(this.db, this.now);
    this.contacts = new ContactsTable(this.db, this.now);
    this.received = new ReceivedLog(this.db, this.now);
    this.sent = new SentLog(this.db, this.now);
    this.conversations = new ConversationsTable(this.db, this.now);
    this.groups = new GroupsTable(this.db);
    this.groupSends = new GroupSendTable(this.db, this.now);
    this.s = {
      savePreKey: this.db.prepare(
        'INSERT OR REPLACE INTO prekeys (our_kind, key_id, record, created_at) VALUES (?, ?, ?, ?)',
      ),
      saveSigned: this.db.prepare(
        'INSERT OR REPLACE INTO signed_prekeys (our_kind, key_id, record, created_at) VALUES (?, ?, ?, ?)',
      ),
      saveKyber: this.db.prepare(
        'INSERT OR REPLACE INTO kyber_prekeys (our_kind, key_id, record, last_resort, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      deviceIds: this.db
        .prepare(
          'SELECT device_id FROM sessions WHERE our_kind = ? AND service_id = ? ORDER BY device_id',
        )
        .pluck(),
      deleteSession: this.db.prepare(
        'DELETE FROM sessions WHERE our_kind = ? AND service_id = ? AND device_id = ?',
      ),
      approve: this.db.prepare(`UPDATE identities SET trust = 'trusted' WHERE service_id = ?`),
      identityTrust: this.db.prepare('SELECT trust FROM identities WHERE service_id = ?').pluck(),
      // Two joins, one per id kind, so that each uses the contacts' unique index on aci / pni (a PNI
      // identity is keyed `PNI:<uuid>`, the contact's pni column holds the bare uuid).
      pendingIdentities: this.db.prepare(
        `SELECT i.service_id, COALESCE(i.changed_at, i.first_seen) AS changed_at,
           COALESCE(a.e164, p.e164) AS e164, COALESCE(a.name, p.name) AS name
         FROM identities i
           LEFT JOIN contacts a ON a.aci = i.service_id
           LEFT JOIN contacts p ON i.service_id LIKE 'PNI:%' AND p.pni = substr(i.service_id, 5)
         WHERE i.trust = 'untrusted-changed'
         ORDER BY changed_at, i.service_id`,
      ),
      syncMark: this.db.prepare('UPDATE sync_mark SET n = n + 1 WHERE id = 1'),
      lastKeyId: this.db
        .prepare('SELECT last FROM key_ids WHERE our_kind = ? AND kind = ?')
        .pluck(),
      latestSigned: this.db.prepare(
        'SELECT key_id, created_at FROM signed_prekeys WHERE our_kind = ? ORDER BY created_at DESC, key_id DESC LIMIT 1',
      ),
      markReplacedPreKeys: this.db.prepare(
        'UPDATE prekeys SET replaced_at = ? WHERE our_kind = ? AND replaced_at IS NULL AND key_id NOT IN (SELECT value FROM json_each(?))',
      ),
      markReplacedKyber: this.db.prepare(
        'UPDATE kyber_prekeys SET replaced_at = ? WHERE our_kind = ? AND last_resort = 0 AND replaced_at IS NULL AND key_id NOT IN (SELECT value FROM json_each(?))',
      ),
      // Replaced one-time keys past the grace period, and beyond the newest `cap` replaced ones.
      pruneReplacedPreKeys: this.db.prepare(
        `DELETE FROM prekeys WHERE our_kind = @kind AND replaced_at IS NOT NULL AND (replaced_at < @before
           OR key_id IN (SELECT key_id FROM prekeys WHERE our_kind = @kind AND replaced_at IS NOT NULL
             ORDER BY replaced_at DESC, key_id DESC LIMIT -1 OFFSET @cap))`,
      ),
      pruneReplacedKyber: this.db.prepare(
        `DELETE FROM kyber_prekeys WHERE our_kind = @kind AND last_resort = 0 AND replaced_at IS NOT NULL
           AND (replaced_at < @before OR key_id IN (SELECT key_id FROM kyber_prekeys WHERE our_kind = @kind
             AND last_resort = 0 AND replaced_at IS NOT NULL ORDER BY replaced_at DESC, key_id DESC LIMIT -1 OFFSET @cap))`,
      ),
      // A signed (or last-resort) key is replaced when a newer one is made: delete those whose
      // successor was made before the grace period. The newest one is never deleted.
      pruneSigned: this.db.prepare(
        `DELETE FROM signed_prekeys AS s WHERE our_kind = @kind AND EXISTS (SELECT 1 FROM signed_prekeys n
           WHERE n.our_kind = s.our_kind AND n.created_at > s.created_at AND n.created_at < @before)`,
      ),
      pruneLastResort: this.db.prepare(
        `DELETE FROM kyber_prekeys AS s WHERE our_kind = @kind AND last_resort = 1 AND EXISTS (SELECT 1
           FROM kyber_prekeys n WHERE n.our_kind = s.our_kind AND n.last_resort = 1
             AND n.created_at > s.created_at AND n.created_at < @before)`,
      ),
      // Replay records of a last-resort key that is gone: no message can use that key any more.
      pruneKyberUsed: this.db.prepare(
        `DELETE FROM kyber_used WHERE NOT EXISTS (SELECT 1 FROM kyber_prekeys k WHERE
           k.our_kind = kyber_used.our_kind AND k.key_id = kyber_used.kyber_id AND k.last_resort = 1)`,
      ),
      countPreKeys: this.db.prepare('SELECT count(*) FROM prekeys WHERE our_kind = ?').pluck(),
      countKyber: this.db
        .prepare('SELECT count(*) FROM kyber_prekeys WHERE our_kind = ? AND last_resort = ?')
        .pluck(),
    };
  }

  static open(file: string, options: SignalStoreOptions = {}): SignalStore {
    return new SignalStore(file, options);
  }

  /** Runs `fn` in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /**
   * Puts every commit made so far on disk, so that it survives a power cut or an OS crash, not only
   * a crash of this process (which synchronous=NORMAL with WAL already survives). One fsync, however
   * many commits it covers: the receiver calls it once per batch of received envelopes, before
   * ACKing them, since the server deletes what is ACKed. With WAL, a commit at synchronous=FULL
   * syncs the log up to it, so a one-row write at FULL is enough.
   */
  sync(): void {
    if (this.db.inTransaction) throw new SignalError('STORE', 'sync() inside a transaction');
    this.db.pragma('synchronous = FULL');
    try {
      this.s.syncMark.run();
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  requireAccount(): AccountRecord {
    const account = this.account.get();
    if (!account) throw new SignalError('NOT_LINKED', 'This account is not linked to Signal yet');
    return account;
  }

  private readonly local: LocalIdentity = {
    keyPair: (kind) => {
      let pair = this.keyPairs.get(kind);
      if (!pair) {
        const account = this.requireAccount();
        pair = IdentityKeyPair.deserialize(
          new Uint8Array(kind === 'aci' ? account.aciIdentityKeyPair : account.pniIdentityKeyPair),
        );
        this.keyPairs.set(kind, pair);
      }
      return pair;
    },
    registrationId: (kind) => {
      const account = this.requireAccount();
      return kind === 'aci' ? account.aciRegistrationId : account.pniRegistrationId;
    },
  };

  /** Forget cached identity keys (after the account row changed). */
  accountChanged(): void {
    this.keyPairs.clear();
  }

  private build(backend: ProtocolBackend, kind: IdentityKind): ProtocolStores {
    return {
      sessions: new SqliteSessionStore(backend, kind),
      identities: new SqliteIdentityKeyStore(backend, kind, this.local, {
        trust: () => this.identityTrust,
        onChange: (serviceId) => this.onIdentityChange?.(serviceId),
      }),
      preKeys: new SqlitePreKeyStore(backend, kind, (k, id, record) =>
        this.s.savePreKey.run(k, id, record, this.now()),
      ),
      signedPreKeys: new SqliteSignedPreKeyStore(backend, kind, (k, id, record, createdAt) =>
        this.s.saveSigned.run(k, id, record, createdAt),
      ),
      kyberPreKeys: new SqliteKyberPreKeyStore(
        backend,
        kind,
        (k, id, record, lastResort, createdAt) =>
          this.s.saveKyber.run(k, id, record, lastResort ? 1 : 0, createdAt),
      ),
      senderKeys: new SqliteSenderKeyStore(backend),
    };
  }

  /** The libsignal stores for one local identity, writing straight to the database. */
  protocol(kind: IdentityKind): ProtocolStores {
    let stores = this.persistent.get(kind);
    if (!stores) {
      stores = this.build(this.backend, kind);
      this.persistent.set(kind, stores);
    }
    return stores;
  }

  /** The same stores over a write buffer; nothing reaches the database until commit(). */
  unitOfWork(kind: IdentityKind): UnitOfWork {
    const buffer = new BufferedBackend(this.backend, this.db);
    return Object.assign(this.build(buffer, kind), {
      commit: (extra?: () => void) => buffer.commit(extra),
      discard: () => buffer.discard(),
    });
  }

  // ---- prekey bookkeeping used by linking, registration and maintenance ----

  savePreKeys(kind: IdentityKind, records: PreKeyRecord[]): void {
    this.transaction(() => {
      for (const r of records) this.s.savePreKey.run(kind, r.id(), r.serialize(), this.now());
    });
  }

  saveSignedPreKey(kind: IdentityKind, record: SignedPreKeyRecord): void {
    this.s.saveSigned.run(kind, record.id(), record.serialize(), record.timestamp());
  }

  saveKyberPreKeys(kind: IdentityKind, records: KyberPreKeyRecord[], lastResort: boolean): void {
    this.transaction(() => {
      for (const r of records)
        this.s.saveKyber.run(kind, r.id(), r.serialize(), lastResort ? 1 : 0, r.timestamp());
    });
  }

  /**
   * The next ids, after the last ones handed out (kept by triggers in key_ids, so an id deleted with
   * its key is never given again); prekey ids are 24-bit on the wire: wrap before 0xFFFFFF.
   */
  nextKeyIds(kind: IdentityKind): { preKey: number; signed: number; kyber: number } {
    const next = (which: 'prekey' | 'signed' | 'kyber') => {
      const last = this.s.lastKeyId.get(kind, which);
      return ((typeof last === 'number' ? last : 0) % 0xfffff0) + 1;
    };
    return { preKey: next('prekey'), signed: next('signed'), kyber: next('kyber') };
  }

  latestSignedPreKey(kind: IdentityKind): { keyId: number; createdAt: number } | null {
    const row = this.s.latestSigned.get(kind) as { key_id: number; created_at: number } | undefined;
    return row ? { keyId: row.key_id, createdAt: row.created_at } : null;
  }

  /**
   * After a successful upload that carried one-time keys: every other one-time key of that list is
   * no longer handed out by the server. Marked, not deleted: a peer may have fetched one just before
   * (its PreKey message can sit in our queue while we are offline); pruneKeys() deletes them later.
   * `null`: that list was not uploaded.
   */
  markOneTimeKeysReplaced(
    kind: IdentityKind,
    kept: { preKeys: number[] | null; kyber: number[] | null },
  ): void {
    this.transaction(() => {
      const now = this.now();
      if (kept.preKeys) this.s.markReplacedPreKeys.run(now, kind, JSON.stringify(kept.preKeys));
      if (kept.kyber) this.s.markReplacedKyber.run(now, kind, JSON.stringify(kept.kyber));
    });
  }

  /**
   * Deletes keys no message can still need: one-time keys replaced more than `graceMs` ago (or beyond
   * the newest `maxReplaced` replaced ones, so refills in quick succession cannot grow the store),
   * signed and last-resort keys superseded more than `graceMs` ago, and the replay records of
   * last-resort keys that are gone.
   */
  pruneKeys(graceMs = KEY_GRACE_MS, maxReplaced = MAX_REPLACED_ONE_TIME_KEYS): number {
    const before = this.now() - graceMs;
    return this.transaction(() => {
      let n = 0;
      for (const kind of ['aci', 'pni'] as const) {
        n += this.s.pruneReplacedPreKeys.run({ kind, before, cap: maxReplaced }).changes;
        n += this.s.pruneReplacedKyber.run({ kind, before, cap: maxReplaced }).changes;
        n += this.s.pruneSigned.run({ kind, before }).changes;
        n += this.s.pruneLastResort.run({ kind, before }).changes;
      }
      return n + this.s.pruneKyberUsed.run().changes;
    });
  }

  /** Store upkeep, run after each connect and periodically: the logs and keys past retention. */
  prune(): { sent: number; received: number; keys: number } {
    return this.transaction(() => ({
      sent: this.sent.prune(),
      received: this.received.prune(),
      keys: this.pruneKeys(),
    }));
  }

  countKeys(kind: IdentityKind): {
    preKeys: number;
    kyberOneTime: number;
    kyberLastResort: number;
  } {
    return {
      preKeys: this.s.countPreKeys.get(kind) as number,
      kyberOneTime: this.s.countKyber.get(kind, 0) as number,
      kyberLastResort: this.s.countKyber.get(kind, 1) as number,
    };
  }

  // ---- sessions and identities ----

  deviceIds(serviceId: string, kind: IdentityKind = 'aci'): number[] {
    return this.s.deviceIds.all(kind, serviceId) as number[];
  }

  deleteSession(serviceId: string, deviceId: number, kind: IdentityKind = 'aci'): void {
    this.s.deleteSession.run(kind, serviceId, deviceId);
  }

  /** With the `block` policy: accept the changed identity of `serviceId` so sends resume. */
  approveIdentity(serviceId: string): boolean {
    return this.s.approve.run(serviceId).changes === 1;
  }

  /** Every changed identity waiting for approval, oldest change first. Reads only. */
  pendingIdentities(): PendingIdentity[] {
    const rows = this.s.pendingIdentities.all() as Array<{
      service_id: string;
      changed_at: number;
      e164: string | null;
      name: string | null;
    }>;
    return rows.map((r) => ({
      serviceId: r.service_id,
      ...(r.e164 ? { number: r.e164 } : {}),
      ...(r.name ? { name: r.name } : {}),
      changedAt: r.changed_at,
    }));
  }

  identityTrustOf(serviceId: string): 'trusted' | 'untrusted-changed' | null {
    return (
      (this.s.identityTrust.get(serviceId) as 'trusted' | 'untrusted-changed' | undefined) ?? null
    );
  }
}
