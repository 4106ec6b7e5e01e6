/**
 * msg.signal on the way out of signal-out and signal-lookup. Both merge: the keys a node sets
 * replace those of the same name and the rest stay, so a msg from signal-in keeps `from`, `type` and
 * the rest of what it said about the received item through a lookup or a reply. A key the node
 * owns but has no value for this time (signal-out's `timestamp` when nothing was sent) is removed,
 * so that the received item's value cannot be taken for the node's.
 */
import type { NodeMessage } from './red';

export function mergeSignal(msg: NodeMessage, fields: Record<string, unknown>): void {
  const prior = msg.signal;
  // A copy, not the object itself: another msg may share it (a flow that fanned out by reference).
  const merged: Record<string, unknown> =
    typeof prior === 'object' && prior !== null && !Array.isArray(prior)
      ? { ...(prior as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) delete merged[k];
    else merged[k] = v;
  }
  msg.signal = merged;
}
