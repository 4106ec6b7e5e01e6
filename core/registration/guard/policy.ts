/**
 * The guard's policy: what a claim on a number allows, per E.164 number (issue 7).
 *
 * A Node-RED instance is often shared: anyone with editor access can configure a `signal-account`.
 * Registering a number that is already registered signs the current registration out, so a number
 * claimed here may only be registered again, or released, by whoever claimed it. "Whoever" is proved
 * by an optional ownership secret, kept only as a salted scrypt hash. `checkOwner` below is the one
 * place a given secret is compared with a claim's: for the registry's records (attempt, link,
 * release) and for the registrar's pending registration (resume, code submission, cancel) alike.
 *
 * - no record, or `failed`: free; an attempt claims it as `pending`.
 * - `pending`: protected (claimed with a secret) → only the same secret may retry; unprotected → anyone
 *   may retry (no secret at claim = no protection), and a retry with a secret protects it. A pending
 *   claim ends when it is verified, when the server ends its session (markFailed), when its holder
 *   cancels (markFailed after the registrar checked the secret) or releases it with the secret, or
 *   when it expires after `pendingTtlMs` (default 1 h, see PENDING_TTL_MS).
 * - Abandoning the local session (another registration started on the same account, a redeploy, the
 *   editor's temporary client timing out) is `abandon()`: it frees an unprotected claim, but never a
 *   protected one, which stays pending for its secret holder until one of the ends above. Otherwise
 *   anyone with editor access could free someone else's protected claim by starting another number.
 * - Each code request and each code submission of an attempt goes through the guard: audited,
 *   refused once the attempt is no longer current, and every code request after the attempt's first
 *   counts against the rate limits like an attempt.
 * - `verified`: protected → the same secret is needed to register it again or release it;
 *   unprotected → it must be released first (anyone may release it), so that replacing a working
 *   registration is always deliberate.
 * - A failed re-registration of a verified number leaves it verified: Signal replaces an account only
 *   when POST /v1/registration succeeds (PROTOCOL.md §9), so the old registration is still live.
 * - Rate limits, counted on attempts that pass the ownership check (the ones that would reach Signal),
 *   kept across restarts and releases: `perNumberPerHour` (3) per number and `perInstancePerMinute`
 *   (10) for the instance; refused with RateLimitedError carrying the real wait.
 */
import crypto from 'node:crypto';
import { GuardRefusedError } from '../errors';
import { type AuditAction, type AuditEntry, pushAudit } from './audit';
import { SCRYPT_MAXMEM, scryptAsync } from './scrypt';

export type GuardState = 'pending' | 'verified' | 'failed';

export interface GuardListEntry {
  number: string;
  state: GuardState;
  /** ms since the epoch */
  createdAt: number;
  updatedAt: number;
  /** Claimed with an ownership secret. */
  protected: boolean;
  /** How the number came to be verified here (absent while never verified). */
  via?: 'registered' | 'linked';
}

/** Proof that an attempt passed the guard; pass it back to markVerified / markFailed. */
export interface AttemptTicket {
  readonly number: string;
  readonly attemptId: string;
  /** Whether the claim is protected by an ownership secret. */
  readonly protected: boolean;
  /** True when this attempt would replace a registration verified through this instance. */
  readonly replacesVerified: boolean;
  /** Text for the UI, e.g. that an unprotected claim can be taken over by anyone. */
  readonly notice?: string;
}

/** What requestCode counted for one code request; give it back to codeRequestFailed. */
export interface CodeRequestGrant {
  /** When the request was counted against the rate limits (a re-send); absent for the first one. */
  readonly countedAt?: number;
}

export interface GuardLimits {
  perNumberPerHour: number;
  perInstancePerMinute: number;
}

