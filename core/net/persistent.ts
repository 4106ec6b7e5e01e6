/**
 * The chat connection that stays up (PROTOCOL.md §2): connect, keepalive, reconnect with exponential
 * backoff and jitter (1 s doubling to a 60 s cap by default), and a `closing` flag so nothing
 * reconnects after close(). Bad credentials (close 3000, or 401/403 on the upgrade) stop it in the
 * `unlinked` state; another connection taking over (4409) stops it too, reported, never fought over.
 * HTTP 499 (on the upgrade or on any request) means Signal will not serve this client until it is
 * updated (PROTOCOL.md §12): it stops in the `expired` state and tries again once an hour.
 * Requests made while it is reconnecting wait for the socket, within their own timeout.
 */
import { EventEmitter } from 'node:events';
import type { Environment } from '../config';
import {
  ClientTooOldError,
  ClosedError,
  ConnectedElsewhereError,
  NetworkError,
  SignalError,
  TimeoutError,
  UnauthorizedError,
} from '../errors';
import type { Logger } from '../log';
import {
  ChatConnection,
  DEFAULT_KEEPALIVE,
  type CloseInfo,
  type KeepaliveOptions,
} from './connection';
import type { ChatRequest, ChatRequester, ChatResponse, IncomingRequestHandler } from './types';

export type ChatState =
  'idle' | 'connecting' | 'connected' | 'disconnected' | 'unlinked' | 'expired' | 'closed';

/** After a 499 the server may be reconfigured, not the client: one retry an hour, no loop. */
export const EXPIRED_RETRY_MS = 60 * 60 * 1000;

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1000, maxMs: 60_000 };

/** Delay before reconnect attempt `attempt` (0-based): base·2^attempt capped at max, jittered to 50–100 %. */
export function backoffDelay(attempt: number, b: BackoffOptions, random = Math.random): number {
  const ceiling = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling * (0.5 + random() / 2));
}

export interface PersistentChatOptions {
  env: Environment;
  /** `<aci>.<deviceId>` and password (PROTOCOL.md §2); absent for the unauthenticated socket. */
  auth?: { username: string; password: string };
  handler?: IncomingRequestHandler;
  logger: Logger;
  keepalive?: KeepaliveOptions;
  backoff?: BackoffOptions;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Delay of the one retry after a 499 (default EXPIRED_RETRY_MS). */
  expiredRetryMs?: number;
  /** For logs: 'chat' or 'unauthenticated chat'. */
  name?: string;
}

export interface ReconnectInfo {
  /** 0-based count of consecutive failed connections before this retry. */
  attempt: number;
  delayMs: number;
  error: SignalError;
}

export interface PersistentChatEvents {
  /** Every state change; `error` explains `disconnected` and `unlinked`. */
  state: [state: ChatState, error?: SignalError];
  /** A new socket is up (first connection and each reconnection). */
  connected: [conn: ChatConnection];
  /** A retry is scheduled in `delayMs`. */
  reconnecting: [info: ReconnectInfo];
}

/**
 * The authenticated (or unauthenticated) chat socket that stays up across drops. States:
 * idle → connecting → connected → disconnected (retrying) → connecting … ; `unlinked` (bad
 * credentials, final) ; `disconnected` after 4409 without a retry ; `closed` after close().
 */
export class PersistentChat extends EventEmitter<PersistentChatEvents> implements ChatRequester {
  private conn: ChatConnection | null = null;
  private stateValue: ChatState = 'idle';
  private closing = false;
  /** Set by 3000/401/403 (unlinked) and 4409: no reconnect until start() is called again. */
  private stopped = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Aborts the connection attempt in flight when close() is called. */
  private connectAbort: AbortController | null = null;
  private waiters = new Set<() => void>();
  /** How many times a connection was established (observability, tests). */
  connections = 0;
  /** How many connection attempts were made, successful or not (observability, tests). */
  attempts = 0;
  lastError: SignalError | undefined;

  constructor(private readonly opts: PersistentChatOptions) {
    super();
  }

  get state(): ChatState {
    return this.stateValue;
  }

  get connection(): ChatConnection | null {
    return this.conn;
  }

