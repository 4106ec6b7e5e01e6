/**
 * Received attachments (PROTOCOL.md §7; DESIGN.md "Next wave"): each AttachmentPointer names a CDN
 * (`cdnNumber`) and an object on it (`cdnId` on CDN 0, `cdnKey` on CDN 2 and 3), downloaded from
 * `<cdnUrls[cdnNumber]>/attachments/<id>` and decrypted here. The download is verified (HMAC, and
 * the SHA-256 digest) and decrypted in one pass as it streams, cut to the pointer's `size` (Signal
 * pads the plaintext), into a temp file (0600, in the account's 0700 folder); only a verified file
 * is released, as a file or a Buffer. A file never sits in memory whole (except as the Buffer a
 * user asked for).
 *
 * How this keeps "nothing lost, none twice" (core/messaging/inbox.ts): an envelope is recorded and
 * ACKed as every other; a message with attachments to download is emitted once its downloads ended
 * (a few tries each, then marked `failed`), off the envelopes' queue, and its received-log row stays
 * pending until that emit. A crash mid-download replays the row (and downloads again) at the next
 * start. Such a message may therefore be emitted after messages received behind it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Environment } from '../config';
import { AttachmentDecryptor, AttachmentVerifier } from '../crypto/attachment-stream';
import { NetworkError, ProtocolError } from '../errors';
import type { Logger } from '../log';
import { httpsGetStream } from '../net/https';
import type { AttachmentOptions, IncomingEvent, ReceivedAttachment } from '../types';
import type { RecordedAttachment, StoredPointer } from './content';

/** Signal's own limit for one attachment (its apps refuse larger ones). */
export const DEFAULT_MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024;
export const DEFAULT_ATTACHMENT_QUOTA_BYTES = 1024 * 1024 * 1024;
/** What a download gathers before verifying, decrypting and writing it (and memory holds). */
const BATCH = 1024 * 1024;
/** The URL of a pointer's file: CDN 0 by `cdnId`, CDN 2 and 3 by `cdnKey` (Signal-Desktop's rule). */
export function attachmentUrl(env: Environment, p: StoredPointer): string {
  const base = env.cdnUrls[p.cdnNumber] ?? env.cdnUrls[0];
  const id = p.cdnNumber === 0 ? (p.cdnId ?? p.cdnKey) : (p.cdnKey ?? p.cdnId);
  if (!base || !id) throw new ProtocolError('The attachment names no downloadable file');
  return `${base}/attachments/${encodeURIComponent(id)}`;
}

/** A file name safe to put in our folder: never a path, only plain characters, bounded. */
export function safeName(fileName: string | undefined, contentType: string): string {
  const base = path.basename((fileName ?? '').replace(/\\/g, '/'));
  let clean = base.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '');
  if (clean.length > 80) clean = clean.slice(clean.length - 80);
  if (!clean) {
    const ext = /^[a-z]+\/([a-z0-9.+-]+)$/i.exec(contentType)?.[1]?.replace(/[^a-z0-9]/gi, '');
    clean = `attachment${ext ? `.${ext.slice(0, 10)}` : ''}`;
  }
  return clean;
}

export interface DownloadOptions {
  maxBytes: number;
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Downloads one attachment, verifying (HMAC, digest) and decrypting its bytes as they arrive in
 * one pass; the plaintext goes to a temp file in `dir` (0600) or, for a Buffer (`target` null),
 * to memory, and is released only once the whole file verified: the temp file then becomes
 * `target` (never over an existing file). Throws a ProtocolError ("MAC mismatch", "digest
 * mismatch") or a NetworkError; the temp file never survives a failure.
 */
export async function downloadAttachment(
  env: Environment,
  pointer: StoredPointer,
  size: number,
  dir: string,
  target: string | null,
  opts: DownloadOptions,
): Promise<Uint8Array | null> {
  const keys = new Uint8Array(Buffer.from(pointer.key, 'base64'));
  const verifier = new AttachmentVerifier(keys, Buffer.from(pointer.digest, 'base64'));
  const decryptor = new AttachmentDecryptor(keys, size);
  ensureDir(dir);
  const chunks: Buffer[] = [];
  const temp =
    target === null ? null : path.join(dir, `.part-${crypto.randomBytes(8).toString('hex')}`);
  const file = temp
    ? fs.createWriteStream(temp, { flags: 'wx', mode: 0o600, highWaterMark: BATCH })
    : null;
  const failed = file ? new Promise<never>((_, reject) => file.once('error', reject)) : null;
  failed?.catch(() => undefined);
  /** Writes plaintext aside; back-pressure only when the disk falls behind. */
  const keep = (plain: Buffer): void | Promise<void> => {
    if (plain.length === 0) return;
    if (!file) return void chunks.push(plain);
    if (!file.write(plain))
      return Promise.race([new Promise<void>((r) => file.once('drain', r)), failed!]);
  };
  // The network hands over small pieces (HTTP/2 DATA frames, TLS records: 16 KiB at most): they
  // are gathered into pieces of BATCH bytes (one copy) before the crypto and the disk see them,
  // which costs a fraction of what 16 KiB calls into each of them would.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = (): void | Promise<void> => {
    if (pendingBytes === 0) return;
    const piece = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    verifier.update(piece);
    return keep(decryptor.update(piece));
  };
  try {
    try {
      await httpsGetStream(env, attachmentUrl(env, pointer), opts, (chunk) => {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= BATCH) return flush();
      });
      await flush();
      // Both checks before any plaintext is released.
      verifier.finish();
      await keep(decryptor.final());
    } finally {
      if (file) await Promise.race([new Promise<void>((r) => file.end(r)), failed!]);
    }
    if (!temp || !target) return new Uint8Array(Buffer.concat(chunks));
    await release(temp, target);
    return null;
  } finally {
    if (temp) await fs.promises.rm(temp, { force: true });
  }
}

