/**
 * Prekey maintenance (PROTOCOL.md §4): after connecting and then periodically, check the server's
 * counts of our one-time EC and Kyber prekeys and refill below a threshold; rotate the signed prekey
 * and the Kyber last-resort key every two days. Both identities (ACI and PNI) are maintained.
 *
 * The server replaces BOTH one-time lists on every `PUT /v2/keys` that carries one (and the mock
 * insists `preKeys` is present, §11), so a refill always uploads a fresh batch of each.
 */
import type {
  KyberPreKeyRecord,
  PreKeyRecord,
  PrivateKey,
  SignedPreKeyRecord,
} from '@signalapp/libsignal-client';
import {
  generateKyberPreKey,
  generateKyberPreKeys,
  generatePreKeys,
  generateSignedPreKey,
} from '../crypto/keys';
import type { IdentityKind, KeyUpload } from '../api';
import type { Logger } from '../log';

export interface PreKeyPorts {
  counts(kind: IdentityKind): Promise<{ count: number; pqCount: number }>;
  /** Generates `count` one-time EC and Kyber prekeys, stores them, returns their upload form. */
  generateOneTime(kind: IdentityKind, count: number): Pick<KeyUpload, 'preKeys' | 'pqPreKeys'>;
  /** When the current signed prekey was made (ms), or null if none. */
  signedPreKeyCreatedAt(kind: IdentityKind): number | null;
  /** Generates and stores a new signed prekey and Kyber last-resort key; returns their upload form. */
  generateRotation(kind: IdentityKind): Pick<KeyUpload, 'signedPreKey' | 'pqLastResortPreKey'>;
  /** Uploads; once it succeeded, forgets what the server no longer hands out (see storePreKeyPorts). */
  upload(kind: IdentityKind, keys: KeyUpload): Promise<void>;
}

export interface PreKeyMaintenanceOptions {
  ports: PreKeyPorts;
  logger: Logger;
  /** Refill when either count drops below this. */
  threshold?: number;
  batchSize?: number;
  rotateAfterMs?: number;
  /** How often to check while connected. */
  intervalMs?: number;
  /**
   * Store upkeep run with every check (after each connect and on each periodic tick): a process
   * that stays up for months must still prune its logs and old keys. Failures are logged.
   */
  housekeeping?: () => void;
  now?: () => number;
}

export const PREKEY_DEFAULTS = {
  threshold: 20,
  batchSize: 100,
  rotateAfterMs: 2 * 24 * 60 * 60 * 1000,
  intervalMs: 6 * 60 * 60 * 1000,
};

export class PreKeyMaintenance {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** A check asked for while one runs: it starts when that one ends (one at a time, none lost). */
  private queued: Promise<void> | null = null;
  /** Identities whose last rotation upload failed: rotate again at the next check. */
  private readonly rotationDue = new Set<IdentityKind>();
  private stopped = false;

  constructor(private readonly opts: PreKeyMaintenanceOptions) {}

