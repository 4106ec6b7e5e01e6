/** The received and sent logs, and per-chat state (timers). Only core/store runs SQL. */
import type { Db } from './database';
import type { IncomingEvent } from '../types';

/** Emitted received-log rows are kept this long (§6: they only recognise redeliveries). */
export const RECEIVED_LOG_RETENTION_MS = 45 * 24 * 60 * 60 * 1000;

export interface ReceivedKey {
  sender: string;
  device: number;
  timestamp: number;
}

export class ReceivedLog {
  private readonly s;

  constructor(
    db: Db,
    private readonly now: () => number,
  ) {
    this.s = {
      get: db.prepare(
        'SELECT state, events FROM received_log WHERE sender = ? AND device = ? AND sent_at = ?',
      ),
      insert: db.prepare(
        `INSERT INTO received_log (sender, device, sent_at, server_guid, state, events, received_at)
         VALUES (?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING`,
      ),
      mark: db.prepare(
        `UPDATE received_log SET state = 'emitted', events = '[]' WHERE sender = ? AND device = ? AND sent_at = ?`,
      ),
      pending: db.prepare(
        `SELECT sender, device, sent_at, events FROM received_log WHERE state = 'pending' ORDER BY received_at, rowid`,
      ),
      count: db.prepare('SELECT count(*) FROM received_log').pluck(),
      prune: db.prepare(`DELETE FROM received_log WHERE state = 'emitted' AND received_at < ?`),
    };
  }

  state(key: ReceivedKey): 'none' | 'pending' | 'emitted' {
    const row = this.s.get.get(key.sender, key.device, key.timestamp) as
      { state: 'pending' | 'emitted' } | undefined;
    return row ? row.state : 'none';
  }

  /** Inserts a pending row; false when the key was already logged. */
  insertPending(key: ReceivedKey, events: IncomingEvent[], serverGuid: string | null): boolean {
    return (
      this.s.insert.run(
        key.sender,
        key.device,
        key.timestamp,
        serverGuid,
        JSON.stringify(events),
        this.now(),
      ).changes === 1
    );
  }

  pendingEvents(key: ReceivedKey): IncomingEvent[] {
    const row = this.s.get.get(key.sender, key.device, key.timestamp) as
      { state: string; events: string } | undefined;
    return row && row.state === 'pending' ? (JSON.parse(row.events) as IncomingEvent[]) : [];
  }

  /** Marks emitted and drops the stored events: only the key is needed to recognise a repeat. */
  markEmitted(key: ReceivedKey): void {
    this.s.mark.run(key.sender, key.device, key.timestamp);
  }

  listPending(): Array<ReceivedKey & { events: IncomingEvent[] }> {
    return (
      this.s.pending.all() as Array<{
        sender: string;
        device: number;
        sent_at: number;
        events: string;
      }>
    ).map((r) => ({
      sender: r.sender,
      device: r.device,
      timestamp: r.sent_at,
      events: JSON.parse(r.events) as IncomingEvent[],
    }));
  }

  count(): number {
    return this.s.count.get() as number;
  }

  /**
   * Deletes emitted rows older than the retention: Signal's server drops queued messages after
   * about 30 days, so nothing that old can be redelivered and need recognising. A pending row (not
   * emitted yet) is never deleted. Returns how many.
   */
  prune(olderThanMs = RECEIVED_LOG_RETENTION_MS): number {
    return this.s.prune.run(this.now() - olderThanMs).changes;
  }
}

export interface SentEntry {
  timestamp: number;
  recipient: string;
  devices: number[];
  content: Uint8Array;
}

export const SENT_LOG_RETENTION_MS = 14 * 24 * 60 * 60 * 1000;

interface SentRow {
  sent_at: number;
  recipient: string;
  devices: string;
  content: Buffer;
}

function sentEntry(r: SentRow): SentEntry {
  return {
    timestamp: r.sent_at,
    recipient: r.recipient,
    devices: JSON.parse(r.devices) as number[],
    content: new Uint8Array(r.content),
  };
}

export class SentLog {
  private readonly s;

  constructor(
    db: Db,
    private readonly now: () => number,
  ) {
    this.s = {
      add: db.prepare(
        'INSERT INTO sent_log (sent_at, recipient, devices, content, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      find: db.prepare(
        'SELECT sent_at, recipient, devices, content FROM sent_log WHERE recipient = ? AND sent_at = ? ORDER BY id DESC LIMIT 1',
      ),
      findGroupSends: db.prepare(
        "SELECT sent_at, recipient, devices, content FROM sent_log WHERE sent_at = ? AND recipient LIKE 'group:%' ORDER BY id DESC LIMIT 8",
      ),
      prune: db.prepare('DELETE FROM sent_log WHERE created_at < ?'),
      changes: db.prepare(
        'SELECT edits, deleted FROM sent_changes WHERE recipient = ? AND sent_at = ?',
      ),
      noteEdit: db.prepare(
        `INSERT INTO sent_changes (recipient, sent_at, edits, created_at) VALUES (?, ?, 1, ?)
           ON CONFLICT (recipient, sent_at) DO UPDATE SET edits = edits + 1`,
      ),
      noteDelete: db.prepare(
        `INSERT INTO sent_changes (recipient, sent_at, deleted, created_at) VALUES (?, ?, 1, ?)
           ON CONFLICT (recipient, sent_at) DO UPDATE SET deleted = 1`,
      ),
      pruneChanges: db.prepare('DELETE FROM sent_changes WHERE created_at < ?'),
    };
  }

