/**
 * signal-out's rich messages: what a msg may carry beside its text (a quote, mentions, styles, a
 * disappearing timer) and the kinds it may send instead of a new message (a reaction, a receipt,
 * typing, an edit, a delete), checked at the node boundary so that a bad msg names its property and
 * sends nothing. Each kind becomes one engine call per recipient; the fan-out is lib/send.ts'.
 */
import type { SignalClient } from '../../core/client';
import { InvalidInputError } from '../../core/errors';
import type { OutgoingMessage, OutgoingReaction, SendResult } from '../../core/types';
import { attachmentSpecsOf, type AttachmentSpec } from './attachments';
import { textOf } from './msg';
import type { NodeMessage } from './red';
import { parseStyled, stylesOf, type StyleRange } from './styles';

/** The engine's outgoing-message model as signal-out fills it. */
export type RichMessage = OutgoingMessage;
export type Reaction = OutgoingReaction;
type Quote = NonNullable<OutgoingMessage['quote']>;
type Mention = NonNullable<OutgoingMessage['mentions']>[number];

/** What one msg asks signal-out to do: a message (text and its extras) or one other kind. */
export type Action =
  | { kind: 'message'; message: RichMessage; attachments: AttachmentSpec[] }
  | { kind: 'reaction'; reaction: Reaction }
  | { kind: 'receipt'; type: 'read' | 'viewed'; timestamps: number[] }
  | { kind: 'typing'; started: boolean }
  | { kind: 'edit'; targetTimestamp: number; message: RichMessage }
  | { kind: 'delete'; targetTimestamp: number };

/** The msg properties that each send a kind of their own instead of a new message. */
export const KINDS = ['reaction', 'receipt', 'typing', 'edit', 'delete'] as const;
/** What only a message (or an edit) carries. */
const EXTRAS = [
  'quote',
  'mentions',
  'styles',
  'expiresInSeconds',
  'attachments',
  'caption',
] as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What a flow sent, in a few words, for the errors below. */
function kindOf(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `text (${JSON.stringify(v.slice(0, 40))})`;
  return `${typeof v === 'object' ? 'an' : 'a'} ${typeof v}`;
}

/**
 * A message's timestamp: its id in Signal (msg.signal.timestamp of the item signal-in emitted, or of
 * signal-out's send), milliseconds since 1970, a positive whole number.
 */
export function timestampOf(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new InvalidInputError(
      `${what} must be a message's timestamp (a positive whole number, as in msg.signal.timestamp), but it is ${kindOf(v)}${typeof v === 'number' ? ` (${v})` : ''}`,
    );
  }
  return v;
}

/**
 * An ACI: quotes, reactions and mentions name their author by ACI only (Signal's Quote.authorAci,
 * Reaction.targetAuthorAci, BodyRange.mentionAci); a number or a PNI cannot be put there.
 */
export function aciOf(v: unknown, what: string): string {
  if (typeof v !== 'string' || !UUID.test(v.trim())) {
    throw new InvalidInputError(
      `${what} must be a Signal ACI (a UUID, as in msg.signal.from.aci), but it is ${kindOf(v)}`,
    );
  }
  return v.trim().toLowerCase();
}

function offsetOf(v: unknown, what: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw new InvalidInputError(
      `${what} must be a whole number from ${min}, but it is ${kindOf(v)}`,
    );
  return v;
}

export function quoteOf(v: unknown): Quote {
  if (!isObject(v))
    throw new InvalidInputError(
      `msg.quote must be an object {timestamp, author}, but it is ${kindOf(v)}`,
    );
  const quote: Quote = {
    timestamp: timestampOf(v.timestamp, 'msg.quote.timestamp'),
    author: aciOf(v.author, 'msg.quote.author'),
  };
  if (v.text !== undefined) {
    if (typeof v.text !== 'string')
      throw new InvalidInputError(`msg.quote.text must be text, but it is ${kindOf(v.text)}`);
    quote.text = v.text;
  }
  return quote;
}

