/**
 * The slice of Node-RED's runtime API these nodes use, typed locally (Node-RED ships no types).
 */
import type { EventEmitter } from 'node:events';

export interface NodeMessage {
  [key: string]: unknown;
  payload?: unknown;
  topic?: string;
  _msgid?: string;
}

export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

export interface Node extends EventEmitter {
  id: string;
  type: string;
  name?: string;
  status(status: NodeStatus | Record<string, never>): void;
  send(msg: NodeMessage | Array<NodeMessage | null>): void;
  error(err: unknown, msg?: NodeMessage): void;
  warn(msg: unknown): void;
  log(msg: unknown): void;
  debug(msg: unknown): void;
  on(
    event: 'input',
    fn: (msg: NodeMessage, send: (m: NodeMessage) => void, done: (err?: Error) => void) => void,
  ): this;
  on(event: 'close', fn: (removed: boolean, done: () => void) => void): this;
  on(event: string, fn: (...args: never[]) => void): this;
}

export interface RedRequest {
  params: Record<string, string>;
  body: unknown;
  /** The parsed query string (Express). */
  query?: Record<string, unknown>;
}
export interface RedResponse {
  status(code: number): RedResponse;
  json(body: unknown): void;
  send(body?: unknown): void;
}
type Handler = (req: RedRequest, res: RedResponse, next?: () => void) => void;

export interface RED {
  nodes: {
    createNode(node: Node, config: unknown): void;
    registerType(type: string, ctor: unknown, opts?: unknown): void;
    getNode(id: string): Node | null;
  };
  settings: Record<string, unknown> & { userDir?: string };
  httpAdmin: {
    get(path: string, ...handlers: Handler[]): void;
    post(path: string, ...handlers: Handler[]): void;
    delete(path: string, ...handlers: Handler[]): void;
  };
  auth: { needsPermission(permission: string): Handler };
  _(key: string, subs?: Record<string, unknown>): string;
  log: {
    info(m: string): void;
    warn(m: string): void;
    error(m: string): void;
    debug(m: string): void;
  };
}
