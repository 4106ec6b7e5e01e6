/**
 * libsignal's store interfaces over SQLite (PROTOCOL.md §10). Our account has two local identities,
 * ACI and PNI, each with its own identity key, registration id and prekeys: every class is bound to
 * one `kind`. Sessions are keyed by (our kind, remote service id, remote device).
 *
 * All reads and writes go through a ProtocolBackend. The database backend writes at once; the
 * buffered backend (a unit of work) keeps writes in memory, shows them to later reads, and applies
 * them all in one transaction on commit: that is how a decrypt's session update and the received-log
 * row become one atomic write.
 */
import {
  Direction,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyRecord,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderKeyRecord,
  SenderKeyStore,
  SessionRecord,
  SessionStore,
  SignedPreKeyRecord,
  SignedPreKeyStore,
  type Uuid,
} from '@signalapp/libsignal-client';
import { SignalError } from '../errors';
import type { Db } from './database';
import type { IdentityTrust } from '../types';

export type IdentityKind = 'aci' | 'pni';
export type TrustState = 'trusted' | 'untrusted-changed';

export interface IdentityRow {
  publicKey: Uint8Array;
  trust: TrustState;
}

/** Storage operations the libsignal stores need; implemented by the DB and by a write buffer. */
export interface ProtocolBackend {
  getSession(kind: IdentityKind, serviceId: string, device: number): Uint8Array | undefined;
  putSession(kind: IdentityKind, serviceId: string, device: number, record: Uint8Array): void;
  getIdentity(serviceId: string): IdentityRow | undefined;
  putIdentity(serviceId: string, row: IdentityRow, changed: boolean): void;
  /**
   * Runs `fn` once the writes made so far are durable: at once for the database backend, after the
   * transaction for a unit of work, never for one that is discarded. Keyed: a second call with the
   * same key before the commit is dropped (one notification per change, however often libsignal
   * saves the same key). `fn` must not throw.
   */
  afterCommit(key: string, fn: () => void): void;
  getPreKey(kind: IdentityKind, id: number): Uint8Array | undefined;
  deletePreKey(kind: IdentityKind, id: number): void;
  getSignedPreKey(kind: IdentityKind, id: number): Uint8Array | undefined;
  getKyberPreKey(
    kind: IdentityKind,
    id: number,
  ): { record: Uint8Array; lastResort: boolean } | undefined;
  deleteKyberPreKey(kind: IdentityKind, id: number): void;
  hasKyberUse(kind: IdentityKind, kyberId: number, signedId: number, baseKey: Uint8Array): boolean;
  addKyberUse(kind: IdentityKind, kyberId: number, signedId: number, baseKey: Uint8Array): void;
  getSenderKey(address: string, distributionId: string): Uint8Array | undefined;
  putSenderKey(address: string, distributionId: string, record: Uint8Array): void;
}

const u8 = (b: Buffer | Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);