  /** How often our message to `recipient` sent at `timestamp` was edited, and whether it was deleted. */
  changesOf(recipient: string, timestamp: number): { edits: number; deleted: boolean } {
    const r = this.s.changes.get(recipient, timestamp) as
      { edits: number; deleted: number } | undefined;
    return { edits: r?.edits ?? 0, deleted: Boolean(r?.deleted) };
  }

  /** One more edit sent of our message to `recipient` sent at `timestamp` (the original's timestamp). */
  noteEdit(recipient: string, timestamp: number): void {
    this.s.noteEdit.run(recipient, timestamp, this.now());
  }

  /** Our message to `recipient` sent at `timestamp` was deleted for everyone. */
  noteDelete(recipient: string, timestamp: number): void {
    this.s.noteDelete.run(recipient, timestamp, this.now());
  }

  add(entry: SentEntry): void {
    this.s.add.run(
      entry.timestamp,
      entry.recipient,
      JSON.stringify(entry.devices),
      entry.content,
      this.now(),
    );
  }

  find(recipient: string, timestamp: number): SentEntry | undefined {
    const r = this.s.find.get(recipient, timestamp) as SentRow | undefined;
    return r ? sentEntry(r) : undefined;
  }

  /** Our group messages (recipient `group:<id>`) sent at `timestamp`: a retry request's lookup. */
  findGroupSends(timestamp: number): SentEntry[] {
    return (this.s.findGroupSends.all(timestamp) as SentRow[]).map(sentEntry);
  }

  /** Deletes entries older than the retention (Signal keeps about 14 days, §5). Returns how many. */
  prune(olderThanMs = SENT_LOG_RETENTION_MS): number {
    this.s.pruneChanges.run(this.now() - olderThanMs);
    return this.s.prune.run(this.now() - olderThanMs).changes;
  }
}

/** A chat's disappearing-messages timer: seconds (0 = off) and the version of that setting. */
export interface ConversationTimer {
  seconds: number;
  version: number;
}

/**
 * Per-chat state the send path needs: the disappearing-messages timer and its version. A chat never
 * seen is off at version 1, Signal's starting version (every send carries expireTimerVersion).
 */
export class ConversationsTable {
  private readonly s;

  constructor(
    db: Db,
    private readonly now: () => number,
  ) {
    this.s = {
      get: db.prepare(
        'SELECT expire_timer, expire_timer_version FROM conversations WHERE service_id = ?',
      ),
      set: db.prepare(
        `INSERT INTO conversations (service_id, expire_timer, expire_timer_version, updated_at)
           VALUES (?, ?, ?, ?)
           ON CONFLICT (service_id) DO UPDATE SET expire_timer = excluded.expire_timer,
             expire_timer_version = excluded.expire_timer_version, updated_at = excluded.updated_at`,
      ),
    };
  }

  timerOf(serviceId: string): ConversationTimer {
    const r = this.s.get.get(serviceId) as
      { expire_timer: number; expire_timer_version: number } | undefined;
    return r
      ? { seconds: r.expire_timer, version: r.expire_timer_version }
      : { seconds: 0, version: 1 };
  }

  /**
   * A timer change this account sends: the next version (stored + 1), saved once the change went out.
   * Returns the timer to send.
   */
  nextTimer(serviceId: string, seconds: number): ConversationTimer {
    return { seconds, version: this.timerOf(serviceId).version + 1 };
  }

  /** Saves a timer this account sent (from nextTimer). */
  saveTimer(serviceId: string, timer: ConversationTimer): void {
    this.s.set.run(serviceId, timer.seconds, timer.version, this.now());
  }

  /**
   * A timer the chat's peer (or our own other device) set, for the receive side: applied when its
   * version is at least the stored one (an older change never overrides a newer one); a version of 0
   * (a client too old to send one) changes the seconds and keeps the stored version. True if it
   * changed what is stored.
   */
  noteTimer(serviceId: string, seconds: number, version: number): boolean {
    if (!Number.isSafeInteger(seconds) || seconds < 0) return false;
    if (!Number.isSafeInteger(version) || version < 0) return false;
    const current = this.timerOf(serviceId);
    if (version !== 0 && version < current.version) return false;
    const next = version === 0 ? current.version : version;
    // Every message carries the chat's timer: write only when it changes (one read per message,
    // not one write).
    if (seconds === current.seconds && next === current.version) return false;
    this.s.set.run(serviceId, seconds, next, this.now());
    return true;
  }
}
