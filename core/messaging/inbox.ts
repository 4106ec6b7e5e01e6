/**
 * The inbox: what makes a received envelope durable and emitted exactly once (PROTOCOL.md §2, §6;
 * DESIGN.md "Data flow"). Per envelope: ONE transaction (the decryption's unit of work + the
 * received-log row, pending, with its events); per batch: one sync, then the ACKs, then the emits in
 * order (each row then marked emitted), then the batch's follow-ups. A crash before the ACK means the
 * server redelivers and the log makes the repeat a no-op (or re-emits a row still pending); a crash
 * after the ACK but before the emit leaves a pending row that replayPending() emits at the next start.
 */
import type { Logger } from '../log';
import type { IncomingEvent } from '../types';
import type { DropReason, FollowUp, UnitOfWork } from './decrypt';
import { DeliveryReceipts } from './receipts';

export interface ReceivedKey {
  sender: string;
  device: number;
  timestamp: number;
}

/** What the inbox needs from the account's store: the received log and its sync. */
export interface InboxStorePort {
  /** 'none' when never seen; otherwise the row's state. */
  receivedState(key: ReceivedKey): 'none' | 'pending' | 'emitted';
  /** Inserts a pending row; must be called inside commit's `extra` to share its transaction. */
  insertReceived(key: ReceivedKey, events: IncomingEvent[], serverGuid: string | null): void;
  pendingEvents(key: ReceivedKey): IncomingEvent[];
  markEmitted(key: ReceivedKey): void;
  listPending(): Array<ReceivedKey & { events: IncomingEvent[] }>;
  /**
   * Makes every commit so far durable (on disk, past a power cut). The receiver calls it once per
   * batch of envelopes before ACKing them: the server deletes what we ACK. Without it, commits are
   * taken as durable when made.
   */
  sync?(): void;
}

/** How an envelope is logged: its server GUID, and whether its messages may get delivery receipts. */
export interface RowMeta {
  serverGuid: string | null;
  receipt: boolean;
}

export interface InboxOptions {
  store: InboxStorePort;
  /** Our own ACI: nothing from our own devices gets a delivery receipt. */
  selfAci: string;
  logger: Logger;
  /** Called after ACK, in order, once per event. */
  emit: (event: IncomingEvent) => void;
  /**
   * Work a row needs before its emit (attachment downloads, ./attachments.ts): null when none,
   * else the events to emit once it resolves. Such a row is emitted off the envelopes' queue, one
   * at a time, and stays pending in the log until then (a crash replays it).
   */
  prepare?: (events: IncomingEvent[]) => (() => Promise<IncomingEvent[]>) | null;
  sendDeliveryReceipt?: (to: string, timestamps: number[]) => Promise<void>;
  receiptWindowMs?: number;
}

/** The most envelopes answered by one sync while more keep coming (a queue drain). */
const SYNC_BATCH = 64;

const keyString = (k: ReceivedKey) => `${k.sender}|${k.device}|${k.timestamp}`;

export class Inbox {
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;
  /** Rows recorded by this process whose emit is scheduled: pending in the store, but not lost. */
  private readonly scheduled = new Set<string>();
  /** Counts of dropped envelopes by reason (observability and tests). */
  readonly drops = new Map<DropReason, number>();
  /** Envelopes handed in and not yet processed: while there are some, a sync can cover more. */
  private inFlight = 0;
  /** ACKs waiting for the next sync, each told whether it succeeded. */
  private unsynced: Array<(durable: boolean) => void> = [];
  /** Emits of rows recorded since the last sync: they follow it (and the ACKs), in order. */
  private toEmit: Array<{ key: ReceivedKey; events: IncomingEvent[]; receipt: boolean }> = [];
  /** Follow-ups owed by envelopes since the last sync: they run after its ACKs and emits. */
  private toFollow: FollowUp[] = [];
  /** The follow-ups scheduled so far, one after another, off the envelopes' queue. */
  private following: Promise<void> = Promise.resolve();
  /** Rows waiting for their prepare() before the emit, one after another. */
  private preparing: Promise<void> = Promise.resolve();
  /** How many syncs ran (tests and benchmarks: how well envelopes were batched). */
  syncs = 0;
  /** Delivery receipts for emitted messages, batched per sender; null when none are sent. */
  readonly receipts: DeliveryReceipts | null;

  constructor(private readonly opts: InboxOptions) {
    this.receipts = opts.sendDeliveryReceipt
      ? new DeliveryReceipts({
          send: opts.sendDeliveryReceipt,
          logger: opts.logger,
          ...(opts.receiptWindowMs !== undefined ? { windowMs: opts.receiptWindowMs } : {}),
        })
      : null;
  }

