/**
 * WebSocket transports for the chat service (PROTOCOL.md §2), behind one small interface:
 *  - HTTP/1.1 `Upgrade: websocket` with the `ws` client (what Signal's production chat host takes);
 *  - HTTP/2 extended CONNECT (RFC 8441), which Signal's mock server requires: a CONNECT stream with
 *    `:protocol websocket`, then RFC 6455 frames on it (ws's frame Receiver/Sender in client mode,
 *    so our frames are masked);
 *  - `auto`: ask the server by TLS ALPN which one it speaks (remembered per origin).
 * TLS is always verified against the environment's CA; nothing here can turn that off.
 * This folder is the only code in the package that opens network connections.
 */
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import WebSocket from 'ws';
import type { Environment, TransportKind } from '../config';
import {
  ClientTooOldError,
  CancelledError,
  NetworkError,
  SignalError,
  TimeoutError,
  UnauthorizedError,
} from '../errors';

/** One WebSocket, whatever carries it. Emits 'message' (Buffer), 'close' (code, reason), 'error'. */
export interface FrameTransport extends EventEmitter {
  readonly kind: 'http1' | 'http2';
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export interface OpenOptions {
  env: Environment;
  path: string;
  headers: Record<string, string>;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Close codes that are ours, not the server's. */
export const LOCAL_CLOSE = { ABNORMAL: 1006 } as const;

const MAX_FRAME = 64 * 1024 * 1024;
/** How long a closing socket may wait for the peer's close frame before it is torn down. */
const CLOSE_GRACE_MS = 2000;

class Http1Transport extends EventEmitter implements FrameTransport {
  readonly kind = 'http1' as const;
  constructor(private readonly ws: WebSocket) {
    super();
    ws.on('message', (data: Buffer) => this.emit('message', data));
    ws.on('close', (code: number, reason: Buffer) => this.emit('close', code, reason.toString()));
    ws.on('error', (err: Error) => this.emit('error', err));
  }
  send(data: Uint8Array): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, { binary: true });
  }
  close(code = 1000, reason = ''): void {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    if (this.ws.readyState === WebSocket.CONNECTING) return this.ws.terminate();
    this.ws.close(code, reason);
    // Do not wait for the peer's close frame forever (a dead peer never sends one).
    if (!this.terminateTimer) {
      this.terminateTimer = setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS);
      this.terminateTimer.unref();
      this.ws.once('close', () => clearTimeout(this.terminateTimer ?? undefined));
    }
  }
  private terminateTimer: NodeJS.Timeout | null = null;
}

type WsReceiver = EventEmitter & { write(chunk: Buffer): boolean; end(): void };
type WsSender = {
  send(data: Buffer, opts: object, cb?: (e?: Error) => void): void;
  close(code: number, data: string, mask: boolean, cb?: () => void): void;
  pong(data: Buffer, mask: boolean, cb?: () => void): void;
};
const { Receiver, Sender } = WebSocket as unknown as {
  Receiver: new (opts: object) => WsReceiver;
  Sender: new (socket: unknown) => WsSender;
};

class Http2Transport extends EventEmitter implements FrameTransport {
  readonly kind = 'http2' as const;
  private readonly receiver: WsReceiver;
  private readonly sender: WsSender;
  private closed = false;
  private closeSent = false;

  constructor(
    private readonly session: http2.ClientHttp2Session,
    private readonly stream: http2.ClientHttp2Stream,
  ) {
    super();
    this.receiver = new Receiver({
      isServer: false,
      binaryType: 'nodebuffer',
      maxPayload: MAX_FRAME,
    });
    this.sender = new Sender(stream);
    this.receiver.on('message', (data: Buffer) => this.emit('message', data));
    this.receiver.on('conclude', (code: number, reason: Buffer) => {
      // Answer the peer's close frame, then end: RFC 6455 §5.5.1.
      if (!this.closeSent) {
        this.closeSent = true;
        try {
          this.sender.close(code === 1005 ? 1000 : code, '', true);
        } catch {
          // the stream may already be gone
        }
      }
      this.finish(code, reason.toString());
    });
    this.receiver.on('ping', (data: Buffer) => {
      try {
        this.sender.pong(data, true);
      } catch {
        // closing
      }
    });
    this.receiver.on('error', (err: Error) => {
      this.emit('error', err);
      this.finish(1002, err.message);
    });
    stream.on('data', (chunk: Buffer) => this.receiver.write(chunk));
    stream.on('end', () => this.finish(LOCAL_CLOSE.ABNORMAL, 'stream ended'));
    stream.on('close', () => this.finish(LOCAL_CLOSE.ABNORMAL, 'stream closed'));
    stream.on('error', (err: Error) => {
      this.emit('error', err);
      this.finish(LOCAL_CLOSE.ABNORMAL, err.message);
    });
    session.on('error', (err: Error) => {
      this.emit('error', err);
      this.finish(LOCAL_CLOSE.ABNORMAL, err.message);
    });
    session.on('close', () => this.finish(LOCAL_CLOSE.ABNORMAL, 'session closed'));
  }

