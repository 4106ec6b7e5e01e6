/**
 * The receive path (PROTOCOL.md §2, §6; DESIGN.md "Data flow"):
 *   frame → Envelope → decrypt with a unit of work → ONE transaction: session update + received-log
 *   row (pending, with the events) → ACK → emit → mark emitted.
 * A crash before the ACK means the server redelivers and the received log makes the repeat a no-op
 * (or re-emits a row still pending); a crash after the ACK but before the emit leaves a pending row
 * that replayPending() emits at the next start. Envelopes are processed one at a time, in arrival
 * order: ratchets are order-sensitive and so are the users' flows.
 */
import {
  CiphertextMessageType,
  DecryptionErrorMessage,
  ErrorCode,
  LibSignalErrorBase,
  PlaintextContent,
  PreKeySignalMessage,
  ProtocolAddress,
  PublicKey,
  SenderKeyDistributionMessage,
  SignalMessage,
  groupDecrypt,
  processSenderKeyDistributionMessage,
  sealedSenderDecryptToUsmc,
  signalDecrypt,
  signalDecryptPreKey,
} from '@signalapp/libsignal-client';
import type {
  IdentityKeyStore,
  KyberPreKeyStore,
  PreKeyStore,
  SenderKeyStore,
  SessionStore,
  SignedPreKeyStore,
} from '@signalapp/libsignal-client';
import { Envelope, toNumber, type Content } from '../../proto';
import { unpadMessage } from '../crypto/padding';
import type { Logger } from '../log';
import type { IncomingRequest } from '../net/types';
import type { IncomingEvent, Sender } from '../types';
import { contentEffects, parseContent, serviceIdFrom, type ContentEffects } from './content';
import { KeyedLock } from './lock';
import { DeliveryReceipts } from './receipts';

export interface ProtocolStores {
  sessions: SessionStore;
  identities: IdentityKeyStore;
  preKeys: PreKeyStore;
  signedPreKeys: SignedPreKeyStore;
  kyberPreKeys: KyberPreKeyStore;
  senderKeys: SenderKeyStore;
}

/** A batch of protocol-store writes applied atomically together with `extra`. */
export interface UnitOfWork extends ProtocolStores {
  commit(extra?: () => void): void;
  discard(): void;
}

export interface ReceivedKey {
  sender: string;
  device: number;
  timestamp: number;
}

/** What the receiver needs from the account's store; adapted from core/store by the client. */
export interface ReceiverStorePort {
  unitOfWork(kind: 'aci' | 'pni'): UnitOfWork;
  /** 'none' when never seen; otherwise the row's state. */
  receivedState(key: ReceivedKey): 'none' | 'pending' | 'emitted';
  /** Inserts a pending row; must be called inside commit's `extra` to share its transaction. */
  insertReceived(key: ReceivedKey, events: IncomingEvent[], serverGuid: string | null): void;
  pendingEvents(key: ReceivedKey): IncomingEvent[];
  markEmitted(key: ReceivedKey): void;
  listPending(): Array<ReceivedKey & { events: IncomingEvent[] }>;
  /**
   * Records a sender's number and/or profile key in the contacts table (best effort). Called inside
   * the transaction of the message's log row; should write only when something changed.
   */
  recordContact(info: { aci: string; number?: string; profileKey?: Uint8Array }): void;
  /**
   * What the contacts table knows of a sender (a contact synced from the phone, a lookup): one
   * indexed read by ACI. Fills in the number and name the envelope does not carry.
   */
  contactOf?(aci: string): { number?: string; name?: string } | undefined;
  /**
   * Makes every commit so far durable (on disk, past a power cut). The receiver calls it once per
   * batch of envelopes before ACKing them: the server deletes what we ACK. Without it, commits are
   * taken as durable when made.
   */
  sync?(): void;
}

/** The most envelopes answered by one sync while more keep coming (a queue drain). */
const SYNC_BATCH = 64;