  private setState(state: ChatState, error?: SignalError): void {
    if (error) this.lastError = error;
    if (this.stateValue === state && !error) return;
    this.stateValue = state;
    this.notify('state', state, error);
  }

  /**
   * Emits to the user's listeners, which run inside the connect and reconnect paths (fire and
   * forget): one that throws would otherwise become an unhandled rejection and strand the socket
   * half way through a transition. Reported and ignored instead.
   */
  private notify<K extends keyof PersistentChatEvents>(
    event: K,
    ...args: PersistentChatEvents[K]
  ): void {
    try {
      (this.emit as (e: K, ...a: PersistentChatEvents[K]) => boolean)(event, ...args);
    } catch (e) {
      this.opts.logger.error(`${this.name}: a '${event}' listener failed`, e);
    }
  }

  /**
   * Starts connecting (idempotent). After 4409 (connected elsewhere) it tries again once called;
   * after `unlinked` it does nothing: the credentials are gone, a new instance needs new ones.
   */
  start(): void {
    if (this.closing || this.stateValue === 'unlinked') return;
    if (this.conn || this.connectAbort || this.reconnectTimer) return;
    this.stopped = false;
    void this.connectOnce();
  }

  private async connectOnce(): Promise<void> {
    this.reconnectTimer = null;
    if (this.closing || this.stopped) return;
    this.setState('connecting');
    this.attempts++;
    const abort = new AbortController();
    this.connectAbort = abort;
    let conn: ChatConnection;
    try {
      conn = await ChatConnection.open({
        env: this.opts.env,
        path: '/v1/websocket/',
        ...(this.opts.auth ? { auth: this.opts.auth } : {}),
        ...(this.opts.handler ? { handler: this.opts.handler } : {}),
        logger: this.opts.logger,
        keepalive: this.opts.keepalive ?? DEFAULT_KEEPALIVE,
        signal: abort.signal,
        ...(this.opts.connectTimeoutMs !== undefined
          ? { connectTimeoutMs: this.opts.connectTimeoutMs }
          : {}),
        ...(this.opts.requestTimeoutMs !== undefined
          ? { requestTimeoutMs: this.opts.requestTimeoutMs }
          : {}),
      });
    } catch (e) {
      this.connectAbort = null;
      if (this.closing) return;
      const err =
        e instanceof SignalError ? e : new SignalError('NETWORK', String(e), { cause: e });
      // PROTOCOL.md §2: 401/403 on the upgrade = the device is unlinked; retrying cannot help.
      if (err instanceof UnauthorizedError) return this.stop('unlinked', err);
      if (err instanceof ClientTooOldError) return this.expire(err);
      this.opts.logger.info(`${this.name}: connect failed: ${err.message}`);
      return this.scheduleReconnect(err);
    }
    this.connectAbort = null;
    if (this.closing) {
      await conn.close(1000, 'closed');
      return;
    }
    this.conn = conn;
    this.attempt = 0;
    this.connections++;
    conn.once('close', (info: CloseInfo) => this.onClose(conn, info));
    this.setState('connected');
    this.notify('connected', conn);
    this.wakeWaiters();
  }

  private get name(): string {
    return this.opts.name ?? 'chat';
  }