export const DEFAULT_LIMITS: GuardLimits = { perNumberPerHour: 3, perInstancePerMinute: 10 };
const HOUR = 3_600_000;
const MINUTE = 60_000;
/**
 * How long a pending claim holds without activity (each code request renews it): one hour. Signal's
 * verification sessions live minutes to tens of minutes and each code request extends them, so an
 * hour outlasts any session the holder can still finish, and their claim is never freed under them
 * while they wait for an SMS; it is also the per-number rate-limit window, so holding a number
 * longer would not let anyone else try sooner anyway. Beyond that an abandoned claim must not lock
 * the number.
 */
export const PENDING_TTL_MS = HOUR;

export const UNPROTECTED_NOTICE =
  'No ownership secret was given: anyone using this Node-RED can register this number again or ' +
  'release it. Give a secret to protect it.';

// ---- the owner secret ----

/** scrypt cost for ownership secrets: N=2^15, r=8, p=1 (32 MiB, tens of ms), 32-byte output. */
const SECRET_SCRYPT = { N: 2 ** 15, r: 8, p: 1 } as const;

export interface SecretHash {
  alg: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  hash: string;
}

/**
 * What the holder of a claim may do with the secret given:
 * - `unprotected`: the claim has no secret (what anyone may then do is the caller's rule);
 * - `owner`: the secret given is the claim's;
 * - `NUMBER_CLAIMED`: the claim is protected and no secret was given;
 * - `WRONG_SECRET`: the claim is protected and another secret was given.
 */
export type OwnerVerdict = 'unprotected' | 'owner' | 'NUMBER_CLAIMED' | 'WRONG_SECRET';

/** An empty secret is no secret: callers pass form fields through as they are. */
export function givenSecret(secret: string | undefined): string | undefined {
  return secret ? secret : undefined;
}

export async function hashSecret(secret: string): Promise<SecretHash> {
  const salt = crypto.randomBytes(16);
  const hash = await scryptAsync(secret.normalize('NFC'), salt, 32, {
    ...SECRET_SCRYPT,
    maxmem: SCRYPT_MAXMEM,
  });
  return {
    alg: 'scrypt',
    ...SECRET_SCRYPT,
    salt: salt.toString('base64'),
    hash: hash.toString('base64'),
  };
}

/** The hash a new claim keeps for `secret` (none when no secret is given). */
export async function protectWith(secret: string | undefined): Promise<SecretHash | undefined> {
  const given = givenSecret(secret);
  return given ? hashSecret(given) : undefined;
}

export async function checkOwner(
  stored: SecretHash | undefined,
  secret: string | undefined,
): Promise<OwnerVerdict> {
  if (!stored) return 'unprotected';
  const given = givenSecret(secret);
  if (!given) return 'NUMBER_CLAIMED';
  const expected = Buffer.from(stored.hash, 'base64');
  const actual = await scryptAsync(
    given.normalize('NFC'),
    Buffer.from(stored.salt, 'base64'),
    expected.length,
    { N: stored.N, r: stored.r, p: stored.p, maxmem: SCRYPT_MAXMEM },
  );
  return actual.length === expected.length && crypto.timingSafeEqual(actual, expected)
    ? 'owner'
    : 'WRONG_SECRET';
}

/** The verdicts that refuse: a protected claim and not its secret. */
export function refusedOwner(verdict: OwnerVerdict): verdict is 'NUMBER_CLAIMED' | 'WRONG_SECRET' {
  return verdict === 'NUMBER_CLAIMED' || verdict === 'WRONG_SECRET';
}

// ---- records ----

export interface StoredRecord {
  state: GuardState;
  createdAt: number;
  updatedAt: number;
  secret?: SecretHash;
  /** The pending attempt's id; tickets must match it. */
  attemptId?: string;
  /** Code requests made under the pending attempt (the first is covered by the attempt itself). */
  codeRequests?: number;
  /** When a verified number is being registered again: the state to fall back to. */
  resumeState?: 'verified';
  via?: 'registered' | 'linked';
  reason?: string;
}

/** The registry's whole content, as sealed in its file. */
export interface GuardData {
  version: 1;
  records: Record<string, StoredRecord>;
  /** Times of attempts that passed the ownership check, per number (last hour). */
  attempts: Record<string, number[]>;
  /** Times of such attempts for the whole instance (last minute). */
  instanceAttempts: number[];
  audit: AuditEntry[];
}