  send(data: Uint8Array): void {
    if (this.closed || this.closeSent) return;
    this.sender.send(Buffer.from(data.buffer, data.byteOffset, data.byteLength), {
      binary: true,
      fin: true,
      mask: true,
      compress: false,
      rsv1: false,
      opcode: 2,
      readOnly: false,
    });
  }

  close(code = 1000, reason = ''): void {
    if (this.closed) return;
    if (!this.closeSent) {
      this.closeSent = true;
      try {
        this.sender.close(code, reason, true);
      } catch {
        // already gone
      }
    }
    // Give the peer a moment to answer with its close frame, then tear the stream and session down.
    if (!this.graceTimer) {
      this.graceTimer = setTimeout(() => this.finish(code, reason), CLOSE_GRACE_MS / 4);
      this.graceTimer.unref();
    }
  }

  private finish(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.stream.close();
    // A session that does not close gracefully (peer gone) is destroyed. One session carries one
    // WebSocket here, so closing the session is what frees the TLS socket.
    const destroyTimer = setTimeout(() => this.session.destroy(), CLOSE_GRACE_MS);
    destroyTimer.unref();
    if (this.session.closed || this.session.destroyed) clearTimeout(destroyTimer);
    else this.session.close(() => clearTimeout(destroyTimer));
    this.emit('close', code, reason);
  }
  private graceTimer: NodeJS.Timeout | null = null;
}

function wsUrl(env: Environment, path: string): string {
  return env.chatUrl.replace(/^http/, 'ws') + path;
}

function statusError(status: number, what: string): SignalError {
  if (status === 499) return new ClientTooOldError(what);
  if (status === 401 || status === 403) {
    return new UnauthorizedError(
      `${what}: the server refused this device's credentials (HTTP ${status})`,
    );
  }
  return new NetworkError(`${what}: the server answered HTTP ${status} to the WebSocket request`);
}

function withDeadline<T>(
  what: string,
  opts: OpenOptions,
  start: (
    resolve: (t: T) => void,
    reject: (e: unknown) => void,
    onCancel: (fn: () => void) => void,
  ) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancels: Array<() => void> = [];
    let settled = false;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const fail = (e: unknown) =>
      done(() => {
        for (const c of cancels) c();
        reject(e);
      });
    const timer = setTimeout(() => fail(new TimeoutError(what, opts.timeoutMs)), opts.timeoutMs);
    const onAbort = () => fail(new CancelledError(what));
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    start(
      (t) => done(() => resolve(t)),
      fail,
      (fn) => cancels.push(fn),
    );
  });
}

function openHttp1(opts: OpenOptions): Promise<FrameTransport> {
  return withDeadline<FrameTransport>(
    `Connecting to ${opts.env.chatUrl}`,
    opts,
    (resolve, reject, onCancel) => {
      const ws = new WebSocket(wsUrl(opts.env, opts.path), {
        ca: opts.env.caCert,
        headers: opts.headers,
        handshakeTimeout: opts.timeoutMs,
        maxPayload: MAX_FRAME,
        perMessageDeflate: false,
      });
      onCancel(() => ws.terminate());
      ws.once('open', () => resolve(new Http1Transport(ws)));
      ws.once('unexpected-response', (_req, res) => {
        reject(statusError(res.statusCode ?? 0, `Connecting to ${opts.env.chatUrl}`));
        ws.terminate();
      });
      ws.once('error', (err) =>
        reject(
          new NetworkError(`Cannot connect to ${opts.env.chatUrl}: ${err.message}`, { cause: err }),
        ),
      );
    },
  );
}

