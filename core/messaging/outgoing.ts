/**
 * The outgoing-message model (core/types.ts OutgoingMessage, OutgoingReaction), checked before
 * anything is resolved or sent: every refusal is an InvalidInputError naming the field
 * (`mentions[1].start`), and a field the engine does not send is refused by name rather than dropped.
 * No I/O but the stat of an attachment's file (./outgoing-attachments.ts).
 */
import { Aci, ServiceId } from '@signalapp/libsignal-client';
import { InvalidInputError } from '../errors';
import type { OutgoingMessage, OutgoingReaction, TextStyle } from '../types';
import {
  MAX_INLINE_BODY_BYTES,
  MAX_LONG_TEXT_BYTES,
  checkAttachments,
  inlineLength,
  type CheckedAttachment,
} from './outgoing-attachments';

const OUTGOING_FIELDS = new Set<string>([
  'text',
  'attachments',
  'quote',
  'mentions',
  'styles',
  'expiresInSeconds',
]);
const QUOTE_FIELDS = new Set<string>(['timestamp', 'author', 'text']);
const RANGE_FIELDS = {
  mentions: new Set(['aci', 'start', 'length']),
  styles: new Set(['style', 'start', 'length']),
};
const REACTION_FIELDS = new Set<string>(['emoji', 'targetAuthor', 'targetTimestamp', 'remove']);

/** BodyRange.Style numbering (SignalService.proto). */
export const STYLE_VALUES: Record<TextStyle, number> = {
  bold: 1,
  italic: 2,
  spoiler: 3,
  strikethrough: 4,
  monospace: 5,
};

/** What Signal's apps put in the body where a mention is (BodyRange.mentionAci covers this one char). */
export const MENTION_PLACEHOLDER = '\uFFFC';

/** DataMessage.expireTimer is a uint32 of seconds. */
const MAX_TIMER_SECONDS = 0xffff_ffff;

/** One body range as it goes on the wire: offsets in the sent body (after the mention placeholders). */
export type WireBodyRange =
  | { start: number; length: number; mentionAci: string }
  | { start: number; length: number; style: number };

/** A checked OutgoingMessage, ready for the content builders. */
export interface CheckedMessage {
  /**
   * The body as sent: each mention's range replaced by U+FFFC; over 2,000 UTF-8 bytes, its first
   * 2,000 bytes (cut at a code point), with the whole of it in `longText`.
   */
  body: string;
  /**
   * The ranges, in the whole text's offsets: for a long text they may reach past the inline cut,
   * as receivers apply them to the whole text (the long-text attachment).
   */
  bodyRanges: WireBodyRange[];
  /** The files to upload and send, in order. */
  attachments: CheckedAttachment[];
  /** A long body's whole text (UTF-8), sent as a `text/x-signal-plain` attachment first. */
  longText?: Uint8Array;
  quote?: { id: number; authorAci: string; text?: string };
  expiresInSeconds?: number;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function refuseUnknown(value: Record<string, unknown>, known: Set<string>, where: string): void {
  for (const field of Object.keys(value)) {
    if (!known.has(field) && value[field] !== undefined)
      throw new InvalidInputError(`The ${where} field "${field}" is not one this engine can send`);
  }
}

/** A positive integer timestamp (ms since the epoch, as Signal's sent timestamps are). */
export function checkTimestamp(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0)
    throw new InvalidInputError(`${field} must be a positive integer timestamp (ms)`);
  return value;
}

/** A non-empty array of sent timestamps (receipts name the messages by them). */
export function checkTimestamps(value: unknown, field: string): number[] {
  if (!Array.isArray(value) || value.length === 0)
    throw new InvalidInputError(`${field} must be a non-empty array of timestamps`);
  return value.map((t, i) => checkTimestamp(t, `${field}[${i}]`));
}

/** An ACI as a bare UUID (any case in, lower case out); a PNI or anything else is refused. */
export function checkAci(value: unknown, field: string): string {
  if (
    typeof value !== 'string' ||
    !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)
  )
    throw new InvalidInputError(`${field} must be an ACI (a UUID)`);
  const parsed = ServiceId.parseFromServiceIdString(value.toLowerCase());
  if (!(parsed instanceof Aci)) throw new InvalidInputError(`${field} must be an ACI (a UUID)`);
  return parsed.getServiceIdString();
}

