/**
 * Prekey maintenance (PROTOCOL.md §4): after connecting and then periodically, check the server's
 * counts of our one-time EC and Kyber prekeys and refill below a threshold; rotate the signed prekey
 * and the Kyber last-resort key every two days. Both identities (ACI and PNI) are maintained.
 *
 * The server replaces BOTH one-time lists on every `PUT /v2/keys` that carries one (and the mock
 * insists `preKeys` is present, §11), so a refill always uploads a fresh batch of each.
 */
import type { Logger } from '../log';

export type IdentityKind = 'aci' | 'pni';

export interface UploadPreKey {
  keyId: number;
  publicKey: string;
}
export interface UploadSignedKey extends UploadPreKey {
  signature: string;
}
export interface KeyUpload {
  preKeys?: UploadPreKey[];
  pqPreKeys?: UploadSignedKey[];
  signedPreKey?: UploadSignedKey;
  pqLastResortPreKey?: UploadSignedKey;
}

export interface PreKeyPorts {
  counts(kind: IdentityKind): Promise<{ count: number; pqCount: number }>;
  /** Generates `count` one-time EC and Kyber prekeys, stores them, returns their upload form. */
  generateOneTime(kind: IdentityKind, count: number): Pick<KeyUpload, 'preKeys' | 'pqPreKeys'>;
  /** When the current signed prekey was made (ms), or null if none. */
  signedPreKeyCreatedAt(kind: IdentityKind): number | null;
  /** Generates and stores a new signed prekey and Kyber last-resort key; returns their upload form. */
  generateRotation(kind: IdentityKind): Pick<KeyUpload, 'signedPreKey' | 'pqLastResortPreKey'>;
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
  private stopped = false;

  constructor(private readonly opts: PreKeyMaintenanceOptions) {}

  /** Checks now (coalescing concurrent calls); never throws: failures are logged and retried later. */
  check(): Promise<void> {
    this.running ??= this.checkAll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Starts the periodic check (and runs one now). */
  start(): void {
    if (this.stopped || this.timer) return;
    void this.check();
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
    if (Object.keys(upload).length > 0) await ports.upload(kind, upload);
  }
}
