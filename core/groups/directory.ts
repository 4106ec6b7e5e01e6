/**
 * The group directory: the account's groups v2 state (issue 16). Implements GroupStatePort for the
 * group sender: a group from the store, fetched from the group server when unknown to the store or
 * older than asked. Fetching: today's group auth credential (./credentials.ts) → a presentation for
 * the group → `GET /v2/groups` → decrypted (./state.ts) → stored with its send endorsements. On the
 * receive side, a group message whose revision is newer than the stored one (or that carries a group
 * change) refetches the group off the ACK path and emits a `group-update` with what changed; a linked
 * device lists its groups from the storage service (./storage.ts) after linking and when the phone
 * says the storage changed.
 */
import {
  ClientZkAuthOperations,
  GroupSendEndorsementsResponse,
  ServerPublicParams,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import type { GroupAuth, GroupCredentialsAnswer } from '../api';
import { GroupNotFoundError, InvalidInputError, NotAMemberError, ProtocolError } from '../errors';
import type { Logger } from '../log';
import type { GroupRef, GroupUpdateEvent, Sender } from '../types';
import type { signalservice } from '../../proto';
import { GroupCredentials } from './credentials';
import { decryptGroup, groupKeys, isGroupId, type GroupKeys } from './state';
import { readStorage, type StorageReadPort } from './storage';
import type { GroupInfo, GroupRecord, GroupStatePort } from './types';

/** What the directory needs from the account's store (core/store, adapted by the session). */
export interface GroupStorePort {
  get(id: string): GroupRecord | undefined;
  /** Title and revision only: what each group message needs, read without its members. */
  summary(id: string): { title: string; revision: number } | undefined;
  all(): GroupRecord[];
  save(group: GroupRecord): void;
  delete(id: string): boolean;
  /** A member's profile key from the group state, for a contact that has none yet. */
  fillProfileKey(aci: string, profileKey: Uint8Array): void;
  /** The group chat's disappearing-messages timer (`group:<id>`), as the group state says. */
  setTimer(conversation: string, seconds: number): void;
}

/** The server calls (core/api over the account's chat socket and the storage service). */
export interface GroupServerPort extends StorageReadPort {
  credentials(start: number, end: number): Promise<GroupCredentialsAnswer>;
  getGroup(groupId: string, auth: GroupAuth): Promise<signalservice.GroupResponse>;
}

/** A group message's context (GroupContextV2) and who sent it, for noteContext(). */
export interface GroupContextNote {
  masterKey: Uint8Array;
  revision: number;
  /** The message carried a signed group change (GroupContextV2.groupChange). */
  change: boolean;
  from: Sender;
  timestamp: number;
  serverTimestamp: number;
  sealed: boolean;
}

export interface GroupDirectoryOptions {
  store: GroupStorePort;
  server: GroupServerPort;
  /** Our ACI and PNI (bare uuids). */
  self: { aci: string; pni: string };
  /** Base64 ServerPublicParams of the environment; null: groups cannot be fetched. */
  serverPublicParams: string | null;
  /** The account master key the storage service is encrypted with (null: none, e.g. registered). */
  accountMasterKey: () => Uint8Array | null;
  emit: (event: GroupUpdateEvent) => void;
  logger: Logger;
  now: () => number;
}

/** How long a revision the server did not have is not asked for again. */
const BEHIND_RETRY_MS = 60_000;

/** What the engine lists of a group: no keys. */
export const groupInfoOf = (g: GroupRecord): GroupInfo => ({
  id: g.id,
  title: g.title,
  revision: g.revision,
  members: g.members.map((m) => m.aci),
  timerSeconds: g.timerSeconds,
});

export class GroupDirectory implements GroupStatePort {
  private readonly credentials: GroupCredentials | null;
  private readonly serverParams: ServerPublicParams | null;
  private readonly inFlight = new Map<string, Promise<GroupRecord>>();
  private readonly background = new Set<Promise<unknown>>();
  private storageRead: Promise<GroupInfo[]> | null = null;
  /**
   * Groups whose last fetch found an older revision than a message claimed: the claim and when. A
   * sender (or a forged context) repeating that claim does not cost a fetch per message.
   */
  private readonly behind = new Map<string, { claimed: number; at: number }>();
  /** Groups whose last fetch from a message's context failed, and when. */
  private readonly failed = new Map<string, number>();
  private closed = false;

  constructor(private readonly opts: GroupDirectoryOptions) {
    let params: ServerPublicParams | null = null;
    if (opts.serverPublicParams) {
      try {
        params = new ServerPublicParams(
          new Uint8Array(Buffer.from(opts.serverPublicParams, 'base64')),
        );
      } catch (e) {
        opts.logger.warn('groups: the environment has unusable server public params', e);
      }
    }
    this.serverParams = params;
    this.credentials = params
      ? new GroupCredentials({
          serverParams: params,
          aci: opts.self.aci,
          pni: opts.self.pni,
          fetch: (start, end) => opts.server.credentials(start, end),
          now: opts.now,
        })
      : null;
  }

  // ------------------------------------------------------------------ GroupStatePort

  async get(groupId: string, minRevision?: number): Promise<GroupRecord> {
    if (!isGroupId(groupId)) {
      throw new InvalidInputError(
        `"${String(groupId).slice(0, 60)}" is not a group id (base64 of 32 bytes)`,
      );
    }
    if (minRevision !== undefined && (!Number.isSafeInteger(minRevision) || minRevision < 0)) {
      throw new InvalidInputError('minRevision must be a whole number of at least 0');
    }
    const stored = this.opts.store.get(groupId);
    if (stored && (minRevision === undefined || stored.revision >= minRevision)) return stored;
    if (!stored) {
      throw new GroupNotFoundError(
        groupId,
        'is not known to this account (no group message or storage record gave its key yet)',
      );
    }
    const fetched = await this.fetch(stored.masterKey);
    if (minRevision !== undefined && fetched.revision < minRevision) {
      throw new ProtocolError(
        `Group ${groupId}: the server has revision ${fetched.revision}, older than ${minRevision}`,
      );
    }
    return fetched;
  }

  // ------------------------------------------------------------------ reading

  /** The stored groups, by title (no keys). */
  list(): GroupInfo[] {
    return this.opts.store.all().map(groupInfoOf);
  }

  /** The group an event belongs to, as stored now (title absent while its state is unknown). */
  describe(groupId: string): GroupRef {
    const g = this.opts.store.summary(groupId);
    return g && g.title ? { id: groupId, title: g.title } : { id: groupId };
  }

  /**
   * Fetches the group with this master key from the group server and stores it (concurrent calls
   * for one group share one fetch). NotAMemberError, after forgetting the group, when we are not in it.
   */
  fetch(masterKey: Uint8Array): Promise<GroupRecord> {
    const keys = groupKeys(masterKey);
    let p = this.inFlight.get(keys.id);
    if (!p) {
      p = this.fetchNow(keys).finally(() => this.inFlight.delete(keys.id));
      this.inFlight.set(keys.id, p);
    }
    return p;
  }

  /**
   * Everything this account can learn of its groups now: on a linked device the storage service's
   * group records (each group fetched), then every stored group refetched. A group that fails is
   * logged and kept as stored; the list is what the store holds afterwards.
   */
  async refresh(): Promise<GroupInfo[]> {
    await this.refreshFromStorage();
    for (const g of this.opts.store.all()) {
      if (this.closed) break;
      await this.fetch(g.masterKey).catch((e: unknown) => this.logFailure(g.id, e));
    }
    return this.list();
  }

  /**
   * Reads the storage service (a linked device only: the account master key comes from the phone)
   * and fetches each group it lists that the store lacks or holds older. Read only. Concurrent calls
   * share one read.
   */
  refreshFromStorage(): Promise<GroupInfo[]> {
    this.storageRead ??= this.readStorageNow().finally(() => (this.storageRead = null));
    return this.storageRead;
  }

  // ------------------------------------------------------------------ receive side

  /**
   * A group message arrived (after its ACK and emit): when its revision is newer than the stored
   * one, or the group is unknown, or it carries a group change, the group is refetched in the
   * background and a `group-update` emitted with what changed. Never throws.
   */
  noteContext(note: GroupContextNote): void {
    if (this.closed) return;
    this.track(this.onContext(note));
  }

  /**
   * Reads the storage service in the background (idle() waits for it): after linking, and when the
   * phone says its storage changed (SyncMessage.fetchLatest STORAGE_MANIFEST). Never throws.
   */
  noteStorageChanged(): void {
    if (this.closed) return;
    this.track(this.refreshFromStorage());
  }

  /** Resolves when the background fetches started so far have settled (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  close(): void {
    this.closed = true;
  }

  // ------------------------------------------------------------------ internals

  private track(p: Promise<unknown>): void {
    const tracked = p.catch((e: unknown) =>
      this.opts.logger.warn('groups: background work failed', e),
    );
    this.background.add(tracked);
    void tracked.finally(() => this.background.delete(tracked));
  }

  private noteFailed(groupId: string): void {
    const now = this.opts.now();
    // Bounded: forged contexts name endless ids; entries past the window mean nothing any more.
    if (this.failed.size >= 1000) {
      for (const [id, at] of this.failed) if (now - at >= BEHIND_RETRY_MS) this.failed.delete(id);
    }
    if (this.failed.size < 1000) this.failed.set(groupId, now);
  }

  private logFailure(groupId: string, e: unknown): void {
    if (e instanceof NotAMemberError) {
      this.opts.logger.info(`groups: not a member of ${groupId} (any more)`);
      return;
    }
    this.opts.logger.warn(`groups: could not fetch group ${groupId}`, e);
  }

  private async onContext(note: GroupContextNote): Promise<void> {
    let keys: GroupKeys;
    try {
      keys = groupKeys(note.masterKey);
    } catch {
      return; // content.ts already refused it as a group id; nothing to fetch
    }
    const held = this.opts.store.summary(keys.id);
    // What we hold is already this revision or newer (a late or repeated change, the transcript of
    // a change we fetched): nothing to fetch, nothing to announce.
    if (held && held.revision >= note.revision) return;
    const lag = this.behind.get(keys.id);
    if (lag && note.revision <= lag.claimed && this.opts.now() - lag.at < BEHIND_RETRY_MS) return;
    // A group whose fetch failed (one we are not in, or a forged context) is not asked for again
    // for a while, whatever revision its messages claim: no server round trip per message.
    const failed = this.failed.get(keys.id);
    if (failed !== undefined && this.opts.now() - failed < BEHIND_RETRY_MS) return;
    // The whole state before, for what the update changed (read only when fetching).
    const before = held ? this.opts.store.get(keys.id) : undefined;
    let after: GroupRecord;
    try {
      after = await this.fetch(note.masterKey);
      this.failed.delete(keys.id);
    } catch (e) {
      this.noteFailed(keys.id);
      this.logFailure(keys.id, e);
      return;
    }
    if (this.closed) return;
    if (after.revision < note.revision) {
      this.behind.set(keys.id, { claimed: note.revision, at: this.opts.now() });
    } else this.behind.delete(keys.id);
    if (before && after.revision <= before.revision) return;
    const ev = updateEvent(before, after, note);
    // A group new to us is worth an event only when a change announced it.
    if (!before && !note.change) return;
    this.opts.emit(ev);
  }

  private async fetchNow(keys: GroupKeys): Promise<GroupRecord> {
    if (!this.credentials || !this.serverParams) {
      throw new GroupNotFoundError(
        keys.id,
        'cannot be fetched: this server has no zkgroup public params configured',
      );
    }
    const credential = await this.credentials.today();
    const presentation = new ClientZkAuthOperations(
      this.serverParams,
    ).createAuthCredentialWithPniPresentation(keys.secretParams, credential);
    const auth: GroupAuth = {
      publicParams: keys.publicParams,
      presentation: presentation.serialize(),
    };
    let response: signalservice.GroupResponse;
    try {
      response = await this.opts.server.getGroup(keys.id, auth);
    } catch (e) {
      if (e instanceof NotAMemberError) this.forget(keys.id);
      throw e;
    }
    if (!response.group) throw new ProtocolError(`Group ${keys.id}: the server sent no state`);
    const decrypted = decryptGroup(keys, response.group);
    if (decrypted.undecryptable > 0) {
      this.opts.logger.warn(
        `groups: ${decrypted.undecryptable} member(s) of ${keys.id} did not decrypt and are left out`,
      );
    }
    const self = this.opts.self.aci.toLowerCase();
    if (!decrypted.members.some((m) => m.aci === self)) {
      // The server shows the state to invitees too (and Signal's mock to anyone): not ours to use.
      this.forget(keys.id);
      throw new NotAMemberError(keys.id);
    }
    const { undecryptable: _skip, ...state } = decrypted;
    const record: GroupRecord = { ...state, fetchedAt: this.opts.now() };
    const endorsements = this.endorsementsOf(keys.id, response.groupSendEndorsementResponse);
    if (endorsements) record.endorsements = endorsements;
    else {
      const kept = this.opts.store.get(keys.id)?.endorsements;
      if (kept && kept.expiration > this.opts.now()) record.endorsements = kept;
    }
    if (this.closed) return record;
    const previous = this.opts.store.get(keys.id);
    // A concurrent path (a log, another fetch) may have stored a newer state meanwhile.
    if (previous && previous.revision > record.revision) return previous;
    this.opts.store.save(record);
    if (!previous || previous.timerSeconds !== record.timerSeconds) {
      this.opts.store.setTimer(`group:${keys.id}`, record.timerSeconds);
    }
    for (const m of record.members) {
      if (m.profileKey && m.aci !== self) this.opts.store.fillProfileKey(m.aci, m.profileKey);
    }
    return record;
  }

  private endorsementsOf(
    groupId: string,
    bytes: Uint8Array | null | undefined,
  ): GroupRecord['endorsements'] | undefined {
    if (!bytes || bytes.length === 0) return undefined;
    try {
      const response = new GroupSendEndorsementsResponse(new Uint8Array(bytes));
      return { response: new Uint8Array(bytes), expiration: response.getExpiration().getTime() };
    } catch (e) {
      this.opts.logger.warn(`groups: unusable send endorsements for ${groupId}`, e);
      return undefined;
    }
  }

  private forget(groupId: string): void {
    if (!this.closed) this.opts.store.delete(groupId);
  }

  private async readStorageNow(): Promise<GroupInfo[]> {
    const masterKey = this.opts.accountMasterKey();
    if (!masterKey) return this.list();
    const listing = await readStorage(this.opts.server, masterKey);
    if (!listing || this.closed) return this.list();
    if (listing.unreadable > 0)
      this.opts.logger.warn(
        `groups: ${listing.unreadable} storage record(s) did not open; skipped`,
      );
    for (const c of listing.contacts) {
      if (c.aci !== this.opts.self.aci.toLowerCase())
        this.opts.store.fillProfileKey(c.aci, c.profileKey);
    }
    let fetched = 0;
    for (const mk of listing.groupMasterKeys) {
      if (this.closed) break;
      try {
        await this.fetch(mk);
        fetched++;
      } catch (e) {
        this.logFailure(groupKeys(mk).id, e);
      }
    }
    this.opts.logger.info(
      `groups: storage version ${listing.version} lists ${listing.groupMasterKeys.length} group(s), ${fetched} fetched`,
    );
    return this.list();
  }
}

/** The event for a refetched group: what differs between the state we had and the new one. */
export function updateEvent(
  before: GroupRecord | undefined,
  after: GroupRecord,
  note: Pick<GroupContextNote, 'from' | 'timestamp' | 'serverTimestamp' | 'sealed'>,
): GroupUpdateEvent {
  const ev: GroupUpdateEvent = {
    type: 'group-update',
    from: note.from,
    timestamp: note.timestamp,
    serverTimestamp: note.serverTimestamp,
    sealed: note.sealed,
    group: after.title ? { id: after.id, title: after.title } : { id: after.id },
    groupId: after.id,
    revision: after.revision,
  };
  if (!before) return ev;
  ev.previousRevision = before.revision;
  if (before.title !== after.title) ev.title = after.title;
  if (before.timerSeconds !== after.timerSeconds) ev.timerSeconds = after.timerSeconds;
  const diff = (a: string[], b: string[]) => a.filter((x) => !b.includes(x));
  const was = before.members.map((m) => m.aci);
  const now = after.members.map((m) => m.aci);
  const added = diff(now, was);
  const removed = diff(was, now);
  if (added.length) ev.membersAdded = added;
  if (removed.length) ev.membersRemoved = removed;
  const pendingAdded = diff(after.pendingMembers, before.pendingMembers);
  const pendingRemoved = diff(before.pendingMembers, after.pendingMembers);
  if (pendingAdded.length) ev.pendingAdded = pendingAdded;
  if (pendingRemoved.length) ev.pendingRemoved = pendingRemoved;
  return ev;
}