function checkCount(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new InvalidInputError(`${field} must be a non-negative integer`);
  return value;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** A range boundary between the two halves of a surrogate pair is always a miscount. */
function checkBoundary(text: string, at: number, field: string): void {
  if (at > 0 && at < text.length && isHighSurrogate(text.charCodeAt(at - 1))) {
    const low = text.charCodeAt(at);
    if (low >= 0xdc00 && low <= 0xdfff)
      throw new InvalidInputError(
        `${field} falls inside a surrogate pair: offsets count UTF-16 code units, as Signal does`,
      );
  }
}

interface Range {
  start: number;
  length: number;
}

function checkRange(
  text: string,
  raw: Record<string, unknown>,
  field: string,
  minLength: number,
): Range {
  const start = checkCount(raw.start, `${field}.start`);
  const length = checkCount(raw.length, `${field}.length`);
  if (length < minLength)
    throw new InvalidInputError(`${field}.length must be at least ${minLength}`);
  if (start > text.length)
    throw new InvalidInputError(
      `${field}.start (${start}) is outside the text (${text.length} UTF-16 code units)`,
    );
  if (start + length > text.length)
    throw new InvalidInputError(
      `${field}.length: the range ${start}..${start + length} ends outside the text (${text.length} UTF-16 code units)`,
    );
  checkBoundary(text, start, `${field}.start`);
  checkBoundary(text, start + length, `${field}.length`);
  return { start, length };
}

function rangeList(value: unknown, field: 'mentions' | 'styles'): Record<string, unknown>[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new InvalidInputError(`${field} must be an array`);
  return value.map((r, i) => {
    if (!isPlainObject(r)) throw new InvalidInputError(`${field}[${i}] must be an object`);
    refuseUnknown(r, RANGE_FIELDS[field], `${field}[${i}]`);
    return r;
  });
}

/**
 * Checks an OutgoingMessage and turns it into the body and body ranges Signal sends: each mention's
 * range becomes one U+FFFC in the body with a BodyRange{start, length: 1, mentionAci} (as
 * Signal-Desktop sends mentions), and every style range is moved to the same characters of that body.
 */
export function checkOutgoing(message: OutgoingMessage): CheckedMessage {
  if (!isPlainObject(message))
    throw new InvalidInputError('The message must be an object such as {text: "…"}');
  refuseUnknown(message, OUTGOING_FIELDS, 'message');
  const attachments = checkAttachments(message.attachments);
  const given = message.text;
  if (given !== undefined && typeof given !== 'string')
    throw new InvalidInputError('The message text must be a string');
  const text = given ?? '';
  if (text.length === 0 && attachments.length === 0)
    throw new InvalidInputError(
      given === undefined
        ? 'The message has neither text nor attachments'
        : 'The message text is empty',
    );

  const mentions = rangeList(message.mentions, 'mentions').map((m, i) => ({
    ...checkRange(text, m, `mentions[${i}]`, 1),
    aci: checkAci(m.aci, `mentions[${i}].aci`),
    index: i,
  }));
  const styles = rangeList(message.styles, 'styles').map((s, i) => {
    const style = s.style;
    if (typeof style !== 'string' || !Object.hasOwn(STYLE_VALUES, style))
      throw new InvalidInputError(
        `styles[${i}].style must be one of ${Object.keys(STYLE_VALUES).join(', ')}`,
      );
    return { ...checkRange(text, s, `styles[${i}]`, 1), style: STYLE_VALUES[style as TextStyle] };
  });

  const sorted = [...mentions].sort((a, b) => a.start - b.start);
  for (let k = 1; k < sorted.length; k++) {
    const prev = sorted[k - 1]!;
    const cur = sorted[k]!;
    if (cur.start < prev.start + prev.length)
      throw new InvalidInputError(`mentions[${cur.index}] overlaps mentions[${prev.index}]`);
  }
  // The body with each mention's range replaced by the placeholder, and where each old offset lands.
  let body = '';
  let from = 0;
  for (const m of sorted) {
    body += text.slice(from, m.start) + MENTION_PLACEHOLDER;
    from = m.start + m.length;
  }
  body += text.slice(from);
  const moved = (at: number): number => {
    let shift = 0;
    for (const m of sorted) if (m.start + m.length <= at) shift += m.length - 1;
    return at - shift;
  };

  const bodyRanges: WireBodyRange[] = [];
  for (const m of mentions)
    bodyRanges.push({ start: moved(m.start), length: 1, mentionAci: m.aci });
  styles.forEach((s, i) => {
    const end = s.start + s.length;
    for (const m of sorted) {
      const mEnd = m.start + m.length;
      if ((s.start > m.start && s.start < mEnd) || (end > m.start && end < mEnd))
        throw new InvalidInputError(`styles[${i}] cuts through mentions[${m.index}]`);
    }
    const start = moved(s.start);
    bodyRanges.push({ start, length: moved(end) - start, style: s.style });
  });

  const checked: CheckedMessage = { body, bodyRanges, attachments };
  const bytes = Buffer.byteLength(body);
  if (bytes > MAX_INLINE_BODY_BYTES) {
    if (bytes > MAX_LONG_TEXT_BYTES)
      throw new InvalidInputError(
        `text: ${bytes} UTF-8 bytes is over Signal's limit of ${MAX_LONG_TEXT_BYTES} (64 KiB) for a long message`,
      );
    // As Signal's apps send a long message: the start inline, the whole as an attachment.
    const cut = inlineLength(body);
    checked.longText = new Uint8Array(Buffer.from(body, 'utf8'));
    checked.body = body.slice(0, cut);
  }
  if (message.quote !== undefined) {
    const q: unknown = message.quote;
    if (!isPlainObject(q))
      throw new InvalidInputError('quote must be an object {timestamp, author}');
    refuseUnknown(q, QUOTE_FIELDS, 'quote');
    checked.quote = {
      id: checkTimestamp(q.timestamp, 'quote.timestamp'),
      authorAci: checkAci(q.author, 'quote.author'),
    };
    if (q.text !== undefined) {
      if (typeof q.text !== 'string') throw new InvalidInputError('quote.text must be a string');
      checked.quote.text = q.text;
    }
  }
  if (message.expiresInSeconds !== undefined) {
    const seconds = checkCount(message.expiresInSeconds, 'expiresInSeconds');
    if (seconds > MAX_TIMER_SECONDS)
      throw new InvalidInputError(`expiresInSeconds must be at most ${MAX_TIMER_SECONDS}`);
    checked.expiresInSeconds = seconds;
  }
  return checked;
}

/** The text of an OutgoingMessage (checked as checkOutgoing does). */
export function outgoingText(message: OutgoingMessage): string {
  return checkOutgoing(message).body;
}

/**
 * One emoji: a single grapheme that is an RGI emoji (with its skin tone, ZWJ sequence, flag or
 * keycap), or a pictograph without its variation selector ("❤"), as older keyboards send. The `v`
 * flag (Node 20) is built at run time: the compile target predates it.
 */
const RGI_EMOJI = new RegExp('^\\p{RGI_Emoji}$', 'v');
const PICTOGRAPH = /^\p{Extended_Pictographic}\uFE0F?$/u;
const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** Checks a reaction before anything is sent; the target ACI comes back in its canonical form. */
export function checkReaction(reaction: OutgoingReaction): Required<OutgoingReaction> {
  if (!isPlainObject(reaction))
    throw new InvalidInputError(
      'The reaction must be an object {emoji, targetAuthor, targetTimestamp, remove?}',
    );
  refuseUnknown(reaction, REACTION_FIELDS, 'reaction');
  const { emoji } = reaction;
  if (typeof emoji !== 'string' || emoji.length === 0)
    throw new InvalidInputError('emoji must be one emoji');
  if (
    [...segmenter.segment(emoji)].length !== 1 ||
    !(RGI_EMOJI.test(emoji) || PICTOGRAPH.test(emoji))
  )
    throw new InvalidInputError('emoji must be exactly one emoji (a single grapheme)');
  if (reaction.targetTimestamp === undefined)
    throw new InvalidInputError(
      'targetTimestamp is required: the sent timestamp of the message reacted to',
    );
  if (reaction.targetAuthor === undefined)
    throw new InvalidInputError('targetAuthor is required: the ACI of the message author');
  if (reaction.remove !== undefined && typeof reaction.remove !== 'boolean')
    throw new InvalidInputError('remove must be true or false');
  return {
    emoji,
    targetAuthor: checkAci(reaction.targetAuthor, 'targetAuthor'),
    targetTimestamp: checkTimestamp(reaction.targetTimestamp, 'targetTimestamp'),
    remove: reaction.remove ?? false,
  };
}