export interface ReceiverOptions {
  store: ReceiverStorePort;
  /** Our own account: ACI, PNI (bare), device id. */
  self: { aci: string; pni: string; deviceId: number };
  trustRoots: PublicKey[];
  logger: Logger;
  /** Called after ACK, in order, once per event. */
  emit: (event: IncomingEvent) => void;
  /** Sends a retry request (DecryptionErrorMessage as PlaintextContent) to one sender device. */
  sendRetryRequest: (to: string, device: number, plaintext: PlaintextContent) => Promise<void>;
  /** Handles a retry request from a peer: archive the session if it matches, resend (§6). */
  onRetryRequest: (from: string, device: number, request: DecryptionErrorMessage) => Promise<void>;
  /** A contacts sync blob arrived from our own primary (§7). */
  onContactsBlob?: (blob: NonNullable<ContentEffects['contactsBlob']>) => void;
  /** The server said its stored queue is drained. */
  onQueueEmpty?: () => void;
  /**
   * Sends one delivery receipt message (`to` a bare ACI, the sent timestamps it covers). Without it
   * no receipts are sent. Called off the receive path, batched (see ./receipts.ts).
   */
  sendDeliveryReceipt?: (to: string, timestamps: number[]) => Promise<void>;
  /** How long a delivery receipt waits for others to the same sender (default 1000 ms). */
  receiptWindowMs?: number;
  now?: () => number;
  /** Shared with the sender: one session is never encrypted and decrypted at the same time. */
  lock?: KeyedLock;
}

/** Why an envelope was dropped (ACKed without an event); logged, and counted for tests and fuzzing. */
export type DropReason =
  | 'malformed-envelope'
  | 'unsupported-type'
  | 'missing-source'
  | 'bad-certificate'
  | 'self-send'
  | 'duplicate'
  | 'decrypt-failed'
  | 'malformed-content';

class DropError extends Error {
  constructor(
    readonly reason: DropReason,
    message: string,
    /** Runs after the peer's lock is released (a retry request is a send to that peer). */
    readonly after?: () => Promise<void>,
  ) {
    super(message);
  }
}

interface Identified {
  sender: Sender;
  sealed: boolean;
  msgType: number;
  bytes: Uint8Array;
  kind: 'aci' | 'pni';
}

/**
 * Plaintext content is not end-to-end authenticated: anyone who can put an envelope in our queue
 * could write it. Signal's clients accept exactly one thing in it, a retry request
 * (DecryptionErrorMessage), and reject a plaintext Content carrying anything else; so do we, or a
 * forged "message" from any sender would be emitted as if it had been decrypted.
 */
function onlyRetryRequest(content: Content): void {
  const fields = Object.keys(content.toJSON());
  const others = fields.filter((f) => f !== 'decryptionErrorMessage');
  if (!fields.includes('decryptionErrorMessage') || others.length > 0) {
    throw new Error(
      `plaintext content may carry only a retry request${others.length ? `, not ${others.join(', ')}` : ''}`,
    );
  }
}

const keyString = (k: ReceivedKey) => `${k.sender}|${k.device}|${k.timestamp}`;

export class Receiver {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly lock: KeyedLock;
  private stopped = false;
  /** Rows recorded by this process whose emit is scheduled: pending in the store, but not lost. */
  private readonly scheduled = new Set<string>();
  private readonly now: () => number;
  /** Counts of dropped envelopes by reason (observability and tests). */
  readonly drops = new Map<DropReason, number>();
  processed = 0;
  /** Envelopes handed in and not yet processed: while there are some, a sync can cover more. */
  private inFlight = 0;
  /** ACKs waiting for the next sync, each told whether it succeeded. */
  private unsynced: Array<(durable: boolean) => void> = [];
  /** Emits of rows recorded since the last sync: they follow it (and the ACKs), in order. */
  private toEmit: Array<{ key: ReceivedKey; events: IncomingEvent[]; receipt: boolean }> = [];
  /** How many syncs ran (tests and benchmarks: how well envelopes were batched). */
  syncs = 0;
  /** Delivery receipts for emitted messages, batched per sender; null when none are sent. */
  readonly receipts: DeliveryReceipts | null;

