/**
 * signal-out's attachments: what a msg may carry (msg.attachments, a Buffer msg.payload) checked at
 * the node boundary, so that a bad entry names its property and nothing is sent; then each file's
 * head (at most 64 KiB, never the whole file) read to fill in the content type and an image's size
 * when the flow gave none. The engine uploads them (it reads files streaming).
 */
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError } from '../../core/errors';
import { HEAD_BYTES, imageSize, sniffContentType } from '../../core/messaging/media';
import {
  ATTACHMENT_FIELDS,
  MAX_ATTACHMENT_BYTES,
  MAX_ATTACHMENTS,
  MIME_TYPE,
} from '../../core/messaging/outgoing-attachments';
import type { OutgoingAttachment } from '../../core/types';

/** Signal's limits, as the engine checks them: attachments per message, bytes per attachment. */
export { MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS };

/** One entry as the flow gave it, checked for shape: bytes or a file, and the optional fields. */
export interface AttachmentSpec extends OutgoingAttachment {
  /** The msg property it came from, for the errors of the file checks. */
  what: string;
}

/** The object form's fields; `size` (and `failed`) are signal-in's, accepted so a flow can forward. */
const FIELDS = ATTACHMENT_FIELDS;
const FROM_SIGNAL_IN = ['size'];

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function kindOf(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `text (${JSON.stringify(v.slice(0, 40))})`;
  if (typeof v === 'number' || typeof v === 'boolean') return `a ${typeof v} (${v})`;
  return `${typeof v === 'object' ? 'an' : 'a'} ${typeof v}`;
}

const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

function checkBytes(data: Uint8Array, what: string): Uint8Array {
  if (data.length === 0) throw new InvalidInputError(`${what} is an empty Buffer: nothing to send`);
  if (data.length > MAX_ATTACHMENT_BYTES) {
    throw new InvalidInputError(
      `${what} is ${mib(data.length)}, over Signal's limit of 100 MiB per attachment`,
    );
  }
  return data;
}

function checkPath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p.trim() === '')
    throw new InvalidInputError(`${what} must be a file path (text), but it is ${kindOf(p)}`);
  if (/^https?:\/\//i.test(p.trim())) {
    throw new InvalidInputError(
      `${what} is a URL (${p.trim().slice(0, 80)}): signal-out sends files and Buffers, it does not fetch URLs. ` +
        'Fetch it first with an "http request" node (Return: "a binary buffer") and send its msg.payload',
    );
  }
  return p;
}

function optionalText(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '')
    throw new InvalidInputError(`${what} must be non-empty text, but it is ${kindOf(v)}`);
  return v;
}

function optionalPixels(v: unknown, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v > 0xffffffff)
    throw new InvalidInputError(`${what} must be a whole number of pixels, but it is ${kindOf(v)}`);
  return v;
}

function specOf(entry: unknown, what: string): AttachmentSpec {
  if (isBytes(entry)) return { what, data: checkBytes(entry, what) };
  if (typeof entry === 'string') return { what, path: checkPath(entry, what) };
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new InvalidInputError(
      `${what} must be a Buffer, a file path or an object {data | path, contentType?, fileName?, caption?, width?, height?, voiceNote?}, but it is ${kindOf(entry)}`,
    );
  }
  const o = entry as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (o[key] === undefined || (FIELDS as readonly string[]).includes(key)) continue;
    if (FROM_SIGNAL_IN.includes(key)) continue;
    const near = FIELDS.find((f) => f.toLowerCase() === key.toLowerCase());
    throw new InvalidInputError(
      `${what}.${key} is not an attachment field${near ? ` (did you mean ${near}?)` : ''}: use ${FIELDS.join(', ')}`,
    );
  }
  const hasData = o.data !== undefined;
  const hasPath = o.path !== undefined;
  if (hasData === hasPath) {
    throw new InvalidInputError(
      `${what} must have exactly one of data (a Buffer) and path (a file), but it has ${hasData ? 'both' : 'neither'}`,
    );
  }
  const spec: AttachmentSpec = { what: hasPath ? `${what}.path` : what };
  if (hasData) {
    if (!isBytes(o.data))
      throw new InvalidInputError(`${what}.data must be a Buffer, but it is ${kindOf(o.data)}`);
    spec.data = checkBytes(o.data, `${what}.data`);
  } else spec.path = checkPath(o.path, `${what}.path`);
  const contentType = optionalText(o.contentType, `${what}.contentType`);
  if (contentType !== undefined) {
    if (!MIME_TYPE.test(contentType))
      throw new InvalidInputError(
        `${what}.contentType must be a MIME type such as "image/png", but it is ${kindOf(contentType)}`,
      );
    spec.contentType = contentType;
  }
  const fileName = optionalText(o.fileName, `${what}.fileName`);
  if (fileName !== undefined) spec.fileName = fileName;
  if (o.caption !== undefined) {
    if (typeof o.caption !== 'string')
      throw new InvalidInputError(`${what}.caption must be text, but it is ${kindOf(o.caption)}`);
    spec.caption = o.caption;
  }
  const width = optionalPixels(o.width, `${what}.width`);
  const height = optionalPixels(o.height, `${what}.height`);
  if (width !== undefined) spec.width = width;
  if (height !== undefined) spec.height = height;
  if (o.voiceNote !== undefined) {
    if (typeof o.voiceNote !== 'boolean')
      throw new InvalidInputError(
        `${what}.voiceNote must be true or false, but it is ${kindOf(o.voiceNote)}`,
      );
    spec.voiceNote = o.voiceNote;
  }
  return spec;
}