export function mentionsOf(v: unknown): Mention[] {
  if (!Array.isArray(v))
    throw new InvalidInputError(
      `msg.mentions must be an array of {aci, start, length}, but it is ${kindOf(v)}`,
    );
  return v.map((m: unknown, i) => {
    const what = `msg.mentions[${i}]`;
    if (!isObject(m)) throw new InvalidInputError(`${what} must be an object {aci, start, length}`);
    return {
      aci: aciOf(m.aci, `${what}.aci`),
      start: offsetOf(m.start, `${what}.start`, 0),
      length: offsetOf(m.length, `${what}.length`, 1),
    };
  });
}

export function expiresOf(v: unknown): number {
  return offsetOf(v, 'msg.expiresInSeconds', 0);
}

function reactionOf(v: unknown): Reaction {
  if (!isObject(v)) {
    throw new InvalidInputError(
      `msg.reaction must be an object {emoji, timestamp, author, remove?}, but it is ${kindOf(v)}`,
    );
  }
  if (typeof v.emoji !== 'string' || v.emoji === '')
    throw new InvalidInputError(
      `msg.reaction.emoji must be an emoji, but it is ${kindOf(v.emoji)}`,
    );
  if (v.remove !== undefined && typeof v.remove !== 'boolean')
    throw new InvalidInputError(
      `msg.reaction.remove must be true or false, but it is ${kindOf(v.remove)}`,
    );
  return {
    emoji: v.emoji,
    targetTimestamp: timestampOf(v.timestamp, 'msg.reaction.timestamp'),
    targetAuthor: aciOf(v.author, 'msg.reaction.author'),
    ...(v.remove !== undefined ? { remove: v.remove } : {}),
  };
}

function receiptOf(v: unknown): Extract<Action, { kind: 'receipt' }> {
  if (!isObject(v)) {
    throw new InvalidInputError(
      `msg.receipt must be an object {type: "read" | "viewed", timestamps}, but it is ${kindOf(v)}`,
    );
  }
  if (v.type !== 'read' && v.type !== 'viewed')
    throw new InvalidInputError(
      `msg.receipt.type must be "read" or "viewed", but it is ${kindOf(v.type)}`,
    );
  if (!Array.isArray(v.timestamps) || v.timestamps.length === 0) {
    throw new InvalidInputError(
      `msg.receipt.timestamps must be a non-empty array of message timestamps, but it is ${kindOf(v.timestamps)}`,
    );
  }
  const timestamps = v.timestamps.map((t: unknown, i) =>
    timestampOf(t, `msg.receipt.timestamps[${i}]`),
  );
  return { kind: 'receipt', type: v.type, timestamps };
}

/**
 * The message's text: a text msg.payload as ever; with a payload that is not text (a Buffer sent as
 * the attachment, or none at all beside msg.attachments), msg.caption or no text. A msg.caption
 * beside a text payload is refused rather than one of them dropped.
 */
function bodyOf(msg: NodeMessage, attachments: AttachmentSpec[]): string | undefined {
  const p = msg.payload;
  const isText = typeof p === 'string' || typeof p === 'number' || typeof p === 'boolean';
  if (msg.caption !== undefined) {
    if (typeof msg.caption !== 'string')
      throw new InvalidInputError(`msg.caption must be text, but it is ${kindOf(msg.caption)}`);
    if (isText && p !== '')
      throw new InvalidInputError(
        'msg.caption and a text msg.payload are both set: msg.caption is the text sent with a Buffer payload or msg.attachments; put the text in one of them',
      );
    if (attachments.length === 0)
      throw new InvalidInputError('msg.caption is the text of an attachment, but there is none');
  }
  if (attachments.length === 0) return textOf(p);
  if (isText && p !== '') return textOf(p);
  if (p !== undefined && p !== null && p !== '' && !(p instanceof Uint8Array)) {
    throw new InvalidInputError(
      `msg.payload must be text or a Buffer beside msg.attachments, but it is ${kindOf(p)}`,
    );
  }
  return msg.caption === undefined || msg.caption === ''
    ? undefined
    : textOf(msg.caption, 'msg.caption');
}