/** Prepared statements, made once per database (per-message work must not re-parse SQL). */
export class DbBackend implements ProtocolBackend {
  private readonly s;

  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.s = {
      getSession: db
        .prepare(
          'SELECT record FROM sessions WHERE our_kind = ? AND service_id = ? AND device_id = ?',
        )
        .pluck(),
      putSession: db.prepare(
        'INSERT INTO sessions (our_kind, service_id, device_id, record) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET record = excluded.record',
      ),
      getIdentity: db.prepare('SELECT public_key, trust FROM identities WHERE service_id = ?'),
      putIdentity: db.prepare(
        `INSERT INTO identities (service_id, public_key, trust, first_seen, changed_at) VALUES (@sid, @key, @trust, @now, NULL)
         ON CONFLICT DO UPDATE SET public_key = excluded.public_key, trust = excluded.trust,
           changed_at = CASE WHEN @changed THEN @now ELSE changed_at END`,
      ),
      getPreKey: db.prepare('SELECT record FROM prekeys WHERE our_kind = ? AND key_id = ?').pluck(),
      deletePreKey: db.prepare('DELETE FROM prekeys WHERE our_kind = ? AND key_id = ?'),
      getSigned: db
        .prepare('SELECT record FROM signed_prekeys WHERE our_kind = ? AND key_id = ?')
        .pluck(),
      getKyber: db.prepare(
        'SELECT record, last_resort FROM kyber_prekeys WHERE our_kind = ? AND key_id = ?',
      ),
      deleteKyber: db.prepare('DELETE FROM kyber_prekeys WHERE our_kind = ? AND key_id = ?'),
      hasKyberUse: db
        .prepare(
          'SELECT 1 FROM kyber_used WHERE our_kind = ? AND kyber_id = ? AND signed_prekey_id = ? AND base_key = ?',
        )
        .pluck(),
      addKyberUse: db.prepare(
        'INSERT INTO kyber_used (our_kind, kyber_id, signed_prekey_id, base_key) VALUES (?, ?, ?, ?)',
      ),
      getSenderKey: db
        .prepare('SELECT record FROM sender_keys WHERE address = ? AND distribution_id = ?')
        .pluck(),
      putSenderKey: db.prepare(
        'INSERT INTO sender_keys (address, distribution_id, record) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET record = excluded.record',
      ),
    };
  }

  getSession(kind: IdentityKind, serviceId: string, device: number): Uint8Array | undefined {
    return this.s.getSession.get(kind, serviceId, device) as Buffer | undefined;
  }
  putSession(kind: IdentityKind, serviceId: string, device: number, record: Uint8Array): void {
    this.s.putSession.run(kind, serviceId, device, record);
  }
  getIdentity(serviceId: string): IdentityRow | undefined {
    const row = this.s.getIdentity.get(serviceId) as
      { public_key: Buffer; trust: TrustState } | undefined;
    return row ? { publicKey: row.public_key, trust: row.trust } : undefined;
  }
  putIdentity(serviceId: string, row: IdentityRow, changed: boolean): void {
    this.s.putIdentity.run({
      sid: serviceId,
      key: row.publicKey,
      trust: row.trust,
      now: this.now(),
      changed: changed ? 1 : 0,
    });
  }
  afterCommit(_key: string, fn: () => void): void {
    // Written already. A failing callback must not fail the libsignal call that saved the key.
    try {
      fn();
    } catch {
      // The callbacks (SignalStore → SignalClient.onIdentityChange) log their own failures.
    }
  }
  getPreKey(kind: IdentityKind, id: number): Uint8Array | undefined {
    return this.s.getPreKey.get(kind, id) as Buffer | undefined;
  }
  deletePreKey(kind: IdentityKind, id: number): void {
    this.s.deletePreKey.run(kind, id);
  }
  getSignedPreKey(kind: IdentityKind, id: number): Uint8Array | undefined {
    return this.s.getSigned.get(kind, id) as Buffer | undefined;
  }
  getKyberPreKey(
    kind: IdentityKind,
    id: number,
  ): { record: Uint8Array; lastResort: boolean } | undefined {
    const row = this.s.getKyber.get(kind, id) as
      { record: Buffer; last_resort: number } | undefined;
    return row ? { record: row.record, lastResort: row.last_resort === 1 } : undefined;
  }
  deleteKyberPreKey(kind: IdentityKind, id: number): void {
    this.s.deleteKyber.run(kind, id);
  }
  hasKyberUse(kind: IdentityKind, kyberId: number, signedId: number, baseKey: Uint8Array): boolean {
    return this.s.hasKyberUse.get(kind, kyberId, signedId, baseKey) !== undefined;
  }
  addKyberUse(kind: IdentityKind, kyberId: number, signedId: number, baseKey: Uint8Array): void {
    this.s.addKyberUse.run(kind, kyberId, signedId, baseKey);
  }
  getSenderKey(address: string, distributionId: string): Uint8Array | undefined {
    return this.s.getSenderKey.get(address, distributionId) as Buffer | undefined;
  }
  putSenderKey(address: string, distributionId: string, record: Uint8Array): void {
    this.s.putSenderKey.run(address, distributionId, record);
  }
}

type Op = () => void;

