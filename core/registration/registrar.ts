/**
 * The steps of registering a primary number (PROTOCOL.md §9) as one small state machine per client,
 * with the guard registry around it: start() claims the number in the guard (when one is given),
 * creates the verification session, submits the captcha and asks for the code; verify() submits the
 * code, lets the caller create the account (keys, POST /v1/registration, saving it), then marks the
 * claim verified. Answers the user must act on (captcha, wait, wrong code, registration lock) come
 * back as typed errors and leave the registration where it was, so the user can go on from there;
 * answers that end the session mark the claim failed.
 *
 * Every request that reaches Signal for the attempt passes the guard first: each code request
 * (re-sends count against the rate limits) and each code submission (audited; at most
 * MAX_WRONG_CODES wrong codes per session, then the session is given up). Giving up the local
 * session without the holder's say (another number started on this account, the account closed)
 * abandons the claim: an unprotected claim is freed, a protected one stays with its secret holder.
 *
 * The ownership secret is never kept: only its salted hash, so that a later call on the same pending
 * registration (resume, code, cancel) is checked by the guard policy's checkOwner, the same check
 * the guard registry makes for its records.
 */
import { InvalidInputError, SignalError } from '../errors';
import { normalizeNumber } from '../directory/number';
import type { Logger } from '../log';
import type { ChatRequester } from '../net/types';
import {
  CaptchaRequiredError,
  CodeAttemptsExhaustedError,
  GuardRefusedError,
  NotOwnerError,
  RegistrationError,
  VerificationCodeError,
} from './errors';
import type { AttemptTicket, GuardRegistry } from './guard';
import { checkOwner, protectWith, refusedOwner, type SecretHash } from './guard/policy';
import {
  createVerificationSession,
  requestVerificationCode,
  sessionNeedsCaptcha,
  submitCaptcha,
  submitVerificationCode,
  type VerificationSession,
  type VerificationTransport,
} from './register';
import {
  describeRegistration,
  errorSummary,
  type InProgress,
  isTerminal,
  MAX_WRONG_CODES,
  type RegistrationStatus,
} from './status';

// The status types moved to status.ts; importers of the registrar keep finding them here.
export {
  errorSummary,
  MAX_WRONG_CODES,
  type RegistrationStatus,
  type RegistrationStep,
} from './status';

export interface StartRegistrationOptions {
  /** The number to register, E.164 (spaces, dashes and brackets tolerated). */
  number: string;
  /** The captcha page's result, with or without its `signalcaptcha://` prefix. */
  captcha?: string;
  /** How Signal sends the code; default `sms`. */
  transport?: VerificationTransport;
  /** Optional ownership secret: protects the claim in the guard registry. Never stored or logged. */
  secret?: string;
  /** The guard registry of this installation; without one, no claim is checked or recorded. */
  guard?: GuardRegistry;
  /** Language of the SMS or voice call (Accept-Language). */
  acceptLanguage?: string;
}

/** What the caller does once the code is verified: create and save the account. */
export type CreateAccount = (
  requester: ChatRequester,
  args: { number: string; sessionId: string },
) => Promise<{
  aci: string;
  pni: string;
  number: string;
  deviceId: number;
  /** Signal replaced an existing registration of the number. */
  reregistration?: boolean;
}>;

/** What the editor shows when registering signed out an existing registration of the number. */
export const REREGISTRATION_NOTICE =
  'This number was already registered on Signal (on a phone or another installation); that ' +
  'registration is now signed out and no longer receives messages.';

export interface RegistrarOptions {
  /** Opens an unauthenticated chat socket (the mock serves these routes there only). */
  openRequester: () => Promise<ChatRequester & { close(): void | Promise<void> }>;
  createAccount: CreateAccount;
  logger: Logger;
}

interface Pending extends InProgress {
  sessionId: string;
  guard: GuardRegistry | undefined;
  /** Hash of the ownership secret, or undefined when none was given (an unprotected claim). */
  secret: SecretHash | undefined;
  /** Codes submitted in this session (InProgress.wrongCodes counts those Signal refused). */
  codeSubmissions: number;
}

export class Registrar {
  private pending: Pending | null = null;
  private last: RegistrationStatus = { state: 'idle' };
  private busy = false;

  constructor(private readonly opts: RegistrarOptions) {}

  get status(): RegistrationStatus {
    return structuredClone(this.last);
  }