  /**
   * Checks now; never throws (failures are logged and retried later). Never two checks at once: a
   * call while one runs gets one more check that starts after it, since the running one may have
   * read counts (or lost its connection) before whatever prompted this call.
   */
  check(): Promise<void> {
    if (this.running) {
      this.queued ??= this.running.then(() => {
        this.queued = null;
        return this.check();
      });
      return this.queued;
    }
    this.running = this.checkAll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /**
   * Called on every (re)connect: checks now, and starts the periodic check the first time. While
   * disconnected the server may have handed out many of our keys, so a reconnect always checks.
   */
  start(): void {
    if (this.stopped) return;
    void this.check();
    if (this.timer) return;
    this.timer = setInterval(
      () => void this.check(),
      this.opts.intervalMs ?? PREKEY_DEFAULTS.intervalMs,
    );
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async checkAll(): Promise<void> {
    if (this.stopped) return;
    try {
      this.opts.housekeeping?.();
    } catch (e) {
      this.opts.logger.warn('store upkeep failed; will retry', e);
    }
    for (const kind of ['aci', 'pni'] as const) {
      if (this.stopped) return;
      try {
        await this.checkOne(kind);
      } catch (e) {
        this.opts.logger.warn(`prekeys: maintenance for ${kind} failed; will retry`, e);
      }
    }
  }

  private async checkOne(kind: IdentityKind): Promise<void> {
    const { ports } = this.opts;
    const now = (this.opts.now ?? Date.now)();
    const upload: KeyUpload = {};
    const createdAt = ports.signedPreKeyCreatedAt(kind);
    if (
      this.rotationDue.has(kind) ||
      createdAt === null ||
      now - createdAt >= (this.opts.rotateAfterMs ?? PREKEY_DEFAULTS.rotateAfterMs)
    ) {
      Object.assign(upload, ports.generateRotation(kind));
    }
    const { count, pqCount } = await ports.counts(kind);
    const threshold = this.opts.threshold ?? PREKEY_DEFAULTS.threshold;
    if (count < threshold || pqCount < threshold) {
      Object.assign(
        upload,
        ports.generateOneTime(kind, this.opts.batchSize ?? PREKEY_DEFAULTS.batchSize),
      );
      this.opts.logger.info(
        `prekeys: refilling ${kind} (server had ${count} EC, ${pqCount} Kyber)`,
      );
    }
    if (Object.keys(upload).length === 0) return;
    const rotating = upload.signedPreKey !== undefined;
    try {
      await ports.upload(kind, upload);
    } catch (e) {
      // The new signed prekey is stored (the server may have taken it before the answer was lost),
      // so its timestamp would postpone the retry by two days: remember that it is still due.
      if (rotating) this.rotationDue.add(kind);
      throw e;
    }
    if (rotating) {
      this.rotationDue.delete(kind);
      this.opts.logger.info(`prekeys: rotated the ${kind} signed prekey and Kyber last-resort key`);
    }
  }
}

/** The part of the account store (core/store SignalStore) that prekey maintenance uses. */
export interface PreKeyStorePort {
  transaction<T>(fn: () => T): T;
  nextKeyIds(kind: IdentityKind): { preKey: number; signed: number; kyber: number };
  savePreKeys(kind: IdentityKind, records: PreKeyRecord[]): void;
  saveKyberPreKeys(kind: IdentityKind, records: KyberPreKeyRecord[], lastResort: boolean): void;
  saveSignedPreKey(kind: IdentityKind, record: SignedPreKeyRecord): void;
  latestSignedPreKey(kind: IdentityKind): { keyId: number; createdAt: number } | null;
  /** `null`: that list was not uploaded, so the server kept it. */
  markOneTimeKeysReplaced(
    kind: IdentityKind,
    kept: { preKeys: number[] | null; kyber: number[] | null },
  ): void;
}

export interface StorePreKeyPortsOptions {
  store: PreKeyStorePort;
  identityKey(kind: IdentityKind): PrivateKey;
  counts(kind: IdentityKind): Promise<{ count: number; pqCount: number }>;
  /** `PUT /v2/keys` for one identity. */
  put(kind: IdentityKind, keys: KeyUpload): Promise<void>;
  now: () => number;
}

/**
 * Prekey ports over the account store. Keys are stored before they are uploaded (a key the server
 * hands out must be one we can decrypt with). After a successful upload with one-time keys, every
 * other one-time key of that identity is marked replaced: the server no longer hands it out, but a
 * peer may have fetched it just before, so the store deletes it only after a grace period
 * (SignalStore.pruneKeys). Old signed and last-resort keys are likewise kept a while there.
 */
export function storePreKeyPorts(o: StorePreKeyPortsOptions): PreKeyPorts {
  const { store } = o;
  const generateOneTime = (
    kind: IdentityKind,
    count: number,
  ): Pick<KeyUpload, 'preKeys' | 'pqPreKeys'> => {
    const ids = store.nextKeyIds(kind);
    const ec = generatePreKeys(ids.preKey, count);
    const kyber = generateKyberPreKeys(o.identityKey(kind), ids.kyber, count);
    store.transaction(() => {
      store.savePreKeys(kind, ec.records);
      store.saveKyberPreKeys(kind, kyber.records, false);
    });
    return { preKeys: ec.upload, pqPreKeys: kyber.upload };
  };
  return {
    counts: (kind) => o.counts(kind),
    generateOneTime,
    signedPreKeyCreatedAt: (kind) => store.latestSignedPreKey(kind)?.createdAt ?? null,
    generateRotation: (kind) => {
      const identity = o.identityKey(kind);
      const ids = store.nextKeyIds(kind);
      const signed = generateSignedPreKey(identity, ids.signed, o.now());
      const lastResort = generateKyberPreKey(identity, ids.kyber, o.now());
      store.transaction(() => {
        store.saveSignedPreKey(kind, signed.record);
        store.saveKyberPreKeys(kind, [lastResort.record], true);
      });
      return { signedPreKey: signed.upload, pqLastResortPreKey: lastResort.upload };
    },
    upload: async (kind, keys) => {
      await o.put(kind, keys);
      // The server replaced both one-time lists with this batch (§11; Signal's server does the same
      // for a full upload): the keys from before are no longer handed out.
      if (keys.preKeys || keys.pqPreKeys) {
        store.markOneTimeKeysReplaced(kind, {
          preKeys: keys.preKeys ? keys.preKeys.map((k) => k.keyId) : null,
          kyber: keys.pqPreKeys ? keys.pqPreKeys.map((k) => k.keyId) : null,
        });
      }
    },
  };
}