  private wakeWaiters(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  private onClose(conn: ChatConnection, info: CloseInfo): void {
    if (this.conn === conn) this.conn = null;
    if (this.closing) return;
    // PROTOCOL.md §2 close codes: 3000 = bad credentials (stop, unlinked); 4409 = another
    // connection for this device took over (report, do not fight it in a loop).
    if (info.code === 3000) {
      return this.stop(
        'unlinked',
        new UnauthorizedError('The server closed the connection: bad credentials (3000)'),
      );
    }
    if (info.code === 4409) return this.stop('disconnected', new ConnectedElsewhereError());
    const err =
      info.error ??
      new NetworkError(`Connection closed (${info.code}${info.reason ? `: ${info.reason}` : ''})`);
    // Reconnect only once the old socket is really gone: the server puts what it had in flight on
    // that socket back in the queue when it closes, and flushes the queue to the next connection.
    // Overlapping the two can strand envelopes until a later reconnect (seen with the mock server).
    this.scheduleReconnect(err, conn.close());
  }

  private scheduleReconnect(err: SignalError, previousGone?: Promise<void>): void {
    if (this.closing || this.stopped) return;
    const attempt = this.attempt++;
    const delayMs = backoffDelay(attempt, this.opts.backoff ?? DEFAULT_BACKOFF);
    this.setState('disconnected', err);
    this.opts.logger.info(`${this.name}: reconnecting in ${delayMs} ms`);
    this.reconnectTimer = setTimeout(() => {
      if (previousGone) void previousGone.then(() => this.connectOnce());
      else void this.connectOnce();
    }, delayMs);
    this.notify('reconnecting', { attempt, delayMs, error: err });
  }

  /**
   * 499: this client is refused until updated. Stop (the socket goes: the server answers nothing
   * else on it), fail waiting requests with the error, and look again once after EXPIRED_RETRY_MS.
   */
  private expire(err: ClientTooOldError): void {
    if (this.closing || this.stateValue === 'expired') return;
    const conn = this.conn;
    this.conn = null;
    if (conn) void conn.close(1000, 'client too old');
    this.stop('expired', err);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const delayMs = this.opts.expiredRetryMs ?? EXPIRED_RETRY_MS;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closing) return;
      this.stopped = false;
      void this.connectOnce();
    }, delayMs);
    this.notify('reconnecting', { attempt: 0, delayMs, error: err });
  }

  /** Stops for good (until start() after fixing the cause): no reconnect loop. */
  private stop(state: 'unlinked' | 'disconnected' | 'expired', err: SignalError): void {
    this.opts.logger.warn(`${this.name}: ${err.message}`);
    this.stopped = true;
    this.attempt = 0;
    this.setState(state, err);
    this.wakeWaiters();
  }

  /**
   * Resolves with the open connection, starting one if needed. Rejects with a TimeoutError naming
   * the last connection error, with UnauthorizedError / ConnectedElsewhereError when stopped, or
   * with ClosedError after close().
   */
  waitConnected(timeoutMs: number): Promise<ChatConnection> {
    if (this.conn) return Promise.resolve(this.conn);
    if (this.closing) return Promise.reject(new ClosedError('Chat connection'));
    if (this.stopped) return Promise.reject(this.lastError ?? new ClosedError('Chat connection'));
    this.start();
    return new Promise<ChatConnection>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(
          this.lastError
            ? new TimeoutError(`Connecting (${this.lastError.message})`, timeoutMs)
            : new TimeoutError('Connecting', timeoutMs),
        );
      }, timeoutMs);
      const wake = () => {
        clearTimeout(timer);
        if (this.conn) resolve(this.conn);
        else
          reject(
            this.closing
              ? new ClosedError('Chat connection')
              : (this.lastError ?? new ClosedError('Chat connection')),
          );
      };
      this.waiters.add(wake);
    });
  }

  /**
   * ChatRequester: sends on the current socket, or waits for the next one within the request's
   * timeout (so calls made during a reconnect succeed once it is back, or fail with a TimeoutError
   * saying why the connection is down).
   */
  async request(req: ChatRequest): Promise<ChatResponse> {
    const timeoutMs = req.timeoutMs ?? this.opts.requestTimeoutMs ?? 30_000;
    const started = Date.now();
    const conn = await this.waitConnected(timeoutMs);
    const res = await conn.request({
      ...req,
      timeoutMs: Math.max(1000, timeoutMs - (Date.now() - started)),
    });
    // The caller maps the 499 to its own ClientTooOldError; the socket stops here either way.
    if (res.status === 499) this.expire(new ClientTooOldError(`${req.verb} ${req.path}`));
    return res;
  }

  /** Drops the current socket so that it reconnects (used by tests and fault injection). */
  dropConnection(): void {
    void this.conn?.close(1001, 'dropped');
  }

  /**
   * Closes for good: no reconnect afterwards, every timer cleared, a connection attempt in flight
   * aborted, waiting requests rejected with ClosedError. Resolves once the socket is gone.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.connectAbort?.abort();
    this.connectAbort = null;
    const conn = this.conn;
    this.conn = null;
    this.wakeWaiters();
    if (conn) await conn.close(1000, 'closing');
    this.setState('closed');
  }
}