  /**
   * Claims the number (guard), creates the verification session or goes on with the pending one of
   * the same number and secret, submits the captcha when Signal wants one, and requests the code.
   */
  async start(options: StartRegistrationOptions): Promise<RegistrationStatus> {
    if (typeof options !== 'object' || options === null)
      throw new InvalidInputError('startRegistration() takes {number, captcha?, transport?}');
    const number = normalizeNumber(
      typeof options.number === 'string' ? options.number : String(options.number ?? ''),
    );
    const transport = options.transport ?? 'sms';
    if (transport !== 'sms' && transport !== 'voice') {
      throw new InvalidInputError(
        `The code can be sent by "sms" or "voice", not "${String(transport)}"`,
      );
    }
    if (options.captcha !== undefined && typeof options.captcha !== 'string')
      throw new InvalidInputError('The captcha must be text (the signalcaptcha:// link)');
    if (options.secret !== undefined && typeof options.secret !== 'string')
      throw new InvalidInputError('The ownership secret must be text');
    const captcha = options.captcha?.trim() ? options.captcha : undefined;
    return this.exclusive(async () => {
      let pending = this.pending;
      const resumable =
        pending !== null &&
        pending.number === number &&
        pending.guard === options.guard &&
        pending.step !== 'registering' &&
        (await this.sameHolder(pending, options.secret));
      if (!resumable) {
        // The guard decides first: a refused attempt must leave someone else's pending one alone.
        const ticket = options.guard
          ? await options.guard.beginAttempt(number, options.secret || undefined)
          : undefined;
        // Only the local session is given up here: a protected claim stays with its holder.
        if (pending) await this.abandon(pending, 'superseded by a new registration', 'local');
        let session: VerificationSession;
        try {
          session = await this.withRequester((r) => createVerificationSession(r, number));
        } catch (e) {
          if (ticket && options.guard) await this.markFailed(options.guard, ticket, e);
          this.last = { state: 'failed', number, error: errorSummary(e) };
          throw e;
        }
        pending = {
          number,
          sessionId: session.id,
          session,
          ticket,
          guard: options.guard,
          secret: await protectWith(options.secret),
          transport: undefined,
          step: 'captcha-required',
          codeSubmissions: 0,
          wrongCodes: 0,
        };
        this.pending = pending;
        this.logger.info(`registration of ${number} started`);
      }
      const p = pending as Pending;
      try {
        await this.withRequester(async (r) => {
          if (sessionNeedsCaptcha(p.session)) {
            if (!captcha) throw new CaptchaRequiredError(undefined);
            p.session = await submitCaptcha(r, p.sessionId, captcha);
            if (sessionNeedsCaptcha(p.session)) throw new CaptchaRequiredError(undefined, true);
          }
          if (!p.session.verified) {
            // Audited and, for a re-send, rate-limited like an attempt: before it reaches Signal.
            const grant =
              p.guard && p.ticket ? await p.guard.requestCode(p.ticket, transport) : undefined;
            try {
              p.session = await requestVerificationCode(r, p.sessionId, transport, {
                ...(options.acceptLanguage ? { acceptLanguage: options.acceptLanguage } : {}),
              });
            } catch (e) {
              // Signal sent no code: the request is taken back, so the user's retry is not counted
              // as a re-send (the audit log keeps both entries).
              if (p.guard && p.ticket && grant) {
                const summary = errorSummary(e);
                await p.guard
                  .codeRequestFailed(p.ticket, grant, summary.reason ?? summary.code)
                  .catch((err: unknown) => this.warnRegistry(p.number, err));
              }
              throw e;
            }
          }
        });
      } catch (e) {
        await this.stepFailed(p, e);
        throw e;
      }
      p.step = 'code-sent';
      p.transport = transport;
      this.last = describeRegistration(p);
      this.logger.info(`verification code for ${number} requested by ${transport}`);
      return this.status;
    });
  }

