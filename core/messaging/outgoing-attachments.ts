/**
 * The attachments of an OutgoingMessage (core/types.ts OutgoingAttachment), and long text, checked
 * before anything is uploaded or sent. Each refusal is an InvalidInputError naming the entry and
 * what was wrong (`attachments[2].path: no such file /x/y`). A file is looked at with stat only:
 * it is read (streaming) when it is encrypted for the upload.
 */
import fs from 'node:fs';
import { InvalidInputError } from '../errors';

/** Signal's limits: attachments per message, bytes per attachment. */
export const MAX_ATTACHMENTS = 32;
export const MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024;
/** A body longer than this (UTF-8 bytes) goes as a long-text attachment (Signal-Desktop's 2 KiB). */
export const MAX_INLINE_BODY_BYTES = 2000;
/** The whole text of a long message (Signal-Desktop ts/util/longAttachment: 64 KiB). */
export const MAX_LONG_TEXT_BYTES = 64 * 1024;
export const LONG_TEXT_TYPE = 'text/x-signal-plain';

/** OutgoingAttachment's fields (core/types.ts), in the order the errors list them. */
export const ATTACHMENT_FIELDS = [
  'data',
  'path',
  'contentType',
  'fileName',
  'caption',
  'width',
  'height',
  'voiceNote',
] as const;
const FIELDS = new Set<string>(ATTACHMENT_FIELDS);

/** A checked attachment: where its bytes are, how many, and what the pointer says of it. */
export interface CheckedAttachment {
  source: { data: Uint8Array } | { path: string };
  size: number;
  contentType: string;
  fileName?: string;
  caption?: string;
  width?: number;
  height?: number;
  voiceNote?: boolean;
}

export const MIME_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/i;

function dimension(v: unknown, field: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > 0xffff_ffff)
    throw new InvalidInputError(`${field} must be a positive integer (pixels)`);
  return v;
}

function text(v: unknown, field: string, max: number): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new InvalidInputError(`${field} must be a string`);
  if (Buffer.byteLength(v) > max) throw new InvalidInputError(`${field} is over ${max} bytes`);
  return v;
}

function checkOne(raw: unknown, i: number): CheckedAttachment {
  const at = `attachments[${i}]`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new InvalidInputError(`${at} must be an object {data} or {path}`);
  const a = raw as Record<string, unknown>;
  for (const k of Object.keys(a))
    if (!FIELDS.has(k) && a[k] !== undefined)
      throw new InvalidInputError(`The ${at} field "${k}" is not one this engine can send`);
  const hasData = a.data !== undefined;
  const hasPath = a.path !== undefined;
  if (hasData === hasPath)
    throw new InvalidInputError(
      `${at} needs exactly one of data (bytes) and path (a file), ${hasData ? 'not both' : 'got neither'}`,
    );
  let source: CheckedAttachment['source'];
  let size: number;
  if (hasData) {
    if (!(a.data instanceof Uint8Array))
      throw new InvalidInputError(`${at}.data must be a Buffer or Uint8Array`);
    if (a.data.length === 0) throw new InvalidInputError(`${at}.data is empty`);
    source = { data: a.data };
    size = a.data.length;
  } else {
    if (typeof a.path !== 'string' || a.path === '')
      throw new InvalidInputError(`${at}.path must be a file path`);
    let st: fs.Stats;
    try {
      st = fs.statSync(a.path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new InvalidInputError(
        code === 'ENOENT'
          ? `${at}.path: no such file ${a.path}`
          : `${at}.path: cannot read ${a.path} (${code ?? (e as Error).message})`,
      );
    }
    if (st.isDirectory()) throw new InvalidInputError(`${at}.path: ${a.path} is a directory`);
    if (!st.isFile()) throw new InvalidInputError(`${at}.path: ${a.path} is not a regular file`);
    if (st.size === 0) throw new InvalidInputError(`${at}.path: ${a.path} is empty`);
    try {
      fs.accessSync(a.path, fs.constants.R_OK);
    } catch {
      throw new InvalidInputError(`${at}.path: ${a.path} is not readable`);
    }
    source = { path: a.path };
    size = st.size;
  }
  if (size > MAX_ATTACHMENT_BYTES)
    throw new InvalidInputError(
      `${at}${hasData ? '.data' : '.path'}: ${size} bytes is over Signal's limit of ${MAX_ATTACHMENT_BYTES} (100 MiB)`,
    );
  let contentType = 'application/octet-stream';
  if (a.contentType !== undefined) {
    if (typeof a.contentType !== 'string' || !MIME_TYPE.test(a.contentType))
      throw new InvalidInputError(`${at}.contentType must be a MIME type such as image/png`);
    contentType = a.contentType.toLowerCase();
  }
  if (a.voiceNote !== undefined && typeof a.voiceNote !== 'boolean')
    throw new InvalidInputError(`${at}.voiceNote must be true or false`);
  const checked: CheckedAttachment = { source, size, contentType };
  const fileName = text(a.fileName, `${at}.fileName`, 255);
  if (fileName) checked.fileName = fileName;
  const caption = text(a.caption, `${at}.caption`, MAX_INLINE_BODY_BYTES);
  if (caption) checked.caption = caption;
  const width = dimension(a.width, `${at}.width`);
  if (width) checked.width = width;
  const height = dimension(a.height, `${at}.height`);
  if (height) checked.height = height;
  if (a.voiceNote) checked.voiceNote = true;
  return checked;
}

/** The message's attachments, checked (an empty list when there are none). */
export function checkAttachments(value: unknown): CheckedAttachment[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new InvalidInputError('attachments must be an array');
  if (value.length > MAX_ATTACHMENTS)
    throw new InvalidInputError(
      `attachments: ${value.length} is more than Signal's ${MAX_ATTACHMENTS} per message`,
    );
  return value.map(checkOne);
}

/**
 * The longest prefix of `body` within `maxBytes` UTF-8 bytes, cut at a code-point boundary (never
 * between the halves of a surrogate pair). Returned as a UTF-16 length, so it cuts `body` directly.
 */
export function inlineLength(body: string, maxBytes = MAX_INLINE_BODY_BYTES): number {
  let bytes = 0;
  let i = 0;
  while (i < body.length) {
    const cp = body.codePointAt(i)!;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + n > maxBytes) break;
    bytes += n;
    i += cp > 0xffff ? 2 : 1;
  }
  return i;
}
