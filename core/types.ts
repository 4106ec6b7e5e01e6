/**
 * The engine's public types: what a user of SignalClient (the Node-RED nodes, scripts, tests) sees.
 * Service ids are strings: an ACI is a bare lower-case UUID, a PNI is `PNI:<uuid>`.
 */

export type IdentityTrust = 'accept' | 'block';

export interface AccountInfo {
  /** E.164 of the account, when known. */
  number?: string;
  aci: string;
  /** Bare UUID (without the `PNI:` prefix). */
  pni: string;
  deviceId: number;
}

/**
 * `expired`: Signal's server refused this client as too old (HTTP 499, CLIENT_TOO_OLD); it tries
 * again once an hour, and an update of the package is what fixes it.
 */
export type ClientState =
  | 'idle'
  | 'linking'
  | 'connecting'
  | 'connected'
  | 'disconnected'
  | 'unlinked'
  | 'expired'
  | 'closed';

/** Text styles Signal renders (BodyRange.Style: BOLD 1, ITALIC 2, SPOILER 3, STRIKETHROUGH 4, MONOSPACE 5). */
export type TextStyle = 'bold' | 'italic' | 'strikethrough' | 'monospace' | 'spoiler';

/**
 * What SignalClient.send() (and edit()) sends: one outgoing message (DESIGN.md "Next wave"). Offsets
 * and lengths count UTF-16 code units, as Signal does (JS string indices), in `text` as given.
 */
export interface OutgoingMessage {
  /**
   * The message body. Required unless `attachments` are given. Over 2,000 UTF-8 bytes it travels as
   * Signal's apps send it: the first 2,000 bytes inline and the whole text as a `text/x-signal-plain`
   * attachment (64 KiB at most).
   */
  text?: string;
  /** Files sent with the message: at most 32, each at most 100 MiB (Signal's limits). */
  attachments?: OutgoingAttachment[];
  /** A reply: the quoted message's sent timestamp and its author's ACI (and, optionally, its text). */
  quote?: { timestamp: number; author: string; text?: string };
  /**
   * Mentions: each range of `text` (e.g. "@Bob") is replaced in the sent body by one U+FFFC, the
   * placeholder Signal's apps put there, and the body range (start, length 1) names the ACI. Ranges
   * must not overlap one another.
   */
  mentions?: Array<{ aci: string; start: number; length: number }>;
  /** Styled ranges of `text`; a style range may span a mention but not cut through one. */
  styles?: Array<{ style: TextStyle; start: number; length: number }>;
  /**
   * Sets the chat's disappearing-messages timer (seconds; 0 turns it off) before this message, as
   * its own timer-update message when it changes; every send carries the chat's current timer.
   */
  expiresInSeconds?: number;
}

/**
 * One attachment to send: exactly one of `data` (bytes) or `path` (a file, read streaming). The
 * content type defaults to application/octet-stream; `fileName` is not sent for images and videos,
 * as Signal's apps do.
 */
export interface OutgoingAttachment {
  data?: Uint8Array;
  path?: string;
  contentType?: string;
  fileName?: string;
  caption?: string;
  /** Pixel size, for images and videos. */
  width?: number;
  height?: number;
  /** Sent as a voice note (AttachmentPointer flag VOICE_MESSAGE). */
  voiceNote?: boolean;
}

export interface SendResult {
  timestamp: number;
  /** The recipient's service id; for a group, `group:<id>`. */
  serviceId: string;
  /** The recipient's devices it went to (for a group: empty, see `recipients`). */
  devices: number[];
  /** Sealed sender (for a group: true when it was sealed to every member it reached). */
  sealed: boolean;
  /** The chat's disappearing-messages timer the message carried (data messages only; 0 = off). */
  expiresInSeconds?: number;
  /**
   * A group send: one entry per member other than us, in no particular order, failed ones
   * included (with `error`). The send resolves when at least one member got it, or when the group
   * has no other member; it rejects (with the first member's error) when none did.
   */
  recipients?: GroupRecipientResult[];
}

