/**
 * The guard registry of numbers claimed through this Node-RED instance (issue 7): the operations the
 * registrar and the admin routes call. What each allows is policy.ts (the owner secret included); how
 * the registry is kept is sealed-file.ts (encrypted at rest), lock.ts (one operation at a time per
 * file in this process) and audit.ts (every operation, allowed or refused, logged without secrets).
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { RateLimitedError } from '../../errors';
import { normalizeNumber } from '../../directory/number';
import { GuardRefusedError } from '../errors';
import {
  type AuditAction,
  type AuditEntry,
  type AuditOutcome,
  cleanReason,
  DEFAULT_AUDIT_CAP,
  pushAudit,
  trimAudit,
} from './audit';
import { withFileLock } from './lock';

import {
  type AttemptTicket,
  type CodeRequestGrant,
  countAttempt,
  DEFAULT_LIMITS,
  emptyData,
  type GuardData,
  type GuardLimits,
  type GuardListEntry,
  GuardPolicy,
  PENDING_TTL_MS,
  protectWith,
  refusedOwner,
  type SecretHash,
  staleAttempt,
  uncountAttempt,
  UNPROTECTED_NOTICE,
  validData,
  verifiedRecord,
} from './policy';
import { ensureDir, SealedFile } from './sealed-file';

export interface GuardRegistryOptions {
  /** The encrypted registry file. Its folder is created with mode 0700 when missing. */
  file: string;
  /** Node-RED's credentialSecret; empty or false means "not set" (then the key file is used). */
  credentialSecret?: string | false;
  /** Key file used when no credentialSecret is given; default `<file>.key`. */
  keyFile?: string;
  now?: () => number;
  limits?: Partial<GuardLimits>;
  /** How long a pending claim holds (ms); default PENDING_TTL_MS (one hour). */
  pendingTtlMs?: number;
  /** Audit entries kept (the newest); default 1000. */
  auditCap?: number;
}

type Outcome<T> = { value: T } | { error: Error };

/** What one operation on one number works with (see step()). */
interface Step {
  /** The registry as just read; written back once the operation returns. */
  data: GuardData;
  now: number;
  audit: (outcome: AuditOutcome, reason?: string) => void;
}

export class GuardRegistry {
  private readonly sealed: SealedFile;
  private readonly now: () => number;
  private readonly policy: GuardPolicy;
  private readonly auditCap: number;

  private constructor(opts: GuardRegistryOptions) {
    this.sealed = new SealedFile(opts);
    this.now = opts.now ?? Date.now;
    this.policy = new GuardPolicy(
      { ...DEFAULT_LIMITS, ...opts.limits },
      opts.pendingTtlMs ?? PENDING_TTL_MS,
    );
    this.auditCap = Math.max(1, opts.auditCap ?? DEFAULT_AUDIT_CAP);
  }

  /**
   * Opens (or starts) the registry. A missing file starts empty; a file that cannot be decrypted
   * or parsed is refused with GuardRegistryError and left untouched.
   */
  static async open(opts: GuardRegistryOptions): Promise<GuardRegistry> {
    const reg = new GuardRegistry(opts);
    await withFileLock(reg.file, async () => {
      ensureDir(path.dirname(reg.file));
      await reg.load();
    });
    return reg;
  }

  private get file(): string {
    return this.sealed.file;
  }

  /** Where the registry lives (for messages and the UI). */
  get path(): string {
    return this.file;
  }