/** Moves the verified temp file to `target`, never over an existing file. */
async function release(temp: string, target: string): Promise<void> {
  try {
    await fs.promises.link(temp, target);
  } catch (e) {
    // A folder on a file system without hard links: rename, having checked the name is free.
    if ((e as NodeJS.ErrnoException).code === 'EEXIST' || fs.existsSync(target)) throw e;
    await fs.promises.rename(temp, target);
  }
}

function ensureDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
}

/** Why a download failed, as the msg reports it. */
function failureOf(e: unknown): { code: string; message: string } {
  const message = e instanceof Error ? e.message : String(e);
  if (/MAC mismatch/.test(message)) return { code: 'MAC_MISMATCH', message };
  if (/digest mismatch/.test(message)) return { code: 'DIGEST_MISMATCH', message };
  if (/larger than/.test(message)) return { code: 'TOO_LARGE', message };
  if (e instanceof ProtocolError) return { code: 'INVALID', message };
  return { code: 'DOWNLOAD_FAILED', message };
}

/** Failures a retry cannot mend: the file is what it is, or the cap refuses it. */
function permanent(e: unknown): boolean {
  return e instanceof ProtocolError || (e instanceof NetworkError && /larger than/.test(e.message));
}

export interface AttachmentPolicy {
  mode: 'files' | 'buffers' | 'metadata';
  dir: string;
  maxBytes: number;
  quotaBytes: number;
  /** Tries per attachment (default 3), `retryDelayMs` apart, doubling (default 1 s). */
  tries: number;
  retryDelayMs: number;
  timeoutMs: number;
}

export function attachmentPolicy(
  opts: AttachmentOptions | undefined,
  defaultDir: string,
): AttachmentPolicy {
  return {
    mode: opts?.mode ?? 'files',
    dir: opts?.dir ?? defaultDir,
    maxBytes: opts?.maxBytes ?? DEFAULT_MAX_ATTACHMENT_BYTES,
    quotaBytes: opts?.quotaBytes ?? DEFAULT_ATTACHMENT_QUOTA_BYTES,
    tries: Math.max(1, opts?.tries ?? 3),
    retryDelayMs: opts?.retryDelayMs ?? 1000,
    timeoutMs: opts?.timeoutMs ?? 120_000,
  };
}

/** Whether an event carries attachments that still need their download (or their pointer cut). */
export function needsPreparing(events: IncomingEvent[]): boolean {
  return events.some(
    (ev) =>
      ev.type === 'message' &&
      (ev.attachments as RecordedAttachment[] | undefined)?.some((a) => a.pointer),
  );
}

/**
 * Downloads what the events' attachments point at, as the policy says, and returns the events as
 * emitted: each attachment with its `path` or `data`, or `failed`, and never its pointer (keys).
 */
export async function prepareEvents(
  env: Environment,
  policy: AttachmentPolicy,
  logger: Logger,
  events: IncomingEvent[],
  isStopped: () => boolean,
): Promise<IncomingEvent[]> {
  const out: IncomingEvent[] = [];
  for (const ev of events) {
    if (ev.type !== 'message' || !ev.attachments) {
      out.push(ev);
      continue;
    }
    const attachments: ReceivedAttachment[] = [];
    let body = ev.body;
    let longTextDone = false;
    for (const recorded of ev.attachments as RecordedAttachment[]) {
      const { pointer, ...a } = recorded;
      if (a.contentType === LONG_TEXT_TYPE && pointer && !longTextDone) {
        // A long message's whole text: it replaces the cut body and is not listed (Signal's apps
        // show the full text, not a file), whatever the mode. Failed, the cut body stays and the
        // attachment is listed with why.
        longTextDone = true;
        const text = await fetchLongText(env, policy, logger, a, pointer, isStopped);
        if (typeof text === 'string') body = text;
        else attachments.push(text);
        continue;
      }
      if (policy.mode === 'metadata') {
        attachments.push(a);
        continue;
      }
      if (!pointer) {
        attachments.push({
          ...a,
          failed: { code: 'NO_POINTER', message: 'The attachment names no downloadable file' },
        });
        continue;
      }
      attachments.push(await fetchOne(env, policy, logger, ev.timestamp, a, pointer, isStopped));
    }
    const { attachments: _recorded, ...rest } = ev;
    out.push({ ...rest, body, ...(attachments.length > 0 ? { attachments } : {}) });
  }
  if (policy.mode === 'files') prune(policy, logger);
  return out;
}