/** One member's part of a group send (SendResult.recipients). */
export interface GroupRecipientResult {
  /** The member's ACI. */
  serviceId: string;
  /** The member's devices it went to (empty when it failed). */
  devices: number[];
  sealed: boolean;
  /** `sender-key`: in the one multi-recipient message; `direct`: its own 1:1 send. */
  via: 'sender-key' | 'direct';
  /** Why this member did not get it: the engine's error code and message. */
  error?: { code: string; message: string };
}

/** What SignalClient.react() sends: a reaction to (or, with `remove`, its removal from) a message. */
export interface OutgoingReaction {
  /** One emoji (a single grapheme: "👍", "❤️", "👍🏽", "🏳️‍🌈"). */
  emoji: string;
  /** The ACI of the reacted-to message's author (ours for our own messages). */
  targetAuthor: string;
  /** The reacted-to message's sent timestamp. */
  targetTimestamp: number;
  /** True removes the reaction `emoji` sent earlier. */
  remove?: boolean;
}

export type LookupSource = 'cdsi' | 'contacts' | 'cache';

export interface LookupResult {
  number: string;
  aci: string | null;
  pni: string | null;
  registered: boolean;
  source: LookupSource;
}

export interface Sender {
  aci: string;
  number?: string;
  device: number;
  name?: string;
}

interface EventBase {
  from: Sender;
  /** The sender's timestamp of the item (its id in Signal). */
  timestamp: number;
  serverTimestamp: number;
  sealed: boolean;
}

export interface Quote {
  id: number;
  authorAci?: string;
  text?: string;
}

export interface Reaction {
  emoji: string;
  remove: boolean;
  targetAuthorAci?: string;
  targetTimestamp: number;
}

/** A mention in a body (Signal's BodyRange with a mention ACI); offsets in UTF-16 code units. */
export interface Mention {
  aci: string;
  start: number;
  length: number;
}

/** A styled range of a body, as received: UTF-16 code unit offsets into the body. */
export interface StyleRange {
  style: TextStyle;
  start: number;
  length: number;
}

/**
 * A chat's disappearing-message timer as a data message sets it: `expiresInSeconds` 0 turns it off.
 * `version` is DataMessage.expireTimerVersion (a newer one wins; absent from older clients).
 */
export interface TimerChange {
  expiresInSeconds: number;
  version?: number;
}

/**
 * A received attachment (AttachmentPointer): its metadata, and, as the account's attachment option
 * says, the saved file (`path`) or its bytes (`data`); `failed` when the download failed (after its
 * tries) and why. `size` is the unpadded plaintext length the sender declared.
 */
export interface ReceivedAttachment {
  contentType: string;
  fileName?: string;
  size: number;
  caption?: string;
  width?: number;
  height?: number;
  /** AttachmentPointer flag VOICE_MESSAGE. */
  voiceNote?: true;
  path?: string;
  data?: Uint8Array;
  failed?: { code: string; message: string };
}

/**
 * How received attachments are handled: `files` (default) saves each in `dir` (0600 files in a 0700
 * folder, named by us, never by the sender), `buffers` gives their bytes, `metadata` downloads none.
 */
export interface AttachmentOptions {
  mode?: 'files' | 'buffers' | 'metadata';
  dir?: string;
  /** Refuse attachments larger than this (default 100 MiB, Signal's own limit). */
  maxBytes?: number;
  /** The folder's size cap (default 1 GiB): the oldest files are pruned past it. */
  quotaBytes?: number;
  /** Tries per download (default 3) and the first retry's delay (default 1000 ms, doubling). */
  tries?: number;
  retryDelayMs?: number;
  timeoutMs?: number;
}

/** The group an event belongs to, as far as the engine knows it (title once its state is fetched). */
export interface GroupRef {
  /** Base64 group identifier (the same as the event's `groupId`). */
  id: string;
  title?: string;
}

