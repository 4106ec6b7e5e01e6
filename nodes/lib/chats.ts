/**
 * signal-in's *Chats* option: which chats' items a node emits. An item belongs to a group when the
 * engine reports one on it (messages, edits, deletes, timers, typing, reactions, group updates and
 * the phone's transcripts of what it sent to a group); everything else is direct: 1:1 items,
 * receipts (Signal sends them 1:1, even for a group message) and safety-number changes (a contact's).
 */
import { InvalidInputError } from '../../core/errors';
import type { IncomingEvent } from '../../core/types';
import { groupOfEvent } from './msg';

export type ChatsMode = 'all' | 'direct' | 'groups' | 'chosen';
export const CHATS_MODES: ChatsMode[] = ['all', 'direct', 'groups', 'chosen'];

export interface ChatFilter {
  mode: ChatsMode;
  /** For `chosen`: the group ids (base64, as signal-in reports them). */
  groups: Set<string>;
}

/** A group id as signal-in reports it: base64 of 32 bytes; `group:<id>` is taken too. */
function groupIdOf(entry: string): string {
  const id = entry.replace(/^group:/i, '').trim();
  const bytes = Buffer.from(id, 'base64');
  if (bytes.length !== 32 || bytes.toString('base64') !== id) {
    throw new InvalidInputError(
      `"${entry}" is not a group id: give the id signal-in reports in msg.signal.group.id (base64 of 32 bytes), or pick the group in the editor`,
    );
  }
  return id;
}

/**
 * The filter of a node's settings: `chats` (default all) and, for `chosen`, `groups` (ids separated
 * by commas or new lines). Throws InvalidInputError naming what is wrong: an unknown mode, a
 * malformed id, or `chosen` with no group.
 */
export function chatFilterOf(chats: unknown, groups: unknown): ChatFilter {
  const mode = chats === undefined || chats === '' ? 'all' : chats;
  if (typeof mode !== 'string' || !(CHATS_MODES as string[]).includes(mode)) {
    throw new InvalidInputError(
      `Chats must be one of ${CHATS_MODES.join(', ')}, not ${JSON.stringify(chats)}`,
    );
  }
  const ids = new Set<string>();
  if (mode === 'chosen') {
    if (groups !== undefined && typeof groups !== 'string')
      throw new InvalidInputError('The chosen groups must be text: group ids separated by commas');
    for (const entry of (groups ?? '').split(/[,\n]/)) {
      if (entry.trim() !== '') ids.add(groupIdOf(entry.trim()));
    }
    if (ids.size === 0)
      throw new InvalidInputError('Chats is "chosen groups" but no group is chosen: pick one');
  }
  return { mode: mode as ChatsMode, groups: ids };
}

/** Whether a node with this filter emits the event. */
export function passesChats(filter: ChatFilter, ev: IncomingEvent): boolean {
  if (filter.mode === 'all') return true;
  const group = groupOfEvent(ev);
  if (filter.mode === 'direct') return group === null;
  if (group === null) return false;
  return filter.mode === 'groups' || filter.groups.has(group.id);
}