  /**
   * Runs one envelope's processing after every one before it (ratchets and the users' flows are
   * order-sensitive) and resolves with its answer once what it recorded is durable. Group commit:
   * each envelope commits on its own, and one sync then covers every envelope processed meanwhile,
   * before any of them is ACKed (or emitted).
   */
  process(run: () => Promise<number>): Promise<number> {
    this.inFlight++;
    const done = this.queue.then(async () => {
      try {
        return await run();
      } finally {
        this.inFlight--;
      }
    });
    this.queue = done.catch(() => undefined);
    return done.then(
      (status) => this.afterSync(status),
      (e: unknown) => {
        // Not answered with a status: still, the batch before it must not wait for another.
        if (this.inFlight === 0 && this.unsynced.length > 0) this.flush();
        throw e;
      },
    );
  }

  /** Runs `fn` after every envelope handed in before it. */
  afterAll<T>(fn: () => T): Promise<T> {
    const done = this.queue.then(fn);
    this.queue = done.catch(() => undefined);
    return done;
  }

  /** Waits until every envelope handed in so far is processed, and every follow-up they owe ran. */
  async idle(): Promise<void> {
    await this.queue;
    await this.following;
    await this.preparing;
  }

  /**
   * After stop(), recorded events are no longer emitted: their rows stay pending and the next start
   * replays them, so each is still emitted exactly once (and nothing touches a closed store).
   */
  stop(): void {
    this.stopped = true;
    // Receipts are best effort (Signal resends none): what is still pending is dropped, no timer left.
    this.receipts?.close();
  }

  /** Emits events recorded by an earlier run that were ACKed but not yet emitted. */
  replayPending(): number {
    const pending = this.opts.store.listPending();
    // Whether these went to our PNI is not in the log: no receipts for them (see RowMeta.receipt).
    for (const row of pending) this.emitRecorded(row, row.events, false);
    return pending.length;
  }

  drop(reason: DropReason, detail: string): number {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
    this.opts.logger.warn(`receiver: dropped envelope (${reason}): ${detail}`);
    return 200;
  }

  /** Whether the log has this envelope already (a repeat: not decrypted again, its keys are gone). */
  known(key: ReceivedKey): boolean {
    return this.opts.store.receivedState(key) !== 'none';
  }

  /**
   * Owed by the envelope being processed (a retry request to send or to answer, a contacts blob):
   * runs once its batch is ACKed and emitted, outside any peer lock, never holding up the envelopes
   * behind it. It runs whether or not the sync succeeded: a redelivery of a recorded row is a repeat
   * and does not owe it again. A failure is logged.
   */
  followUp(fn: FollowUp): void {
    this.toFollow.push(fn);
  }

  /** Commits the unit of work with the envelope's log row (pending, with `events`). */
  commitAndLog(
    uow: UnitOfWork | null,
    key: ReceivedKey,
    events: IncomingEvent[],
    meta: RowMeta,
  ): void {
    const insert = () => {
      if (this.opts.store.receivedState(key) === 'none') {
        this.opts.store.insertReceived(key, events, meta.serverGuid);
      }
    };
    if (uow) uow.commit(insert);
    else insert();
  }

  /** Durably records the envelope's outcome, then schedules the emit for right after the ACK. */
  record(key: ReceivedKey, events: IncomingEvent[], meta: RowMeta, uow: UnitOfWork | null): number {
    const state = this.opts.store.receivedState(key);
    if (state !== 'none') {
      uow?.discard();
      if (state === 'pending' && !this.scheduled.has(keyString(key))) {
        // Recorded by an earlier run that stopped before emitting: emit it now, once.
        const pending = this.opts.store.pendingEvents(key);
        this.schedule(key, pending, meta.receipt);
      } else {
        // A redelivery (a lost ACK, a reconnect): common and harmless, so logged at debug level.
        this.drops.set('duplicate', (this.drops.get('duplicate') ?? 0) + 1);
        this.opts.logger.debug(
          `receiver: dropped envelope (duplicate): ${key.sender}.${key.device} ${key.timestamp} already received`,
        );
      }
      return 200;
    }
    this.commitAndLog(uow, key, events, meta);
    // The handler's status goes out as the ACK when this settles; the emit runs right after it.
    this.schedule(key, events, meta.receipt);
    return 200;
  }

  private schedule(key: ReceivedKey, events: IncomingEvent[], receipt: boolean): void {
    this.scheduled.add(keyString(key));
    this.toEmit.push({ key, events, receipt });
  }

  /** Resolves with the envelope's answer once what it recorded is durable (or 500 if not). */
  private afterSync(status: number): Promise<number> {
    const answer = new Promise<number>((resolve) =>
      this.unsynced.push((durable) => resolve(durable ? status : 500)),
    );
    if (this.inFlight === 0 || this.unsynced.length >= SYNC_BATCH) this.flush();
    return answer;
  }