/** A write buffer over the DB backend: reads see pending writes; commit applies them atomically. */
export class BufferedBackend implements ProtocolBackend {
  private readonly sessions = new Map<string, Uint8Array>();
  private readonly identities = new Map<string, IdentityRow>();
  private readonly deletedPreKeys = new Set<string>();
  private readonly deletedKyber = new Set<string>();
  private readonly kyberUses = new Set<string>();
  private readonly senderKeys = new Map<string, Uint8Array>();
  private readonly ops: Op[] = [];
  private readonly committed = new Map<string, () => void>();
  private done = false;

  constructor(
    private readonly base: DbBackend,
    private readonly db: Db,
  ) {}

  private push(op: Op): void {
    if (this.done) throw new SignalError('STORE', 'unit of work already committed or discarded');
    this.ops.push(op);
  }

  getSession(kind: IdentityKind, serviceId: string, device: number): Uint8Array | undefined {
    return (
      this.sessions.get(`${kind}|${serviceId}|${device}`) ??
      this.base.getSession(kind, serviceId, device)
    );
  }
  putSession(kind: IdentityKind, serviceId: string, device: number, record: Uint8Array): void {
    this.sessions.set(`${kind}|${serviceId}|${device}`, record);
    this.push(() => this.base.putSession(kind, serviceId, device, record));
  }
  getIdentity(serviceId: string): IdentityRow | undefined {
    return this.identities.get(serviceId) ?? this.base.getIdentity(serviceId);
  }
  putIdentity(serviceId: string, row: IdentityRow, changed: boolean): void {
    this.identities.set(serviceId, row);
    this.push(() => this.base.putIdentity(serviceId, row, changed));
  }
  afterCommit(key: string, fn: () => void): void {
    if (this.done) throw new SignalError('STORE', 'unit of work already committed or discarded');
    if (!this.committed.has(key)) this.committed.set(key, fn);
  }
  getPreKey(kind: IdentityKind, id: number): Uint8Array | undefined {
    return this.deletedPreKeys.has(`${kind}|${id}`) ? undefined : this.base.getPreKey(kind, id);
  }
  deletePreKey(kind: IdentityKind, id: number): void {
    this.deletedPreKeys.add(`${kind}|${id}`);
    this.push(() => this.base.deletePreKey(kind, id));
  }
  getSignedPreKey(kind: IdentityKind, id: number): Uint8Array | undefined {
    return this.base.getSignedPreKey(kind, id);
  }
  getKyberPreKey(
    kind: IdentityKind,
    id: number,
  ): { record: Uint8Array; lastResort: boolean } | undefined {
    return this.deletedKyber.has(`${kind}|${id}`) ? undefined : this.base.getKyberPreKey(kind, id);
  }
  deleteKyberPreKey(kind: IdentityKind, id: number): void {
    this.deletedKyber.add(`${kind}|${id}`);
    this.push(() => this.base.deleteKyberPreKey(kind, id));
  }
  hasKyberUse(kind: IdentityKind, kyberId: number, signedId: number, baseKey: Uint8Array): boolean {
    const key = `${kind}|${kyberId}|${signedId}|${Buffer.from(baseKey).toString('base64')}`;
    return this.kyberUses.has(key) || this.base.hasKyberUse(kind, kyberId, signedId, baseKey);
  }
  addKyberUse(kind: IdentityKind, kyberId: number, signedId: number, baseKey: Uint8Array): void {
    this.kyberUses.add(`${kind}|${kyberId}|${signedId}|${Buffer.from(baseKey).toString('base64')}`);
    this.push(() => this.base.addKyberUse(kind, kyberId, signedId, baseKey));
  }
  getSenderKey(address: string, distributionId: string): Uint8Array | undefined {
    return (
      this.senderKeys.get(`${address}|${distributionId}`) ??
      this.base.getSenderKey(address, distributionId)
    );
  }
  putSenderKey(address: string, distributionId: string, record: Uint8Array): void {
    this.senderKeys.set(`${address}|${distributionId}`, record);
    this.push(() => this.base.putSenderKey(address, distributionId, record));
  }