/** The events with every attachment marked failed (and its pointer cut): when preparing threw. */
export function failAll(events: IncomingEvent[], e: unknown): IncomingEvent[] {
  return events.map((ev) =>
    ev.type === 'message' && ev.attachments
      ? {
          ...ev,
          attachments: (ev.attachments as RecordedAttachment[]).map(({ pointer: _p, ...a }) => ({
            ...a,
            failed: failureOf(e),
          })),
        }
      : ev,
  );
}

/** The long-text attachment type (Signal-Desktop's MIME.LONG_MESSAGE). */
export const LONG_TEXT_TYPE = 'text/x-signal-plain';
/**
 * The most a long text's file may be: Signal's apps send at most 64 KiB of text; other senders'
 * padding and some slack are allowed, never a file that would not be a message's text.
 */
const MAX_LONG_TEXT_FILE = 1024 * 1024;

/** Downloads a long message's text: the text, or the attachment marked failed. */
async function fetchLongText(
  env: Environment,
  policy: AttachmentPolicy,
  logger: Logger,
  a: ReceivedAttachment,
  pointer: StoredPointer,
  isStopped: () => boolean,
): Promise<string | ReceivedAttachment> {
  const capped = { ...policy, mode: 'buffers' as const, maxBytes: MAX_LONG_TEXT_FILE };
  const got = await fetchOne(env, capped, logger, 0, a, pointer, isStopped);
  if (got.failed || !got.data) return { ...a, failed: got.failed ?? failureOf(null) };
  return Buffer.from(got.data).toString('utf8');
}

async function fetchOne(
  env: Environment,
  policy: AttachmentPolicy,
  logger: Logger,
  timestamp: number,
  a: ReceivedAttachment,
  pointer: StoredPointer,
  isStopped: () => boolean,
): Promise<ReceivedAttachment> {
  let last: unknown;
  for (let attempt = 1; attempt <= policy.tries; attempt++) {
    const target =
      policy.mode === 'files'
        ? path.join(
            policy.dir,
            `${timestamp}-${crypto.randomBytes(4).toString('hex')}-${safeName(a.fileName, a.contentType)}`,
          )
        : null;
    try {
      const data = await downloadAttachment(env, pointer, a.size, policy.dir, target, {
        maxBytes: policy.maxBytes,
        timeoutMs: policy.timeoutMs,
      });
      return target ? { ...a, path: target } : { ...a, data: data ?? new Uint8Array(0) };
    } catch (e) {
      last = e;
      logger.warn(
        `attachment download failed (try ${attempt} of ${policy.tries}): ${(e as Error).message}`,
      );
      if (permanent(e) || isStopped()) break;
      if (attempt < policy.tries)
        await new Promise((r) => setTimeout(r, policy.retryDelayMs * 2 ** (attempt - 1)));
    }
  }
  return { ...a, failed: failureOf(last) };
}

/** Keeps the folder within its quota: the oldest files go first (temp files are left alone). */
function prune(policy: AttachmentPolicy, logger: Logger): void {
  let entries: Array<{ file: string; size: number; mtime: number }>;
  try {
    entries = fs
      .readdirSync(policy.dir)
      .filter((n) => !n.startsWith('.part-'))
      .map((n) => {
        const file = path.join(policy.dir, n);
        const st = fs.statSync(file);
        return { file, size: st.isFile() ? st.size : 0, mtime: st.mtimeMs };
      });
  } catch {
    return;
  }
  let total = entries.reduce((s, e) => s + e.size, 0);
  entries.sort((x, y) => x.mtime - y.mtime);
  for (const e of entries) {
    if (total <= policy.quotaBytes) break;
    try {
      fs.rmSync(e.file, { force: true });
      total -= e.size;
      logger.info(
        `attachments: pruned ${path.basename(e.file)} (quota ${policy.quotaBytes} bytes)`,
      );
    } catch {
      // Left for the next prune.
    }
  }
}