  /**
   * Submits the code; once verified, creates the account through `createAccount`. A registration
   * protected by an ownership secret takes the code only with that secret (NotOwnerError otherwise:
   * not counted as a wrong code, nothing reaches Signal), so that no one else can use up its
   * guesses, end the holder's session or guess the code themselves.
   */
  async verify(code: string, secret?: string): Promise<RegistrationStatus> {
    if (typeof code !== 'string' && typeof code !== 'number')
      throw new InvalidInputError('The verification code must be text (the digits received)');
    if (secret !== undefined && typeof secret !== 'string')
      throw new InvalidInputError('The ownership secret must be text');
    return this.exclusive(async () => {
      const p = this.pending;
      const refused = p ? await this.notHolder(p, secret) : undefined;
      if (p && refused) {
        // The holder's registration stays exactly where it was (status included); only the guard's
        // audit log records the refusal.
        if (p.guard && p.ticket) {
          await p.guard
            .verifyRefused(p.ticket, 'NOT_OWNER')
            .catch((err: unknown) => this.warnRegistry(p.number, err));
        }
        throw new NotOwnerError(p.number, refused === 'WRONG_SECRET');
      }
      if (!p || p.step !== 'code-sent') {
        throw new RegistrationError(
          'NOT_STARTED',
          p
            ? 'Signal has not sent a verification code yet: solve the captcha and request the code first.'
            : 'No registration is in progress: start the registration (number, captcha) first.',
        );
      }
      const submitting = !p.session.verified;
      // A retry after Signal verified the code submits nothing but still registers the number: the
      // claim must still be this attempt's (not expired and taken by someone else) for it too.
      if (p.guard && p.ticket) {
        try {
          await p.guard.verifyAttempt(
            p.ticket,
            submitting ? p.codeSubmissions + 1 : 'account-retry',
          );
        } catch (e) {
          await this.stepFailed(p, e);
          throw e;
        }
      }
      let answered = false;
      let a: Awaited<ReturnType<CreateAccount>>;
      try {
        a = await this.withRequester(async (r) => {
          if (!p.session.verified) {
            p.codeSubmissions++;
            p.session = await submitVerificationCode(r, p.sessionId, code);
          }
          answered = true;
          p.step = 'registering';
          this.last = describeRegistration(p);
          return this.opts.createAccount(r, { number: p.number, sessionId: p.sessionId });
        });
      } catch (e) {
        // The code may have been verified already: a retry goes on from registering.
        if ((p.step as Pending['step']) === 'registering') p.step = 'code-sent';
        if (submitting && !answered) {
          const wrong = e instanceof VerificationCodeError;
          if (wrong) p.wrongCodes++;
          if (p.guard && p.ticket) {
            await p.guard
              .verifyRefused(
                p.ticket,
                wrong
                  ? `WRONG_CODE (${p.wrongCodes} of ${MAX_WRONG_CODES})`
                  : (errorSummary(e).reason ?? errorSummary(e).code),
              )
              .catch((err: unknown) => this.warnRegistry(p.number, err));
          }
          if (wrong && p.wrongCodes >= MAX_WRONG_CODES) {
            // Guessing must not go on: the session is given up (not by its holder, so a protected
            // claim stays theirs) and a new one, with a new code, is needed.
            const exhausted = new CodeAttemptsExhaustedError(p.wrongCodes);
            await this.abandon(p, 'too many wrong verification codes', 'local');
            this.last = { state: 'failed', number: p.number, error: errorSummary(exhausted) };
            this.logger.warn(`registration of ${p.number} ended after ${p.wrongCodes} wrong codes`);
            throw exhausted;
          }
        }
        await this.stepFailed(p, e);
        throw e;
      }
      this.pending = null;
      if (p.guard && p.ticket) {
        // Signal already registered the number: a registry that cannot record it is a warning only.
        await p.guard
          .markVerified(
            p.ticket,
            a.reregistration ? 'the registration elsewhere was signed out' : undefined,
          )
          .catch((e: unknown) =>
            this.logger.warn(
              `registered ${p.number}, but the registration registry did not record it: ${
                e instanceof Error ? e.message : String(e)
              }`,
            ),
          );
      }
      this.last = {
        state: 'registered',
        number: a.number,
        ...(p.ticket ? { protected: p.ticket.protected } : {}),
        ...(a.reregistration ? { reregistration: true, notice: REREGISTRATION_NOTICE } : {}),
        account: { aci: a.aci, pni: a.pni, number: a.number, deviceId: a.deviceId },
      };
      this.logger.info(
        `registered ${a.number} as a primary device` +
          (a.reregistration ? '; its registration elsewhere was signed out' : ''),
      );
      return this.status;
    });
  }