  /**
   * Checks that `number` may be registered now and claims it as pending. Throws GuardRefusedError
   * (claimed by someone else, wrong secret) or RateLimitedError (with the real wait).
   */
  async beginAttempt(number: string, secret?: string): Promise<AttemptTicket> {
    const e164 = normalizeNumber(number);
    return this.step<AttemptTicket>(e164, 'attempt', async ({ data, now, audit }) => {
      let secretHash: SecretHash | undefined;
      let resumeState: 'verified' | undefined;
      let replacesVerified = false;
      const { live, verdict } = await this.policy.claim(data, e164, secret, now);
      if (refusedOwner(verdict) && live) {
        const err = this.policy.refusal(e164, live, verdict, now);
        audit('refused', err.reason);
        return { error: err };
      } else if (verdict === 'owner' && live) {
        secretHash = live.secret;
        replacesVerified = live.state === 'verified' || live.resumeState === 'verified';
        resumeState = replacesVerified ? 'verified' : undefined;
      } else if (live && (live.state === 'verified' || live.resumeState === 'verified')) {
        // Unprotected but verified: replacing a working registration must be deliberate.
        const err = new GuardRefusedError(
          e164,
          'NUMBER_CLAIMED',
          `${e164} is already registered through this Node-RED (without an ownership secret). ` +
            'Registering it again signs that registration out: release the number first if you ' +
            'really mean to replace it.',
        );
        audit('refused', err.reason);
        return { error: err };
      } else {
        // Free, or unprotected pending (anyone may retry): a secret given now protects the claim.
        secretHash = await protectWith(secret);
      }

      const wait = this.policy.waitSeconds(data, e164, now);
      if (wait > 0) {
        audit('rate-limited', `retry in ${wait} s`);
        return {
          error: new RateLimitedError(
            wait,
            `Registration attempts for ${e164} (${this.policy.limitsText()})`,
          ),
        };
      }

      countAttempt(data, e164, now);
      const attemptId = crypto.randomUUID();
      data.records[e164] = {
        state: 'pending',
        createdAt: live ? live.createdAt : now,
        updatedAt: now,
        ...(secretHash ? { secret: secretHash } : {}),
        attemptId,
        ...(resumeState ? { resumeState } : {}),
        ...(live?.via && resumeState ? { via: live.via } : {}),
      };
      audit('allowed', replacesVerified ? 'replaces a verified registration' : undefined);
      const ticket: AttemptTicket = {
        number: e164,
        attemptId,
        protected: secretHash !== undefined,
        replacesVerified,
        ...(secretHash ? {} : { notice: UNPROTECTED_NOTICE }),
      };
      return { value: ticket };
    });
  }

  /** Records that the attempt succeeded (POST /v1/registration answered 200); `note` is audited. */
  async markVerified(ticket: AttemptTicket, note?: string): Promise<void> {
    await this.step(ticket.number, 'verified', async ({ data, now, audit }) => {
      const rec = data.records[ticket.number];
      if (!rec || rec.attemptId !== ticket.attemptId) {
        audit('refused', 'STALE_ATTEMPT');
        return { error: staleAttempt(ticket.number) };
      }
      data.records[ticket.number] = verifiedRecord(rec, now, 'registered');
      audit('done', note ? cleanReason(note) : undefined);
      return { value: undefined };
    });
  }

  /**
   * Records that the attempt failed: the server ended its session, or its holder cancelled it (the
   * registrar checks the secret first). The number becomes free again, unless it was verified before
   * this attempt (then it stays verified). A ticket that is no longer current changes nothing.
   */
  async markFailed(ticket: AttemptTicket, reason: string): Promise<void> {
    await this.endAttempt(ticket, reason, false);
  }

  /**
   * Records that the local session of the attempt was given up without its holder's say (another
   * registration started on the same account, the account closed or redeployed, too many wrong codes):
   * the ticket stops counting, an unprotected claim is freed as by markFailed, but a protected claim
   * stays pending for its secret holder until it is verified, released with the secret, or expires.
   */
  async abandon(ticket: AttemptTicket, reason: string): Promise<void> {
    await this.endAttempt(ticket, reason, true);
  }

  private async endAttempt(ticket: AttemptTicket, reason: string, keepProtected: boolean) {
    const why = cleanReason(reason);
    await this.mutate(async (data) => {
      this.policy.endAttempt(data, ticket, why, keepProtected, this.now());
      return { value: undefined };
    });
  }