  /**
   * One sync for the batch; then its ACKs go out, then its emits run (after the ACKs, in order), then
   * its follow-ups.
   */
  private flush(): void {
    const answers = this.unsynced;
    const emits = this.toEmit;
    const followUps = this.toFollow;
    this.unsynced = [];
    this.toEmit = [];
    this.toFollow = [];
    let durable = true;
    try {
      this.opts.store.sync?.();
      this.syncs++;
    } catch (e) {
      // Not ACKed: the server keeps these envelopes and delivers them again; their rows stay pending
      // in the log, so the redelivery emits each once. (After stop() the store is being closed:
      // the same, but expected.)
      durable = false;
      if (!this.stopped)
        this.opts.logger.error('receiver: could not sync the received log; not acknowledging', e);
    }
    for (const answer of answers) answer(durable);
    if (!durable) for (const { key } of emits) this.scheduled.delete(keyString(key));
    // The ACKs above are sent as their promises settle, before this callback runs.
    const emitted = new Promise<void>((resolve) =>
      setImmediate(() => {
        if (durable) {
          for (const { key, events, receipt } of emits) {
            if (!this.emitRecorded(key, events, receipt)) this.scheduled.delete(keyString(key));
          }
        }
        resolve();
      }),
    );
    if (followUps.length > 0)
      this.following = this.following.then(() => emitted.then(() => this.runFollowUps(followUps)));
  }

  /** One at a time, in the envelopes' order; each failure logged, never an unhandled rejection. */
  private async runFollowUps(followUps: FollowUp[]): Promise<void> {
    for (const fn of followUps) {
      // After stop() the store is being closed: what is still owed is dropped, as receipts are.
      if (this.stopped) return;
      try {
        await fn();
      } catch (e) {
        this.opts.logger.warn('receiver: follow-up action failed', e);
      }
    }
  }

  /** Emits a row now, or (true) once its prepare() ended; `scheduled` holds it meanwhile. */
  private emitRecorded(key: ReceivedKey, events: IncomingEvent[], receipt: boolean): boolean {
    if (this.stopped) return false;
    let prepared: (() => Promise<IncomingEvent[]>) | null = null;
    try {
      prepared = this.opts.prepare?.(events) ?? null;
    } catch (e) {
      this.opts.logger.error('receiver: could not prepare a message', e);
    }
    if (!prepared) {
      this.emitNow(key, events, receipt);
      return false;
    }
    const work = prepared;
    const id = keyString(key);
    this.scheduled.add(id);
    this.preparing = this.preparing.then(async () => {
      let ready = events;
      try {
        if (!this.stopped) ready = await work();
      } catch (e) {
        // prepare() marks what failed on the events; this is a bug path: emit what was recorded.
        this.opts.logger.error('receiver: preparing a message failed', e);
      }
      // After stop(): left pending, the next start replays it (and prepares it again).
      if (!this.stopped) this.emitNow(key, ready, receipt);
      this.scheduled.delete(id);
    });
    return true;
  }

  private emitNow(key: ReceivedKey, events: IncomingEvent[], receipt: boolean): void {
    for (const ev of events) {
      try {
        this.opts.emit(ev);
      } catch (e) {
        // A listener's failure must not block the stream or re-deliver: log and continue.
        this.opts.logger.error('receiver: event listener threw', e);
      }
    }
    try {
      this.opts.store.markEmitted(key);
    } catch (e) {
      // Emitted but not marked: the next start replays it (at-least-once beats lost).
      this.opts.logger.error('receiver: could not mark an emitted message', e);
    }
    // A row is emitted once (a redelivery finds it emitted and is dropped as a duplicate), so each
    // message gets one receipt, and only once it is recorded and ACKed. The receipt names the
    // envelope's timestamp: the sender's id of the message.
    if (receipt && this.receipts && events.some((ev) => this.wantsDeliveryReceipt(ev)))
      this.receipts.add(key.sender, key.timestamp);
  }

  /**
   * Signal's apps send a delivery receipt for each data message (reactions, deletes and timer
   * changes included) and edit they receive; none for receipts, typing, sync transcripts or anything
   * from our own account's devices (they are not "delivered" to us). Data messages with nothing to
   * show (a profile key update) raise no event here, so they get none either.
   */
  private wantsDeliveryReceipt(ev: IncomingEvent): boolean {
    const dataLike =
      ev.type === 'message' || ev.type === 'edit' || ev.type === 'delete' || ev.type === 'timer';
    return dataLike && ev.from.aci !== this.opts.selfAci;
  }
}
