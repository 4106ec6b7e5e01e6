/**
 * Building outgoing `Content` (PROTOCOL.md §5): data messages with their quote, body ranges and the
 * chat's timer, reactions, deletes, edits, receipts and their syncs, typing, sync requests, null
 * messages, transcripts. Pure functions over the protobuf types: no I/O, no crypto, no store. The
 * way back, incoming Content to the engine's events, is content.ts.
 */
import {
  Content,
  DataMessage,
  ReceiptMessage,
  SyncMessage,
  TypingMessage,
  signalservice,
} from '../../proto';
import { ServiceId } from '@signalapp/libsignal-client';

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

/**
 * The transcript a linked device sends to its own account after sending (PROTOCOL.md §5). To one
 * recipient: its destination and its sealed status. To a group (Signal-Desktop's group sync send):
 * no destination, the DataMessage carrying `groupV2`, and one `unidentifiedStatus` per member.
 */
export function sentTranscript(
  opts: {
    timestamp: number;
    /** A data message, or (for an edit) the EditMessage: Sent.editMessage, as Signal-Desktop sends. */
    message: signalservice.IDataMessage | { editMessage: signalservice.IEditMessage };
  } & (
    | { destinationServiceId: string; unidentified: boolean }
    | { group: ReadonlyArray<{ serviceId: string; unidentified: boolean }> }
  ),
): signalservice.IContent {
  const binary = (sid: string) => ServiceId.parseFromServiceIdString(sid).getServiceIdBinary();
  const status = (serviceId: string, unidentified: boolean) => ({
    destinationServiceId: serviceId,
    destinationServiceIdBinary: binary(serviceId),
    unidentified,
  });
  const body =
    'editMessage' in opts.message
      ? { editMessage: opts.message.editMessage }
      : { message: opts.message };
  if ('group' in opts) {
    return {
      syncMessage: {
        sent: {
          timestamp: opts.timestamp,
          ...body,
          unidentifiedStatus: opts.group.map((r) => status(r.serviceId, r.unidentified)),
        },
      },
    };
  }
  return {
    syncMessage: {
      sent: {
        destinationServiceId: opts.destinationServiceId,
        destinationServiceIdBinary: binary(opts.destinationServiceId),
        timestamp: opts.timestamp,
        ...body,
        unidentifiedStatus: [status(opts.destinationServiceId, opts.unidentified)],
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
  attachments?: signalservice.IAttachmentPointer[];
}): signalservice.IDataMessage {
  const dm: signalservice.IDataMessage = { timestamp: opts.timestamp };
  // An attachment-only message has no body (Signal's apps leave it out rather than send "").
  if (opts.body) dm.body = opts.body;
  if (opts.attachments && opts.attachments.length > 0) dm.attachments = opts.attachments;
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

/** AttachmentPointer.Flags.VOICE_MESSAGE. */
const VOICE_MESSAGE = 1;

/** What an uploaded attachment's pointer is built from. */
export interface UploadedAttachment {
  cdnNumber: number;
  cdnKey: string;
  keys: Uint8Array;
  digest: Uint8Array;
  /** The unpadded plaintext length. */
  size: number;
  incrementalMac?: Uint8Array;
  chunkSize?: number;
  uploadTimestamp: number;
  contentType: string;
  fileName?: string;
  caption?: string;
  width?: number;
  height?: number;
  voiceNote?: boolean;
}

/**
 * The AttachmentPointer of an uploaded file, as Signal's apps send it: `cdnKey` + `cdnNumber`, the
 * keys, digest and unpadded size, the incremental MAC when there is one, and the metadata; the file
 * name is left out for images and videos (Signal-Desktop strips it there), VOICE_MESSAGE flagged.
 */
export function attachmentPointer(a: UploadedAttachment): signalservice.IAttachmentPointer {
  const p: signalservice.IAttachmentPointer = {
    cdnKey: a.cdnKey,
    cdnNumber: a.cdnNumber,
    key: a.keys,
    digest: a.digest,
    size: a.size,
    uploadTimestamp: a.uploadTimestamp,
    contentType: a.contentType,
  };
  if (a.incrementalMac && a.chunkSize) {
    p.incrementalMac = a.incrementalMac;
    p.chunkSize = a.chunkSize;
  }
  if (a.fileName && !/^(image|video)\//i.test(a.contentType)) p.fileName = a.fileName;
  if (a.voiceNote) p.flags = VOICE_MESSAGE;
  if (a.width) p.width = a.width;
  if (a.height) p.height = a.height;
  if (a.caption) p.caption = a.caption;
  return p;
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

/** TypingMessage STARTED / STOPPED (1:1: no groupId; in a group, its identifier bytes). */
export function typingContent(
  started: boolean,
  timestamp: number,
  groupId?: Uint8Array,
): signalservice.IContent {
  return {
    typingMessage: {
      timestamp,
      action: started ? TypingMessage.Action.STARTED : TypingMessage.Action.STOPPED,
      ...(groupId ? { groupId } : {}),
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
