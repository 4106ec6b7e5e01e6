/**
 * HTTPS requests with a streamed body, for CDN uploads (PROTOCOL.md §7), verified against the
 * environment's CA as https.ts's downloads are, one TLS connection per request. Over HTTP/1.1
 * only (ALPN offers nothing else), as Signal-Desktop uploads: under HTTP/2 the receiving server
 * sets the stream's flow-control window, and at its 64 KiB default an upload waits a round trip
 * for every 64 KiB it sends. The body is a Readable piped with back-pressure, never gathered; the
 * answer's body is read (bounded) and dropped.
 */
import https from 'node:https';
import type { Readable } from 'node:stream';
import type { Environment } from '../config';
import { CancelledError, NetworkError, TimeoutError } from '../errors';
import { connectTls } from './transport';

export interface SendRequest {
  method: 'POST' | 'PUT' | 'PATCH' | 'HEAD';
  url: string;
  headers: Record<string, string>;
  /** The body, streamed; absent for none (Content-Length 0 unless `headers` say otherwise). */
  body?: Readable;
  /**
   * How long the request may make no progress (no body bytes taken, no answer) before it fails;
   * default 60 s. Idle, not total: a 100 MiB upload on a slow link takes as long as it takes.
   */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface SendResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
}

/** What an answer's body may hold before it is cut off (CDN answers are short or empty). */
const MAX_ANSWER = 64 * 1024;

function plainHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/**
 * Sends one request and resolves with the status and headers once the answer ended. Rejects with
 * NetworkError when the connection fails or drops (also mid-body: a resumable upload then asks
 * the server where it stands), TimeoutError, or CancelledError.
 */
export function httpsSend(env: Environment, req: SendRequest): Promise<SendResponse> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return Promise.reject(new NetworkError('Refusing an upload to an invalid URL'));
  }
  if (url.protocol !== 'https:')
    return Promise.reject(new NetworkError(`Refusing a non-https upload: ${url.origin}`));
  const timeoutMs = req.timeoutMs ?? 60_000;
  const what = `${req.method} to ${url.host}`;
  return new Promise<SendResponse>((resolve, reject) => {
    let settled = false;
    const socket = connectTls(env, url, ['http/1.1']);
    const finish = (err: Error | null, res?: SendResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      if (req.body) {
        req.body.unpipe();
        // An answer may come before the whole body went (a refusal): the rest is not read.
        if (err || !req.body.readableEnded) req.body.destroy();
      }
      // One request per connection (`connection: close`): the socket goes either way.
      socket.destroy();
      if (err || !res) reject(err ?? new NetworkError(`${what}: no answer`));
      else resolve(res);
    };
    const onAbort = () => finish(new CancelledError(what));
    let timer = setTimeout(() => finish(new TimeoutError(what, timeoutMs)), timeoutMs);
    const progress = () => {
      if (settled) return;
      clearTimeout(timer);
      timer = setTimeout(() => finish(new TimeoutError(what, timeoutMs)), timeoutMs);
    };
    if (req.signal?.aborted) return onAbort();
    req.signal?.addEventListener('abort', onAbort, { once: true });
    const onError = (e: Error) => finish(new NetworkError(`${what}: ${e.message}`, { cause: e }));
    req.body?.once('error', (e) =>
      finish(new NetworkError(`${what}: reading the body failed: ${e.message}`, { cause: e })),
    );
    const headers: Record<string, string> = { 'user-agent': env.userAgent, ...req.headers };
    if (!req.body && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-length'))
      headers['content-length'] = '0';

    socket.on('error', onError);
    socket.once('secureConnect', () => {
      if (settled) return;
      const r = https.request(url, {
        method: req.method,
        createConnection: () => socket,
        headers: { ...headers, connection: 'close' },
      });
      r.on('error', onError);
      r.once('close', () => {
        if (!settled) finish(new NetworkError(`${what}: the connection closed without an answer`));
      });
      r.once('response', (res) => {
        progress();
        const answer = { status: res.statusCode ?? 0, headers: plainHeaders(res.headers) };
        let size = 0;
        res.on('data', (c: Buffer) => {
          progress();
          size += c.length;
          if (size > MAX_ANSWER) finish(new NetworkError(`${what}: the answer is too long`));
        });
        res.once('end', () => finish(null, answer));
        res.once('error', onError);
      });
      if (!req.body) return void r.end();
      // The 'data' listener only now: it starts the flow, and the pipe takes every byte.
      req.body.on('data', progress);
      req.body.pipe(r);
    });
  });
}
