/**
 * HTTPS GET for CDN downloads (attachments: the contacts blob, PROTOCOL.md §7), verified against the
 * environment's CA. One TLS connection per download: ALPN decides the protocol on it, HTTP/2 when
 * the server picks `h2` (Signal's mock server prefers it), else HTTP/1.1 on the same socket.
 * Bounded in size and time, and cancellable.
 */
import http2 from 'node:http2';
import https from 'node:https';
import type { Environment } from '../config';
import { CancelledError, NetworkError, ServerError, TimeoutError } from '../errors';
import { connectTls } from './transport';
import type { ChatRequester, ChatResponse } from './types';

/** A download's HTTP/2 receive window (the connection's is twice it). */
const STREAM_WINDOW = 2 * 1024 * 1024;

export interface GetOptions {
  /** Whole download, connection included; default 30 s. */
  timeoutMs?: number;
  /** Refuse bodies larger than this (announced or received); default 100 MiB. */
  maxBytes?: number;
  signal?: AbortSignal;
}

/**
 * Downloads `target` (an https:// URL) and resolves with its body. Rejects with ServerError for a
 * non-200 status, NetworkError for transport failures and oversized bodies, TimeoutError, or
 * CancelledError when `signal` aborts.
 */
export async function httpsGet(
  env: Environment,
  target: string,
  opts: GetOptions = {},
): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  await httpsGetStream(env, target, opts, (chunk) => {
    chunks.push(chunk);
    size += chunk.length;
  });
  return new Uint8Array(Buffer.concat(chunks, size));
}

/**
 * Streams the body of `target` to `onData`, chunk by chunk, in order; resolves once the body ended.
 * The size cap is checked against `Content-Length` before any byte is taken, and against the bytes
 * counted as they arrive (a server may omit or understate the length). `onData` may throw (or its
 * promise reject, e.g. a write to disk failing) to abort the download with that error.
 */
export function httpsGetStream(
  env: Environment,
  target: string,
  opts: GetOptions,
  onData: (chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return Promise.reject(new NetworkError('Refusing a download from an invalid URL'));
  }
  if (url.protocol !== 'https:') {
    return Promise.reject(new NetworkError(`Refusing a non-https download: ${url.origin}`));
  }
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxBytes = opts.maxBytes ?? 100 * 1024 * 1024;
  const what = `Downloading from ${url.host}`;
  const tooLarge = () => new NetworkError(`${what}: larger than ${maxBytes} bytes`);

  return new Promise<void>((resolve, reject) => {
    let size = 0;
    let settled = false;
    let session: http2.ClientHttp2Session | null = null;
    let request: { destroy(): void } | null = null;
    let body: { pause(): void; resume(): void } | null = null;
    /** Chunks handed to onData and not yet taken (back-pressure for an async sink). */
    let writing: Promise<void> = Promise.resolve();
    let ended = false;

    const socket = connectTls(env, url);

    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) {
        request?.destroy();
        session?.destroy();
        socket.destroy();
        reject(err);
      } else {
        if (session) session.close();
        else socket.destroy();
        resolve();
      }
    };
    const onAbort = () => finish(new CancelledError(what));
    const timer = setTimeout(() => finish(new TimeoutError(what, timeoutMs)), timeoutMs);
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const onStatus = (status: number, length: string | undefined) => {
      if (status !== 200) return finish(new ServerError(status, what));
      if (length !== undefined && Number(length) > maxBytes) finish(tooLarge());
    };
    const onChunk = (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > maxBytes) return finish(tooLarge());
      let r: void | Promise<void>;
      try {
        r = onData(chunk);
      } catch (e) {
        return finish(e as Error);
      }
      if (r instanceof Promise) {
        body?.pause();
        writing = writing.then(() => r);
        r.then(
          () => {
            if (!settled) body?.resume();
          },
          (e: unknown) => finish(e as Error),
        );
      }
    };
    const onEnd = () => {
      ended = true;
      writing.then(
        () => ended && finish(null),
        (e: unknown) => finish(e as Error),
      );
    };
    const onError = (e: Error) => finish(new NetworkError(`${what}: ${e.message}`, { cause: e }));

    socket.on('error', onError);
    socket.once('secureConnect', () => {
      if (settled) return;
      if (socket.alpnProtocol === 'h2') {
        // A wider receive window than HTTP/2's 64 KiB default: a file then streams without waiting
        // a round trip per 64 KiB (memory stays bounded by the window: a slow disk pauses it).
        const s = http2.connect(url.origin, {
          createConnection: () => socket,
          settings: { initialWindowSize: STREAM_WINDOW },
        });
        s.once('connect', () => s.setLocalWindowSize(STREAM_WINDOW * 2));
        session = s;
        s.on('error', onError);
        const req = s.request({
          ':method': 'GET',
          ':path': url.pathname + url.search,
          'user-agent': env.userAgent,
        });
        request = req;
        body = req;
        req.once('response', (h) => {
          const length = h['content-length'];
          onStatus(Number(h[':status']), Array.isArray(length) ? length[0] : length);
        });
        req.on('data', onChunk);
        req.once('end', onEnd);
        req.on('error', onError);
        req.end();
        return;
      }
      const req = https.get(url, {
        createConnection: () => socket,
        headers: { 'user-agent': env.userAgent, connection: 'close' },
      });
      request = req;
      req.once('response', (res) => {
        body = res;
        onStatus(res.statusCode ?? 0, res.headers['content-length']);
        if (settled) return;
        res.on('data', onChunk);
        res.once('end', onEnd);
        res.on('error', onError);
      });
      req.on('error', onError);
    });
  });
}