export const emptyData = (): GuardData => ({
  version: 1,
  records: {},
  attempts: {},
  instanceAttempts: [],
  audit: [],
});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function validData(v: unknown): v is GuardData {
  if (!isObject(v) || v.version !== 1) return false;
  if (!isObject(v.records) || !isObject(v.attempts)) return false;
  if (!Array.isArray(v.instanceAttempts) || !Array.isArray(v.audit)) return false;
  for (const r of Object.values(v.records)) {
    if (!isObject(r) || !['pending', 'verified', 'failed'].includes(r.state as string))
      return false;
    if (typeof r.createdAt !== 'number' || typeof r.updatedAt !== 'number') return false;
  }
  return true;
}

/** A verified record built from `rec`, keeping its secret and how it was verified. */
export function verifiedRecord(
  rec: Pick<StoredRecord, 'createdAt' | 'secret' | 'via'>,
  updatedAt: number,
  via: StoredRecord['via'] = rec.via,
): StoredRecord {
  return {
    state: 'verified',
    createdAt: rec.createdAt,
    updatedAt,
    ...(rec.secret ? { secret: rec.secret } : {}),
    ...(via ? { via } : {}),
  };
}

export function staleAttempt(number: string): GuardRefusedError {
  return new GuardRefusedError(
    number,
    'STALE_ATTEMPT',
    `The claim on ${number} in this Node-RED's registration registry is no longer this ` +
      "registration's (it expired, or another attempt replaced it): start the registration again.",
  );
}

/** The time-dependent rules, under the limits and claim lifetime of one registry. */
export class GuardPolicy {
  constructor(
    readonly limits: GuardLimits,
    private readonly pendingTtlMs: number,
  ) {}

  /** The record as it stands at `now`: an expired pending claim falls back to verified or failed. */
  effective(rec: StoredRecord | undefined, now: number): StoredRecord | undefined {
    if (!rec || rec.state !== 'pending' || now - rec.updatedAt < this.pendingTtlMs) return rec;
    if (rec.resumeState === 'verified') return verifiedRecord(rec, rec.updatedAt);
    return {
      state: 'failed',
      createdAt: rec.createdAt,
      updatedAt: rec.updatedAt,
      reason: 'expired',
    };
  }

  /**
   * The live claim on `e164` at `now` (none when it is failed or expired: the number is free) and
   * what the owner check says of `secret` for it.
   */
  async claim(
    data: GuardData,
    e164: string,
    secret: string | undefined,
    now: number,
  ): Promise<{ live: StoredRecord | undefined; verdict: OwnerVerdict }> {
    const rec = this.effective(data.records[e164], now);
    const live = rec && rec.state !== 'failed' ? rec : undefined;
    return { live, verdict: live ? await checkOwner(live.secret, secret) : 'unprotected' };
  }

  /** The ticket's record while it is still the live pending claim of that attempt. */
  current(data: GuardData, ticket: AttemptTicket, now: number): StoredRecord | undefined {
    const rec = data.records[ticket.number];
    if (!rec || rec.state !== 'pending' || rec.attemptId !== ticket.attemptId) return undefined;
    return this.effective(rec, now)?.state === 'pending' ? rec : undefined;
  }