export interface MessageEvent extends EventBase {
  type: 'message';
  body: string;
  attachments?: ReceivedAttachment[];
  quote?: Quote;
  reaction?: Reaction;
  mentions?: Mention[];
  styles?: StyleRange[];
  /** The message's timer (DataMessage.expireTimer); Signal's apps put the chat's timer on every message. */
  expiresInSeconds?: number;
  /** DataMessage.expireTimerVersion: which of two timer settings is newer (absent from older apps). */
  timerVersion?: number;
  /** The sender changed the chat's timer with this message (flag EXPIRATION_TIMER_UPDATE). */
  timerChange?: TimerChange;
  /** View-once: Signal's apps show it once, then delete it. */
  viewOnce?: true;
  groupId?: string;
  group?: GroupRef;
}

/**
 * The sender edited their message `targetTimestamp` (EditMessage): `body`, `mentions` and `styles`
 * replace the earlier ones. `timestamp` is the edit's own. Never also emitted as a `message`.
 */
export interface EditEvent extends EventBase {
  type: 'edit';
  targetTimestamp: number;
  body: string;
  mentions?: Mention[];
  styles?: StyleRange[];
  groupId?: string;
  group?: GroupRef;
}

/** The sender deleted their message `targetTimestamp` for everyone (DataMessage.delete). */
export interface DeleteEvent extends EventBase {
  type: 'delete';
  targetTimestamp: number;
  groupId?: string;
  group?: GroupRef;
}

/**
 * A data message that only changes the chat's disappearing-message timer (flag
 * EXPIRATION_TIMER_UPDATE, no text): Signal's apps show "X set the timer to …".
 */
export interface TimerEvent extends EventBase {
  type: 'timer';
  expiresInSeconds: number;
  version?: number;
  groupId?: string;
  group?: GroupRef;
}

export interface ReceiptEvent extends EventBase {
  type: 'receipt';
  receiptType: 'delivery' | 'read' | 'viewed';
  timestamps: number[];
}

export interface TypingEvent extends EventBase {
  type: 'typing';
  action: 'started' | 'stopped';
  groupId?: string;
  group?: GroupRef;
}

/** A transcript of a message our own account sent from another device (the phone). */
export interface SyncEvent extends EventBase {
  type: 'sync';
  destination?: string;
  destinationNumber?: string;
  body: string;
  expiresInSeconds?: number;
  /** The group the phone sent it to (then there is no `destination`). */
  groupId?: string;
  group?: GroupRef;
}

export interface IdentityChangeEvent {
  type: 'identity-change';
  serviceId: string;
  timestamp: number;
  /** With the `block` policy, sends to this identity fail until approveIdentity() is called. */
  blocked: boolean;
}

/**
 * A group's state changed (a group message carried a newer revision, or a group change): what the
 * engine can tell by comparing the state it had with the one it fetched. `from` sent the message
 * that announced it (not necessarily who made the change).
 */
export interface GroupUpdateEvent extends EventBase {
  type: 'group-update';
  group: GroupRef;
  groupId: string;
  revision: number;
  /** The revision the engine had before, absent when the group was new to it. */
  previousRevision?: number;
  /** The new title, when it changed. */
  title?: string;
  /** The new disappearing-messages timer in seconds (0 = off), when it changed. */
  timerSeconds?: number;
  /** Member ACIs that joined, and that left or were removed. */
  membersAdded?: string[];
  membersRemoved?: string[];
  /** Service ids newly invited, and invitations gone (accepted, declined or revoked). */
  pendingAdded?: string[];
  pendingRemoved?: string[];
}

export type IncomingEvent =
  | MessageEvent
  | EditEvent
  | DeleteEvent
  | TimerEvent
  | ReceiptEvent
  | TypingEvent
  | SyncEvent
  | GroupUpdateEvent
  | IdentityChangeEvent;
