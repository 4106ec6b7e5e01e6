/**
 * One chat WebSocket lifetime (PROTOCOL.md §2): every frame is a `WebSocketMessage`. Our REST calls
 * are REQUESTs multiplexed by id, each with its own timeout; the server's pushed REQUESTs
 * (`PUT /api/v1/message`, `PUT /api/v1/queue/empty`, provisioning pushes) go to a handler whose
 * status is sent back as the RESPONSE with the same id, only after the handler settled: the ACK is the
 * only delivery guarantee. Keepalive: `GET /v1/keepalive` every 30 s; no answer within 20 s, or no
 * traffic at all for 60 s, closes the connection as dead.
 */
import { EventEmitter } from 'node:events';
import { Long, WebSocketMessage, toDecimalString } from '../../proto';
import { SIGNAL_AGENT, type Environment } from '../config';
import { ClosedError, NetworkError, ProtocolError, SignalError, TimeoutError } from '../errors';
import type { Logger } from '../log';
import { openTransport, type FrameTransport } from './transport';
import type { ChatRequest, ChatRequester, ChatResponse, IncomingRequestHandler } from './types';

export interface KeepaliveOptions {
  intervalMs: number;
  timeoutMs: number;
  silenceMs: number;
}

/** Upper bound on waiting for a closing transport (its own grace period is shorter). */
const CLOSE_WAIT_MS = 5000;

export const DEFAULT_KEEPALIVE: KeepaliveOptions = {
  intervalMs: 30_000,
  timeoutMs: 20_000,
  silenceMs: 60_000,
};

export interface ConnectionOptions {
  env: Environment;
  path: '/v1/websocket/' | '/v1/websocket/provisioning/';
  /** `<aci>.<deviceId>` and password; absent for an unauthenticated socket. */
  auth?: { username: string; password: string };
  handler?: IncomingRequestHandler;
  logger: Logger;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** false for the provisioning socket, which the server closes by itself. */
  keepalive?: KeepaliveOptions | false;
  signal?: AbortSignal;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Set when we closed it for a reason (keepalive death), or the transport failed. */
  error?: SignalError;
}

interface Pending {
  resolve: (r: ChatResponse) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
  what: string;
}

function parseHeaders(lines: string[] | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines ?? []) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return out;
}

export function authorizationHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

export interface ChatConnectionEvents {
  /** Emitted exactly once, when the socket closed for any reason (or close() was called). */
  close: [info: CloseInfo];
}

/**
 * One socket lifetime: open() connects, close() (or the server, or a dead keepalive) ends it for
 * good. Whoever wants a socket that stays up uses PersistentChat; provisioning uses this directly
 * and opens a new one per attempt.
 */
export class ChatConnection extends EventEmitter<ChatConnectionEvents> implements ChatRequester {
  private readonly pending = new Map<string, Pending>();
  private nextId = Long.fromNumber(Math.floor(Math.random() * 2 ** 31), true);
  private closedInfo: CloseInfo | null = null;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private silenceTimer: NodeJS.Timeout | null = null;
  readonly closed: Promise<CloseInfo>;
  private resolveClosed!: (info: CloseInfo) => void;
  /** Count of frames received (observability). */
  framesIn = 0;

  /** Resolves once the transport itself is gone (socket and, over HTTP/2, its session). */
  private readonly transportClosed: Promise<void>;

  private constructor(
    private readonly transport: FrameTransport,
    private readonly opts: ConnectionOptions,
  ) {
    super();
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.transportClosed = new Promise((resolve) => transport.once('close', () => resolve()));
    transport.on('message', (data: Buffer) => this.onFrame(data));
    transport.on('error', (err: Error) => opts.logger.debug(`chat socket error: ${err.message}`));
    transport.on('close', (code: number, reason: string) => this.finish({ code, reason }));
    if (opts.keepalive) this.startKeepalive(opts.keepalive);
  }