  /** Ends an attempt (markFailed, abandon); `keepProtected` holds a protected claim for its holder. */
  endAttempt(
    data: GuardData,
    ticket: AttemptTicket,
    why: string,
    keepProtected: boolean,
    now: number,
  ): void {
    const rec = data.records[ticket.number];
    const action: AuditAction = keepProtected ? 'abandoned' : 'failed';
    const audit = (outcome: 'done' | 'ignored', reason: string) =>
      pushAudit(data.audit, { at: now, number: ticket.number, action, outcome, reason });
    if (!rec || rec.attemptId !== ticket.attemptId) {
      audit('ignored', `stale attempt: ${why}`);
      return;
    }
    // (A re-registration of a verified number falls back to verified below: still protected.)
    if (keepProtected && rec.secret && rec.state === 'pending' && rec.resumeState !== 'verified') {
      // The ticket no longer decides anything; the claim keeps its time, so it still expires.
      delete rec.attemptId;
      delete rec.codeRequests;
      audit('done', `${why}; the protected claim stays with its secret holder`);
      return;
    }
    data.records[ticket.number] =
      rec.resumeState === 'verified'
        ? verifiedRecord(rec, now)
        : { state: 'failed', createdAt: rec.createdAt, updatedAt: now, reason: why };
    audit('done', why);
  }

  /** Why a claim protected by another secret refuses an attempt or a link. */
  refusal(
    e164: string,
    rec: StoredRecord,
    reason: 'NUMBER_CLAIMED' | 'WRONG_SECRET',
    now: number,
  ): GuardRefusedError {
    const secretGiven = reason === 'WRONG_SECRET';
    if (rec.state === 'pending' && rec.resumeState !== 'verified') {
      const minutes = Math.max(1, Math.ceil((rec.updatedAt + this.pendingTtlMs - now) / MINUTE));
      return new GuardRefusedError(
        e164,
        reason,
        `${e164} is being registered through this Node-RED by someone else, protected by their ` +
          `ownership secret${secretGiven ? ', and the secret given does not match' : ''}. Wait ` +
          `until that attempt finishes or expires (in about ${minutes} min), or use their secret.`,
      );
    }
    return new GuardRefusedError(
      e164,
      reason,
      secretGiven
        ? `The ownership secret for ${e164} does not match. Enter the secret used when it was ` +
            'registered, or ask whoever registered it to release it.'
        : `${e164} is already registered through this Node-RED and protected by an ownership ` +
            'secret. Enter that secret to register it again, or ask whoever registered it to ' +
            'release it.',
    );
  }

  /** Seconds until one more attempt fits both windows; 0 when it fits now. Prunes old entries. */
  waitSeconds(data: GuardData, e164: string, now: number): number {
    for (const [n, times] of Object.entries(data.attempts)) {
      const kept = times.filter((t) => now - t < HOUR);
      if (kept.length) data.attempts[n] = kept;
      else delete data.attempts[n];
    }
    data.instanceAttempts = data.instanceAttempts.filter((t) => now - t < MINUTE);
    const waitFor = (times: number[], max: number, window: number) => {
      if (times.length < max) return 0;
      const sorted = [...times].sort((a, b) => a - b);
      // The attempt that must leave the window before one more fits.
      const oldest = sorted[sorted.length - max] ?? now;
      return Math.max(1, Math.ceil((oldest + window - now) / 1000));
    };
    return Math.max(
      waitFor(data.attempts[e164] ?? [], this.limits.perNumberPerHour, HOUR),
      waitFor(data.instanceAttempts, this.limits.perInstancePerMinute, MINUTE),
    );
  }

  /** The limits as the user reads them, for a RateLimitedError's message. */
  limitsText(): string {
    return (
      `at most ${this.limits.perNumberPerHour} per number per hour and ` +
      `${this.limits.perInstancePerMinute} per minute on this Node-RED`
    );
  }
}

/** Counts one attempt (or re-sent code) at `now` against both rate-limit windows. */
export function countAttempt(data: GuardData, number: string, now: number): void {
  (data.attempts[number] ??= []).push(now);
  data.instanceAttempts.push(now);
}

/** Takes back the count made at `t` by countAttempt (a code Signal did not send). */
export function uncountAttempt(data: GuardData, number: string, t: number): void {
  const times = data.attempts[number];
  const i = times ? times.lastIndexOf(t) : -1;
  if (times && i >= 0) times.splice(i, 1);
  if (times && times.length === 0) delete data.attempts[number];
  const j = data.instanceAttempts.lastIndexOf(t);
  if (j >= 0) data.instanceAttempts.splice(j, 1);
}
