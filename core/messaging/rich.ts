/**
 * The 1:1 send kinds beyond plain text (DESIGN.md "Next wave"): rich messages (quote, mentions,
 * styles), the chat's disappearing-messages timer, reactions, read/viewed receipts with their sync,
 * typing, edits and deletes for everyone of our own messages. Each goes through Sender, so it is
 * sealed when the profile key is known, recovers from 409/410, lands in the sent log, and (data
 * messages and edits) has its transcript sent to our own devices.
 *
 * Limits, as Signal-Desktop enforces them when sending:
 * - edit: our own outgoing message with a body, sent less than 24 hours ago, at most 10 edits
 *   (ts/util/canEditMessage: `isMoreRecentThan(sent_at, DAY)`, MESSAGE_MAX_EDIT_COUNT = 10); the
 *   EditMessage always names the original's sent timestamp, also for an edit of an edit.
 * - delete for everyone: our own message, sent less than 24 hours ago (ts/state/selectors/message
 *   canDeleteForEveryone: `isMoreRecentThan(sent_at, DAY)`; receivers drop it past 48 hours,
 *   ts/util/isTooOldToModifyMessage).
 */
import { InvalidInputError } from '../errors';
import type { SendResult } from '../types';
import type { signalservice } from '../../proto';
import { toNumber } from '../../proto';
import { unpadMessage } from '../crypto/padding';
import { parseContent } from './content';
import {
  deleteDataMessage,
  editContent,
  reactionDataMessage,
  readReceipt,
  readSync,
  richDataMessage,
  timerUpdateDataMessage,
  typingContent,
  type ExpireTimer,
} from './compose';
import type { CheckedMessage } from './outgoing';
import type { SignalStore } from '../store';

/** What every data message carries: its timestamp, the chat's timer and our profile key. */
interface DataBase {
  timestamp: number;
  timer: ExpireTimer;
  profileKey?: Uint8Array;
}

/** A checked message's body, ranges, quote and uploaded attachments, as richDataMessage takes them. */
function bodyOf(message: CheckedMessage, attachments: signalservice.IAttachmentPointer[]) {
  return {
    body: message.body,
    bodyRanges: message.bodyRanges,
    ...(message.quote ? { quote: message.quote } : {}),
    ...(attachments.length > 0 ? { attachments } : {}),
  };
}

/** Uploads attachments and long text (./attachment-upload.ts AttachmentUploader). */
export interface UploaderPort {
  uploadAll(
    attachments: CheckedMessage['attachments'],
    longText?: Uint8Array,
  ): Promise<signalservice.IAttachmentPointer[]>;
}
import type { Sender } from './sender';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Signal-Desktop ts/util/canEditMessage.ts: MESSAGE_MAX_EDIT_COUNT. */
export const MAX_EDITS = 10;
/** Signal-Desktop ts/util/canEditMessage.ts: an edit only within a DAY of the original's sent_at. */
export const EDIT_WINDOW_MS = DAY_MS;
/** Signal-Desktop canDeleteForEveryone: within a DAY of the message's sent_at. */
export const DELETE_WINDOW_MS = DAY_MS;

export interface RichStorePort {
  timerOf(serviceId: string): ExpireTimer;
  nextTimer(serviceId: string, seconds: number): ExpireTimer;
  saveTimer(serviceId: string, timer: ExpireTimer): void;
  findSent(recipient: string, timestamp: number): { content: Uint8Array } | undefined;
  changesOf(recipient: string, timestamp: number): { edits: number; deleted: boolean };
  noteEdit(recipient: string, timestamp: number): void;
  noteDelete(recipient: string, timestamp: number): void;
}

/**
 * What RichMessages sends through: the Sender for a 1:1 chat; for a group, its GroupConversation
 * (core/groups/group-conversation.ts), which sends to every member.
 */
export type RichSender = Pick<Sender, 'nextTimestamp' | 'sendWithTranscript' | 'sendContent'>;

/**
 * The store as RichMessages reads and writes it. `groupTimerSeconds`: a group's timer, which its
 * state holds (it changes with a group change, not with a message: an attempt is refused).
 */
export function richStorePort(store: SignalStore, groupTimerSeconds?: number): RichStorePort {
  const chat = groupTimerSeconds === undefined;
  return {
    timerOf: (sid) =>
      chat ? store.conversations.timerOf(sid) : { seconds: groupTimerSeconds, version: 0 },
    nextTimer: (sid, seconds) => {
      if (!chat)
        throw new InvalidInputError(
          "expiresInSeconds: a group's disappearing-messages timer is set in the group's settings",
        );
      return store.conversations.nextTimer(sid, seconds);
    },
    saveTimer: (sid, timer) => store.conversations.saveTimer(sid, timer),
    findSent: (sid, ts) => store.sent.find(sid, ts),
    changesOf: (sid, ts) => store.sent.changesOf(sid, ts),
    noteEdit: (sid, ts) => store.sent.noteEdit(sid, ts),
    noteDelete: (sid, ts) => store.sent.noteDelete(sid, ts),
  };
}

