/**
 * Schema migrations, in order; migration i takes the file from user_version i to i+1. Never edit a
 * released migration: add a new one.
 */
import type Database from 'better-sqlite3';

export const MIGRATIONS: Array<(db: Database.Database) => void> = [
  // v1: the protocol state and logs.
  (db) => {
    db.exec(`
      CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        aci TEXT NOT NULL,
        pni TEXT NOT NULL,
        number TEXT,
        device_id INTEGER NOT NULL,
        password TEXT NOT NULL,
        aci_registration_id INTEGER NOT NULL,
        pni_registration_id INTEGER NOT NULL,
        aci_identity_key_pair BLOB NOT NULL,
        pni_identity_key_pair BLOB NOT NULL,
        profile_key BLOB,
        master_key BLOB,
        account_entropy_pool TEXT,
        environment TEXT NOT NULL,
        device_name TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE identities (
        service_id TEXT PRIMARY KEY,
        public_key BLOB NOT NULL,
        trust TEXT NOT NULL CHECK (trust IN ('trusted', 'untrusted-changed')),
        first_seen INTEGER NOT NULL,
        changed_at INTEGER
      );
      CREATE TABLE sessions (
        our_kind TEXT NOT NULL,
        service_id TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        record BLOB NOT NULL,
        PRIMARY KEY (our_kind, service_id, device_id)
      ) WITHOUT ROWID;
      CREATE TABLE prekeys (
        our_kind TEXT NOT NULL,
        key_id INTEGER NOT NULL,
        record BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (our_kind, key_id)
      ) WITHOUT ROWID;
      CREATE TABLE signed_prekeys (
        our_kind TEXT NOT NULL,
        key_id INTEGER NOT NULL,
        record BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (our_kind, key_id)
      ) WITHOUT ROWID;
      CREATE TABLE kyber_prekeys (
        our_kind TEXT NOT NULL,
        key_id INTEGER NOT NULL,
        record BLOB NOT NULL,
        last_resort INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (our_kind, key_id)
      ) WITHOUT ROWID;
      CREATE TABLE kyber_used (
        our_kind TEXT NOT NULL,
        kyber_id INTEGER NOT NULL,
        signed_prekey_id INTEGER NOT NULL,
        base_key BLOB NOT NULL,
        PRIMARY KEY (our_kind, kyber_id, signed_prekey_id, base_key)
      ) WITHOUT ROWID;
      CREATE TABLE sender_keys (
        address TEXT NOT NULL,
        distribution_id TEXT NOT NULL,
        record BLOB NOT NULL,
        PRIMARY KEY (address, distribution_id)
      ) WITHOUT ROWID;
      CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        e164 TEXT UNIQUE,
        aci TEXT UNIQUE,
        pni TEXT UNIQUE,
        name TEXT,
        profile_key BLOB,
        source TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE received_log (
        sender TEXT NOT NULL,
        device INTEGER NOT NULL,
        sent_at INTEGER NOT NULL,
        server_guid TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'emitted')),
        events TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (sender, device, sent_at)
      );
      CREATE TABLE sent_log (
        id INTEGER PRIMARY KEY,
        sent_at INTEGER NOT NULL,
        recipient TEXT NOT NULL,
        devices TEXT NOT NULL,
        content BLOB NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX sent_log_recipient ON sent_log (recipient, sent_at);
    `);
  },
  // v2: indexes that keep the hot paths flat as the logs grow: replaying pending rows at start-up
  // (a partial index holds only the few pending rows) and pruning the sent log by age.
  (db) => {
    db.exec(`
      CREATE INDEX received_log_pending ON received_log (received_at) WHERE state = 'pending';
      CREATE INDEX sent_log_created ON sent_log (created_at);
    `);
  },
  // v3: upkeep. One-time prekeys remember when an upload replaced them on the server (deleted after
  // a grace period, for peers that fetched them just before); the received log is pruned by age.
  (db) => {
    db.exec(`
      ALTER TABLE prekeys ADD COLUMN replaced_at INTEGER;
      ALTER TABLE kyber_prekeys ADD COLUMN replaced_at INTEGER;
      CREATE INDEX received_log_emitted ON received_log (received_at) WHERE state = 'emitted';
    `);
  },
  // v4: the last key id handed out, per identity and key type. Ids came from max(key_id) + 1, but
  // consumed and pruned keys leave the tables, and an id given again could meet a peer's old message
  // built on the earlier key of that id: a counter never goes back (it wraps only at 24 bits).
  (db) => {
    db.exec(`
      CREATE TABLE key_ids (
        our_kind TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('prekey', 'signed', 'kyber')),
        last INTEGER NOT NULL,
        PRIMARY KEY (our_kind, kind)
      );
      INSERT INTO key_ids SELECT our_kind, 'prekey', max(key_id) FROM prekeys GROUP BY our_kind;
      INSERT INTO key_ids SELECT our_kind, 'signed', max(key_id) FROM signed_prekeys GROUP BY our_kind;
      INSERT INTO key_ids SELECT our_kind, 'kyber', max(key_id) FROM kyber_prekeys GROUP BY our_kind;
      CREATE TRIGGER prekeys_last_id AFTER INSERT ON prekeys BEGIN
        INSERT INTO key_ids VALUES (NEW.our_kind, 'prekey', NEW.key_id)
          ON CONFLICT (our_kind, kind) DO UPDATE SET last = excluded.last;
      END;
      CREATE TRIGGER signed_prekeys_last_id AFTER INSERT ON signed_prekeys BEGIN
        INSERT INTO key_ids VALUES (NEW.our_kind, 'signed', NEW.key_id)
          ON CONFLICT (our_kind, kind) DO UPDATE SET last = excluded.last;
      END;
      CREATE TRIGGER kyber_prekeys_last_id AFTER INSERT ON kyber_prekeys BEGIN
        INSERT INTO key_ids VALUES (NEW.our_kind, 'kyber', NEW.key_id)
          ON CONFLICT (our_kind, kind) DO UPDATE SET last = excluded.last;
      END;
    `);
  },
  // v5: one row that SignalStore.sync() rewrites in a fully synced commit; with WAL, syncing that
  // commit puts every earlier one on disk too (group commit for the received log).
  (db) => {
    db.exec(`
      CREATE TABLE sync_mark (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
      INSERT INTO sync_mark VALUES (1, 0);
    `);
  },
  // v6: per-chat disappearing-messages timer and its version (every send carries them; a timer change
  // bumps the version, Signal's rule against older changes winning), and what became of our own sent
  // messages since (edits, a delete for everyone): Signal's apps allow at most so many edits.
  (db) => {
    db.exec(`
      CREATE TABLE conversations (
        service_id TEXT PRIMARY KEY,
        expire_timer INTEGER NOT NULL DEFAULT 0,
        expire_timer_version INTEGER NOT NULL DEFAULT 1,
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE sent_changes (
        recipient TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        edits INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (recipient, sent_at)
      );
      CREATE INDEX sent_changes_created ON sent_changes (created_at);
    `);
  },
  // v7: contacts remember the name in their Signal profile (decrypted with their profile key) and
  // when it was last fetched, so that it is refreshed at most daily; the synced name (`name`) still
  // comes first.
  (db) => {
    db.exec(`
      ALTER TABLE contacts ADD COLUMN profile_name TEXT;
      ALTER TABLE contacts ADD COLUMN profile_fetched_at INTEGER;
    `);
  },
  // v8: groups v2 as the engine knows them (issue 16): the state decrypted from the group server,
  // keyed by the group id (base64 identifier), with the master key that decrypts it, the members
  // (JSON: ACI, profile key, role), the pending members, and the send endorsements and their expiry.
  (db) => {
    db.exec(`
      CREATE TABLE groups (
        id TEXT PRIMARY KEY,
        master_key BLOB NOT NULL,
        revision INTEGER NOT NULL,
        title TEXT NOT NULL,
        timer_seconds INTEGER NOT NULL DEFAULT 0,
        members TEXT NOT NULL,
        pending_members TEXT NOT NULL,
        endorsements BLOB,
        endorsements_expiration INTEGER,
        fetched_at INTEGER NOT NULL
      );
    `);
  },
  // v9: our sender-key state per group (core/store/group-send.ts): the distribution id and the
  // current key's age, and which member devices hold its SenderKeyDistributionMessage.
  (db) => {
    db.exec(`
      CREATE TABLE group_send_state (
        group_id TEXT PRIMARY KEY,
        distribution_id TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE group_send_devices (
        group_id TEXT NOT NULL REFERENCES group_send_state (group_id) ON DELETE CASCADE,
        service_id TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        registration_id INTEGER NOT NULL,
        PRIMARY KEY (group_id, service_id, device_id)
      );
    `);
  },
  // v10: a retry request names only the timestamp of what it could not decrypt; a group message is
  // logged once under `group:<id>`, so it is found by its timestamp alone (an indexed read).
  (db) => {
    db.exec(`CREATE INDEX sent_log_sent_at ON sent_log (sent_at);`);
  },
];
