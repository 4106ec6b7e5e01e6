/**
 * The guard registry of numbers claimed through this Node-RED instance (issue 7).
 *
 * A Node-RED instance is often shared: anyone with editor access can configure a `signal-account`.
 * Registering a number that is already registered signs the current registration out, so a number
 * claimed here may only be registered again, or released, by whoever claimed it. "Whoever" is proved
 * by an optional ownership secret, stored only as a salted scrypt hash and compared in constant time.
 *
 * Rules (per E.164 number):
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
 * - Each code request (`requestCode`) and each code submission (`verifyAttempt`) of an attempt goes
 *   through the guard: audited, refused once the attempt is no longer current, and every code
 *   request after the attempt's first counts against the rate limits like an attempt.
 * - `verified`: protected → the same secret is needed to register it again or release it;
 *   unprotected → it must be released first (anyone may release it), so that replacing a working
 *   registration is always deliberate.
 * - A failed re-registration of a verified number leaves it verified: Signal replaces an account only
 *   when POST /v1/registration succeeds (PROTOCOL.md §9), so the old registration is still live.
 * - Rate limits, counted on attempts that pass the ownership check (the ones that would reach Signal),
 *   kept across restarts and releases: `perNumberPerHour` (3) per number and `perInstancePerMinute`
 *   (10) for the instance; refused with RateLimitedError carrying the real wait.
 * - Every operation, allowed or refused, is appended to an audit log (last 1000 entries) that never
 *   holds a secret, a code or a captcha.
 *
 * At rest the whole registry is one AES-256-GCM blob: `"SFGR" ‖ version(1) ‖ kdf(1) ‖ salt(16) ‖
 * nonce(12) ‖ ciphertext ‖ tag(16)`, the header authenticated as associated data, a fresh nonce per
 * write. The key comes from Node-RED's `credentialSecret` (scrypt, salt in the header) when given,
 * else from a 32-byte random key file (HKDF). Writes are atomic (temp file + rename), mode 0600.
 * A file that does not decrypt is refused with GuardRegistryError and left as it is: resetting it
 * would silently drop every protection.
 *
 * One process may open the same file from several config nodes: operations on one path are
 * serialized process-wide and each re-reads the file, so no instance overwrites another's change.
 * (Two Node-RED processes sharing one file are not coordinated: give each its own file.)
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { RateLimitedError } from '../errors';
import { redactString } from '../log';
import { normalizeNumber } from '../directory/number';
import { GuardRefusedError, GuardRegistryError } from './errors';

const scryptAsync = promisify(crypto.scrypt) as (
  password: crypto.BinaryLike,
  salt: crypto.BinaryLike,
  keylen: number,
  options: crypto.ScryptOptions,
) => Promise<Buffer>;

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

export type AuditAction =
  | 'attempt'
  | 'code-request'
  | 'verify'
  | 'verified'
  | 'failed'
  | 'abandoned'
  | 'linked'
  | 'release';
export type AuditOutcome = 'allowed' | 'refused' | 'rate-limited' | 'done' | 'ignored';

export interface AuditEntry {
  at: number;
  number: string;
  action: AuditAction;
  outcome: AuditOutcome;
  /** Why (refusal reason, failure reason); never a secret, code or captcha. */
  reason?: string;
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
const DEFAULT_AUDIT_CAP = 1000;

export const UNPROTECTED_NOTICE =
  'No ownership secret was given: anyone using this Node-RED can register this number again or ' +
  'release it. Give a secret to protect it.';

// ---- secret hashing ----

/** scrypt cost for ownership secrets: N=2^15, r=8, p=1 (32 MiB, tens of ms), 32-byte output. */
const SECRET_SCRYPT = { N: 2 ** 15, r: 8, p: 1 } as const;
/** scrypt cost for deriving the file key from credentialSecret (once per open). */
const KEY_SCRYPT = { N: 2 ** 15, r: 8, p: 1 } as const;
const SCRYPT_MAXMEM = 128 * 1024 * 1024;

interface SecretHash {
  alg: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  hash: string;
}

