/** msg ↔ engine mapping for the flow nodes: validation of what flows send, and what they receive. */
import { classifyRecipient, groupTarget } from '../../core/client';
import { normalizeNumber } from '../../core/directory';
import { InvalidInputError } from '../../core/errors';
import { MAX_LONG_TEXT_BYTES } from '../../core/messaging/outgoing-attachments';
import type { ErrorFields } from './status';
import type { GroupRecipientResult, IncomingEvent, LookupSource } from '../../core/types';
import type { NodeMessage } from './red';

/**
 * The most text one message carries: 64 KiB of UTF-8. Over 2,000 bytes the engine sends it as
 * Signal's apps do, the start inline and the whole text as a "long text" attachment, which Signal's
 * apps take up to 64 KiB.
 */
export const MAX_TEXT_BYTES = MAX_LONG_TEXT_BYTES;
/**
 * The most recipients per msg. Each one is a separate end-to-end encrypted send, one after the
 * other, and Signal rate-limits (then challenges with a captcha) accounts that message many people
 * at once; a longer list is a broadcast to split over several messages, and a mistake (a whole
 * table in msg.to) should not turn into hundreds of sends.
 */
export const MAX_RECIPIENTS = 100;
/** The most numbers per signal-lookup msg (one contact-discovery request). */
export const MAX_LOOKUP_NUMBERS = 1000;

export interface SendOutcome {
  to: string;
  serviceId?: string;
  /** This recipient's own message timestamp (each recipient's send gets one of its own). */
  timestamp?: number;
  status: 'sent' | 'failed';
  error?: ErrorFields;
  /** A group (`group:<id>`): each member's outcome (SendResult.recipients), failures included. */
  recipients?: GroupRecipientResult[];
}

/** "null", "an array", "a number (42)": what a flow actually sent, for error messages. */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'missing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number' || typeof value === 'boolean')
    return `a ${typeof value} (${value})`;
  return `${typeof value === 'object' ? 'an' : 'a'} ${typeof value}`;
}

const AS_TEXT =
  'give the phone number as text with its country code, e.g. "+15551234567" (a number loses the "+" and any leading zero)';

/** "a Buffer" as well as what kindOf says. */
function payloadKind(value: unknown): string {
  return value instanceof Uint8Array ? 'a Buffer' : kindOf(value);
}

export function textOf(payload: unknown, what = 'msg.payload'): string {
  if (typeof payload === 'string') {
    if (payload.length === 0)
      throw new InvalidInputError(`${what} is empty: there is no text to send`);
    const bytes = Buffer.byteLength(payload);
    if (bytes > MAX_TEXT_BYTES) {
      throw new InvalidInputError(
        `${what} is too long: ${bytes} bytes of text, and a Signal message carries at most ${MAX_TEXT_BYTES} bytes (UTF-8); shorten it or split it over several messages`,
      );
    }
    return payload;
  }
  if (typeof payload === 'number' || typeof payload === 'boolean') return String(payload);
  throw new InvalidInputError(
    `${what} must be text (a string, number or boolean), but it is ${payloadKind(payload)}`,
  );
}

/**
 * The recipients of one msg, trimmed, each checked (an E.164 number, an ACI UUID or PNI:<uuid>)
 * before anything is sent, so that a bad entry in a list sends to nobody rather than to some.
 */
export function recipientsOf(
  to: unknown,
  fallback: string | undefined,
  defaultRegion?: string,
): string[] {
  const raw = to ?? (fallback ? fallback : undefined);
  if (raw === undefined || raw === '')
    throw new InvalidInputError('No recipient: set msg.to or the node\'s "To"');
  if (typeof raw === 'number') throw new InvalidInputError(`msg.to is ${kindOf(raw)}: ${AS_TEXT}`);
  const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null;
  if (!list) {
    throw new InvalidInputError(
      `msg.to must be a phone number, a Signal id, or an array of them, but it is ${kindOf(raw)}`,
    );
  }
  const out = list
    .map((r: unknown, i) => {
      if (typeof r === 'string') return r.trim();
      throw new InvalidInputError(
        `msg.to[${i}] is ${kindOf(r)}, not text: ${typeof r === 'number' ? AS_TEXT : 'give a phone number, an ACI or PNI:<uuid>'}`,
      );
    })
    .filter((r) => r.length > 0);
  if (out.length === 0) throw new InvalidInputError('No recipient: msg.to is empty');
  if (out.length > MAX_RECIPIENTS) {
    throw new InvalidInputError(
      `Too many recipients: ${out.length}, and one message goes to at most ${MAX_RECIPIENTS}; split the list over several messages`,
    );
  }
  for (const r of out) checkRecipient(r, defaultRegion);
  return out;
}