  /**
   * Cancels the registration in progress: its claim is marked failed (a verified number stays
   * verified). A claim protected by a secret is only cancelled with that secret.
   */
  async cancel(secret?: string): Promise<RegistrationStatus> {
    return this.exclusive(async () => {
      const p = this.pending;
      if (!p) return this.status;
      const refused = await this.notHolder(p, secret);
      if (refused) {
        throw new GuardRefusedError(
          p.number,
          refused,
          refused === 'WRONG_SECRET'
            ? `The ownership secret does not match the one ${p.number} is being registered with.`
            : `The registration of ${p.number} is protected by an ownership secret: give it to cancel.`,
        );
      }
      await this.abandon(p, 'cancelled', 'failed');
      this.last = { state: 'cancelled', number: p.number };
      return this.status;
    });
  }

  /**
   * Gives up the local session (client close: redeploy, the editor's temporary client expiring).
   * Not a cancel by the holder: a protected claim stays theirs. Never throws.
   */
  async close(): Promise<void> {
    const p = this.pending;
    if (p && p.step !== 'registering')
      await this.abandon(p, 'the account was closed during the registration', 'local');
  }

  // ---- internals ----

  /**
   * How the guard policy's owner check refuses `secret` for the pending registration: undefined
   * when it is unprotected or the secret is its holder's.
   */
  private async notHolder(
    p: Pending,
    secret: string | undefined,
  ): Promise<'NUMBER_CLAIMED' | 'WRONG_SECRET' | undefined> {
    const verdict = await checkOwner(p.secret, secret);
    return refusedOwner(verdict) ? verdict : undefined;
  }

  /**
   * Whether a new start() with `secret` goes on with the pending registration: its holder's secret
   * for a protected one; for an unprotected one, no secret (a secret given now starts a new attempt,
   * which protects the claim in the guard).
   */
  private async sameHolder(p: Pending, secret: string | undefined): Promise<boolean> {
    const verdict = await checkOwner(p.secret, secret);
    return verdict === 'owner' || (verdict === 'unprotected' && !secret);
  }

  private get logger(): Logger {
    return this.opts.logger;
  }

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy) {
      throw new RegistrationError(
        'BUSY',
        'Another registration step is still running for this account: wait for it to finish.',
      );
    }
    this.busy = true;
    try {
      return await fn();
    } finally {
      this.busy = false;
    }
  }

  private async withRequester<T>(fn: (r: ChatRequester) => Promise<T>): Promise<T> {
    const requester = await this.opts.openRequester();
    try {
      return await fn(requester);
    } finally {
      await requester.close();
    }
  }

  /** A step failed: the registration stays where it was, unless the session cannot go on. */
  private async stepFailed(p: Pending, e: unknown): Promise<void> {
    if (isTerminal(e)) {
      await this.abandon(p, e, 'failed');
      this.last = { state: 'failed', number: p.number, error: errorSummary(e) };
      return;
    }
    if (e instanceof CaptchaRequiredError) p.step = 'captcha-required';
    this.last = { ...describeRegistration(p), error: errorSummary(e) };
  }

  /**
   * Drops the pending registration. `failed`: the server ended the session or the holder cancelled,
   * so the claim ends. `local`: only this process gives the session up, so the guard frees an
   * unprotected claim but keeps a protected one for its holder (GuardRegistry.abandon).
   */
  private async abandon(p: Pending, why: unknown, how: 'failed' | 'local'): Promise<void> {
    if (this.pending === p) this.pending = null;
    if (p.guard && p.ticket) await this.markFailed(p.guard, p.ticket, why, how);
  }

  private warnRegistry(number: string, e: unknown): void {
    this.logger.warn(
      `the registration registry did not record a step for ${number}: ${
        e instanceof Error ? e.message : String(e)
      }`,
    );
  }

  private async markFailed(
    guard: GuardRegistry,
    ticket: AttemptTicket,
    why: unknown,
    how: 'failed' | 'local' = 'failed',
  ) {
    const reason =
      why instanceof RegistrationError
        ? why.reason
        : why instanceof SignalError
          ? why.code
          : typeof why === 'string'
            ? why
            : 'failed';
    await (
      how === 'local' ? guard.abandon(ticket, reason) : guard.markFailed(ticket, reason)
    ).catch((e: unknown) =>
      this.logger.warn(
        `the registration registry did not record the failed attempt for ${ticket.number}: ${
          e instanceof Error ? e.message : String(e)
        }`,
      ),
    );
  }
}
