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

/**
 * What SignalClient.send() sends: one outgoing message, growing by fields as the engine learns to
 * send more (DESIGN.md "Next wave": attachments, quote, mentions, styles, expiresInSeconds each
 * arrive with their feature, as real fields). Today: the text of a data message.
 */
export interface OutgoingMessage {
  /** The message body; non-empty. Signal's apps show at most 2,000 bytes inline. */
  text: string;
}

export interface SendResult {
  timestamp: number;
  serviceId: string;
  devices: number[];
  sealed: boolean;
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

export interface MessageEvent extends EventBase {
  type: 'message';
  body: string;
  quote?: Quote;
  reaction?: Reaction;
  expiresInSeconds?: number;
  groupId?: string;
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
}

/** A transcript of a message our own account sent from another device (the phone). */
export interface SyncEvent extends EventBase {
  type: 'sync';
  destination?: string;
  destinationNumber?: string;
  body: string;
  expiresInSeconds?: number;
}

export interface IdentityChangeEvent {
  type: 'identity-change';
  serviceId: string;
  timestamp: number;
  /** With the `block` policy, sends to this identity fail until approveIdentity() is called. */
  blocked: boolean;
}

export type IncomingEvent =
  MessageEvent | ReceiptEvent | TypingEvent | SyncEvent | IdentityChangeEvent;
