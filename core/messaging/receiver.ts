/**
 * The receive path (PROTOCOL.md §2, §6; DESIGN.md "Data flow"), as the client constructs it:
 *   frame → Envelope → decrypt with a unit of work (./decrypt.ts) → ONE transaction: session update
 *   + received-log row (pending, with the events) → sync → ACK → emit → mark emitted (./inbox.ts)
 *   → follow-ups (retry requests, resends, the contacts blob), outside any peer lock.
 * Envelopes are processed one at a time, in arrival order: ratchets are order-sensitive and so are
 * the users' flows.
 */
import type {
  DecryptionErrorMessage,
  PlaintextContent,
  PublicKey,
} from '@signalapp/libsignal-client';
import { Envelope, toNumber } from '../../proto';
import type { Logger } from '../log';
import type { IncomingRequest } from '../net/types';
import type { IncomingEvent, Sender } from '../types';
import { serviceIdFrom, type ContentEffects, type GroupContextEffect } from './content';
import {
  Decryptor,
  DropError,
  destinationKind,
  type DecryptStorePort,
  type DropReason,
  type Identified,
} from './decrypt';
import { Inbox, type InboxStorePort, type ReceivedKey, type RowMeta } from './inbox';
import { KeyedLock } from './lock';
import type { DeliveryReceipts } from './receipts';

export type { DropReason, ProtocolStores, UnitOfWork } from './decrypt';
export type { ReceivedKey } from './inbox';

/**
 * What the receiver needs from the account's store, adapted from core/store by the client: the
 * received log (./inbox.ts) and the protocol stores and contacts decryption uses (./decrypt.ts).
 */
export interface ReceiverStorePort extends InboxStorePort, DecryptStorePort {}

export interface ReceiverOptions {
  store: ReceiverStorePort;
  /** Our own account: ACI, PNI (bare), device id. */
  self: { aci: string; pni: string; deviceId: number };
  trustRoots: PublicKey[];
  logger: Logger;
  /** Called after ACK, in order, once per event. */
  emit: (event: IncomingEvent) => void;
  /** Attachment downloads before a row's emit (see InboxOptions.prepare). */
  prepare?: (events: IncomingEvent[]) => (() => Promise<IncomingEvent[]>) | null;
  /** Sends a retry request (DecryptionErrorMessage as PlaintextContent) to one sender device. */
  sendRetryRequest: (to: string, device: number, plaintext: PlaintextContent) => Promise<void>;
  /** Handles a retry request from a peer: archive the session if it matches, resend (§6). */
  onRetryRequest: (from: string, device: number, request: DecryptionErrorMessage) => Promise<void>;
  /** A contacts sync blob arrived from our own primary (§7). */
  onContactsBlob?: (blob: NonNullable<ContentEffects['contactsBlob']>) => void;
  /**
   * A group message's context (after its ACK and emit, as a follow-up): the group directory
   * refetches the group when it lacks it or holds it older. Must not block (it schedules its work).
   */
  onGroupContext?: (note: GroupContextNote) => void;
  /** Our own primary says the storage service changed (SyncMessage.fetchLatest). Must not block. */
  onStorageChanged?: () => void;
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

export class Receiver {
  private readonly lock: KeyedLock;
  private readonly inbox: Inbox;
  private readonly decryptor: Decryptor;
  processed = 0;

  constructor(private readonly opts: ReceiverOptions) {
    this.lock = opts.lock ?? new KeyedLock();
    this.inbox = new Inbox({
      store: opts.store,
      selfAci: opts.self.aci,
      logger: opts.logger,
      emit: opts.emit,
      ...(opts.prepare ? { prepare: opts.prepare } : {}),
      ...(opts.sendDeliveryReceipt ? { sendDeliveryReceipt: opts.sendDeliveryReceipt } : {}),
      ...(opts.receiptWindowMs !== undefined ? { receiptWindowMs: opts.receiptWindowMs } : {}),
    });
    this.decryptor = new Decryptor({
      store: opts.store,
      self: opts.self,
      trustRoots: opts.trustRoots,
      logger: opts.logger,
      now: opts.now ?? Date.now,
      sendRetryRequest: opts.sendRetryRequest,
    });
  }

  /** Counts of dropped envelopes by reason (observability and tests). */
  get drops(): Map<DropReason, number> {
    return this.inbox.drops;
  }

  /** How many syncs ran (tests and benchmarks: how well envelopes were batched). */
  get syncs(): number {
    return this.inbox.syncs;
  }

  /** Delivery receipts for emitted messages, batched per sender; null when none are sent. */
  get receipts(): DeliveryReceipts | null {
    return this.inbox.receipts;
  }

  /** The socket's IncomingRequestHandler for the authenticated chat connection. */
  readonly handleRequest = (req: IncomingRequest): Promise<number> => {
    if (req.verb === 'PUT' && req.path === '/api/v1/message') {
      return this.inbox.process(() => this.processEnvelope(req.body));
    }
    if (req.verb === 'PUT' && req.path === '/api/v1/queue/empty') {
      // Ordered behind every envelope received before it.
      return this.inbox.afterAll(() => {
        this.opts.onQueueEmpty?.();
        // The stored queue is drained: the receipts of what it held need not wait for the window.
        // On the next turn, after the emits of the last batch (scheduled the same way) added theirs.
        if (this.inbox.receipts) setImmediate(() => this.inbox.receipts?.flush());
        return 200;
      });
    }
    this.opts.logger.debug(`receiver: unexpected server request ${req.verb} ${req.path}`);
    return Promise.resolve(404);
  };

