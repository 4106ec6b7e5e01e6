/**
 * Contacts' Signal profile names (PROTOCOL.md, profiles), fetched off the receive path: a message
 * is ACKed and emitted with what the contacts table knows, and the sender's profile is fetched after
 * (at most one fetch at a time, each contact at most daily), so the first message from someone may
 * come without a name and a later one has it. The profile is fetched at the version the sender's
 * profile key and ACI give (libsignal ProfileKey.getProfileKeyVersion), authorized with the access
 * key derived from that profile key, as Signal's apps fetch it; its name is decrypted with the key.
 */
import { Aci } from '@signalapp/libsignal-client';
// The package's `zkgroup` entry re-exports a directory, which Node16 resolution rejects; use the file.
import { ProfileKey } from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import type { ProfileWrite, VersionedProfile } from '../api/profiles';
import { deriveAccessKey } from '../crypto/access-key';
import {
  decryptProfileName,
  displayName,
  encryptProfileName,
  type ProfileName,
} from '../crypto/profile-name';
import type { Logger } from '../log';

/** A contact's profile is fetched again at most this often. */
export const PROFILE_REFRESH_MS = 24 * 60 * 60 * 1000;
/** After a failed fetch, the same contact is not tried again for this long (in this process). */
export const PROFILE_RETRY_MS = 60 * 60 * 1000;

export interface ProfileStorePort {
  /** What the store holds about this ACI's profile; undefined when no contact row has it. */
  profileOf(aci: string): { profileKey: Uint8Array | null; fetchedAt: number | null } | undefined;
  saveProfileName(aci: string, name: string | null, fetchedAt: number): void;
}

export interface ProfileNamesOptions {
  store: ProfileStorePort;
  /** GET /v1/profile/<aci>/<version>, with the access key (and its own fallback, if any). */
  fetch: (aci: string, version: string, accessKey: Uint8Array) => Promise<VersionedProfile>;
  /** Our own ACI: our name is our phone's business, not fetched here. */
  selfAci: string;
  logger: Logger;
  now: () => number;
  refreshMs?: number;
  retryMs?: number;
}

export class ProfileNames {
  private queue: Promise<void> = Promise.resolve();
  private readonly queued = new Set<string>();
  private readonly failedAt = new Map<string, number>();
  private closed = false;

  constructor(private readonly opts: ProfileNamesOptions) {}

  /**
   * A message from `aci` arrived: fetches its profile in the background when it is due (we hold
   * the profile key and never fetched it, or not in the last day). Never throws, never waits.
   */
  note(aci: string): void {
    if (this.closed || aci === this.opts.selfAci || this.queued.has(aci)) return;
    if (!this.due(aci)) return;
    this.queued.add(aci);
    this.queue = this.queue.then(async () => {
      try {
        if (!this.closed && this.due(aci)) await this.fetchNow(aci);
      } catch (e) {
        this.failedAt.set(aci, this.opts.now());
        // No name, no profile key in the line: only the contact's id and the error.
        if (!this.closed) this.opts.logger.debug(`profile of ${aci}: fetch failed`, e);
      } finally {
        this.queued.delete(aci);
      }
    });
  }

  /** Resolves once every fetch asked for so far has finished. */
  idle(): Promise<void> {
    return this.queue;
  }

  /** No fetch starts after this, and none that finishes writes. */
  close(): void {
    this.closed = true;
  }

  private due(aci: string): boolean {
    let known;
    try {
      known = this.opts.store.profileOf(aci);
    } catch {
      return false;
    }
    if (!known?.profileKey || known.profileKey.length !== 32) return false;
    const now = this.opts.now();
    const failed = this.failedAt.get(aci);
    if (failed !== undefined && now - failed < (this.opts.retryMs ?? PROFILE_RETRY_MS))
      return false;
    return (
      known.fetchedAt === null ||
      now - known.fetchedAt >= (this.opts.refreshMs ?? PROFILE_REFRESH_MS)
    );
  }

  /** Fetches and stores the name of `aci`'s profile now; resolves with it (null when none). */
  async fetchNow(aci: string): Promise<string | null> {
    const known = this.opts.store.profileOf(aci);
    const key = known?.profileKey;
    if (!key || key.length !== 32) return null;
    const version = new ProfileKey(new Uint8Array(key))
      .getProfileKeyVersion(Aci.parseFromServiceIdString(aci))
      .toString();
    const profile = await this.opts.fetch(aci, version, deriveAccessKey(key));
    const decrypted = profile.name
      ? decryptProfileName(key, new Uint8Array(Buffer.from(profile.name, 'base64')))
      : null;
    const name = decrypted ? displayName(decrypted) || null : null;
    if (this.closed) return name;
    this.opts.store.saveProfileName(aci, name, this.opts.now());
    this.failedAt.delete(aci);
    return name;
  }
}

/**
 * The body of `PUT /v1/profile` that sets our own name (PROTOCOL.md, profiles): the profile-key
 * version and commitment for our ACI (libsignal ProfileKey), the name padded and encrypted with our
 * profile key, and no avatar (`avatar: false, sameAvatar: false`: this package uploads none).
 */
export function ownProfileWrite(
  aci: string,
  profileKey: Uint8Array,
  name: ProfileName,
): ProfileWrite {
  const key = new ProfileKey(new Uint8Array(profileKey));
  const id = Aci.parseFromServiceIdString(aci);
  return {
    version: key.getProfileKeyVersion(id).toString(),
    commitment: Buffer.from(key.getCommitment(id).serialize()).toString('base64'),
    name: Buffer.from(encryptProfileName(profileKey, name)).toString('base64'),
    avatar: false,
    sameAvatar: false,
  };
}
