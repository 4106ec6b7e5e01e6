/** What flow nodes may use of a signal-account config node. */
import type { EventEmitter } from 'node:events';
import type { SignalClient } from '../../core/client';
import { isSupportedCountry } from 'libphonenumber-js/max';
import { InvalidInputError, NotLinkedError } from '../../core/errors';
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

/**
 * The account's client, once it has an account: before linking the engine would only say "not
 * connected", so the node says what to do instead.
 */
export async function linkedClient(account: AccountNode): Promise<SignalClient> {
  const client = await account.client();
  if (!client.account) {
    throw new NotLinkedError(
      `The Signal account "${account.name || account.id}" is not linked yet: open it in the editor and click "Link device"`,
    );
  }
  return client;
}

/** The account's default region, checked: undefined when not set, else an upper-case ISO 3166 code. */
export function regionOf(region: string | undefined): string | undefined {
  const r = (region ?? '').trim();
  if (r === '') return undefined;
  const upper = r.toUpperCase();
  if (!/^[A-Z]{2}$/.test(upper) || !isSupportedCountry(upper)) {
    throw new InvalidInputError(
      `Default region "${r}" is not a two-letter country code with phone numbers (ISO 3166, e.g. US or DE); leave it empty to require numbers with their country code`,
    );
  }
  return upper;
}
