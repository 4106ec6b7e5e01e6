/** The account row and the contacts. Only core/store runs SQL; the logs are logs.ts. */
import type { Db } from './database';

export interface AccountRecord {
  aci: string;
  /** Bare UUID, without the `PNI:` prefix. */
  pni: string;
  number: string | null;
  deviceId: number;
  password: string;
  aciRegistrationId: number;
  pniRegistrationId: number;
  aciIdentityKeyPair: Uint8Array;
  pniIdentityKeyPair: Uint8Array;
  profileKey: Uint8Array | null;
  masterKey: Uint8Array | null;
  accountEntropyPool: string | null;
  environment: string;
  deviceName: string | null;
}

interface AccountRow {
  aci: string;
  pni: string;
  number: string | null;
  device_id: number;
  password: string;
  aci_registration_id: number;
  pni_registration_id: number;
  aci_identity_key_pair: Buffer;
  pni_identity_key_pair: Buffer;
  profile_key: Buffer | null;
  master_key: Buffer | null;
  account_entropy_pool: string | null;
  environment: string;
  device_name: string | null;
}

export class AccountTable {
  private readonly getStmt;
  private readonly saveStmt;
  private cached: AccountRecord | null | undefined;

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {
    this.getStmt = db.prepare('SELECT * FROM account WHERE id = 1');
    this.saveStmt =
      db.prepare(`INSERT INTO account (id, aci, pni, number, device_id, password, aci_registration_id,
        pni_registration_id, aci_identity_key_pair, pni_identity_key_pair, profile_key, master_key,
        account_entropy_pool, environment, device_name, created_at, updated_at)
      VALUES (1, @aci, @pni, @number, @deviceId, @password, @aciRegistrationId, @pniRegistrationId,
        @aciIdentityKeyPair, @pniIdentityKeyPair, @profileKey, @masterKey, @accountEntropyPool, @environment,
        @deviceName, @now, @now)
      ON CONFLICT (id) DO UPDATE SET aci = excluded.aci, pni = excluded.pni, number = excluded.number,
        device_id = excluded.device_id, password = excluded.password,
        aci_registration_id = excluded.aci_registration_id, pni_registration_id = excluded.pni_registration_id,
        aci_identity_key_pair = excluded.aci_identity_key_pair, pni_identity_key_pair = excluded.pni_identity_key_pair,
        profile_key = excluded.profile_key, master_key = excluded.master_key,
        account_entropy_pool = excluded.account_entropy_pool, environment = excluded.environment,
        device_name = excluded.device_name, updated_at = excluded.updated_at`);
  }

  /** The account, cached: it is read on every message (identity key, registration id). */
  get(): AccountRecord | null {
    if (this.cached !== undefined) return this.cached;
    const row = this.getStmt.get() as AccountRow | undefined;
    this.cached = row
      ? {
          aci: row.aci,
          pni: row.pni,
          number: row.number,
          deviceId: row.device_id,
          password: row.password,
          aciRegistrationId: row.aci_registration_id,
          pniRegistrationId: row.pni_registration_id,
          aciIdentityKeyPair: new Uint8Array(row.aci_identity_key_pair),
          pniIdentityKeyPair: new Uint8Array(row.pni_identity_key_pair),
          profileKey: row.profile_key ? new Uint8Array(row.profile_key) : null,
          masterKey: row.master_key ? new Uint8Array(row.master_key) : null,
          accountEntropyPool: row.account_entropy_pool,
          environment: row.environment,
          deviceName: row.device_name,
        }
      : null;
    return this.cached;
  }

  save(rec: AccountRecord): void {
    this.saveStmt.run({ ...rec, now: this.now() });
    this.cached = undefined;
  }

  update(partial: Partial<AccountRecord>): void {
    const current = this.get();
    if (!current) throw new Error('no account to update');
    this.save({ ...current, ...partial });
  }
}

export type ContactSource = 'sync' | 'message' | 'certificate' | 'cdsi' | 'manual';

export interface Contact {
  e164: string | null;
  aci: string | null;
  /** Bare UUID, without the `PNI:` prefix. */
  pni: string | null;
  name: string | null;
  profileKey: Uint8Array | null;
  /** The name in their Signal profile ("given family"), when fetched and set. */
  profileName: string | null;
  /** When the profile was last fetched (ms), whether or not it had a name. */
  profileFetchedAt: number | null;
  source: ContactSource;
  updatedAt: number;
}

interface ContactRow {
  id: number;
  e164: string | null;
  aci: string | null;
  pni: string | null;
  name: string | null;
  profile_key: Buffer | null;
  profile_name: string | null;
  profile_fetched_at: number | null;
  source: ContactSource;
  updated_at: number;
}

const toContact = (r: ContactRow): Contact => ({
  e164: r.e164,
  aci: r.aci,
  pni: r.pni,
  name: r.name,
  profileKey: r.profile_key ? new Uint8Array(r.profile_key) : null,
  profileName: r.profile_name ?? null,
  profileFetchedAt: r.profile_fetched_at ?? null,
  source: r.source,
  updatedAt: r.updated_at,
});

/**
 * How much a source is trusted about who a contact is, least first. An update never lowers it: a
 * contact the phone synced stays 'sync' when that person later writes to us.
 */
const SOURCE_RANK: Record<ContactSource, number> = {
  message: 0,
  cdsi: 1,
  certificate: 2,
  sync: 3,
  manual: 4,
};

