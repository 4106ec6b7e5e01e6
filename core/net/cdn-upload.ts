/**
 * Uploading an encrypted attachment to the CDN an upload form names (PROTOCOL.md §7), resumable:
 * - CDN 3, tus 1.0.0: creation-with-upload (`POST signedUploadLocation` with the form's headers,
 *   `Upload-Length`, `Upload-Metadata: filename <b64 key>` and the whole file); when the connection
 *   drops, `HEAD <signedUploadLocation>/<key>` asks for `Upload-Offset` and `PATCH` sends the rest
 *   from there (the resume URL as Signal's apps build it, not the answer's `Location`).
 * - CDN 2, Google Cloud Storage resumable uploads: `POST signedUploadLocation` → `Location`, `PUT`
 *   the file with `Content-Range`; after a drop, `PUT` with `Content-Range: bytes *\/<total>` answers
 *   308 and `Range: bytes=0-<last>`, and the rest goes from there.
 * Bounded tries with growing delays; a status that is an answer (4xx, 5xx) is final.
 */
import type { Readable } from 'node:stream';
import type { Environment } from '../config';
import { NetworkError, ProtocolError, ServerError } from '../errors';
import { httpsSend, type SendResponse } from './upload';

/** GET /v4/attachments/form/upload's answer (Signal-Server AttachmentDescriptorV3). */
export interface UploadForm {
  cdn: number;
  key: string;
  headers: Record<string, string>;
  signedUploadLocation: string;
}

/** The encrypted file, re-readable from any offset (a temp file). */
export interface UploadSource {
  size: number;
  open(start: number): Readable;
}

export interface CdnUploadOptions {
  /** Resume attempts after the first try (default 3 for tus, 10 for CDN 2, as Signal-Desktop). */
  retries?: number;
  /** The first retry's delay (default 1000 ms), then growing Fibonacci-wise. */
  retryDelayMs?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
  sleep?: (ms: number) => Promise<void>;
  /** Each resume, for the log: where it restarts. */
  onResume?: (offset: number) => void;
}

const TUS = '1.0.0';

function ok(res: SendResponse): boolean {
  return res.status >= 200 && res.status < 300;
}

function fibonacci(n: number): number {
  let a = 1;
  let b = 1;
  for (let i = 0; i < n; i++) [a, b] = [b, a + b];
  return a;
}

/** Uploads `source` as `form` says; resolves once the CDN holds all of it. */
export async function uploadToCdn(
  env: Environment,
  form: UploadForm,
  source: UploadSource,
  opts: CdnUploadOptions = {},
): Promise<void> {
  if (form.cdn === 3) return tusUpload(env, form, source, opts);
  if (form.cdn === 2) return gcsUpload(env, form, source, opts);
  throw new ProtocolError(`The upload form names CDN ${form.cdn}, which this client cannot use`);
}

interface Retrier {
  /** Waits before resume `n` (1-based); false when no tries are left. */
  next(): Promise<boolean>;
  attempts: number;
}

function retrier(opts: CdnUploadOptions, defaultRetries: number): Retrier {
  const max = opts.retries ?? defaultRetries;
  const base = opts.retryDelayMs ?? 1000;
  // The back-off ends early when the upload is aborted (the account closing).
  const sleep =
    opts.sleep ??
    ((ms: number) =>
      new Promise<void>((r) => {
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', done);
          r();
        }
        opts.signal?.addEventListener('abort', done, { once: true });
      }));
  const r: Retrier = {
    attempts: 0,
    async next() {
      if (r.attempts >= max || opts.signal?.aborted) return false;
      await sleep(base * fibonacci(r.attempts));
      if (opts.signal?.aborted) return false;
      r.attempts++;
      return true;
    },
  };
  return r;
}

/** A dropped connection is worth a resume; an answer (a status) is not. */
function dropped(e: unknown): boolean {
  return e instanceof NetworkError;
}

