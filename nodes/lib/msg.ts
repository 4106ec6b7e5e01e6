/** msg ↔ engine mapping for the flow nodes: validation of what flows send, and what they receive. */
import { InvalidInputError } from '../../core/errors';
import type { IncomingEvent } from '../../core/types';
import type { NodeMessage } from './red';

/** Signal's own limit on a message body is far below this; larger payloads are refused up front. */
const MAX_TEXT_BYTES = 64 * 1024;
const MAX_RECIPIENTS = 1000;

export interface SendOutcome {
  to: string;
  serviceId?: string;
  status: 'sent' | 'failed';
  error?: { code: string; message: string };
}

export function textOf(payload: unknown): string {
  if (typeof payload === 'string') {
    if (payload.length === 0)
      throw new InvalidInputError('msg.payload is empty: there is no text to send');
    if (Buffer.byteLength(payload) > MAX_TEXT_BYTES) {
      throw new InvalidInputError(
        `msg.payload is too long (${Buffer.byteLength(payload)} bytes; at most ${MAX_TEXT_BYTES})`,
      );
    }
    return payload;
  }
  if (typeof payload === 'number' || typeof payload === 'boolean') return String(payload);
  const kind =
    payload === null
      ? 'null'
      : Array.isArray(payload)
        ? 'an array'
        : typeof payload === 'undefined'
          ? 'missing'
          : `a ${typeof payload}`;
  throw new InvalidInputError(
    `msg.payload must be text (a string, number or boolean), but it is ${kind}`,
  );
}

export function recipientsOf(to: unknown, fallback: string | undefined): string[] {
  const raw = to ?? (fallback ? fallback : undefined);
  if (raw === undefined || raw === '')
    throw new InvalidInputError('No recipient: set msg.to or the node\'s "To"');
  const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null;
  if (!list)
    throw new InvalidInputError('msg.to must be a phone number, a Signal id, or an array of them');
  const out = list
    .map((r) => {
      if (typeof r !== 'string')
        throw new InvalidInputError(`Recipient ${JSON.stringify(r)} is not a string`);
      return r.trim();
    })
    .filter((r) => r.length > 0);
  if (out.length === 0) throw new InvalidInputError('No recipient: msg.to is empty');
  if (out.length > MAX_RECIPIENTS)
    throw new InvalidInputError(`Too many recipients (${out.length}; at most ${MAX_RECIPIENTS})`);
  return out;
}

export type InType = 'message' | 'reaction' | 'receipt' | 'typing' | 'sync' | 'identity-change';
export const IN_TYPES: InType[] = [
  'message',
  'reaction',
  'receipt',
  'typing',
  'sync',
  'identity-change',
];

/** The documented msg for one engine event. */
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
      if (ev.groupId) signal.groupId = ev.groupId;
      if (ev.quote) signal.quote = ev.quote;
      if (ev.reaction) signal.reaction = ev.reaction;
      if (ev.expiresInSeconds) signal.expiresInSeconds = ev.expiresInSeconds;
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
      if (ev.groupId) signal.groupId = ev.groupId;
      break;
  }
  return { type, msg: { payload, topic: ev.from.number ?? ev.from.aci, to: ev.from.aci, signal } };
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
    if (payload.length > 1000)
      throw new InvalidInputError(`Too many numbers (${payload.length}; at most 1000 per message)`);
    for (const n of payload) {
      if (typeof n !== 'string')
        throw new InvalidInputError(`${JSON.stringify(n)} is not a phone number (strings only)`);
    }
    return { numbers: payload as string[], single: false };
  }
  throw new InvalidInputError('msg.payload must be a phone number or an array of phone numbers');
}
