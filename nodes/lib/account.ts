/** What flow nodes may use of a signal-account config node. */
import type { EventEmitter } from 'node:events';
import type { SignalClient } from '../../core/client';
import type { ClientState } from '../../core/types';
import type { Node, RED } from './red';

export interface AccountNode extends Node {
  /** Resolves with the open client (linked or not); rejects if the settings are unusable. */
  client(): Promise<SignalClient>;
  register(user: Node): void;
  deregister(user: Node, done: () => void): void;
  events: EventEmitter;
  state: ClientState | 'error';
}

/** The account node a flow node is configured with, or null (the flow node then shows why). */
export function accountOf(RED: RED, id: string | undefined): AccountNode | null {
  if (!id) return null;
  const n = RED.nodes.getNode(id) as AccountNode | null;
  return n && typeof n.client === 'function' ? n : null;
}