  /**
   * Lets the attempt ask Signal for a (new) verification code. The attempt's first code request is
   * covered by beginAttempt; every later one (a re-send) counts against the same rate limits. Each
   * is audited (the transport, never the code). Renews the pending claim. Throws RateLimitedError
   * with the wait, or GuardRefusedError (STALE_ATTEMPT) when the claim is no longer this attempt's.
   * When Signal then does not send the code, hand the grant back to codeRequestFailed: only codes
   * Signal accepted to send count.
   */
  async requestCode(ticket: AttemptTicket, transport: 'sms' | 'voice'): Promise<CodeRequestGrant> {
    return this.step<CodeRequestGrant>(
      ticket.number,
      'code-request',
      async ({ data, now, audit }) => {
        const rec = this.policy.current(data, ticket, now);
        if (!rec) {
          audit('refused', 'STALE_ATTEMPT');
          return { error: staleAttempt(ticket.number) };
        }
        const done = rec.codeRequests ?? 0;
        if (done >= 1) {
          const wait = this.policy.waitSeconds(data, ticket.number, now);
          if (wait > 0) {
            audit('rate-limited', `retry in ${wait} s`);
            return {
              error: new RateLimitedError(
                wait,
                `Verification code requests for ${ticket.number} (a re-sent code counts as an ` +
                  `attempt: ${this.policy.limitsText()})`,
              ),
            };
          }
          countAttempt(data, ticket.number, now);
        }
        rec.codeRequests = done + 1;
        rec.updatedAt = now;
        audit('allowed', done >= 1 ? `${transport}, re-sent` : transport);
        return { value: done >= 1 ? { countedAt: now } : {} };
      },
    );
  }

  /**
   * Signal did not send the code of a request requestCode allowed (its answer was a refusal, or no
   * answer came): the request is taken back, so the user's retry is not a re-send and a re-send
   * that failed does not use up the rate limits. The allowed entry stays in the audit log, followed
   * by this one. The rate-limit times are handed back even when the ticket is no longer current:
   * they were this request's.
   */
  async codeRequestFailed(
    ticket: AttemptTicket,
    grant: CodeRequestGrant,
    reason: string,
  ): Promise<void> {
    const why = cleanReason(reason);
    await this.step(ticket.number, 'code-request', async ({ data, audit }) => {
      const rec = data.records[ticket.number];
      if (rec && rec.attemptId === ticket.attemptId && (rec.codeRequests ?? 0) > 0)
        rec.codeRequests = (rec.codeRequests ?? 0) - 1;
      if (grant.countedAt !== undefined) uncountAttempt(data, ticket.number, grant.countedAt);
      audit('refused', `not sent by Signal (${why}): not counted`);
      return { value: undefined };
    });
  }

  /**
   * Audits one submission of a verification code (never the code itself) before it reaches Signal,
   * and refuses it (STALE_ATTEMPT) when the claim is no longer this attempt's: a session whose claim
   * expired and was taken by someone else must not register the number. `guess` numbers the
   * submissions of this session; `'account-retry'` is a retry of creating the account after Signal
   * verified the code (nothing is submitted, but the number is registered: the claim must hold).
   */
  async verifyAttempt(ticket: AttemptTicket, guess: number | 'account-retry'): Promise<void> {
    await this.step(ticket.number, 'verify', async ({ data, now, audit }) => {
      if (!this.policy.current(data, ticket, now)) {
        audit('refused', 'STALE_ATTEMPT');
        return { error: staleAttempt(ticket.number) };
      }
      audit(
        'allowed',
        guess === 'account-retry'
          ? 'account creation retried (code already verified)'
          : `code submission ${guess}`,
      );
      return { value: undefined };
    });
  }

  /** Audits the answer to a code submission: a wrong code, or another refusal (never the code). */
  async verifyRefused(ticket: AttemptTicket, reason: string): Promise<void> {
    const why = cleanReason(reason);
    await this.step(ticket.number, 'verify', async ({ audit }) => {
      audit('refused', why);
      return { value: undefined };
    });
  }

