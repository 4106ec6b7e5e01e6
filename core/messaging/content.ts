/**
 * Building outgoing `Content` and turning incoming `Content` into the engine's typed events
 * (PROTOCOL.md §5, §6). Pure functions over the protobuf types: no I/O, no crypto, no store.
 */
// The package's `zkgroup` entry re-exports a directory, which Node16 resolution rejects; use the file.
import {
  GroupMasterKey,
  GroupSecretParams,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import { ServiceId } from '@signalapp/libsignal-client';
import {
  Content,
  DataMessage,
  ReceiptMessage,
  SyncMessage,
  TypingMessage,
  signalservice,
  toNumber,
} from '../../proto';
import type { IncomingEvent, MessageEvent, Quote, Reaction, Sender } from '../types';

/** Signal's clients put 1..(512-1) bytes of random-length padding in a null message. */
const NULL_MESSAGE_PADDING = 140;

export function serializeContent(content: signalservice.IContent): Uint8Array {
  return Content.encode(content).finish();
}

export function textDataMessage(opts: {
  body: string;
  timestamp: number;
  profileKey?: Uint8Array;
  expireTimer?: number;
}): signalservice.IDataMessage {
  return {
    body: opts.body,
    timestamp: opts.timestamp,
    ...(opts.profileKey ? { profileKey: opts.profileKey } : {}),
    ...(opts.expireTimer ? { expireTimer: opts.expireTimer } : {}),
  };
}

/** The transcript a linked device sends to its own account after sending (PROTOCOL.md §5). */
export function sentTranscript(opts: {
  destinationServiceId: string;
  timestamp: number;
  /** A data message, or (for an edit) the EditMessage: Sent.editMessage, as Signal-Desktop sends. */
  message: signalservice.IDataMessage | { editMessage: signalservice.IEditMessage };
  unidentified: boolean;
}): signalservice.IContent {
  const destinationServiceIdBinary = ServiceId.parseFromServiceIdString(
    opts.destinationServiceId,
  ).getServiceIdBinary();
  return {
    syncMessage: {
      sent: {
        destinationServiceId: opts.destinationServiceId,
        destinationServiceIdBinary,
        timestamp: opts.timestamp,
        ...('editMessage' in opts.message
          ? { editMessage: opts.message.editMessage }
          : { message: opts.message }),
        unidentifiedStatus: [
          {
            destinationServiceId: opts.destinationServiceId,
            destinationServiceIdBinary,
            unidentified: opts.unidentified,
          },
        ],
      },
    },
  };
}

/** The chat's disappearing-messages timer as every data message to it carries it. */
export interface ExpireTimer {
  seconds: number;
  version: number;
}

function rawAci(aci: string): Uint8Array {
  return ServiceId.parseFromServiceIdString(aci).getRawUuidBytes();
}

function withTimer(
  dm: signalservice.IDataMessage,
  timer: ExpireTimer,
  profileKey: Uint8Array | undefined,
): signalservice.IDataMessage {
  // Signal-Desktop's Message.toProto: expireTimer when set, expireTimerVersion when known (1:1 chats).
  if (timer.seconds > 0) dm.expireTimer = timer.seconds;
  if (timer.version > 0) dm.expireTimerVersion = timer.version;
  if (profileKey) dm.profileKey = profileKey;
  return dm;
}

/**
 * A text data message with its quote and body ranges (mentions and styles). Ranges go as Signal's
 * apps send them: `mentionAciBinary` (16 bytes) or `style`, with requiredProtocolVersion MENTIONS
 * whenever there are ranges (Signal-Desktop's Message.toProto). The quote is a NORMAL quote with
 * `id` = the quoted message's sent timestamp and `authorAciBinary`.
 */
export function richDataMessage(opts: {
  body: string;
  timestamp: number;
  timer: ExpireTimer;
  profileKey?: Uint8Array;
  bodyRanges?: ReadonlyArray<
    { start: number; length: number } & ({ mentionAci: string } | { style: number })
  >;
  quote?: { id: number; authorAci: string; text?: string };
}): signalservice.IDataMessage {
  const dm: signalservice.IDataMessage = { body: opts.body, timestamp: opts.timestamp };
  if (opts.bodyRanges && opts.bodyRanges.length > 0) {
    dm.bodyRanges = opts.bodyRanges.map((r) =>
      'mentionAci' in r
        ? { start: r.start, length: r.length, mentionAciBinary: rawAci(r.mentionAci) }
        : { start: r.start, length: r.length, style: r.style },
    );
    dm.requiredProtocolVersion = DataMessage.ProtocolVersion.MENTIONS;
  }
  if (opts.quote) {
    dm.quote = {
      id: opts.quote.id,
      authorAciBinary: rawAci(opts.quote.authorAci),
      type: DataMessage.Quote.Type.NORMAL,
      ...(opts.quote.text !== undefined ? { text: opts.quote.text } : {}),
    };
  }
  return withTimer(dm, opts.timer, opts.profileKey);
}

/** A reaction (or its removal): DataMessage.reaction with the target's author and sent timestamp. */
export function reactionDataMessage(opts: {
  emoji: string;
  remove: boolean;
  targetAuthorAci: string;
  targetTimestamp: number;
  timestamp: number;
  timer: ExpireTimer;
  profileKey?: Uint8Array;
}): signalservice.IDataMessage {
  return withTimer(
    {
      timestamp: opts.timestamp,
      reaction: {
        emoji: opts.emoji,
        remove: opts.remove,
        targetAuthorAciBinary: rawAci(opts.targetAuthorAci),
        targetSentTimestamp: opts.targetTimestamp,
      },
    },
    opts.timer,
    opts.profileKey,
  );
}

/** Delete for everyone: DataMessage.delete{targetSentTimestamp} of a message we sent. */
export function deleteDataMessage(opts: {
  targetTimestamp: number;
  timestamp: number;
  timer: ExpireTimer;
  profileKey?: Uint8Array;
}): signalservice.IDataMessage {
  return withTimer(
    { timestamp: opts.timestamp, delete: { targetSentTimestamp: opts.targetTimestamp } },
    opts.timer,
    opts.profileKey,
  );
}

/**
 * A timer change as Signal's apps send it: its own data message, no body, flags
 * EXPIRATION_TIMER_UPDATE, the new expireTimer (absent = off) and its version
 * (Signal-Desktop ts/jobs/helpers/sendDirectExpirationTimerUpdate).
 */
export function timerUpdateDataMessage(opts: {
  timestamp: number;
  timer: ExpireTimer;
  profileKey?: Uint8Array;
}): signalservice.IDataMessage {
  return withTimer(
    { timestamp: opts.timestamp, flags: DataMessage.Flags.EXPIRATION_TIMER_UPDATE },
    opts.timer,
    opts.profileKey,
  );
}

/** An edit of our own message: EditMessage{targetSentTimestamp (the original's), dataMessage}. */
export function editContent(
  targetTimestamp: number,
  dataMessage: signalservice.IDataMessage,
): { editMessage: signalservice.IEditMessage } {
  return { editMessage: { targetSentTimestamp: targetTimestamp, dataMessage } };
}

export function readReceipt(type: 'read' | 'viewed', timestamps: number[]): signalservice.IContent {
  return {
    receiptMessage: {
      type: type === 'read' ? ReceiptMessage.Type.READ : ReceiptMessage.Type.VIEWED,
      timestamp: timestamps,
    },
  };
}

/**
 * The read (or viewed) sync to our own devices: SyncMessage.read / .viewed, one entry per message
 * with its sender's ACI and sent timestamp (Signal-Desktop's syncReadMessages / syncView send the
 * binary ACI; the string field goes too, for older readers).
 */
export function readSync(
  type: 'read' | 'viewed',
  senderAci: string,
  timestamps: number[],
): signalservice.IContent {
  const entries = timestamps.map((timestamp) => ({
    senderAci,
    senderAciBinary: rawAci(senderAci),
    timestamp,
  }));
  return { syncMessage: type === 'read' ? { read: entries } : { viewed: entries } };
}

/** TypingMessage STARTED / STOPPED (1:1: no groupId). */
export function typingContent(started: boolean, timestamp: number): signalservice.IContent {
  return {
    typingMessage: {
      timestamp,
      action: started ? TypingMessage.Action.STARTED : TypingMessage.Action.STOPPED,
    },
  };
}

export function syncRequest(type: SyncMessage.Request.Type): signalservice.IContent {
  return { syncMessage: { request: { type } } };
}

/** A null message forces a fresh session after a retry request when the original is gone (§6). */
export function nullMessage(): signalservice.IContent {
  return { nullMessage: { padding: new Uint8Array(NULL_MESSAGE_PADDING) } };
}

export function deliveryReceipt(timestamps: number[]): signalservice.IContent {
  return { receiptMessage: { type: ReceiptMessage.Type.DELIVERY, timestamp: timestamps } };
}

/** A service id from the binary field when present (current clients), else the string field. */
export function serviceIdFrom(
  binary: Uint8Array | null | undefined,
  str: string | null | undefined,
): string | undefined {
  if (binary && binary.length > 0) {
    try {
      return ServiceId.parseFromServiceIdBinary(new Uint8Array(binary)).getServiceIdString();
    } catch {
      // fall through to the string form
    }
  }
  if (str) {
    try {
      return ServiceId.parseFromServiceIdString(str).getServiceIdString();
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Group id as Signal's apps show it: base64 of the GV2 group identifier derived from the master key. */
export function groupIdFromMasterKey(masterKey: Uint8Array): string | undefined {
  try {
    const params = GroupSecretParams.deriveFromMasterKey(
      new GroupMasterKey(new Uint8Array(masterKey)),
    );
    return Buffer.from(params.getPublicParams().getGroupIdentifier().serialize()).toString(
      'base64',
    );
  } catch {
    return undefined;
  }
}

export interface EnvelopeContext {
  from: Sender;
  /** The envelope's client timestamp. */
  timestamp: number;
  serverTimestamp: number;
  sealed: boolean;
}

/** Everything a decrypted Content carries that the receiver acts on besides emitting events. */
export interface ContentEffects {
  events: IncomingEvent[];
  /** A profile key the sender shared (goes to the contacts table). */
  profileKey?: Uint8Array;
  /** A contacts sync from our primary (§7). */
  contactsBlob?: signalservice.IAttachmentPointer;
  /** A retry request: the serialized DecryptionErrorMessage (§6). */
  decryptionError?: Uint8Array;
}

function quoteOf(q: signalservice.DataMessage.IQuote | null | undefined): Quote | undefined {
  if (!q) return undefined;
  const quote: Quote = { id: toNumber(q.id) };
  const author = serviceIdFrom(q.authorAciBinary, q.authorAci);
  if (author) quote.authorAci = author;
  if (q.text) quote.text = q.text;
  return quote;
}

function reactionOf(
  r: signalservice.DataMessage.IReaction | null | undefined,
): Reaction | undefined {
  if (!r || !r.emoji) return undefined;
  const reaction: Reaction = {
    emoji: r.emoji,
    remove: Boolean(r.remove),
    targetTimestamp: toNumber(r.targetSentTimestamp),
  };
  const author = serviceIdFrom(r.targetAuthorAciBinary, r.targetAuthorAci);
  if (author) reaction.targetAuthorAci = author;
  return reaction;
}

function messageEvent(
  dm: signalservice.IDataMessage,
  ctx: EnvelopeContext,
): MessageEvent | undefined {
  const reaction = reactionOf(dm.reaction);
  const body = dm.body ?? '';
  // Control-only data messages (profile key updates, timer changes without text) are not "messages".
  if (!body && !reaction) return undefined;
  const ev: MessageEvent = {
    type: 'message',
    from: ctx.from,
    timestamp: toNumber(dm.timestamp) || ctx.timestamp,
    serverTimestamp: ctx.serverTimestamp,
    sealed: ctx.sealed,
    body: reaction ? reaction.emoji : body,
  };
  const quote = quoteOf(dm.quote);
  if (quote) ev.quote = quote;
  if (reaction) ev.reaction = reaction;
  if (dm.expireTimer) ev.expiresInSeconds = dm.expireTimer;
  const masterKey = dm.groupV2?.masterKey;
  if (masterKey && masterKey.length > 0) {
    const groupId = groupIdFromMasterKey(masterKey);
    if (groupId) ev.groupId = groupId;
  }
  return ev;
}

const RECEIPT_TYPES = {
  [ReceiptMessage.Type.DELIVERY]: 'delivery',
  [ReceiptMessage.Type.READ]: 'read',
  [ReceiptMessage.Type.VIEWED]: 'viewed',
} as const;

/** Parses decrypted, unpadded Content bytes. Throws protobufjs' error on malformed input. */
export function parseContent(bytes: Uint8Array): Content {
  return Content.decode(bytes);
}

/** Maps one Content to events and side effects. Never throws for well-formed protobuf. */
export function contentEffects(content: Content, ctx: EnvelopeContext): ContentEffects {
  const effects: ContentEffects = { events: [] };
  const dm = content.dataMessage;
  if (dm) {
    if (dm.profileKey && dm.profileKey.length === 32) effects.profileKey = dm.profileKey;
    const ev = messageEvent(dm, ctx);
    if (ev) effects.events.push(ev);
  }
  const edit = content.editMessage?.dataMessage;
  if (edit) {
    const ev = messageEvent(edit, ctx);
    if (ev) effects.events.push(ev);
  }
  const receipt = content.receiptMessage;
  if (receipt) {
    effects.events.push({
      type: 'receipt',
      from: ctx.from,
      timestamp: ctx.timestamp,
      serverTimestamp: ctx.serverTimestamp,
      sealed: ctx.sealed,
      receiptType: RECEIPT_TYPES[receipt.type ?? ReceiptMessage.Type.DELIVERY] ?? 'delivery',
      timestamps: (receipt.timestamp ?? []).map((t) => toNumber(t)),
    });
  }
  const typing = content.typingMessage;
  if (typing) {
    effects.events.push({
      type: 'typing',
      from: ctx.from,
      timestamp: toNumber(typing.timestamp) || ctx.timestamp,
      serverTimestamp: ctx.serverTimestamp,
      sealed: ctx.sealed,
      action: typing.action === TypingMessage.Action.STOPPED ? 'stopped' : 'started',
      ...(typing.groupId && typing.groupId.length > 0
        ? { groupId: Buffer.from(typing.groupId).toString('base64') }
        : {}),
    });
  }
  const sync = content.syncMessage;
  if (sync?.sent) {
    const sent = sync.sent;
    const message = sent.message ?? sent.editMessage?.dataMessage;
    const destination = serviceIdFrom(sent.destinationServiceIdBinary, sent.destinationServiceId);
    if (message) {
      effects.events.push({
        type: 'sync',
        from: ctx.from,
        timestamp: toNumber(sent.timestamp) || ctx.timestamp,
        serverTimestamp: ctx.serverTimestamp,
        sealed: ctx.sealed,
        body: message.body ?? '',
        ...(destination ? { destination } : {}),
        ...(sent.destinationE164 ? { destinationNumber: sent.destinationE164 } : {}),
        ...(message.expireTimer ? { expiresInSeconds: message.expireTimer } : {}),
      });
    }
  }
  if (sync?.contacts?.blob) effects.contactsBlob = sync.contacts.blob;
  if (content.decryptionErrorMessage && content.decryptionErrorMessage.length > 0) {
    effects.decryptionError = content.decryptionErrorMessage;
  }
  return effects;
}
