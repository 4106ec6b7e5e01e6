/**
 * Groups v2 as the engine keeps them (issue 16): the contract between the group state (fetched from
 * the storage service's group server, decrypted with the group's secret params, stored in SQLite)
 * and the group sender (sender keys, multi-recipient sealed sender, per-member fallback).
 */

/** A member of a group, decrypted from the group state. */
export interface GroupMember {
  /** Bare lower-case ACI. */
  aci: string;
  /** The member's profile key from the group state (unlocks sealed sender: its access key). */
  profileKey?: Uint8Array;
  role: 'member' | 'administrator';
}

/** One group as the engine knows it. */
export interface GroupRecord {
  /** Base64 (with padding) of the 32-byte group identifier: the id `signal-in` reports. */
  id: string;
  /** The 32-byte group master key (GroupContextV2.masterKey). */
  masterKey: Uint8Array;
  revision: number;
  title: string;
  /** The group's disappearing-messages timer in seconds (0 = off). */
  timerSeconds: number;
  members: GroupMember[];
  /** Service ids invited but not yet members (ACI or `PNI:<uuid>`); they receive nothing. */
  pendingMembers: string[];
  /**
   * The serialized GroupSendEndorsementsResponse the server gave with the state (when we are a
   * member), and its expiration in ms since the epoch.
   */
  endorsements?: { response: Uint8Array; expiration: number };
  /** When the state was last fetched from the server (ms). */
  fetchedAt: number;
}

/** What the engine and the nodes list: no keys. */
export interface GroupInfo {
  id: string;
  title: string;
  revision: number;
  /** Member ACIs (ours included). */
  members: string[];
  timerSeconds: number;
}

/** How the group sender reaches group state; the group directory implements it. */
export interface GroupStatePort {
  /**
   * The group's state, from the store, fetched from the server when unknown or older than
   * `minRevision`. Throws InvalidInputError naming the id when it is not a group id, and a
   * GroupNotFoundError/NotAMember error (core/errors.ts) when we are not in it.
   */
  get(groupId: string, minRevision?: number): Promise<GroupRecord>;
}
