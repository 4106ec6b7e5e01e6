/**
 * HTTPS requests with a streamed body, for CDN uploads (PROTOCOL.md §7), verified against the
 * environment's CA as https.ts's downloads are: one TLS connection per request, HTTP/2 when ALPN
 * picks `h2` (the mock's CDN), else HTTP/1.1 on the same socket. The body is a Readable piped with
 * back-pressure, never gathered; the answer's body is read (bounded) and dropped.
 */
import http2 from 'node:http2';
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

/** Header names with their values as strings; HTTP/2 pseudo-headers left out. */
function plainHeaders(h: Record<string, string | string[] | number | undefined>) {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || v === undefined) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v);
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
    let session: http2.ClientHttp2Session | null = null;
    let request: { destroy(): void } | null = null;
    const socket = connectTls(env, url);
    const finish = (err: Error | null, res?: SendResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      if (req.body) req.body.unpipe();
      if (err || !res) {
        request?.destroy();
        session?.destroy();
        socket.destroy();
        req.body?.destroy();
        reject(err ?? new NetworkError(`${what}: no answer`));
        return;
      }
      if (session) session.close();
      else socket.destroy();
      resolve(res);
    };
    const onAbort = () => finish(new CancelledError(what));
    let timer = setTimeout(() => finish(new TimeoutError(what, timeoutMs)), timeoutMs);
    const progress = () => {
      if (settled) return;
      clearTimeout(timer);
      timer = setTimeout(() => finish(new TimeoutError(what, timeoutMs)), timeoutMs);
    };
    /** Streams the body into the request (a 'data' listener only now: it starts the flow). */
    const sendBody = (to: NodeJS.WritableStream) => {
      if (!req.body) return;
      req.body.on('data', progress);
      req.body.pipe(to);
    };
    if (req.signal?.aborted) return onAbort();
    req.signal?.addEventListener('abort', onAbort, { once: true });
    const onError = (e: Error) => finish(new NetworkError(`${what}: ${e.message}`, { cause: e }));
    req.body?.once('error', (e) =>
      finish(new NetworkError(`${what}: reading the body failed: ${e.message}`, { cause: e })),
    );
    /** Reads the answer's body to its end (bounded), then resolves with the status. */
    const drain = (body: Readable, res: SendResponse) => {
      progress();
      let size = 0;
      body.on('data', (c: Buffer) => {
        progress();
        size += c.length;
        if (size > MAX_ANSWER) finish(new NetworkError(`${what}: the answer is too long`));
      });
      body.once('end', () => finish(null, res));
      body.once('error', onError);
    };
    const headers: Record<string, string> = { 'user-agent': env.userAgent, ...req.headers };
    if (!req.body && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-length'))
      headers['content-length'] = '0';

    socket.on('error', onError);
    socket.once('secureConnect', () => {
      if (settled) return;
      if (socket.alpnProtocol === 'h2') {
        const s = http2.connect(url.origin, { createConnection: () => socket });
        session = s;
        s.on('error', onError);
        const r = s.request(
          { ':method': req.method, ':path': url.pathname + url.search, ...headers },
          { endStream: !req.body },
        );
        request = r;
        r.on('error', onError);
        r.once('close', () => {
          if (!settled) finish(new NetworkError(`${what}: the stream closed without an answer`));
        });
        r.once('response', (h) =>
          drain(r, { status: Number(h[':status']), headers: plainHeaders(h) }),
        );
        sendBody(r);
        return;
      }
      const r = https.request(url, {
        method: req.method,
        createConnection: () => socket,
        headers: { ...headers, connection: 'close' },
      });
      request = r;
      r.on('error', onError);
      r.once('close', () => {
        if (!settled) finish(new NetworkError(`${what}: the connection closed without an answer`));
      });
      r.once('response', (res) =>
        drain(res, { status: res.statusCode ?? 0, headers: plainHeaders(res.headers) }),
      );
      if (req.body) sendBody(r);
      else r.end();
    });
  });
}