  /** Applies every buffered write, then `extra`, in one transaction; all or nothing. */
  commit(extra?: () => void): void {
    if (this.done) throw new SignalError('STORE', 'unit of work already committed or discarded');
    this.db.transaction(() => {
      for (const op of this.ops) op();
      extra?.();
    })();
    this.done = true;
    // Only now is what they announce true; a throw here would make a committed decrypt look failed
    // (and be redelivered), so each runs on its own and a failure stays with it.
    for (const fn of this.committed.values()) {
      try {
        fn();
      } catch {
        // The callbacks (SignalStore → SignalClient.onIdentityChange) log their own failures.
      }
    }
    this.committed.clear();
  }

  discard(): void {
    this.done = true;
    // A rolled-back decrypt changed nothing: its identity changes are not announced.
    this.committed.clear();
  }
}

/** Where the local identity comes from and how identity changes are handled. */
export interface LocalIdentity {
  keyPair(kind: IdentityKind): IdentityKeyPair;
  registrationId(kind: IdentityKind): number;
}

export interface IdentityPolicy {
  trust: () => IdentityTrust;
  onChange?: (serviceId: string) => void;
}

function missing(what: string, id: number | string): SignalError {
  return new SignalError('STORE', `${what} ${id} not found`);
}

export class SqliteSessionStore extends SessionStore {
  constructor(
    private readonly backend: ProtocolBackend,
    private readonly kind: IdentityKind,
  ) {
    super();
  }
  async saveSession(address: ProtocolAddress, record: SessionRecord): Promise<void> {
    this.backend.putSession(this.kind, address.name(), address.deviceId(), record.serialize());
  }
  async getSession(address: ProtocolAddress): Promise<SessionRecord | null> {
    const bytes = this.backend.getSession(this.kind, address.name(), address.deviceId());
    return bytes ? SessionRecord.deserialize(u8(bytes)) : null;
  }
  async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    return Promise.all(
      addresses.map(async (a) => {
        const s = await this.getSession(a);
        if (!s) throw missing('session', a.toString());
        return s;
      }),
    );
  }
}

export class SqliteIdentityKeyStore extends IdentityKeyStore {
  constructor(
    private readonly backend: ProtocolBackend,
    private readonly kind: IdentityKind,
    private readonly local: LocalIdentity,
    private readonly policy: IdentityPolicy,
  ) {
    super();
  }
  async getIdentityKey(): Promise<PrivateKey> {
    return this.local.keyPair(this.kind).privateKey;
  }
  async getLocalRegistrationId(): Promise<number> {
    return this.local.registrationId(this.kind);
  }
  /**
   * Called on every encrypt and decrypt: cheap when unchanged (one indexed read, no write). A changed
   * key is saved (accept: trusted; block: untrusted until approved) and reported once the write is
   * committed (a decrypt that is rolled back reports nothing).
   */
  async saveIdentity(address: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const serviceId = address.name();
    const bytes = key.serialize();
    const existing = this.backend.getIdentity(serviceId);
    if (existing && Buffer.compare(Buffer.from(existing.publicKey), Buffer.from(bytes)) === 0) {
      return IdentityChange.NewOrUnchanged;
    }
    if (!existing) {
      this.backend.putIdentity(serviceId, { publicKey: bytes, trust: 'trusted' }, false);
      return IdentityChange.NewOrUnchanged;
    }
    const trust: TrustState = this.policy.trust() === 'block' ? 'untrusted-changed' : 'trusted';
    this.backend.putIdentity(serviceId, { publicKey: bytes, trust }, true);
    const onChange = this.policy.onChange;
    if (onChange) this.backend.afterCommit(`identity|${serviceId}`, () => onChange(serviceId));
    return IdentityChange.ReplacedExisting;
  }
  /** Receiving is always trusted (Signal's apps do the same); sending follows the policy. */
  async isTrustedIdentity(
    address: ProtocolAddress,
    key: PublicKey,
    direction: Direction,
  ): Promise<boolean> {
    if (direction === Direction.Receiving) return true;
    const existing = this.backend.getIdentity(address.name());
    if (!existing) return true;
    const same =
      Buffer.compare(Buffer.from(existing.publicKey), Buffer.from(key.serialize())) === 0;
    if (this.policy.trust() === 'accept') return true;
    return same && existing.trust === 'trusted';
  }
  async getIdentity(address: ProtocolAddress): Promise<PublicKey | null> {
    const row = this.backend.getIdentity(address.name());
    return row ? PublicKey.deserialize(u8(row.publicKey)) : null;
  }
}