  /** Emits events recorded by an earlier run that were ACKed but not yet emitted. */
  replayPending(): number {
    return this.inbox.replayPending();
  }

  /** Waits until every envelope handed in so far has been processed (and its follow-ups ran). */
  async idle(): Promise<void> {
    await this.inbox.idle();
  }

  /**
   * After stop(), recorded events are no longer emitted: their rows stay pending and the next start
   * replays them, so each is still emitted exactly once (and nothing touches a closed store).
   */
  stop(): void {
    this.inbox.stop();
  }

  /** Returns the status to ACK with; 200 whenever the envelope is recorded or deliberately dropped. */
  private async processEnvelope(bytes: Uint8Array): Promise<number> {
    this.processed++;
    let envelope: Envelope;
    try {
      envelope = Envelope.decode(bytes);
    } catch (e) {
      return this.inbox.drop('malformed-envelope', (e as Error).message);
    }
    const type = envelope.type ?? Envelope.Type.UNKNOWN;
    const serverTimestamp = toNumber(envelope.serverTimestamp);
    const timestamp = toNumber(envelope.clientTimestamp);
    // Milliseconds since 1970 stay far below 2^53; larger values lose precision here and make
    // libsignal throw (u64 conversion) deep inside decryption, which would be a 500 and a redelivery
    // loop. No real server sends them: drop.
    if (!Number.isSafeInteger(timestamp) || !Number.isSafeInteger(serverTimestamp)) {
      return this.inbox.drop(
        'malformed-envelope',
        `timestamp out of range (client ${timestamp}, server ${serverTimestamp})`,
      );
    }
    const meta: RowMeta = {
      serverGuid: envelope.serverGuid || null,
      // A message to our PNI comes from someone who knows only our phone number; anything we send
      // back comes from our ACI and would tie the two together for them. Signal tells such a sender
      // our ACI only once the user accepts the chat (its PNI signature message): no receipt for these.
      receipt: destinationKind(envelope) === 'aci',
    };

    if (type === Envelope.Type.SERVER_DELIVERY_RECEIPT) {
      const source = serviceIdFrom(envelope.sourceServiceIdBinary, envelope.sourceServiceId);
      if (!source) return this.inbox.drop('missing-source', 'delivery receipt without a source');
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
      return this.inbox.record({ sender: source, device, timestamp }, [event], meta, null);
    }

    try {
      const ident = await this.decryptor.identify(envelope, type, serverTimestamp);
      // Held from the unit of work's first read to its commit: a send to the same peer must not
      // advance the session in between (its write would be lost). Nothing else runs under it: what
      // the envelope owes that peer (a retry request, a resend) is a follow-up, after the ACK.
      return await this.lock.run(ident.sender.aci, () =>
        this.decryptAndRecord(ident, timestamp, serverTimestamp, meta),
      );
    } catch (e) {
      if (e instanceof DropError) {
        // A failed retry request must not turn a deliberate drop into a redelivery loop: it is a
        // follow-up, logged if it fails, and the drop is ACKed regardless.
        if (e.followUp) this.inbox.followUp(e.followUp);
        return this.inbox.drop(e.reason, e.message);
      }
      // A store failure or a bug: not ACKed, so the server keeps the envelope for a later try.
      this.opts.logger.error('receiver: failed to process envelope', e);
      return 500;
    }
  }

  private async decryptAndRecord(
    ident: Identified,
    timestamp: number,
    serverTimestamp: number,
    meta: RowMeta,
  ): Promise<number> {
    const { sender } = ident;
    const key: ReceivedKey = { sender: sender.aci, device: sender.device, timestamp };
    // A repeat of something already logged: not decrypted again (its keys are gone); record() ACKs
    // it and re-emits only what an earlier run recorded but never emitted.
    if (this.inbox.known(key)) return this.inbox.record(key, [], meta, null);

    const decrypted = await this.decryptor.decrypt(ident, timestamp, serverTimestamp);
    if (!decrypted.ok) {
      // The session advanced: commit it with the log row so the ratchet stays in step; emit nothing.
      this.inbox.commitAndLog(decrypted.unit, key, [], meta);
      throw new DropError('malformed-content', decrypted.error.message);
    }
    const status = this.inbox.record(key, decrypted.effects.events, meta, decrypted.unit);
    const { retry } = decrypted;
    if (retry)
      this.inbox.followUp(() => this.opts.onRetryRequest(sender.aci, sender.device, retry));
    const blob = decrypted.effects.contactsBlob;
    // Only our own primary may replace our contacts (§7).
    if (blob && sender.aci === this.opts.self.aci && this.opts.onContactsBlob) {
      const onBlob = this.opts.onContactsBlob;
      this.inbox.followUp(() => Promise.resolve(onBlob(blob)));
    }
    const group = decrypted.effects.groupContext;
    const onGroup = this.opts.onGroupContext;
    if (group && onGroup) {
      const note: GroupContextNote = {
        ...group,
        from: sender,
        timestamp,
        serverTimestamp,
        sealed: ident.sealed,
      };
      this.inbox.followUp(() => Promise.resolve(onGroup(note)));
    }
    const onStorage = this.opts.onStorageChanged;
    if (decrypted.effects.fetchStorage && sender.aci === this.opts.self.aci && onStorage) {
      this.inbox.followUp(() => Promise.resolve(onStorage()));
    }
    return status;
  }
}

/** What the receiver tells the group directory of a group message (core/groups/directory.ts). */
export interface GroupContextNote extends GroupContextEffect {
  from: Sender;
  timestamp: number;
  serverTimestamp: number;
  sealed: boolean;
}
