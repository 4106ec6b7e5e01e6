/**
 * Turning incoming `Content` into the engine's typed events (PROTOCOL.md §6). Pure functions over
 * the protobuf types: no I/O, no crypto, no store. Building outgoing Content is compose.ts.
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
import type {
  EditEvent,
  IncomingEvent,
  Mention,
  MessageEvent,
  Quote,
  Reaction,
  ReceivedAttachment,
  Sender,
  StyleRange,
  TextStyle,
} from '../types';

const BodyRange = signalservice.BodyRange;

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
  /**
   * The group context (GroupContextV2) of a group message, or of our own device's transcript of
   * one: for the group directory (core/groups), which refetches a group it lacks or holds older.
   */
  groupContext?: GroupContextEffect;
  /** Our primary says the storage service changed (SyncMessage.fetchLatest STORAGE_MANIFEST). */
  fetchStorage?: true;
}

export interface GroupContextEffect {
  masterKey: Uint8Array;
  revision: number;
  /** It carried a signed group change. */
  change: boolean;
}

function groupContextOf(
  dm: signalservice.IDataMessage | null | undefined,
): GroupContextEffect | undefined {
  const g = dm?.groupV2;
  if (!g?.masterKey || g.masterKey.length !== 32) return undefined;
  return {
    masterKey: new Uint8Array(g.masterKey),
    revision: g.revision ?? 0,
    change: Boolean(g.groupChange && g.groupChange.length > 0),
  };
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

const STYLES: Record<number, TextStyle> = {
  [BodyRange.Style.BOLD]: 'bold',
  [BodyRange.Style.ITALIC]: 'italic',
  [BodyRange.Style.SPOILER]: 'spoiler',
  [BodyRange.Style.STRIKETHROUGH]: 'strikethrough',
  [BodyRange.Style.MONOSPACE]: 'monospace',
};

/**
 * A body's ranges (DataMessage.bodyRanges), as received: `start` and `length` count UTF-16 code
 * units, as JavaScript strings do. A mention's placeholder in the body is U+FFFC. A range with
 * neither a mention nor a known style (NONE, a future style) is left out.
 */
export function rangesOf(ranges: signalservice.IBodyRange[] | null | undefined): {
  mentions?: Mention[];
  styles?: StyleRange[];
} {
  const mentions: Mention[] = [];
  const styles: StyleRange[] = [];
  for (const r of ranges ?? []) {
    const start = r.start ?? 0;
    const length = r.length ?? 0;
    const aci = serviceIdFrom(r.mentionAciBinary, r.mentionAci);
    if (aci) {
      mentions.push({ aci, start, length });
      continue;
    }
    const style = r.style !== null && r.style !== undefined ? STYLES[r.style] : undefined;
    if (style) styles.push({ style, start, length });
  }
  return {
    ...(mentions.length > 0 ? { mentions } : {}),
    ...(styles.length > 0 ? { styles } : {}),
  };
}

const VOICE_MESSAGE = 1; // AttachmentPointer.Flags.VOICE_MESSAGE

/** Where to fetch an attachment from, kept in the received log until the message is emitted. */
export interface StoredPointer {
  cdnNumber: number;
  cdnId?: string;
  cdnKey?: string;
  /** base64 of the 64 key bytes and of the digest. */
  key: string;
  digest: string;
}

/** A received attachment as recorded: what the event shows, plus where to fetch it. */
export type RecordedAttachment = ReceivedAttachment & { pointer?: StoredPointer };

/** The event's view of a pointer (content.ts): metadata, and the pointer for the download. */
export function attachmentOf(p: signalservice.IAttachmentPointer): RecordedAttachment {
  const a: RecordedAttachment = {
    contentType: p.contentType || 'application/octet-stream',
    size: p.size ?? 0,
  };
  if (p.fileName) a.fileName = p.fileName;
  if (p.caption) a.caption = p.caption;
  if (p.width) a.width = p.width;
  if (p.height) a.height = p.height;
  if (((p.flags ?? 0) & VOICE_MESSAGE) !== 0) a.voiceNote = true;
  const cdnId = p.cdnId ? String(p.cdnId) : undefined;
  if (p.key && p.key.length > 0 && (p.cdnKey || (cdnId && cdnId !== '0'))) {
    a.pointer = {
      cdnNumber: p.cdnNumber ?? 0,
      ...(p.cdnKey ? { cdnKey: p.cdnKey } : {}),
      ...(cdnId && cdnId !== '0' ? { cdnId } : {}),
      key: Buffer.from(p.key).toString('base64'),
      digest: p.digest ? Buffer.from(p.digest).toString('base64') : '',
    };
  }
  return a;
}

function groupOf(dm: signalservice.IDataMessage): { groupId?: string } {
  const masterKey = dm.groupV2?.masterKey;
  if (!masterKey || masterKey.length === 0) return {};
  const groupId = groupIdFromMasterKey(masterKey);
  return groupId ? { groupId } : {};
}

function base(
  dm: signalservice.IDataMessage,
  ctx: EnvelopeContext,
): Omit<MessageEvent, 'type' | 'body'> {
  return {
    from: ctx.from,
    timestamp: toNumber(dm.timestamp) || ctx.timestamp,
    serverTimestamp: ctx.serverTimestamp,
    sealed: ctx.sealed,
  };
}

/**
 * The event one DataMessage is: a delete for everyone (DataMessage.delete), a timer change without
 * text (flag EXPIRATION_TIMER_UPDATE), or a message (text, a reaction, or view-once). Control-only
 * data messages (a profile key update, an end-session) are no event.
 */
function dataMessageEvent(
  dm: signalservice.IDataMessage,
  ctx: EnvelopeContext,
): IncomingEvent | undefined {
  const group = groupOf(dm);
  if (dm.delete) {
    return {
      type: 'delete',
      ...base(dm, ctx),
      targetTimestamp: toNumber(dm.delete.targetSentTimestamp),
      ...group,
    };
  }
  const timerUpdate = ((dm.flags ?? 0) & DataMessage.Flags.EXPIRATION_TIMER_UPDATE) !== 0;
  const version = dm.expireTimerVersion ? { version: dm.expireTimerVersion } : {};
  const reaction = reactionOf(dm.reaction);
  const body = dm.body ?? '';
  const viewOnce = Boolean(dm.isViewOnce);
  const attachments = (dm.attachments ?? []).map(attachmentOf);
  if (!body && !reaction && !viewOnce && attachments.length === 0) {
    if (!timerUpdate) return undefined;
    return {
      type: 'timer',
      ...base(dm, ctx),
      expiresInSeconds: dm.expireTimer ?? 0,
      ...version,
      ...group,
    };
  }
  const ev: MessageEvent = {
    type: 'message',
    ...base(dm, ctx),
    body: reaction ? reaction.emoji : body,
    ...(reaction ? {} : rangesOf(dm.bodyRanges)),
  };
  const quote = quoteOf(dm.quote);
  if (quote) ev.quote = quote;
  if (reaction) ev.reaction = reaction;
  if (dm.expireTimer) ev.expiresInSeconds = dm.expireTimer;
  if (dm.expireTimerVersion) ev.timerVersion = dm.expireTimerVersion;
  if (timerUpdate) ev.timerChange = { expiresInSeconds: dm.expireTimer ?? 0, ...version };
  if (viewOnce) ev.viewOnce = true;
  if (!reaction && attachments.length > 0) ev.attachments = attachments;
  if (group.groupId) ev.groupId = group.groupId;
  return ev;
}

/**
 * An EditMessage (Content.editMessage): the new text of the sender's message `targetSentTimestamp`.
 * Signal's apps accept edits of text messages only; an edit is never a second message.
 */
function editEvent(edit: signalservice.IEditMessage, ctx: EnvelopeContext): EditEvent | undefined {
  const dm = edit.dataMessage;
  if (!dm || !edit.targetSentTimestamp) return undefined;
  return {
    type: 'edit',
    ...base(dm, ctx),
    targetTimestamp: toNumber(edit.targetSentTimestamp),
    body: dm.body ?? '',
    ...rangesOf(dm.bodyRanges),
    ...groupOf(dm),
  };
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
    const ev = dataMessageEvent(dm, ctx);
    if (ev) effects.events.push(ev);
  }
  if (content.editMessage) {
    const dm2 = content.editMessage.dataMessage;
    if (dm2?.profileKey && dm2.profileKey.length === 32) effects.profileKey ??= dm2.profileKey;
    const ev = editEvent(content.editMessage, ctx);
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
        // A transcript of a message the phone sent to a group: no destination, the group's context.
        ...groupOf(message),
      });
    }
  }
  if (sync?.contacts?.blob) effects.contactsBlob = sync.contacts.blob;
  const groupContext =
    groupContextOf(dm) ??
    groupContextOf(content.editMessage?.dataMessage) ??
    groupContextOf(sync?.sent?.message ?? sync?.sent?.editMessage?.dataMessage);
  if (groupContext) effects.groupContext = groupContext;
  if (sync?.fetchLatest?.type === SyncMessage.FetchLatest.Type.STORAGE_MANIFEST) {
    effects.fetchStorage = true;
  }
  if (content.decryptionErrorMessage && content.decryptionErrorMessage.length > 0) {
    effects.decryptionError = content.decryptionErrorMessage;
  }
  return effects;
}

/**
 * The chat timer an event tells us about, for the conversations store: every data message carries
 * its chat's timer (expireTimer, 0 or absent = off) and, from current apps, expireTimerVersion; a
 * newer version wins. `conversation` is the sender's ACI, or `group:<id>` for a group message.
 */
export function timerOf(
  ev: IncomingEvent,
): { conversation: string; expiresInSeconds: number; version?: number } | undefined {
  if (ev.type !== 'message' && ev.type !== 'timer') return undefined;
  if (ev.type === 'message' && ev.reaction) return undefined;
  const conversation = ev.groupId ? `group:${ev.groupId}` : ev.from.aci;
  const version = ev.type === 'timer' ? ev.version : ev.timerVersion;
  return {
    conversation,
    expiresInSeconds: ev.expiresInSeconds ?? 0,
    ...(version !== undefined ? { version } : {}),
  };
}