/** Throws INVALID_INPUT or INVALID_NUMBER naming `r` unless it is a usable recipient. */
function checkRecipient(r: string, defaultRegion: string | undefined): void {
  if ('serviceId' in classifyRecipient(r)) return;
  // `group:<id>` (what signal-in puts in msg.to for a group message): a malformed id is refused.
  if (groupTarget(r) !== null) return;
  if (/^PNI:/i.test(r)) {
    throw new InvalidInputError(
      `"${r}" is not a valid PNI: write "PNI:" followed by the UUID, e.g. PNI:2bd3a1a0-9d6b-4bb4-9c5a-4a62d3e2c8f1`,
    );
  }
  normalizeNumber(r, defaultRegion);
}

export type InType =
  | 'message'
  | 'reaction'
  | 'edit'
  | 'delete'
  | 'timer'
  | 'receipt'
  | 'typing'
  | 'sync'
  | 'group-update'
  | 'identity-change';
export const IN_TYPES: InType[] = [
  'message',
  'reaction',
  'edit',
  'delete',
  'timer',
  'receipt',
  'typing',
  'sync',
  'group-update',
  'identity-change',
];

/**
 * msg.signal.lookup for one lookup: `sources` is each answer's source in input order; `source` is one
 * string as documented: the source of every answer when they agree, else "mixed".
 */
export function lookupSummary(results: Array<{ source: LookupSource }>): {
  source: LookupSource | 'mixed';
  sources: LookupSource[];
} {
  const sources = results.map((r) => r.source);
  const first = sources[0];
  const source = first !== undefined && sources.every((s) => s === first) ? first : 'mixed';
  return { source, sources };
}

/**
 * The documented msg for one engine event. An identity change is not a received envelope: the engine
 * reports only the contact's id, when it noticed, and whether sends are blocked, so that msg has no
 * from.device, serverTimestamp or sealed (the help says so).
 */