  constructor(private readonly opts: ReceiverOptions) {
    this.now = opts.now ?? Date.now;
    this.lock = opts.lock ?? new KeyedLock();
    this.receipts = opts.sendDeliveryReceipt
      ? new DeliveryReceipts({
          send: opts.sendDeliveryReceipt,
          logger: opts.logger,
          ...(opts.receiptWindowMs !== undefined ? { windowMs: opts.receiptWindowMs } : {}),
        })
      : null;
  }

  /** The socket's IncomingRequestHandler for the authenticated chat connection. */
  readonly handleRequest = (req: IncomingRequest): Promise<number> => {
    if (req.verb === 'PUT' && req.path === '/api/v1/message') {
      this.inFlight++;
      const run = this.queue.then(async () => {
        try {
          return await this.processEnvelope(req.body);
        } finally {
          this.inFlight--;
        }
      });
      this.queue = run.catch(() => undefined);
      // Group commit: each envelope commits on its own, and one sync then covers every envelope
      // processed meanwhile, before any of them is ACKed (or emitted).
      return run.then(
        (status) => this.afterSync(status),
        (e: unknown) => {
          // Not answered with a status: still, the batch before it must not wait for another.
          if (this.inFlight === 0 && this.unsynced.length > 0) this.flush();
          throw e;
        },
      );
    }
    if (req.verb === 'PUT' && req.path === '/api/v1/queue/empty') {
      // Ordered behind every envelope received before it.
      const run = this.queue.then(() => {
        this.opts.onQueueEmpty?.();
        // The stored queue is drained: the receipts of what it held need not wait for the window.
        // On the next turn, after the emits of the last batch (scheduled the same way) added theirs.
        if (this.receipts) setImmediate(() => this.receipts?.flush());
        return 200;
      });
      this.queue = run.catch(() => undefined);
      return run;
    }
    this.opts.logger.debug(`receiver: unexpected server request ${req.verb} ${req.path}`);
    return Promise.resolve(404);
  };

  /** Emits events recorded by an earlier run that were ACKed but not yet emitted. */
  replayPending(): number {
    const pending = this.opts.store.listPending();
    // Whether these went to our PNI is not in the log: no receipts for them (see receiptAllowed).
    for (const row of pending) this.emitRecorded(row, row.events, false);
    return pending.length;
  }

  /** Waits until every envelope handed in so far has been processed. */
  async idle(): Promise<void> {
    await this.queue;
  }