export interface HttpsRequest {
  method: 'GET' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** An https:// URL. */
  url: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Whole request, connection included; default 30 s. */
  timeoutMs?: number;
  /** Refuse answers larger than this; default 16 MiB. */
  maxBytes?: number;
}

/**
 * One HTTPS request with any method, headers and body, answered with its status, headers
 * (lower-cased) and body whatever the status: for the storage service's REST calls (group state,
 * storage records), which core/api interprets. Verified against the environment's CA; HTTP/2 when
 * the server picks it by ALPN, else HTTP/1.1. Rejects with NetworkError or TimeoutError only.
 */
export function httpsRequest(env: Environment, req: HttpsRequest): Promise<ChatResponse> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return Promise.reject(new NetworkError('Refusing a request to an invalid URL'));
  }
  if (url.protocol !== 'https:') {
    return Promise.reject(new NetworkError(`Refusing a non-https request: ${url.origin}`));
  }
  const timeoutMs = req.timeoutMs ?? 30_000;
  const maxBytes = req.maxBytes ?? 16 * 1024 * 1024;
  const what = `${req.method} ${url.host}${url.pathname}`;
  const headers: Record<string, string> = {
    'user-agent': env.userAgent,
    ...Object.fromEntries(Object.entries(req.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    ...(req.body ? { 'content-length': String(req.body.length) } : {}),
  };
  return new Promise<ChatResponse>((resolve, reject) => {
    let settled = false;
    let session: http2.ClientHttp2Session | null = null;
    let request: { destroy(): void } | null = null;
    const chunks: Buffer[] = [];
    let size = 0;
    let status = 0;
    let answerHeaders: Record<string, string> = {};
    const socket = connectTls(env, url);
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        request?.destroy();
        session?.destroy();
        socket.destroy();
        return reject(err);
      }
      if (session) session.close();
      else socket.destroy();
      resolve({
        status,
        message: '',
        headers: answerHeaders,
        body: new Uint8Array(Buffer.concat(chunks, size)),
      });
    };
    const timer = setTimeout(() => finish(new TimeoutError(what, timeoutMs)), timeoutMs);
    const onChunk = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes)
        return finish(new NetworkError(`${what}: answer larger than ${maxBytes} bytes`));
      chunks.push(chunk);
    };
    const onError = (e: Error) => finish(new NetworkError(`${what}: ${e.message}`, { cause: e }));
    const flat = (h: Record<string, string | string[] | number | undefined>) => {
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(h)) {
        if (v === undefined || k.startsWith(':')) continue;
        out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v);
      }
      return out;
    };
    socket.on('error', onError);
    socket.once('secureConnect', () => {
      if (settled) return;
      if (socket.alpnProtocol === 'h2') {
        const s = http2.connect(url.origin, { createConnection: () => socket });
        session = s;
        s.on('error', onError);
        const r = s.request({
          ':method': req.method,
          ':path': url.pathname + url.search,
          ...headers,
        });
        request = r;
        r.once('response', (h) => {
          status = Number(h[':status']);
          answerHeaders = flat(h);
        });
        r.on('data', onChunk);
        r.once('end', () => finish(null));
        r.on('error', onError);
        r.end(req.body ? Buffer.from(req.body) : undefined);
        return;
      }
      const r = https.request(url, {
        method: req.method,
        createConnection: () => socket,
        headers: { ...headers, connection: 'close' },
      });
      request = r;
      r.once('response', (res) => {
        status = res.statusCode ?? 0;
        answerHeaders = flat(res.headers);
        res.on('data', onChunk);
        res.once('end', () => finish(null));
        res.on('error', onError);
      });
      r.on('error', onError);
      r.end(req.body ? Buffer.from(req.body) : undefined);
    });
  });
}

/**
 * The storage service (env.storageUrl) as a ChatRequester: `path` is appended to its base URL, a
 * body is sent as given (protobuf), and every answer, whatever its status, is returned for core/api.
 */
export function storageRequester(env: Environment): ChatRequester {
  return {
    request: (req) =>
      httpsRequest(env, {
        method: req.verb,
        url: `${env.storageUrl}${req.path}`,
        ...(req.headers ? { headers: req.headers } : {}),
        ...(req.body instanceof Uint8Array ? { body: req.body } : {}),
        ...(req.timeoutMs ? { timeoutMs: req.timeoutMs } : {}),
      }),
  };
}