const sameBytes = (a: Uint8Array | null, b: Uint8Array | null): boolean =>
  a === null || b === null ? a === b : Buffer.from(a).equals(Buffer.from(b));

export class ContactsTable {
  private readonly s;

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {
    this.s = {
      byE164: db.prepare('SELECT * FROM contacts WHERE e164 = ?'),
      byAci: db.prepare('SELECT * FROM contacts WHERE aci = ?'),
      byPni: db.prepare('SELECT * FROM contacts WHERE pni = ?'),
      insert: db.prepare(
        'INSERT INTO contacts (e164, aci, pni, name, profile_key, source, updated_at) VALUES (@e164, @aci, @pni, @name, @profileKey, @source, @now)',
      ),
      update: db.prepare(
        'UPDATE contacts SET e164 = @e164, aci = @aci, pni = @pni, name = @name, profile_key = @profileKey, source = @source, updated_at = @now WHERE id = @id',
      ),
      remove: db.prepare('DELETE FROM contacts WHERE id = ?'),
      setProfileName: db.prepare(
        'UPDATE contacts SET profile_name = @name, profile_fetched_at = @at WHERE aci = @aci',
      ),
      count: db.prepare('SELECT count(*) FROM contacts').pluck(),
      withProfileKeys: db.prepare(
        'SELECT aci, profile_key FROM contacts WHERE aci IS NOT NULL AND profile_key IS NOT NULL',
      ),
    };
  }

  findByNumber(e164: string): Contact | undefined {
    const r = this.s.byE164.get(e164) as ContactRow | undefined;
    return r ? toContact(r) : undefined;
  }

  findByNumbers(e164s: string[]): Map<string, Contact> {
    const out = new Map<string, Contact>();
    for (const n of e164s) {
      const c = this.findByNumber(n);
      if (c) out.set(n, c);
    }
    return out;
  }

  /** By ACI (bare UUID) or PNI (`PNI:<uuid>` or bare, when `kind` says so). */
  findByServiceId(serviceId: string): Contact | undefined {
    const r = (
      serviceId.startsWith('PNI:')
        ? this.s.byPni.get(serviceId.slice(4))
        : this.s.byAci.get(serviceId)
    ) as ContactRow | undefined;
    return r ? toContact(r) : undefined;
  }

  /** Contacts whose ACI and profile key we know (CDSI's acisAndAccessKeys, PROTOCOL.md §8). */
  withProfileKeys(): Array<{ aci: string; profileKey: Uint8Array }> {
    return (this.s.withProfileKeys.all() as Array<{ aci: string; profile_key: Buffer }>).map(
      (r) => ({ aci: r.aci, profileKey: new Uint8Array(r.profile_key) }),
    );
  }

  count(): number {
    return this.s.count.get() as number;
  }

  /**
   * Records a fetched profile's name (null: the profile has none, or it did not decrypt) for the
   * contact with this ACI, and when it was fetched. No row, no write: a profile is fetched only for
   * a contact whose profile key we hold.
   */
  setProfileName(aci: string, name: string | null, fetchedAt: number): boolean {
    return this.s.setProfileName.run({ aci, name, at: fetchedAt }).changes > 0;
  }

  /**
   * Records what we learned about someone, merging with what we knew: matched by ACI, then PNI, then
   * number. Known fields are kept unless the update brings a value; the source never drops to a less
   * authoritative one. When the update ties together two rows (a number row and an ACI row), they are
   * merged into one. Writes only when something changed (it runs for nearly every incoming message:
   * Signal's clients attach their profile key to each). Returns whether it wrote.
   */
  upsert(update: Partial<Omit<Contact, 'updatedAt'>> & { source: ContactSource }): boolean {
    const pni = update.pni?.startsWith('PNI:') ? update.pni.slice(4) : update.pni;
    return this.db.transaction(() => {
      const rows = [
        update.aci ? (this.s.byAci.get(update.aci) as ContactRow | undefined) : undefined,
        pni ? (this.s.byPni.get(pni) as ContactRow | undefined) : undefined,
        update.e164 ? (this.s.byE164.get(update.e164) as ContactRow | undefined) : undefined,
      ].filter((r): r is ContactRow => r !== undefined);
      const unique = [...new Map(rows.map((r) => [r.id, r])).values()];
      const source = unique.reduce<ContactSource>(
        (best, r) => (SOURCE_RANK[r.source] > SOURCE_RANK[best] ? r.source : best),
        update.source,
      );
      const merged = {
        e164: update.e164 ?? unique.find((r) => r.e164)?.e164 ?? null,
        aci: update.aci ?? unique.find((r) => r.aci)?.aci ?? null,
        pni: pni ?? unique.find((r) => r.pni)?.pni ?? null,
        name: update.name ?? unique.find((r) => r.name)?.name ?? null,
        profileKey: update.profileKey ?? unique.find((r) => r.profile_key)?.profile_key ?? null,
        source,
        now: this.now(),
      };
      const [keep, ...others] = unique;
      if (
        keep &&
        others.length === 0 &&
        keep.e164 === merged.e164 &&
        keep.aci === merged.aci &&
        keep.pni === merged.pni &&
        keep.name === merged.name &&
        keep.source === merged.source &&
        sameBytes(keep.profile_key, merged.profileKey)
      )
        return false;
      for (const o of others) this.s.remove.run(o.id);
      if (keep) this.s.update.run({ ...merged, id: keep.id });
      else this.s.insert.run(merged);
      return true;
    })();
  }
}