export class SqlitePreKeyStore extends PreKeyStore {
  constructor(
    private readonly backend: ProtocolBackend,
    private readonly kind: IdentityKind,
    private readonly save: (kind: IdentityKind, id: number, record: Uint8Array) => void,
  ) {
    super();
  }
  async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    this.save(this.kind, id, record.serialize());
  }
  async getPreKey(id: number): Promise<PreKeyRecord> {
    const bytes = this.backend.getPreKey(this.kind, id);
    if (!bytes) throw missing(`${this.kind} one-time prekey`, id);
    return PreKeyRecord.deserialize(u8(bytes));
  }
  async removePreKey(id: number): Promise<void> {
    this.backend.deletePreKey(this.kind, id);
  }
}

export class SqliteSignedPreKeyStore extends SignedPreKeyStore {
  constructor(
    private readonly backend: ProtocolBackend,
    private readonly kind: IdentityKind,
    private readonly save: (
      kind: IdentityKind,
      id: number,
      record: Uint8Array,
      createdAt: number,
    ) => void,
  ) {
    super();
  }
  async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    this.save(this.kind, id, record.serialize(), record.timestamp());
  }
  async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    const bytes = this.backend.getSignedPreKey(this.kind, id);
    if (!bytes) throw missing(`${this.kind} signed prekey`, id);
    return SignedPreKeyRecord.deserialize(u8(bytes));
  }
}

export class SqliteKyberPreKeyStore extends KyberPreKeyStore {
  constructor(
    private readonly backend: ProtocolBackend,
    private readonly kind: IdentityKind,
    private readonly save: (
      kind: IdentityKind,
      id: number,
      record: Uint8Array,
      lastResort: boolean,
      createdAt: number,
    ) => void,
  ) {
    super();
  }
  /** libsignal saves only one-time keys through here; last-resort keys are saved by saveLastResort. */
  async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    this.save(this.kind, id, record.serialize(), false, record.timestamp());
  }
  async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    const row = this.backend.getKyberPreKey(this.kind, id);
    if (!row) throw missing(`${this.kind} Kyber prekey`, id);
    return KyberPreKeyRecord.deserialize(u8(row.record));
  }
  /**
   * One-time keys are deleted on use. A last-resort key stays, but the same (key, signed prekey, base
   * key) triple may be used only once: a second use is a replayed PreKey message and is rejected.
   */
  async markKyberPreKeyUsed(
    kyberId: number,
    signedPreKeyId: number,
    baseKey: PublicKey,
  ): Promise<void> {
    const row = this.backend.getKyberPreKey(this.kind, kyberId);
    if (!row) throw missing(`${this.kind} Kyber prekey`, kyberId);
    if (!row.lastResort) {
      this.backend.deleteKyberPreKey(this.kind, kyberId);
      return;
    }
    const base = baseKey.serialize();
    if (this.backend.hasKyberUse(this.kind, kyberId, signedPreKeyId, base)) {
      throw new SignalError('PROTOCOL', `replayed use of last-resort Kyber prekey ${kyberId}`);
    }
    this.backend.addKyberUse(this.kind, kyberId, signedPreKeyId, base);
  }
}

export class SqliteSenderKeyStore extends SenderKeyStore {
  constructor(private readonly backend: ProtocolBackend) {
    super();
  }
  async saveSenderKey(
    sender: ProtocolAddress,
    distributionId: Uuid,
    record: SenderKeyRecord,
  ): Promise<void> {
    this.backend.putSenderKey(sender.toString(), String(distributionId), record.serialize());
  }
  async getSenderKey(
    sender: ProtocolAddress,
    distributionId: Uuid,
  ): Promise<SenderKeyRecord | null> {
    const bytes = this.backend.getSenderKey(sender.toString(), String(distributionId));
    return bytes ? SenderKeyRecord.deserialize(u8(bytes)) : null;
  }
}