/**
 * The text and its extras for a message or an edit. With `styled`, markers in the payload become
 * ranges and are stripped; msg.mentions and msg.styles count in that stripped text (the text the
 * recipient sees), so they pass unchanged, and styled ranges and msg.styles are sent together.
 */
function messageOf(msg: NodeMessage, styled: boolean, attachments: AttachmentSpec[]): RichMessage {
  let text = bodyOf(msg, attachments);
  const styles: StyleRange[] = [];
  if (styled && text !== undefined) {
    const parsed = parseStyled(text);
    text = parsed.text;
    styles.push(...parsed.styles);
  }
  if (msg.styles !== undefined) styles.push(...stylesOf(msg.styles));
  const message: RichMessage = text !== undefined ? { text } : {};
  if (msg.quote !== undefined) message.quote = quoteOf(msg.quote);
  if (msg.mentions !== undefined) message.mentions = mentionsOf(msg.mentions);
  if (styles.length > 0) message.styles = styles;
  if (msg.expiresInSeconds !== undefined)
    message.expiresInSeconds = expiresOf(msg.expiresInSeconds);
  return message;
}

/**
 * What the msg asks for, every property checked: at most one of KINDS (two is an error naming both),
 * and the message extras only where they mean something (with a reaction, a receipt, typing or a
 * delete they would be dropped, so they are refused by name instead).
 */
export function actionOf(msg: NodeMessage, styled: boolean): Action {
  const kinds = KINDS.filter((k) => msg[k] !== undefined);
  if (kinds.length > 1) {
    throw new InvalidInputError(
      `msg.${kinds[0]} and msg.${kinds[1]} are both set: one msg sends one kind of message; send them as two msgs`,
    );
  }
  const kind = kinds[0];
  if (kind === undefined) {
    const attachments = attachmentSpecsOf(msg.payload, msg.attachments);
    return { kind: 'message', message: messageOf(msg, styled, attachments), attachments };
  }
  if (kind === 'edit') {
    for (const extra of ['attachments', 'caption'] as const)
      if (msg[extra] !== undefined)
        throw new InvalidInputError(
          `msg.${extra} cannot go with msg.edit: an edit changes a message's text, not its attachments`,
        );
    return {
      kind,
      targetTimestamp: timestampOf(msg.edit, 'msg.edit'),
      message: messageOf(msg, styled, []),
    };
  }
  const extra = EXTRAS.find((e) => msg[e] !== undefined);
  if (extra !== undefined) {
    throw new InvalidInputError(
      `msg.${extra} cannot go with msg.${kind}: it belongs to a new message or an edit`,
    );
  }
  switch (kind) {
    case 'reaction':
      return { kind, reaction: reactionOf(msg.reaction) };
    case 'receipt':
      return receiptOf(msg.receipt);
    case 'typing':
      if (typeof msg.typing !== 'boolean') {
        throw new InvalidInputError(
          `msg.typing must be true (started typing) or false (stopped), but it is ${kindOf(msg.typing)}`,
        );
      }
      return { kind, started: msg.typing };
    case 'delete':
      return { kind, targetTimestamp: timestampOf(msg.delete, 'msg.delete') };
  }
}

/** The engine call that sends `action` to one recipient. */
export function sendAction(
  client: SignalClient,
  action: Action,
): (to: string) => Promise<SendResult> {
  switch (action.kind) {
    case 'message':
      return (to) => client.send(to, action.message);
    case 'reaction':
      return (to) => client.react(to, action.reaction);
    case 'receipt':
      return action.type === 'read'
        ? (to) => client.markRead(to, action.timestamps)
        : (to) => client.markViewed(to, action.timestamps);
    case 'typing':
      return (to) => client.typing(to, action.started);
    case 'edit':
      return (to) => client.edit(to, action.targetTimestamp, action.message);
    case 'delete':
      return (to) => client.deleteForEveryone(to, action.targetTimestamp);
  }
}