function openHttp2(opts: OpenOptions): Promise<FrameTransport> {
  return withDeadline<FrameTransport>(
    `Connecting to ${opts.env.chatUrl}`,
    opts,
    (resolve, reject, onCancel) => {
      const url = new URL(opts.env.chatUrl);
      const session = http2.connect(url.origin, {
        ca: opts.env.caCert,
        servername: net.isIP(url.hostname) ? undefined : url.hostname,
      });
      onCancel(() => session.destroy());
      session.once('error', (err) =>
        reject(
          new NetworkError(`Cannot connect to ${opts.env.chatUrl}: ${err.message}`, { cause: err }),
        ),
      );
      session.once('close', () =>
        reject(new NetworkError(`Connection to ${opts.env.chatUrl} closed during the handshake`)),
      );
      // RFC 8441: CONNECT with :protocol is allowed only once the server's SETTINGS enable it.
      session.once('remoteSettings', (settings) => {
        if (!settings.enableConnectProtocol) {
          reject(new NoExtendedConnectError(opts.env.chatUrl));
          session.destroy();
          return;
        }
        const stream = session.request(
          {
            ':method': 'CONNECT',
            ':protocol': 'websocket',
            ':scheme': 'https',
            ':authority': url.host,
            ':path': opts.path,
            'sec-websocket-version': '13',
            ...Object.fromEntries(
              Object.entries(opts.headers).map(([k, v]) => [k.toLowerCase(), v]),
            ),
          },
          { endStream: false },
        );
        stream.once('response', (headers) => {
          const status = Number(headers[':status']);
          if (status !== 200) {
            reject(statusError(status, `Connecting to ${opts.env.chatUrl}`));
            stream.close();
            session.close();
            return;
          }
          resolve(new Http2Transport(session, stream));
        });
        stream.once('error', (err) =>
          reject(new NetworkError(`WebSocket stream failed: ${err.message}`, { cause: err })),
        );
      });
    },
  );
}

/** The server speaks HTTP/2 but did not enable RFC 8441 extended CONNECT in its SETTINGS. */
class NoExtendedConnectError extends NetworkError {
  constructor(url: string) {
    super(`${url} speaks HTTP/2 but does not accept WebSocket over HTTP/2 (RFC 8441)`);
  }
}

const detected = new Map<string, 'http1' | 'http2'>();

/** Which WebSocket transport an origin speaks, by TLS ALPN; remembered for the process. */
/**
 * A TLS connection to `url`'s host, verified against the environment's CA (never turned off),
 * offering HTTP/2 and HTTP/1.1 by ALPN; SNI only for a host name (not an IP literal).
 */
/** A TLS connection verified against the environment's CA, offering `protocols` by ALPN. */
export function connectTls(
  env: Environment,
  url: URL,
  protocols: string[] = ['h2', 'http/1.1'],
): tls.TLSSocket {
  return tls.connect({
    host: url.hostname,
    port: Number(url.port || 443),
    ca: env.caCert,
    servername: net.isIP(url.hostname) ? undefined : url.hostname,
    ALPNProtocols: protocols,
  });
}

export function detectTransport(env: Environment, timeoutMs: number): Promise<'http1' | 'http2'> {
  const url = new URL(env.chatUrl);
  const known = detected.get(url.origin);
  if (known) return Promise.resolve(known);
  return new Promise((resolve, reject) => {
    const socket = connectTls(env, url);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TimeoutError(`Reaching ${env.chatUrl}`, timeoutMs));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const kind = socket.alpnProtocol === 'h2' ? 'http2' : 'http1';
      detected.set(url.origin, kind);
      socket.end();
      resolve(kind);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new NetworkError(`Cannot reach ${env.chatUrl}: ${err.message}`, { cause: err }));
    });
  });
}

/**
 * Opens a WebSocket to `opts.path` on the environment's chat host with the transport the
 * environment names. `auto` asks ALPN; an HTTP/2 server that does not enable extended CONNECT
 * (most HTTP/2 front ends serving HTTP/1.1 upgrades too) falls back to HTTP/1.1, remembered.
 * Rejects with UnauthorizedError on HTTP 401/403, TimeoutError, CancelledError on abort, or
 * NetworkError.
 */
export async function openTransport(opts: OpenOptions): Promise<FrameTransport> {
  const kind: TransportKind = opts.env.transport;
  if (kind === 'http1') return openHttp1(opts);
  if (kind === 'http2') return openHttp2(opts);
  if ((await detectTransport(opts.env, opts.timeoutMs)) === 'http1') return openHttp1(opts);
  try {
    return await openHttp2(opts);
  } catch (e) {
    if (!(e instanceof NoExtendedConnectError)) throw e;
    detected.set(new URL(opts.env.chatUrl).origin, 'http1');
    return openHttp1(opts);
  }
}

/** Forgets what detectTransport learned (tests that reuse a port for a different server). */
export function forgetDetectedTransports(): void {
  detected.clear();
}