/**
 * The attachments a msg carries, in order: a Buffer msg.payload first, then msg.attachments (an
 * array, or one entry alone). Checked for shape and count only; the files are checked by
 * `resolveAttachments`. Empty when the msg has none.
 */
export function attachmentSpecsOf(payload: unknown, attachments: unknown): AttachmentSpec[] {
  const specs: AttachmentSpec[] = [];
  if (isBytes(payload))
    specs.push({ what: 'msg.payload', data: checkBytes(payload, 'msg.payload') });
  if (attachments === undefined || attachments === null) return specs;
  const list = Array.isArray(attachments) ? attachments : [attachments];
  const total = specs.length + list.length;
  if (total > MAX_ATTACHMENTS) {
    throw new InvalidInputError(
      `Too many attachments: ${total}${specs.length ? ' (msg.payload and msg.attachments)' : ' in msg.attachments'}, and a Signal message carries at most ${MAX_ATTACHMENTS}; send them over several messages`,
    );
  }
  list.forEach((entry: unknown, i) => {
    specs.push(
      specOf(entry, Array.isArray(attachments) ? `msg.attachments[${i}]` : 'msg.attachments'),
    );
  });
  return specs;
}

/** At most HEAD_BYTES from the start of an open file. */
async function readHead(file: fs.promises.FileHandle, size: number): Promise<Uint8Array> {
  const head = Buffer.alloc(Math.min(size, HEAD_BYTES));
  let got = 0;
  while (got < head.length) {
    const { bytesRead } = await file.read(head, got, head.length - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return head.subarray(0, got);
}

/** A file entry checked (there, a regular file, not empty, within the limit) and its head. */
async function fileHead(p: string, what: string): Promise<Uint8Array> {
  let file: fs.promises.FileHandle;
  try {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer.
    file = await fs.promises.open(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InvalidInputError(`${what}: no such file ${p}`);
    if (code === 'EISDIR') throw new InvalidInputError(`${what}: ${p} is a directory, not a file`);
    throw new InvalidInputError(`${what}: ${p} cannot be read (${code ?? (e as Error).message})`);
  }
  try {
    const stat = await file.stat();
    if (stat.isDirectory()) throw new InvalidInputError(`${what}: ${p} is a directory, not a file`);
    if (!stat.isFile()) throw new InvalidInputError(`${what}: ${p} is not a regular file`);
    if (stat.size === 0) throw new InvalidInputError(`${what}: ${p} is empty: nothing to send`);
    if (stat.size > MAX_ATTACHMENT_BYTES) {
      throw new InvalidInputError(
        `${what}: ${p} is ${mib(stat.size)}, over Signal's limit of 100 MiB per attachment`,
      );
    }
    return await readHead(file, stat.size);
  } catch (e) {
    if (e instanceof InvalidInputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EISDIR') throw new InvalidInputError(`${what}: ${p} is a directory, not a file`);
    throw new InvalidInputError(`${what}: ${p} cannot be read (${code ?? (e as Error).message})`);
  } finally {
    await file.close().catch(() => undefined);
  }
}

/**
 * The engine's attachments from the checked specs: a relative path resolved against `baseDir`
 * (as Node-RED's file nodes do: settings.fileWorkingDirectory, else Node-RED's working
 * directory), each file checked, a file's name sent as its fileName unless the flow set one, and the
 * content type (sniffed from the head) and an image's width and height filled in where absent.
 */
export async function resolveAttachments(
  specs: AttachmentSpec[],
  baseDir: string,
): Promise<OutgoingAttachment[]> {
  const out: OutgoingAttachment[] = [];
  for (const { what, ...spec } of specs) {
    const a: OutgoingAttachment = { ...spec };
    let head: Uint8Array;
    if (spec.path !== undefined) {
      a.path = path.resolve(baseDir, spec.path);
      head = await fileHead(a.path, what);
      if (a.fileName === undefined) a.fileName = path.basename(a.path);
    } else head = (spec.data as Uint8Array).subarray(0, HEAD_BYTES);
    if (a.contentType === undefined) a.contentType = sniffContentType(head, a.fileName);
    if (a.width === undefined && a.height === undefined && a.contentType.startsWith('image/')) {
      const size = imageSize(head, a.contentType);
      if (size) {
        a.width = size.width;
        a.height = size.height;
      }
    }
    out.push(a);
  }
  return out;
}