export interface RichMessagesOptions {
  sender: RichSender;
  store: RichStorePort;
  self: { aci: string; profileKey: Uint8Array | null };
  /** Needed for messages with attachments or long text. */
  uploader?: UploaderPort;
  now?: () => number;
}

/** What a sent-log entry of ours was, for edits and deletes. */
interface SentMessage {
  /** The original message's sent timestamp (an edit's entry points at its original). */
  original: number;
}

export class RichMessages {
  private readonly now: () => number;

  constructor(private readonly opts: RichMessagesOptions) {
    this.now = opts.now ?? Date.now;
  }

  private get profileKey(): Uint8Array | undefined {
    return this.opts.self.profileKey ?? undefined;
  }

  /**
   * A message with its quote and body ranges, carrying the chat's timer. When `expiresInSeconds`
   * changes the timer, the change goes first as its own EXPIRATION_TIMER_UPDATE message (as
   * Signal's apps send a timer change), with the next version; the text then carries the new timer.
   */
  async send(serviceId: string, message: CheckedMessage): Promise<SendResult> {
    // Uploads first: a failed upload sends nothing (not even a timer change).
    const attachments = await this.upload(message);
    const timer = await this.timerFor(serviceId, message.expiresInSeconds);
    return this.sendData(
      serviceId,
      (base) => richDataMessage({ ...base, ...bodyOf(message, attachments) }),
      { timer },
    );
  }

  /** The message's attachment pointers (its long text first), uploaded. */
  private async upload(message: CheckedMessage): Promise<signalservice.IAttachmentPointer[]> {
    if (message.attachments.length === 0 && !message.longText) return [];
    if (!this.opts.uploader)
      throw new InvalidInputError('This client cannot send attachments (no uploader)');
    return this.opts.uploader.uploadAll(message.attachments, message.longText);
  }

  /**
   * One data message with its transcript: built for its timestamp, the chat's timer (or `timer`)
   * and our profile key, sent as is or wrapped (an edit), urgent unless said otherwise.
   */
  private async sendData(
    serviceId: string,
    build: (base: DataBase) => signalservice.IDataMessage,
    opts: {
      timer?: ExpireTimer;
      wrap?: (dm: signalservice.IDataMessage) => { editMessage: signalservice.IEditMessage };
      urgent?: boolean;
    } = {},
  ): Promise<SendResult> {
    const timer = opts.timer ?? this.opts.store.timerOf(serviceId);
    const timestamp = this.opts.sender.nextTimestamp();
    const dataMessage = build({
      timestamp,
      timer,
      ...(this.profileKey ? { profileKey: this.profileKey } : {}),
    });
    const result = await this.opts.sender.sendWithTranscript(
      serviceId,
      opts.wrap ? opts.wrap(dataMessage) : { dataMessage },
      timestamp,
      { urgent: opts.urgent ?? true },
    );
    return { ...result, expiresInSeconds: timer.seconds };
  }

  /** The timer to send with; a change is sent (and then stored) first. */
  private async timerFor(serviceId: string, seconds: number | undefined): Promise<ExpireTimer> {
    const current = this.opts.store.timerOf(serviceId);
    if (seconds === undefined || seconds === current.seconds) return current;
    const next = this.opts.store.nextTimer(serviceId, seconds);
    // Not urgent, as Signal-Desktop sends it (sendDirectExpirationTimerUpdate).
    await this.sendData(serviceId, (base) => timerUpdateDataMessage(base), {
      timer: next,
      urgent: false,
    });
    this.opts.store.saveTimer(serviceId, next);
    return next;
  }

  async react(
    serviceId: string,
    reaction: { emoji: string; targetAuthor: string; targetTimestamp: number; remove: boolean },
  ): Promise<SendResult> {
    return this.sendData(serviceId, (base) =>
      reactionDataMessage({
        ...base,
        emoji: reaction.emoji,
        remove: reaction.remove,
        targetAuthorAci: reaction.targetAuthor,
        targetTimestamp: reaction.targetTimestamp,
      }),
    );
  }