async function tusUpload(
  env: Environment,
  form: UploadForm,
  source: UploadSource,
  opts: CdnUploadOptions,
): Promise<void> {
  const common = { ...form.headers, 'tus-resumable': TUS };
  const send = (req: Omit<Parameters<typeof httpsSend>[1], 'timeoutMs' | 'signal'>) =>
    httpsSend(env, {
      ...req,
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  const what = 'Uploading the attachment (CDN 3)';
  let last: unknown;
  try {
    const res = await send({
      method: 'POST',
      url: form.signedUploadLocation,
      headers: {
        ...common,
        'upload-length': String(source.size),
        'upload-metadata': `filename ${Buffer.from(form.key).toString('base64')}`,
        'content-type': 'application/offset+octet-stream',
        'content-length': String(source.size),
      },
      body: source.open(0),
    });
    if (ok(res)) return;
    throw new ServerError(res.status, what);
  } catch (e) {
    if (!dropped(e)) throw e;
    last = e;
  }
  // Signal's apps resume at <signedUploadLocation>/<key>: the answer's Location is not to be trusted.
  const resumeUrl = `${form.signedUploadLocation.replace(/\/+$/, '')}/${encodeURIComponent(form.key)}`;
  const tries = retrier(opts, 3);
  while (await tries.next()) {
    try {
      const head = await send({ method: 'HEAD', url: resumeUrl, headers: common });
      if (!ok(head)) throw new ServerError(head.status, `${what}: asking for its offset`);
      const offset = Number(head.headers['upload-offset']);
      if (!Number.isSafeInteger(offset) || offset < 0 || offset > source.size)
        throw new ProtocolError(`${what}: the CDN answered an invalid Upload-Offset`);
      if (offset === source.size) return;
      opts.onResume?.(offset);
      const res = await send({
        method: 'PATCH',
        url: resumeUrl,
        headers: {
          ...common,
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
          'content-length': String(source.size - offset),
        },
        body: source.open(offset),
      });
      if (ok(res)) return;
      throw new ServerError(res.status, what);
    } catch (e) {
      if (!dropped(e)) throw e;
      last = e;
    }
  }
  throw new NetworkError(
    `${what}: the connection dropped ${tries.attempts + 1} times (${(last as Error).message})`,
    { cause: last },
  );
}

async function gcsUpload(
  env: Environment,
  form: UploadForm,
  source: UploadSource,
  opts: CdnUploadOptions,
): Promise<void> {
  const what = 'Uploading the attachment (CDN 2)';
  const send = (req: Omit<Parameters<typeof httpsSend>[1], 'timeoutMs' | 'signal'>) =>
    httpsSend(env, {
      ...req,
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  const created = await send({
    method: 'POST',
    url: form.signedUploadLocation,
    headers: { ...form.headers, 'content-type': 'application/octet-stream' },
  });
  const location = created.headers['location'];
  if (!ok(created)) throw new ServerError(created.status, `${what}: starting it`);
  if (!location) throw new ProtocolError(`${what}: the CDN gave no upload location`);
  const total = source.size;
  const put = async (start: number): Promise<boolean> => {
    const res = await send({
      method: 'PUT',
      url: location,
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(total - start),
        ...(start > 0 ? { 'content-range': `bytes ${start}-${total - 1}/${total}` } : {}),
      },
      body: source.open(start),
    });
    if (res.status === 200 || res.status === 201) return true;
    if (res.status === 308) return false;
    throw new ServerError(res.status, what);
  };
  let last: unknown;
  try {
    if (await put(0)) return;
  } catch (e) {
    if (!dropped(e)) throw e;
    last = e;
  }
  const tries = retrier(opts, 10);
  while (await tries.next()) {
    try {
      // Where the CDN stands: 308 with the bytes it holds (none when Range is absent), or done.
      const probe = await send({
        method: 'PUT',
        url: location,
        headers: { 'content-range': `bytes */${total}` },
      });
      if (probe.status === 200 || probe.status === 201) return;
      if (probe.status !== 308)
        throw new ServerError(probe.status, `${what}: asking for its offset`);
      const range = /^bytes=0-(\d+)$/.exec(probe.headers['range'] ?? '');
      const offset = range ? Number(range[1]) + 1 : 0;
      if (offset > total) throw new ProtocolError(`${what}: the CDN answered an invalid Range`);
      opts.onResume?.(offset);
      if (await put(offset)) return;
    } catch (e) {
      if (!dropped(e)) throw e;
      last = e;
    }
  }
  throw new NetworkError(
    `${what}: the connection dropped ${tries.attempts + 1} times${last ? ` (${(last as Error).message})` : ''}`,
    { cause: last },
  );
}
