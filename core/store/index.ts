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
import { AccountTable, ContactsTable, ReceivedLog, SentLog, type AccountRecord } from './records';

export * from './records';
export type { IdentityKind, TrustState } from './protocol';
export { openDatabase, schemaVersion, migrate } from './database';
export { MIGRATIONS } from './migrations';

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
      maxPreKeyId: this.db.prepare('SELECT max(key_id) FROM prekeys WHERE our_kind = ?').pluck(),
      maxSignedId: this.db
        .prepare('SELECT max(key_id) FROM signed_prekeys WHERE our_kind = ?')
        .pluck(),
      maxKyberId: this.db
        .prepare('SELECT max(key_id) FROM kyber_prekeys WHERE our_kind = ?')
        .pluck(),
      latestSigned: this.db.prepare(
        'SELECT key_id, created_at FROM signed_prekeys WHERE our_kind = ? ORDER BY created_at DESC, key_id DESC LIMIT 1',
      ),
      pruneSigned: this.db.prepare(
        'DELETE FROM signed_prekeys WHERE our_kind = ? AND created_at < ? AND key_id NOT IN (SELECT key_id FROM signed_prekeys WHERE our_kind = ? ORDER BY created_at DESC LIMIT 3)',
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

  /** The next free ids (prekey ids are 24-bit on the wire; wrap before 0xFFFFFF). */
  nextKeyIds(kind: IdentityKind): { preKey: number; signed: number; kyber: number } {
    const next = (v: unknown) => ((typeof v === 'number' ? v : 0) % 0xfffff0) + 1;
    return {
      preKey: next(this.s.maxPreKeyId.get(kind)),
      signed: next(this.s.maxSignedId.get(kind)),
      kyber: next(this.s.maxKyberId.get(kind)),
    };
  }

  latestSignedPreKey(kind: IdentityKind): { keyId: number; createdAt: number } | null {
    const row = this.s.latestSigned.get(kind) as { key_id: number; created_at: number } | undefined;
    return row ? { keyId: row.key_id, createdAt: row.created_at } : null;
  }

  /** Keeps the 3 newest signed prekeys and any younger than `olderThan` (late PreKey messages). */
  pruneSignedPreKeys(kind: IdentityKind, olderThan: number): void {
    this.s.pruneSigned.run(kind, olderThan, kind);
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

  identityTrustOf(serviceId: string): 'trusted' | 'untrusted-changed' | null {
    return (
      (this.s.identityTrust.get(serviceId) as 'trusted' | 'untrusted-changed' | undefined) ?? null
    );
  }
}
