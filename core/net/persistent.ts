/**
 * The chat connection that stays up (PROTOCOL.md §2): connect, keepalive, reconnect with exponential
 * backoff and jitter (1 s doubling to a 60 s cap by default), and a `closing` flag so nothing
 * reconnects after close(). Bad credentials (close 3000, or 401/403 on the upgrade) stop it in the
 * `unlinked` state; another connection taking over (4409) stops it too, reported, never fought over.
 * Requests made while it is reconnecting wait for the socket, within their own timeout.
 */
import { EventEmitter } from 'node:events';
import type { Environment } from '../config';
import {
  ClosedError,
  ConnectedElsewhereError,
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
  'idle' | 'connecting' | 'connected' | 'disconnected' | 'unlinked' | 'closed';

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
  auth?: { username: string; password: string };
  handler?: IncomingRequestHandler;
  logger: Logger;
  keepalive?: KeepaliveOptions;
  backoff?: BackoffOptions;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** For logs: 'authenticated' or 'unauthenticated'. */
  name?: string;
}

/** Emits 'state' (ChatState, error?) and 'connected' (ChatConnection) on each (re)connection. */
export class PersistentChat extends EventEmitter implements ChatRequester {
  private conn: ChatConnection | null = null;
  private stateValue: ChatState = 'idle';
  private closing = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private waiters = new Set<() => void>();
  /** How many times a connection was established (observability, tests). */
  connections = 0;
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
    this.emit('state', state, error);
  }

  /** Starts connecting (idempotent). */
  start(): void {
    if (this.closing || this.stateValue === 'connecting' || this.conn) return;
    if (this.stateValue === 'unlinked') return;
    void this.connectOnce();
  }

  private async connectOnce(): Promise<void> {
    this.reconnectTimer = null;
    if (this.closing) return;
    this.setState('connecting');
    let conn: ChatConnection;
    try {
      conn = await ChatConnection.open({
        env: this.opts.env,
        path: '/v1/websocket/',
        ...(this.opts.auth ? { auth: this.opts.auth } : {}),
        ...(this.opts.handler ? { handler: this.opts.handler } : {}),
        logger: this.opts.logger,
        keepalive: this.opts.keepalive ?? DEFAULT_KEEPALIVE,
        ...(this.opts.connectTimeoutMs !== undefined
          ? { connectTimeoutMs: this.opts.connectTimeoutMs }
          : {}),
        ...(this.opts.requestTimeoutMs !== undefined
          ? { requestTimeoutMs: this.opts.requestTimeoutMs }
          : {}),
      });
    } catch (e) {
      const err =
        e instanceof SignalError ? e : new SignalError('NETWORK', String(e), { cause: e });
      if (err instanceof UnauthorizedError) return this.stop('unlinked', err);
      this.opts.logger.info(`${this.opts.name ?? 'chat'}: connect failed: ${err.message}`);
      return this.scheduleReconnect(err);
    }
    if (this.closing) {
      conn.close(1000, 'closed');
      return;
    }
    this.conn = conn;
    this.attempt = 0;
    this.connections++;
    conn.once('close', (info: CloseInfo) => this.onClose(conn, info));
    this.setState('connected');
    this.emit('connected', conn);
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  private onClose(conn: ChatConnection, info: CloseInfo): void {
    if (this.conn === conn) this.conn = null;
    if (this.closing) return;
    if (info.code === 3000) {
      return this.stop(
        'unlinked',
        new UnauthorizedError('The server closed the connection: bad credentials (3000)'),
      );
    }
    if (info.code === 4409) return this.stop('disconnected', new ConnectedElsewhereError());
    const err =
      info.error ??
      new SignalError(
        'NETWORK',
        `Connection closed (${info.code}${info.reason ? `: ${info.reason}` : ''})`,
      );
    this.scheduleReconnect(err);
  }

  private scheduleReconnect(err: SignalError): void {
    if (this.closing) return;
    const delay = backoffDelay(this.attempt++, this.opts.backoff ?? DEFAULT_BACKOFF);
    this.setState('disconnected', err);
    this.opts.logger.info(`${this.opts.name ?? 'chat'}: reconnecting in ${delay} ms`);
    this.reconnectTimer = setTimeout(() => void this.connectOnce(), delay);
  }

  /** Stops for good (until start() after fixing the cause): no reconnect loop. */
  private stop(state: 'unlinked' | 'disconnected', err: SignalError): void {
    this.opts.logger.warn(`${this.opts.name ?? 'chat'}: ${err.message}`);
    this.stopped = true;
    this.setState(state, err);
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  private stopped = false;

  /** Resolves when connected; rejects on timeout, on close(), or when stopped (unlinked). */
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

  async request(req: ChatRequest): Promise<ChatResponse> {
    const timeoutMs = req.timeoutMs ?? this.opts.requestTimeoutMs ?? 30_000;
    const started = Date.now();
    const conn = await this.waitConnected(timeoutMs);
    return conn.request({ ...req, timeoutMs: Math.max(1000, timeoutMs - (Date.now() - started)) });
  }

  /** Drops the current socket so that it reconnects (used by tests and fault injection). */
  dropConnection(): void {
    this.conn?.close(1001, 'dropped');
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const conn = this.conn;
    this.conn = null;
    for (const w of this.waiters) w();
    this.waiters.clear();
    if (conn) {
      conn.close(1000, 'closing');
      await Promise.race([conn.closed, new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    this.setState('closed');
  }
}