  static async open(opts: ConnectionOptions): Promise<ChatConnection> {
    const headers: Record<string, string> = {
      'User-Agent': opts.env.userAgent,
      // Signal-Server records a linking client's kind from X-Signal-Agent and holds User-Agent to
      // its rules for Signal's own apps (PROTOCOL.md §1, §12): both name this engine, never an app.
      'X-Signal-Agent': SIGNAL_AGENT,
    };
    if (opts.auth)
      headers.Authorization = authorizationHeader(opts.auth.username, opts.auth.password);
    const transport = await openTransport({
      env: opts.env,
      path: opts.path,
      headers,
      timeoutMs: opts.connectTimeoutMs ?? 15_000,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return new ChatConnection(transport, opts);
  }

  get transportKind(): 'http1' | 'http2' {
    return this.transport.kind;
  }

  get isOpen(): boolean {
    return this.closedInfo === null;
  }

  request(req: ChatRequest): Promise<ChatResponse> {
    if (this.closedInfo) return Promise.reject(new ClosedError('Chat connection'));
    const id = this.nextId;
    this.nextId = this.nextId.add(1);
    const key = toDecimalString(id);
    const headers = Object.entries(req.headers ?? {}).map(([k, v]) => `${k}:${v}`);
    let body: Uint8Array | undefined;
    if (req.body instanceof Uint8Array) body = req.body;
    else if (req.body !== undefined) {
      body = Buffer.from(JSON.stringify(req.body));
      headers.push('content-type:application/json');
    }
    const timeoutMs = req.timeoutMs ?? this.opts.requestTimeoutMs ?? 30_000;
    const what = `${req.verb} ${req.path.split('?')[0]}`;
    return new Promise<ChatResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(new TimeoutError(what, timeoutMs));
      }, timeoutMs);
      this.pending.set(key, { resolve, reject, timer, what });
      try {
        this.transport.send(
          WebSocketMessage.encode({
            type: WebSocketMessage.Type.REQUEST,
            request: { verb: req.verb, path: req.path, id, headers, ...(body ? { body } : {}) },
          }).finish(),
        );
      } catch (e) {
        // Never sent, so never answered: drop it now rather than leave its timer running.
        clearTimeout(timer);
        this.pending.delete(key);
        reject(
          new NetworkError(
            `${what}: could not be sent (${e instanceof Error ? e.message : String(e)})`,
            { cause: e },
          ),
        );
      }
    });
  }

  /**
   * Closes the socket: pending requests fail at once, 'close' is emitted at once; the promise
   * resolves when the transport has finished its closing handshake (bounded), so that a test or a
   * shutdown can wait until no socket is left.
   */
  close(code = 1000, reason = 'closing'): Promise<void> {
    if (!this.closedInfo) {
      this.transport.close(code, reason);
      this.finish({ code, reason });
    }
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_WAIT_MS);
      timer.unref();
    });
    return Promise.race([this.transportClosed, bound]).finally(() => clearTimeout(timer));
  }

  /** Closes as dead (keepalive), reporting why. */
  private fail(error: SignalError): void {
    if (this.closedInfo) return;
    this.opts.logger.warn(`chat connection: ${error.message}`);
    this.transport.close(1000, 'keepalive');
    this.finish({ code: 1006, reason: error.message, error });
  }

  private finish(info: CloseInfo): void {
    if (this.closedInfo) return;
    this.closedInfo = info;
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.keepaliveTimer = this.silenceTimer = null;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(
        new NetworkError(`${p.what}: the connection closed before the answer (${info.code})`),
      );
    }
    this.pending.clear();
    this.resolveClosed(info);
    this.emit('close', info);
  }

  private startKeepalive(k: KeepaliveOptions): void {
    this.touch();
    this.keepaliveTimer = setInterval(() => {
      this.request({ verb: 'GET', path: '/v1/keepalive', timeoutMs: k.timeoutMs }).then(
        (r) => {
          if (r.status >= 400) this.opts.logger.debug(`keepalive answered ${r.status}`);
        },
        (e) => {
          if (e instanceof TimeoutError) this.fail(new TimeoutError('Keepalive', k.timeoutMs));
        },
      );
    }, k.intervalMs);
  }

  /** Any frame from the server proves the connection alive. */
  private touch(): void {
    const k = this.opts.keepalive;
    if (!k || this.closedInfo) return;
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(
      () =>
        this.fail(new TimeoutError('Chat connection (no traffic from the server)', k.silenceMs)),
      k.silenceMs,
    );
  }

  private onFrame(data: Buffer): void {
    this.framesIn++;
    this.touch();
    let msg: WebSocketMessage;
    try {
      msg = WebSocketMessage.decode(data);
    } catch (e) {
      this.opts.logger.warn(
        `chat connection: dropped an undecodable frame (${(e as Error).message})`,
      );
      return;
    }
    if (msg.type === WebSocketMessage.Type.RESPONSE && msg.response) {
      const key = toDecimalString(msg.response.id);
      const p = this.pending.get(key);
      if (!p) {
        this.opts.logger.debug(`chat connection: response for unknown request ${key}`);
        return;
      }
      this.pending.delete(key);
      clearTimeout(p.timer);
      p.resolve({
        status: msg.response.status ?? 0,
        message: msg.response.message ?? '',
        headers: parseHeaders(msg.response.headers),
        body: msg.response.body ? new Uint8Array(msg.response.body) : new Uint8Array(0),
      });
      return;
    }
    if (msg.type === WebSocketMessage.Type.REQUEST && msg.request) {
      void this.onRequest(msg.request);
      return;
    }
    this.opts.logger.warn(`chat connection: dropped a frame of unknown type ${String(msg.type)}`);
  }

  private async onRequest(req: NonNullable<WebSocketMessage['request']>): Promise<void> {
    const id = req.id ?? 0;
    let status = 500;
    try {
      if (!this.opts.handler) {
        status = 404;
      } else {
        status = await this.opts.handler({
          verb: req.verb ?? '',
          path: req.path ?? '',
          body: req.body ? new Uint8Array(req.body) : new Uint8Array(0),
          headers: parseHeaders(req.headers),
        });
      }
    } catch (e) {
      // Not ACKed as delivered: the server keeps the item and delivers it again later.
      this.opts.logger.error(`chat connection: handler failed for ${req.verb} ${req.path}`, e);
      status = 500;
    }
    if (this.closedInfo) return; // too late to answer; the server will redeliver
    this.transport.send(
      WebSocketMessage.encode({
        type: WebSocketMessage.Type.RESPONSE,
        response: { id, status, message: status === 200 ? 'OK' : 'Error' },
      }).finish(),
    );
  }
}

/** Parses a JSON response body, naming the call on failure. */
export function jsonBody<T>(res: ChatResponse, what: string): T {
  try {
    return JSON.parse(Buffer.from(res.body).toString('utf8')) as T;
  } catch (e) {
    throw new ProtocolError(`${what}: the server's answer is not JSON`, { cause: e });
  }
}