  /**
   * Records a number linked (as a secondary device) through this instance as verified. Linking does
   * not replace the number's registration, so no rate limit applies; a record protected by another
   * secret is still refused, and kept.
   */
  async recordLinked(number: string, secret?: string): Promise<void> {
    const e164 = normalizeNumber(number);
    await this.step(e164, 'linked', async ({ data, now, audit }) => {
      const { live, verdict } = await this.policy.claim(data, e164, secret, now);
      if (refusedOwner(verdict) && live) {
        const err = this.policy.refusal(e164, live, verdict, now);
        audit('refused', err.reason);
        return { error: err };
      }
      const secretHash = verdict === 'owner' ? live?.secret : await protectWith(secret);
      data.records[e164] = verifiedRecord(
        { createdAt: live ? live.createdAt : now, ...(secretHash ? { secret: secretHash } : {}) },
        now,
        'linked',
      );
      audit('done');
      return { value: undefined };
    });
  }

  /**
   * Forgets a claim. A protected claim needs its secret. Attempt counts stay, so releasing does not
   * reset the rate limits. Releasing an unknown number does nothing.
   */
  async release(number: string, secret?: string): Promise<void> {
    const e164 = normalizeNumber(number);
    await this.step(e164, 'release', async ({ data, now, audit }) => {
      const rec = data.records[e164];
      if (!rec) {
        audit('ignored', 'not claimed');
        return { value: undefined };
      }
      const { verdict } = await this.policy.claim(data, e164, secret, now);
      if (refusedOwner(verdict)) {
        const err = new GuardRefusedError(
          e164,
          verdict,
          verdict === 'WRONG_SECRET'
            ? `The ownership secret for ${e164} does not match: enter the secret it was claimed ` +
                'with to release it.'
            : `${e164} is protected by an ownership secret: enter it to release the number.`,
        );
        audit('refused', err.reason);
        return { error: err };
      }
      delete data.records[e164];
      audit('done');
      return { value: undefined };
    });
  }

  /** Every claimed number, without hashes. Expired pending claims show the state they fell back to. */
  async list(): Promise<GuardListEntry[]> {
    return withFileLock(this.file, async () => {
      const data = await this.load();
      const now = this.now();
      return Object.keys(data.records)
        .sort()
        .flatMap((number) => {
          const rec = this.policy.effective(data.records[number], now);
          if (!rec) return [];
          return [
            {
              number,
              state: rec.state,
              createdAt: rec.createdAt,
              updatedAt: rec.updatedAt,
              protected: rec.secret !== undefined && rec.state !== 'failed',
              ...(rec.via ? { via: rec.via } : {}),
            },
          ];
        });
    });
  }

  /** The audit log, oldest first (at most the last 1000 entries). */
  async audit(): Promise<AuditEntry[]> {
    return withFileLock(this.file, async () => (await this.load()).audit.map((e) => ({ ...e })));
  }

  // ---- persistence ----

  /** mutate() for one operation on one number: `audit` logs it under `action`, at `now`. */
  private step<T>(
    number: string,
    action: AuditAction,
    fn: (step: Step) => Promise<Outcome<T>>,
  ): Promise<T> {
    return this.mutate((data) => {
      const now = this.now();
      const audit = (outcome: AuditOutcome, reason?: string) =>
        pushAudit(data.audit, { at: now, number, action, outcome, reason });
      return fn({ data, now, audit });
    });
  }

  /** Runs `fn` on freshly read data under the file lock, then writes it (refusals are audited too). */
  private mutate<T>(fn: (data: GuardData) => Promise<Outcome<T>>): Promise<T> {
    return withFileLock(this.file, async () => {
      const data = await this.load();
      const result = await fn(data);
      trimAudit(data.audit, this.auditCap);
      await this.sealed.write(data);
      if ('error' in result) throw result.error;
      return result.value;
    });
  }

  private async load(): Promise<GuardData> {
    return (await this.sealed.read(validData)) ?? emptyData();
  }
}