export function messageFor(ev: IncomingEvent): { type: InType; msg: NodeMessage } {
  if (ev.type === 'identity-change') {
    return {
      type: 'identity-change',
      msg: {
        payload: ev.serviceId,
        topic: ev.serviceId,
        to: ev.serviceId,
        signal: {
          type: 'identity-change',
          from: { aci: ev.serviceId },
          timestamp: ev.timestamp,
          blocked: ev.blocked,
        },
      },
    };
  }
  const type: InType = ev.type === 'message' && ev.reaction ? 'reaction' : ev.type;
  const from = {
    aci: ev.from.aci,
    device: ev.from.device,
    ...(ev.from.number ? { number: ev.from.number } : {}),
    ...(ev.from.name ? { name: ev.from.name } : {}),
  };
  const signal: Record<string, unknown> = {
    type,
    from,
    timestamp: ev.timestamp,
    serverTimestamp: ev.serverTimestamp,
    sealed: ev.sealed,
  };
  let payload: unknown;
  switch (ev.type) {
    case 'message':
      payload = ev.body;
      if (ev.quote) signal.quote = ev.quote;
      if (ev.reaction) signal.reaction = ev.reaction;
      if (ev.mentions) signal.mentions = ev.mentions;
      if (ev.styles) signal.styles = ev.styles;
      if (ev.expiresInSeconds) signal.expiresInSeconds = ev.expiresInSeconds;
      if (ev.timerChange) signal.timerChange = ev.timerChange;
      if (ev.viewOnce) signal.viewOnce = true;
      if (ev.attachments)
        signal.attachments = ev.attachments.map((a) =>
          a.data ? { ...a, data: Buffer.from(a.data.buffer, a.data.byteOffset, a.data.length) } : a,
        );
      break;
    case 'edit':
      // The new text; msg.signal.targetTimestamp names the message it replaces.
      payload = ev.body;
      signal.targetTimestamp = ev.targetTimestamp;
      if (ev.mentions) signal.mentions = ev.mentions;
      if (ev.styles) signal.styles = ev.styles;
      break;
    case 'delete':
      payload = ev.targetTimestamp;
      signal.targetTimestamp = ev.targetTimestamp;
      break;
    case 'timer':
      payload = ev.expiresInSeconds;
      signal.expiresInSeconds = ev.expiresInSeconds;
      if (ev.version !== undefined) signal.timerVersion = ev.version;
      break;
    case 'sync':
      payload = ev.body;
      if (ev.destination) signal.destination = ev.destination;
      if (ev.expiresInSeconds) signal.expiresInSeconds = ev.expiresInSeconds;
      break;
    case 'receipt':
      payload = ev.timestamps;
      signal.receiptType = ev.receiptType;
      break;
    case 'typing':
      payload = ev.action;
      break;
    case 'group-update':
      // What changed, as the engine compared the state it had with the one it fetched.
      payload = ev.revision;
      signal.revision = ev.revision;
      for (const k of GROUP_UPDATE_FIELDS) if (ev[k] !== undefined) signal[k] = ev[k];
      break;
  }
  // A group's item: msg.signal.group, and msg.to the group, so that a reply goes back to it;
  // msg.topic stays the sender (who said it), as for a 1:1 item.
  const group = groupOfEvent(ev);
  if (group) {
    signal.group = group;
    signal.groupId = group.id;
  }
  const to = group ? `group:${group.id}` : ev.from.aci;
  return { type, msg: { payload, topic: ev.from.number ?? ev.from.aci, to, signal } };
}

const GROUP_UPDATE_FIELDS = [
  'previousRevision',
  'title',
  'timerSeconds',
  'membersAdded',
  'membersRemoved',
  'pendingAdded',
  'pendingRemoved',
] as const;

/** The group an event belongs to, `{id, title?}` (the title once the engine has its state), or null. */
export function groupOfEvent(ev: IncomingEvent): { id: string; title?: string } | null {
  if (ev.type === 'identity-change' || ev.type === 'receipt') return null;
  const id = ev.group?.id ?? ev.groupId;
  if (!id) return null;
  const title = ev.group?.title;
  return title ? { id, title } : { id };
}

/** The messages a read receipt is for: text from someone else (not reactions, receipts, typing, sync). */
export function wantsReadReceipt(ev: IncomingEvent, selfAci: string | undefined): boolean {
  return ev.type === 'message' && !ev.reaction && ev.from.aci !== selfAci;
}

export function numbersOf(payload: unknown): { numbers: string[]; single: boolean } {
  if (typeof payload === 'string') {
    if (payload.trim() === '')
      throw new InvalidInputError('msg.payload is empty: give a phone number');
    return { numbers: [payload], single: true };
  }
  if (Array.isArray(payload)) {
    if (payload.length === 0)
      throw new InvalidInputError('msg.payload is an empty array: give phone numbers');
    if (payload.length > MAX_LOOKUP_NUMBERS) {
      throw new InvalidInputError(
        `Too many numbers: ${payload.length}, and one lookup takes at most ${MAX_LOOKUP_NUMBERS}; split the list over several messages`,
      );
    }
    payload.forEach((n: unknown, i) => {
      if (typeof n !== 'string') {
        throw new InvalidInputError(
          `msg.payload[${i}] is ${kindOf(n)}, not text: ${typeof n === 'number' ? AS_TEXT : 'give a phone number'}`,
        );
      }
    });
    return { numbers: payload as string[], single: false };
  }
  if (typeof payload === 'number')
    throw new InvalidInputError(`msg.payload is ${kindOf(payload)}: ${AS_TEXT}`);
  throw new InvalidInputError(
    `msg.payload must be a phone number or an array of phone numbers, but it is ${kindOf(payload)}`,
  );
}