  private drop(reason: DropReason, detail: string): number {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
    this.opts.logger.warn(`receiver: dropped envelope (${reason}): ${detail}`);
    return 200;
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
   * A follow-up (a retry request to send, which may wait for the network) holds the queue: the batch
   * before it is not kept waiting for it. Its own envelope is committed already, so the sync covers
   * it too (its emit may then precede its ACK: a redelivery finds the row emitted and drops it).
   */
  private flushBeforeWaiting(): void {
    if (this.unsynced.length > 0) this.flush();
  }

  /** One sync for the batch; then its ACKs go out, then its emits run (after the ACKs, in order). */
  private flush(): void {
    const answers = this.unsynced;
    const emits = this.toEmit;
    this.unsynced = [];
    this.toEmit = [];
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
    if (!durable) {
      for (const { key } of emits) this.scheduled.delete(keyString(key));
      return;
    }
    setImmediate(() => {
      for (const { key, events, receipt } of emits) {
        this.emitRecorded(key, events, receipt);
        this.scheduled.delete(keyString(key));
      }
    });
  }

  private emitRecorded(key: ReceivedKey, events: IncomingEvent[], receipt: boolean): void {
    if (this.stopped) return;
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
   * Signal's apps send a delivery receipt for each data message (reactions included) and edit they
   * receive; none for receipts, typing, sync transcripts or anything from our own account's devices
   * (they are not "delivered" to us). Data messages with nothing to show (a profile key update, a
   * timer change without text) raise no event here, so they get none either.
   */
  private wantsDeliveryReceipt(ev: IncomingEvent): boolean {
    return ev.type === 'message' && ev.from.aci !== this.opts.self.aci;
  }

  /** Returns the status to ACK with; 200 whenever the envelope is recorded or deliberately dropped. */
  private async processEnvelope(bytes: Uint8Array): Promise<number> {
    this.processed++;
    let envelope: Envelope;
    try {
      envelope = Envelope.decode(bytes);
    } catch (e) {
      return this.drop('malformed-envelope', (e as Error).message);
    }
    const type = envelope.type ?? Envelope.Type.UNKNOWN;
    const serverTimestamp = toNumber(envelope.serverTimestamp);
    const timestamp = toNumber(envelope.clientTimestamp);
    // Milliseconds since 1970 stay far below 2^53; larger values lose precision here and make
    // libsignal throw (u64 conversion) deep inside decryption, which would be a 500 and a redelivery
    // loop. No real server sends them: drop.
    if (!Number.isSafeInteger(timestamp) || !Number.isSafeInteger(serverTimestamp)) {
      return this.drop(
        'malformed-envelope',
        `timestamp out of range (client ${timestamp}, server ${serverTimestamp})`,
      );
    }

    if (type === Envelope.Type.SERVER_DELIVERY_RECEIPT) {
      const source = serviceIdFrom(envelope.sourceServiceIdBinary, envelope.sourceServiceId);
      if (!source) return this.drop('missing-source', 'delivery receipt without a source');
      const device = envelope.sourceDeviceId ?? 0;
      const event: IncomingEvent = {
        type: 'receipt',
        from: { aci: source, device },
        timestamp,
        serverTimestamp,
        sealed: false,
        receiptType: 'delivery',
        timestamps: [timestamp],
      };
      return this.record({ sender: source, device, timestamp }, [event], envelope, null);
    }

    let ident: Identified;
    try {
      ident = await this.identify(envelope, type, serverTimestamp);
    } catch (e) {
      if (e instanceof DropError) return this.drop(e.reason, e.message);
      this.opts.logger.error('receiver: failed to process envelope', e);
      return 500;
    }
    let outcome: { status: number; after?: () => Promise<void> };
    try {
      // Held from the unit of work's first read to its commit: a send to the same peer must not
      // advance the session in between (its write would be lost).
      outcome = await this.lock.run(ident.sender.aci, () =>
        this.decryptAndRecord(envelope, ident, timestamp, serverTimestamp),
      );
    } catch (e) {
      if (e instanceof DropError) {
        // A failed retry request must not turn a deliberate drop into a redelivery loop.
        if (e.after) this.flushBeforeWaiting();
        if (e.after)
          await e
            .after()
            .catch((err: unknown) => this.opts.logger.warn('receiver: retry request failed', err));
        return this.drop(e.reason, e.message);
      }
      // A store failure or a bug: not ACKed, so the server keeps the envelope for a later try.
      this.opts.logger.error('receiver: failed to process envelope', e);
      return 500;
    }
    if (outcome.after) {
      this.flushBeforeWaiting();
      try {
        await outcome.after();
      } catch (e) {
        this.opts.logger.warn('receiver: follow-up action failed', e);
      }
    }
    return outcome.status;
  }

  /** Who sent it and what to decrypt; for sealed sender this opens the outer layer only. */
  private async identify(
    envelope: Envelope,
    type: number,
    serverTimestamp: number,
  ): Promise<Identified> {
    const content = envelope.content ? new Uint8Array(envelope.content) : new Uint8Array(0);
    const kind = this.destinationKind(envelope);
    if (type === Envelope.Type.UNIDENTIFIED_SENDER) {
      const stores = this.opts.store.unitOfWork(kind);
      let usmc;
      try {
        // Reads only our identity key; nothing to commit.
        usmc = await sealedSenderDecryptToUsmc(content, stores.identities);
      } catch (e) {
        throw new DropError('decrypt-failed', `sealed sender: ${(e as Error).message}`);
      } finally {
        stores.discard();
      }
      const cert = usmc.senderCertificate();
      if (!cert.validateWithTrustRoots(this.opts.trustRoots, serverTimestamp || this.now())) {
        throw new DropError(
          'bad-certificate',
          'sender certificate not signed by a trust root, or expired',
        );
      }
      const senderAci = cert.senderAci()?.getServiceIdString() ?? cert.senderUuid();
      const device = cert.senderDeviceId();
      if (senderAci === this.opts.self.aci && device === this.opts.self.deviceId) {
        throw new DropError('self-send', 'sealed message from our own device');
      }
      const number = cert.senderE164() ?? undefined;
      return {
        sender: { aci: senderAci, device, ...(number ? { number } : {}) },
        sealed: true,
        msgType: usmc.msgType(),
        bytes: new Uint8Array(usmc.contents()),
        kind,
      };
    }
    if (
      type === Envelope.Type.DOUBLE_RATCHET ||
      type === Envelope.Type.PREKEY_MESSAGE ||
      type === Envelope.Type.PLAINTEXT_CONTENT
    ) {
      const source = serviceIdFrom(envelope.sourceServiceIdBinary, envelope.sourceServiceId);
      const device = envelope.sourceDeviceId ?? 0;
      if (!source || !device)
        throw new DropError('missing-source', `type ${type} without source or device`);
      try {
        // libsignal's device ids are 1..127; a larger one would throw later, as a 500.
        ProtocolAddress.new(source, device);
      } catch (e) {
        throw new DropError(
          'malformed-envelope',
          `source ${source}.${device}: ${(e as Error).message}`,
        );
      }
      const msgType =
        type === Envelope.Type.DOUBLE_RATCHET
          ? CiphertextMessageType.Whisper
          : type === Envelope.Type.PREKEY_MESSAGE
            ? CiphertextMessageType.PreKey
            : CiphertextMessageType.Plaintext;
      return { sender: { aci: source, device }, sealed: false, msgType, bytes: content, kind };
    }
    throw new DropError('unsupported-type', `envelope type ${type}`);
  }

  private async decryptAndRecord(
    envelope: Envelope,
    ident: Identified,
    timestamp: number,
    serverTimestamp: number,
  ): Promise<{ status: number; after?: () => Promise<void> }> {
    const { sender, sealed } = ident;
    const key: ReceivedKey = { sender: sender.aci, device: sender.device, timestamp };
    // A repeat of something already logged: not decrypted again (its keys are gone); record() ACKs
    // it and re-emits only what an earlier run recorded but never emitted.
    if (this.opts.store.receivedState(key) !== 'none')
      return { status: this.record(key, [], envelope, null) };

    const uow = this.opts.store.unitOfWork(ident.kind);
    const plaintext = await this.decryptInner(
      ident.msgType,
      ident.bytes,
      sender,
      ident.kind,
      uow,
      timestamp,
    );
    let effects: ContentEffects;
    let retry: DecryptionErrorMessage | undefined;
    let content: Content;
    try {
      content = parseContent(unpadMessage(plaintext));
      if (ident.msgType === CiphertextMessageType.Plaintext) onlyRetryRequest(content);
      const from = this.withContact(sender);
      effects = contentEffects(content, { from, timestamp, serverTimestamp, sealed });
      // Parsed now, so that a corrupt retry request is a logged drop, not a failed follow-up.
      if (effects.decryptionError)
        retry = DecryptionErrorMessage.deserialize(new Uint8Array(effects.decryptionError));
    } catch (e) {
      // The session advanced: commit it with the log row so the ratchet stays in step; emit nothing.
      this.commitAndLog(uow, key, [], envelope);
      throw new DropError('malformed-content', (e as Error).message);
    }
    // A sender key for a group this sender writes to (§6, sender keys): alone in its Content or
    // beside a message. Stored in this unit of work, so it commits with the session and the log row:
    // a redelivery of this envelope is a duplicate, and its key must not be lost with it.
    const skdm = content.senderKeyDistributionMessage;
    if (skdm && skdm.length > 0) await this.processSenderKey(sender, skdm, uow);
    // What the message tells us about its sender is written in the same transaction as its log row
    // (not one more transaction per message); a failure there must not undo the message's commit.
    const profileKey = effects.profileKey;
    const learned =
      profileKey || sender.number
        ? {
            aci: sender.aci,
            ...(sender.number ? { number: sender.number } : {}),
            ...(profileKey ? { profileKey } : {}),
          }
        : null;
    const unit: UnitOfWork = learned
      ? {
          sessions: uow.sessions,
          identities: uow.identities,
          preKeys: uow.preKeys,
          signedPreKeys: uow.signedPreKeys,
          kyberPreKeys: uow.kyberPreKeys,
          senderKeys: uow.senderKeys,
          discard: () => uow.discard(),
          commit: (extra) =>
            uow.commit(() => {
              extra?.();
              try {
                this.opts.store.recordContact(learned);
              } catch (e) {
                this.opts.logger.warn('receiver: could not record contact', e);
              }
            }),
        }
      : uow;
    const status = this.record(key, effects.events, envelope, unit);
    const blob = effects.contactsBlob;
    const after = async () => {
      if (retry) await this.opts.onRetryRequest(sender.aci, sender.device, retry);
      if (blob && sender.aci === this.opts.self.aci) this.opts.onContactsBlob?.(blob);
    };
    return retry || blob ? { status, after } : { status };
  }

  /**
   * Stores a sender's SenderKeyDistributionMessage. A malformed or unusable one is logged and
   * skipped: the rest of the Content (a message beside it) still counts, and the ratchet step that
   * carried it still commits. A later group message without the key asks for a resend (§6).
   */
  private async processSenderKey(
    sender: Sender,
    bytes: Uint8Array,
    uow: UnitOfWork,
  ): Promise<void> {
    try {
      const skdm = SenderKeyDistributionMessage.deserialize(new Uint8Array(bytes));
      await processSenderKeyDistributionMessage(
        ProtocolAddress.new(sender.aci, sender.device),
        skdm,
        uow.senderKeys,
      );
      this.opts.logger.debug(
        `receiver: stored a sender key of ${sender.aci}.${sender.device} (distribution ${skdm.distributionId()})`,
      );
    } catch (e) {
      this.opts.logger.warn(
        `receiver: ignored a sender key distribution message from ${sender.aci}.${sender.device}`,
        e,
      );
    }
  }

  /**
   * The sender with what the contacts table adds: the number when the envelope does not carry it
   * (only a sealed envelope whose sender shares it does), and the contact's name. DESIGN.md promises
   * the number on every message from a known contact.
   */
  private withContact(sender: Sender): Sender {
    if (!this.opts.store.contactOf) return sender;
    let contact: { number?: string; name?: string } | undefined;
    try {
      contact = this.opts.store.contactOf(sender.aci);
    } catch (e) {
      // Only a nicety: a failed read must not fail the message.
      this.opts.logger.warn('receiver: could not read the contact of a sender', e);
      return sender;
    }
    if (!contact) return sender;
    const number = sender.number ?? contact.number;
    const name = sender.name ?? contact.name;
    if (number === sender.number && name === sender.name) return sender;
    return { ...sender, ...(number ? { number } : {}), ...(name ? { name } : {}) };
  }

  private commitAndLog(
    uow: UnitOfWork | null,
    key: ReceivedKey,
    events: IncomingEvent[],
    envelope: Envelope,
  ): void {
    const insert = () => {
      if (this.opts.store.receivedState(key) === 'none') {
        this.opts.store.insertReceived(key, events, envelope.serverGuid || null);
      }
    };
    if (uow) uow.commit(insert);
    else insert();
  }

  /** Durably records the envelope's outcome, then schedules the emit for right after the ACK. */
  private record(
    key: ReceivedKey,
    events: IncomingEvent[],
    envelope: Envelope,
    uow: UnitOfWork | null,
  ): number {
    const state = this.opts.store.receivedState(key);
    if (state !== 'none') {
      uow?.discard();
      if (state === 'pending' && !this.scheduled.has(keyString(key))) {
        // Recorded by an earlier run that stopped before emitting: emit it now, once.
        const pending = this.opts.store.pendingEvents(key);
        this.schedule(key, pending, this.receiptAllowed(envelope));
      } else {
        // A redelivery (a lost ACK, a reconnect): common and harmless, so logged at debug level.
        this.drops.set('duplicate', (this.drops.get('duplicate') ?? 0) + 1);
        this.opts.logger.debug(
          `receiver: dropped envelope (duplicate): ${key.sender}.${key.device} ${key.timestamp} already received`,
        );
      }
      return 200;
    }
    this.commitAndLog(uow, key, events, envelope);
    // The handler's status goes out as the ACK when this settles; the emit runs right after it.
    this.schedule(key, events, this.receiptAllowed(envelope));
    return 200;
  }

  /**
   * A message to our PNI comes from someone who knows only our phone number; anything we send back
   * comes from our ACI and would tie the two together for them. Signal tells such a sender our ACI
   * only once the user accepts the chat (its PNI signature message), so no receipt goes for these.
   */
  private receiptAllowed(envelope: Envelope): boolean {
    return this.destinationKind(envelope) === 'aci';
  }

  private localAddress(kind: 'aci' | 'pni'): ProtocolAddress {
    const { aci, pni, deviceId } = this.opts.self;
    return ProtocolAddress.new(kind === 'aci' ? aci : `PNI:${pni}`, deviceId);
  }

  private destinationKind(envelope: Envelope): 'aci' | 'pni' {
    const dest = serviceIdFrom(envelope.destinationServiceIdBinary, envelope.destinationServiceId);
    return dest && dest.startsWith('PNI:') ? 'pni' : 'aci';
  }

  private async decryptInner(
    msgType: number,
    bytes: Uint8Array,
    sender: Sender,
    kind: 'aci' | 'pni',
    stores: UnitOfWork,
    timestamp: number,
  ): Promise<Uint8Array> {
    const address = ProtocolAddress.new(sender.aci, sender.device);
    const local = this.localAddress(kind);
    const data = new Uint8Array(bytes);
    try {
      switch (msgType) {
        case CiphertextMessageType.Whisper:
          return await signalDecrypt(
            SignalMessage.deserialize(data),
            address,
            local,
            stores.sessions,
            stores.identities,
          );
        case CiphertextMessageType.PreKey:
          return await signalDecryptPreKey(
            PreKeySignalMessage.deserialize(data),
            address,
            local,
            stores.sessions,
            stores.identities,
            stores.preKeys,
            stores.signedPreKeys,
            stores.kyberPreKeys,
          );
        case CiphertextMessageType.SenderKey:
          return await groupDecrypt(address, stores.senderKeys, data);
        case CiphertextMessageType.Plaintext:
          // Plaintext content is a marker byte then an (unencrypted, padded) Content: retry requests.
          return PlaintextContent.deserialize(data).body();
        default:
          throw new DropError('unsupported-type', `inner message type ${msgType}`);
      }
    } catch (e) {
      stores.discard();
      if (e instanceof DropError) throw e;
      if (e instanceof LibSignalErrorBase && e.is(ErrorCode.DuplicatedMessage)) {
        throw new DropError('duplicate', `duplicated message from ${sender.aci}.${sender.device}`);
      }
      // A message we cannot decrypt: ask the sender's device to resend it on a fresh session (§6).
      if (msgType !== CiphertextMessageType.Plaintext)
        await this.requestRetry(msgType, data, sender, timestamp);
      throw new DropError(
        'decrypt-failed',
        `from ${sender.aci}.${sender.device}: ${(e as Error).message}`,
      );
    }
  }

  private async requestRetry(
    msgType: number,
    data: Uint8Array<ArrayBuffer>,
    sender: Sender,
    timestamp: number,
  ): Promise<void> {
    try {
      const request = DecryptionErrorMessage.forOriginal(data, msgType, timestamp, sender.device);
      await this.opts.sendRetryRequest(sender.aci, sender.device, PlaintextContent.from(request));
    } catch (e) {
      this.opts.logger.warn(
        `receiver: could not send a retry request to ${sender.aci}.${sender.device}`,
        e,
      );
    }
  }
}