  /**
   * Read or viewed receipts to the messages' sender (not urgent, as Signal's apps send receipts),
   * then the matching sync to our own devices so they mark the messages too (SyncMessage.read is
   * urgent, SyncMessage.viewed is not: Signal-Desktop's syncReadMessages / syncView). The sync needs
   * the sender's ACI; to a PNI only the receipt goes.
   */
  async markRead(
    type: 'read' | 'viewed',
    senderServiceId: string,
    timestamps: number[],
  ): Promise<SendResult> {
    const sender = this.opts.sender;
    const result = await sender.sendContent(
      senderServiceId,
      readReceipt(type, timestamps),
      sender.nextTimestamp(),
      { urgent: false },
    );
    if (!senderServiceId.startsWith('PNI:') && senderServiceId !== this.opts.self.aci) {
      await sender.sendContent(
        this.opts.self.aci,
        readSync(type, senderServiceId, timestamps),
        sender.nextTimestamp(),
        { urgent: type === 'read', sealed: false },
      );
    }
    return result;
  }

  /**
   * TypingMessage STARTED / STOPPED: not urgent, `online` (delivered only to devices connected now,
   * never queued), not kept in the sent log: a typing indicator is worth nothing later.
   */
  async typing(serviceId: string, started: boolean): Promise<SendResult> {
    const sender = this.opts.sender;
    const timestamp = sender.nextTimestamp();
    return sender.sendContent(serviceId, typingContent(started, timestamp), timestamp, {
      urgent: false,
      online: true,
      log: false,
    });
  }

  /** Edits our own message to `serviceId` sent at `targetTimestamp` (see the limits above). */
  async edit(
    serviceId: string,
    targetTimestamp: number,
    message: CheckedMessage,
  ): Promise<SendResult> {
    if (message.expiresInSeconds !== undefined)
      throw new InvalidInputError(
        'expiresInSeconds cannot change with an edit: send it with a new message',
      );
    if (message.attachments.length > 0)
      throw new InvalidInputError(
        'attachments cannot change with an edit: an edit replaces the text only',
      );
    if (message.body === '')
      throw new InvalidInputError('The message text is empty: an edit needs the new text');
    const { original } = this.ownMessage(serviceId, targetTimestamp, 'edit');
    const changes = this.opts.store.changesOf(serviceId, original);
    if (changes.deleted)
      throw new InvalidInputError(`targetTimestamp: message ${original} was deleted for everyone`);
    if (changes.edits >= MAX_EDITS)
      throw new InvalidInputError(
        `targetTimestamp: message ${original} was already edited ${changes.edits} times, Signal's limit`,
      );
    if (this.now() - original > EDIT_WINDOW_MS)
      throw new InvalidInputError(
        `targetTimestamp: message ${original} is older than 24 hours, Signal's edit window`,
      );
    // A long text edit carries its whole text as an attachment, as a long message does.
    const attachments = await this.upload(message);
    const result = await this.sendData(
      serviceId,
      (base) => richDataMessage({ ...base, ...bodyOf(message, attachments) }),
      { wrap: (dm) => editContent(original, dm) },
    );
    this.opts.store.noteEdit(serviceId, original);
    return result;
  }

  /** Deletes our own message to `serviceId` sent at `targetTimestamp` for everyone. */
  async deleteForEveryone(serviceId: string, targetTimestamp: number): Promise<SendResult> {
    const { original } = this.ownMessage(serviceId, targetTimestamp, 'delete');
    if (this.now() - original > DELETE_WINDOW_MS)
      throw new InvalidInputError(
        `targetTimestamp: message ${original} is older than 24 hours, Signal's window for deleting for everyone`,
      );
    const result = await this.sendData(serviceId, (base) =>
      deleteDataMessage({ ...base, targetTimestamp: original }),
    );
    this.opts.store.noteDelete(serviceId, original);
    return result;
  }

  /**
   * The sent-log entry of a message we sent to `serviceId`: a data message with a body (not a
   * receipt, reaction or timer change), or an edit of one (which stands for its original).
   */
  private ownMessage(serviceId: string, timestamp: number, what: 'edit' | 'delete'): SentMessage {
    const notOurs = () =>
      new InvalidInputError(
        `targetTimestamp: ${timestamp} is not a message this account sent to ${serviceId} ` +
          `in the last 14 days, so it cannot be ${what === 'edit' ? 'edited' : 'deleted for everyone'}`,
      );
    const entry = this.opts.store.findSent(serviceId, timestamp);
    if (!entry) throw notOurs();
    let content: signalservice.Content;
    try {
      content = parseContent(unpadMessage(entry.content));
    } catch {
      throw notOurs();
    }
    const edit = content.editMessage;
    if (edit?.dataMessage) {
      const original = toNumber(edit.targetSentTimestamp);
      if (original > 0) return { original };
    }
    const dm = content.dataMessage;
    if (!dm || !dm.body || dm.reaction || dm.delete) throw notOurs();
    return { original: timestamp };
  }
}