async function hashSecret(secret: string): Promise<SecretHash> {
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

async function secretMatches(secret: string, stored: SecretHash): Promise<boolean> {
  const expected = Buffer.from(stored.hash, 'base64');
  const actual = await scryptAsync(
    secret.normalize('NFC'),
    Buffer.from(stored.salt, 'base64'),
    expected.length,
    { N: stored.N, r: stored.r, p: stored.p, maxmem: SCRYPT_MAXMEM },
  );
  return actual.length === expected.length && crypto.timingSafeEqual(actual, expected);
}

// ---- file format ----

const MAGIC = Buffer.from('SFGR', 'ascii');
const FORMAT_VERSION = 1;
const KDF_CREDENTIAL_SECRET = 1;
const KDF_KEY_FILE = 2;
const SALT_LEN = 16;
const NONCE_LEN = 12;
const TAG_LEN = 16;
const HEADER_LEN = MAGIC.length + 2 + SALT_LEN + NONCE_LEN;
const HKDF_INFO = Buffer.from('sigflow registration guard v1', 'utf8');

interface StoredRecord {
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

interface GuardData {
  version: 1;
  records: Record<string, StoredRecord>;
  /** Times of attempts that passed the ownership check, per number (last hour). */
  attempts: Record<string, number[]>;
  /** Times of such attempts for the whole instance (last minute). */
  instanceAttempts: number[];
  audit: AuditEntry[];
}

const emptyData = (): GuardData => ({
  version: 1,
  records: {},
  attempts: {},
  instanceAttempts: [],
  audit: [],
});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function validData(v: unknown): v is GuardData {
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

/** Serializes operations on one registry file across every instance in this process. */
const fileLocks = new Map<string, Promise<unknown>>();

function withFileLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const prev = fileLocks.get(file) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => undefined);
  fileLocks.set(file, tail);
  void tail.then(() => {
    if (fileLocks.get(file) === tail) fileLocks.delete(file);
  });
  return run;
}

function errnoCode(e: unknown): string | undefined {
  return isObject(e) && typeof e.code === 'string' ? e.code : undefined;
}

export class GuardRegistry {
  private readonly file: string;
  private readonly keyFile: string;
  private readonly credentialSecret: string | undefined;
  private readonly now: () => number;
  private readonly limits: GuardLimits;
  private readonly pendingTtlMs: number;
  private readonly auditCap: number;
  /** Derived keys by salt (hex): the salt is fixed per file, so this holds one entry in practice. */
  private readonly keys = new Map<string, Buffer>();
  private keyMaterial: Buffer | undefined;
  /** Salt of the file as last read; a new file gets one at open. */
  private salt: Buffer = crypto.randomBytes(SALT_LEN);

  private constructor(opts: GuardRegistryOptions) {
    this.file = path.resolve(opts.file);
    this.keyFile = path.resolve(opts.keyFile ?? `${opts.file}.key`);
    this.credentialSecret = opts.credentialSecret ? opts.credentialSecret : undefined;
    this.now = opts.now ?? Date.now;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.pendingTtlMs = opts.pendingTtlMs ?? PENDING_TTL_MS;
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
    const given = secret ? secret : undefined;
    return this.mutate<AttemptTicket>(async (data) => {
      const now = this.now();
      const rec = this.effective(data.records[e164], now);
      const audit = (outcome: AuditOutcome, reason?: string) =>
        pushAudit(data, { at: now, number: e164, action: 'attempt', outcome, reason });

      let secretHash: SecretHash | undefined;
      let resumeState: 'verified' | undefined;
      let replacesVerified = false;
      if (!rec || rec.state === 'failed') {
        secretHash = given ? await hashSecret(given) : undefined;
      } else if (rec.secret) {
        if (!given || !(await secretMatches(given, rec.secret))) {
          const err = this.refusal(e164, rec, given !== undefined, now);
          audit('refused', err.reason);
          return { error: err };
        }
        secretHash = rec.secret;
        replacesVerified = rec.state === 'verified' || rec.resumeState === 'verified';
        resumeState = replacesVerified ? 'verified' : undefined;
      } else if (rec.state === 'verified' || rec.resumeState === 'verified') {
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
        // Unprotected pending: anyone may retry; a secret given now protects the claim.
        secretHash = given ? await hashSecret(given) : undefined;
      }

      const wait = this.waitSeconds(data, e164, now);
      if (wait > 0) {
        audit('rate-limited', `retry in ${wait} s`);
        return {
          error: new RateLimitedError(
            wait,
            `Registration attempts for ${e164} (at most ${this.limits.perNumberPerHour} per ` +
              `number per hour and ${this.limits.perInstancePerMinute} per minute on this Node-RED)`,
          ),
        };
      }

      (data.attempts[e164] ??= []).push(now);
      data.instanceAttempts.push(now);
      const attemptId = crypto.randomUUID();
      data.records[e164] = {
        state: 'pending',
        createdAt: rec && rec.state !== 'failed' ? rec.createdAt : now,
        updatedAt: now,
        ...(secretHash ? { secret: secretHash } : {}),
        attemptId,
        ...(resumeState ? { resumeState } : {}),
        ...(rec?.via && resumeState ? { via: rec.via } : {}),
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
    await this.mutate(async (data) => {
      const now = this.now();
      const rec = data.records[ticket.number];
      if (!rec || rec.attemptId !== ticket.attemptId) {
        pushAudit(data, {
          at: now,
          number: ticket.number,
          action: 'verified',
          outcome: 'refused',
          reason: 'STALE_ATTEMPT',
        });
        return { error: staleAttempt(ticket.number) };
      }
      data.records[ticket.number] = {
        state: 'verified',
        createdAt: rec.createdAt,
        updatedAt: now,
        ...(rec.secret ? { secret: rec.secret } : {}),
        via: 'registered',
      };
      pushAudit(data, {
        at: now,
        number: ticket.number,
        action: 'verified',
        outcome: 'done',
        ...(note ? { reason: cleanReason(note) } : {}),
      });
      return { value: undefined };
    });
  }

  /**
   * Records that the attempt failed: the server ended its session, or its holder cancelled it (the
   * registrar checks the secret first). The number becomes free again, unless it was verified before
   * this attempt (then it stays verified). A ticket that is no longer current changes nothing.
   */
  async markFailed(ticket: AttemptTicket, reason: string): Promise<void> {
    const why = cleanReason(reason);
    await this.mutate(async (data) => {
      this.endAttempt(data, ticket, why, false);
      return { value: undefined };
    });
  }

  /**
   * Records that the local session of the attempt was given up without its holder's say (another
   * registration started on the same account, the account closed or redeployed, too many wrong codes):
   * the ticket stops counting, an unprotected claim is freed as by markFailed, but a protected claim
   * stays pending for its secret holder until it is verified, released with the secret, or expires.
   */
  async abandon(ticket: AttemptTicket, reason: string): Promise<void> {
    const why = cleanReason(reason);
    await this.mutate(async (data) => {
      this.endAttempt(data, ticket, why, true);
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
    return this.mutate<CodeRequestGrant>(async (data) => {
      const now = this.now();
      const audit = (outcome: AuditOutcome, reason?: string) =>
        pushAudit(data, {
          at: now,
          number: ticket.number,
          action: 'code-request',
          outcome,
          reason,
        });
      const rec = this.current(data, ticket, now);
      if (!rec) {
        audit('refused', 'STALE_ATTEMPT');
        return { error: staleAttempt(ticket.number) };
      }
      const done = rec.codeRequests ?? 0;
      if (done >= 1) {
        const wait = this.waitSeconds(data, ticket.number, now);
        if (wait > 0) {
          audit('rate-limited', `retry in ${wait} s`);
          return {
            error: new RateLimitedError(
              wait,
              `Verification code requests for ${ticket.number} (a re-sent code counts as an ` +
                `attempt: at most ${this.limits.perNumberPerHour} per number per hour and ` +
                `${this.limits.perInstancePerMinute} per minute on this Node-RED)`,
            ),
          };
        }
        (data.attempts[ticket.number] ??= []).push(now);
        data.instanceAttempts.push(now);
      }
      rec.codeRequests = done + 1;
      rec.updatedAt = now;
      audit('allowed', done >= 1 ? `${transport}, re-sent` : transport);
      return { value: done >= 1 ? { countedAt: now } : {} };
    });
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
    await this.mutate(async (data) => {
      const now = this.now();
      const rec = data.records[ticket.number];
      if (rec && rec.attemptId === ticket.attemptId && (rec.codeRequests ?? 0) > 0)
        rec.codeRequests = (rec.codeRequests ?? 0) - 1;
      if (grant.countedAt !== undefined) {
        const t = grant.countedAt;
        const times = data.attempts[ticket.number];
        const i = times ? times.lastIndexOf(t) : -1;
        if (times && i >= 0) times.splice(i, 1);
        if (times && times.length === 0) delete data.attempts[ticket.number];
        const j = data.instanceAttempts.lastIndexOf(t);
        if (j >= 0) data.instanceAttempts.splice(j, 1);
      }
      pushAudit(data, {
        at: now,
        number: ticket.number,
        action: 'code-request',
        outcome: 'refused',
        reason: `not sent by Signal (${why}): not counted`,
      });
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
    await this.mutate(async (data) => {
      const now = this.now();
      const audit = (outcome: AuditOutcome, reason: string) =>
        pushAudit(data, { at: now, number: ticket.number, action: 'verify', outcome, reason });
      if (!this.current(data, ticket, now)) {
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
    await this.mutate(async (data) => {
      pushAudit(data, {
        at: this.now(),
        number: ticket.number,
        action: 'verify',
        outcome: 'refused',
        reason: why,
      });
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
    const given = secret ? secret : undefined;
    await this.mutate(async (data) => {
      const now = this.now();
      const rec = this.effective(data.records[e164], now);
      let secretHash: SecretHash | undefined;
      if (rec?.secret && rec.state !== 'failed') {
        if (!given || !(await secretMatches(given, rec.secret))) {
          const err = this.refusal(e164, rec, given !== undefined, now);
          pushAudit(data, {
            at: now,
            number: e164,
            action: 'linked',
            outcome: 'refused',
            reason: err.reason,
          });
          return { error: err };
        }
        secretHash = rec.secret;
      } else {
        secretHash = given ? await hashSecret(given) : undefined;
      }
      data.records[e164] = {
        state: 'verified',
        createdAt: rec && rec.state !== 'failed' ? rec.createdAt : now,
        updatedAt: now,
        ...(secretHash ? { secret: secretHash } : {}),
        via: 'linked',
      };
      pushAudit(data, { at: now, number: e164, action: 'linked', outcome: 'done' });
      return { value: undefined };
    });
  }

  /**
   * Forgets a claim. A protected claim needs its secret. Attempt counts stay, so releasing does not
   * reset the rate limits. Releasing an unknown number does nothing.
   */
  async release(number: string, secret?: string): Promise<void> {
    const e164 = normalizeNumber(number);
    const given = secret ? secret : undefined;
    await this.mutate(async (data) => {
      const now = this.now();
      const rec = data.records[e164];
      if (!rec) {
        pushAudit(data, {
          at: now,
          number: e164,
          action: 'release',
          outcome: 'ignored',
          reason: 'not claimed',
        });
        return { value: undefined };
      }
      const eff = this.effective(rec, now);
      if (rec.secret && eff && eff.state !== 'failed') {
        if (!given || !(await secretMatches(given, rec.secret))) {
          const err = new GuardRefusedError(
            e164,
            given ? 'WRONG_SECRET' : 'NUMBER_CLAIMED',
            given
              ? `The ownership secret for ${e164} does not match: enter the secret it was claimed ` +
                  'with to release it.'
              : `${e164} is protected by an ownership secret: enter it to release the number.`,
          );
          pushAudit(data, {
            at: now,
            number: e164,
            action: 'release',
            outcome: 'refused',
            reason: err.reason,
          });
          return { error: err };
        }
      }
      delete data.records[e164];
      pushAudit(data, { at: now, number: e164, action: 'release', outcome: 'done' });
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
          const rec = this.effective(data.records[number], now);
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

  // ---- rules ----

  /** The record as it stands at `now`: an expired pending claim falls back to verified or failed. */
  private effective(rec: StoredRecord | undefined, now: number): StoredRecord | undefined {
    if (!rec || rec.state !== 'pending' || now - rec.updatedAt < this.pendingTtlMs) return rec;
    if (rec.resumeState === 'verified') {
      return {
        state: 'verified',
        createdAt: rec.createdAt,
        updatedAt: rec.updatedAt,
        ...(rec.secret ? { secret: rec.secret } : {}),
        ...(rec.via ? { via: rec.via } : {}),
      };
    }
    return {
      state: 'failed',
      createdAt: rec.createdAt,
      updatedAt: rec.updatedAt,
      reason: 'expired',
    };
  }

  /** The ticket's record while it is still the live pending claim of that attempt. */
  private current(data: GuardData, ticket: AttemptTicket, now: number): StoredRecord | undefined {
    const rec = data.records[ticket.number];
    if (!rec || rec.state !== 'pending' || rec.attemptId !== ticket.attemptId) return undefined;
    return this.effective(rec, now)?.state === 'pending' ? rec : undefined;
  }

  /** Ends an attempt (markFailed, abandon); `keepProtected` holds a protected claim for its holder. */
  private endAttempt(data: GuardData, ticket: AttemptTicket, why: string, keepProtected: boolean) {
    const now = this.now();
    const rec = data.records[ticket.number];
    const action: AuditAction = keepProtected ? 'abandoned' : 'failed';
    if (!rec || rec.attemptId !== ticket.attemptId) {
      pushAudit(data, {
        at: now,
        number: ticket.number,
        action,
        outcome: 'ignored',
        reason: `stale attempt: ${why}`,
      });
      return;
    }
    // (A re-registration of a verified number falls back to verified below: still protected.)
    if (keepProtected && rec.secret && rec.state === 'pending' && rec.resumeState !== 'verified') {
      // The ticket no longer decides anything; the claim keeps its time, so it still expires.
      delete rec.attemptId;
      delete rec.codeRequests;
      pushAudit(data, {
        at: now,
        number: ticket.number,
        action,
        outcome: 'done',
        reason: `${why}; the protected claim stays with its secret holder`,
      });
      return;
    }
    data.records[ticket.number] =
      rec.resumeState === 'verified'
        ? {
            state: 'verified',
            createdAt: rec.createdAt,
            updatedAt: now,
            ...(rec.secret ? { secret: rec.secret } : {}),
            ...(rec.via ? { via: rec.via } : {}),
          }
        : { state: 'failed', createdAt: rec.createdAt, updatedAt: now, reason: why };
    pushAudit(data, { at: now, number: ticket.number, action, outcome: 'done', reason: why });
  }

  private refusal(
    e164: string,
    rec: StoredRecord,
    secretGiven: boolean,
    now: number,
  ): GuardRefusedError {
    if (rec.state === 'pending' && rec.resumeState !== 'verified') {
      const minutes = Math.max(1, Math.ceil((rec.updatedAt + this.pendingTtlMs - now) / MINUTE));
      return new GuardRefusedError(
        e164,
        secretGiven ? 'WRONG_SECRET' : 'NUMBER_CLAIMED',
        `${e164} is being registered through this Node-RED by someone else, protected by their ` +
          `ownership secret${secretGiven ? ', and the secret given does not match' : ''}. Wait ` +
          `until that attempt finishes or expires (in about ${minutes} min), or use their secret.`,
      );
    }
    return new GuardRefusedError(
      e164,
      secretGiven ? 'WRONG_SECRET' : 'NUMBER_CLAIMED',
      secretGiven
        ? `The ownership secret for ${e164} does not match. Enter the secret used when it was ` +
            'registered, or ask whoever registered it to release it.'
        : `${e164} is already registered through this Node-RED and protected by an ownership ` +
            'secret. Enter that secret to register it again, or ask whoever registered it to ' +
            'release it.',
    );
  }

  /** Seconds until one more attempt fits both windows; 0 when it fits now. Prunes old entries. */
  private waitSeconds(data: GuardData, e164: string, now: number): number {
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

  // ---- persistence ----

  /** Runs `fn` on freshly read data under the file lock, then writes it (refusals are audited too). */
  private mutate<T>(fn: (data: GuardData) => Promise<{ value: T } | { error: Error }>): Promise<T> {
    return withFileLock(this.file, async () => {
      const data = await this.load();
      const result = await fn(data);
      if (data.audit.length > this.auditCap)
        data.audit.splice(0, data.audit.length - this.auditCap);
      await this.write(data);
      if ('error' in result) throw result.error;
      return result.value;
    });
  }

  private async load(): Promise<GuardData> {
    let blob: Buffer;
    try {
      blob = await fs.promises.readFile(this.file);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') {
        // Nothing claimed yet; make sure the key exists so the first write can use it.
        await this.keyFor(this.credentialSecret ? KDF_CREDENTIAL_SECRET : KDF_KEY_FILE, this.salt);
        return emptyData();
      }
      throw new GuardRegistryError(
        this.file,
        `The registration registry at ${this.file} cannot be read: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const unreadable = (why: string, cause?: unknown) =>
      new GuardRegistryError(
        this.file,
        `The registration registry at ${this.file} cannot be decrypted: ${why}. It was left ` +
          'as it is; restore it from a backup, or move it away to start an empty registry (every ' +
          'number it protects becomes unprotected).',
        cause ? { cause } : undefined,
      );
    if (blob.length < HEADER_LEN + TAG_LEN || !blob.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw unreadable('it is not a sigflow registration registry, or the file was modified');
    }
    const version = blob[MAGIC.length];
    const kdf = blob[MAGIC.length + 1];
    if (version !== FORMAT_VERSION) {
      throw unreadable(
        `unknown format version ${String(version)} (written by another version of sigflow, or ` +
          'the file was modified)',
      );
    }
    const expected = this.credentialSecret ? KDF_CREDENTIAL_SECRET : KDF_KEY_FILE;
    if (kdf !== expected) {
      throw unreadable(
        kdf === KDF_KEY_FILE
          ? `it was encrypted with the key file ${this.keyFile}, but Node-RED's credential secret ` +
              'was given now (or the file was modified)'
          : kdf === KDF_CREDENTIAL_SECRET
            ? "it was encrypted with Node-RED's credential secret, but none was given now (or " +
              'the file was modified)'
            : 'the file was modified',
      );
    }
    const header = blob.subarray(0, HEADER_LEN);
    const salt = Buffer.from(blob.subarray(MAGIC.length + 2, MAGIC.length + 2 + SALT_LEN));
    const nonce = blob.subarray(HEADER_LEN - NONCE_LEN, HEADER_LEN);
    const tag = blob.subarray(blob.length - TAG_LEN);
    const ciphertext = blob.subarray(HEADER_LEN, blob.length - TAG_LEN);
    const key = await this.keyFor(kdf, salt);
    let plaintext: Buffer;
    try {
      const decipher = crypto.createDecipheriv('aes-256-gcm', key, nonce);
      decipher.setAAD(header);
      decipher.setAuthTag(tag);
      plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch (e) {
      throw unreadable(
        this.credentialSecret
          ? 'wrong credential secret or the file was modified'
          : `wrong key file (${this.keyFile}) or the file was modified`,
        e,
      );
    }
    let data: unknown;
    try {
      data = JSON.parse(plaintext.toString('utf8'));
    } catch (e) {
      throw unreadable('its content is damaged', e);
    }
    if (!validData(data)) throw unreadable('its content is damaged');
    this.salt = salt;
    return data;
  }

  private async write(data: GuardData): Promise<void> {
    const kdf = this.credentialSecret ? KDF_CREDENTIAL_SECRET : KDF_KEY_FILE;
    const key = await this.keyFor(kdf, this.salt);
    const nonce = crypto.randomBytes(NONCE_LEN);
    const header = Buffer.concat([MAGIC, Buffer.from([FORMAT_VERSION, kdf]), this.salt, nonce]);
    const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(header);
    const body = Buffer.concat([
      cipher.update(Buffer.from(JSON.stringify(data), 'utf8')),
      cipher.final(),
    ]);
    const blob = Buffer.concat([header, body, cipher.getAuthTag()]);
    await atomicWrite(this.file, blob).catch((e: unknown) => {
      throw new GuardRegistryError(
        this.file,
        `The registration registry at ${this.file} cannot be written: ${(e as Error).message}`,
        { cause: e },
      );
    });
  }

  private async keyFor(kdf: number, salt: Buffer): Promise<Buffer> {
    const id = `${kdf}:${salt.toString('hex')}`;
    const cached = this.keys.get(id);
    if (cached) return cached;
    let key: Buffer;
    if (kdf === KDF_CREDENTIAL_SECRET) {
      // credentialSecret may be a human-chosen passphrase: a memory-hard KDF, not just HKDF.
      key = await scryptAsync(this.credentialSecret ?? '', salt, 32, {
        ...KEY_SCRYPT,
        maxmem: SCRYPT_MAXMEM,
      });
    } else {
      const material = await this.loadKeyFile();
      key = Buffer.from(crypto.hkdfSync('sha256', material, salt, HKDF_INFO, 32));
    }
    this.keys.set(id, key);
    return key;
  }

  /**
   * Reads the key file, creating it (32 random bytes, mode 0600, folder 0700) only when neither it
   * nor the registry exists: a registry without its key file is refused, never re-keyed.
   */
  private async loadKeyFile(): Promise<Buffer> {
    if (this.keyMaterial) return this.keyMaterial;
    let material: Buffer;
    try {
      material = await fs.promises.readFile(this.keyFile);
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') {
        throw new GuardRegistryError(
          this.file,
          `The registration registry's key file ${this.keyFile} cannot be read: ${(e as Error).message}`,
          { cause: e },
        );
      }
      if (fs.existsSync(this.file)) {
        throw new GuardRegistryError(
          this.file,
          `The registration registry at ${this.file} cannot be decrypted: its key file ` +
            `${this.keyFile} is missing. Restore the key file, or move the registry away to start ` +
            'an empty one (every number it protects becomes unprotected).',
        );
      }
      ensureDir(path.dirname(this.keyFile));
      material = crypto.randomBytes(32);
      try {
        await fs.promises.writeFile(this.keyFile, material, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') {
          throw new GuardRegistryError(
            this.file,
            `The registration registry's key file ${this.keyFile} cannot be created: ` +
              (err as Error).message,
            { cause: err },
          );
        }
        // Another process created it first: use theirs.
        material = await fs.promises.readFile(this.keyFile);
      }
    }
    if (material.length !== 32) {
      throw new GuardRegistryError(
        this.file,
        `The registration registry's key file ${this.keyFile} is damaged (it must hold 32 bytes).`,
      );
    }
    this.keyMaterial = material;
    return material;
  }
}

function ensureDir(dir: string): void {
  if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
}

async function atomicWrite(file: string, blob: Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  const handle = await fs.promises.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(blob);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}

function staleAttempt(number: string): GuardRefusedError {
  return new GuardRefusedError(
    number,
    'STALE_ATTEMPT',
    `The claim on ${number} in this Node-RED's registration registry is no longer this ` +
      "registration's (it expired, or another attempt replaced it): start the registration again.",
  );
}

function pushAudit(data: GuardData, entry: AuditEntry): void {
  const clean: AuditEntry = {
    at: entry.at,
    number: entry.number,
    action: entry.action,
    outcome: entry.outcome,
  };
  if (entry.reason) clean.reason = entry.reason;
  data.audit.push(clean);
}

/** Failure reasons come from callers (often an error message): scrub and bound them. */
function cleanReason(reason: string): string {
  return redactString(String(reason))
    .replace(/signalcaptcha:\/\/\S*/gi, 'signalcaptcha://[redacted]')
    .replace(/\s+/g, ' ')
    .slice(0, 200);
}
