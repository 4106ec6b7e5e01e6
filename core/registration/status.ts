/**
 * What the registrar reports: where a registration stands (RegistrationStatus, as the admin routes
 * and the editor show it) and how a failed step is summed up, including whether it ends the
 * verification session. Holds no secret, code, captcha or session id.
 */
import { RateLimitedError, SignalError } from '../errors';
import { RegistrationError } from './errors';
import type { AttemptTicket } from './guard';
import type { VerificationSession, VerificationTransport } from './register';

export type RegistrationStep =
  'idle' | 'captcha-required' | 'code-sent' | 'registering' | 'registered' | 'failed' | 'cancelled';

/** Where a registration stands; holds no secret, code, captcha or session id. */
export interface RegistrationStatus {
  state: RegistrationStep;
  number?: string;
  transport?: VerificationTransport;
  /** Seconds until Signal sends another SMS / places another call / takes another code. */
  nextSms?: number;
  nextCall?: number;
  nextVerificationAttempt?: number;
  /** The claim in the guard registry is protected by an ownership secret. */
  protected?: boolean;
  /** This registration replaces one verified earlier through this installation. */
  replacesVerified?: boolean;
  /** Something the user should know (e.g. an unprotected claim, a registration signed out). */
  notice?: string;
  /** Wrong codes this session still takes before it is given up (while a code is awaited). */
  codeAttemptsLeft?: number;
  /**
   * Set once registered when Signal says the number was already registered (on a phone or another
   * installation without a registration lock): that registration is signed out now.
   */
  reregistration?: boolean;
  account?: { aci: string; pni: string; number: string; deviceId: number };
  /** Why the last step failed (the registration may still go on: see `state`). */
  error?: { code: string; message: string; reason?: string; retryAfterSeconds?: number };
}

/** Wrong codes one verification session takes here before it is given up. */
export const MAX_WRONG_CODES = 5;

/** The part of a registration in progress its status is made of. */
export interface InProgress {
  number: string;
  session: VerificationSession;
  ticket: AttemptTicket | undefined;
  transport: VerificationTransport | undefined;
  step: 'captcha-required' | 'code-sent' | 'registering';
  wrongCodes: number;
}

/** Failures after which the verification session cannot go on: the claim is marked failed. */
const TERMINAL = new Set<string>([
  // The guard no longer holds the claim for this attempt: the session must not go on.
  'STALE_ATTEMPT',
  'SESSION_NOT_FOUND',
  'SESSION_EXHAUSTED',
  'SESSION_NOT_VERIFIED',
  'REGISTRATION_LOCKED',
  'DEVICE_TRANSFER',
  'REJECTED',
]);

export function isTerminal(e: unknown): boolean {
  if (e instanceof RegistrationError) return TERMINAL.has(e.reason);
  // A malformed answer or a refused request will not get better by retrying the same session.
  return e instanceof SignalError && (e.code === 'PROTOCOL' || e.code === 'UNAUTHORIZED');
}

export function errorSummary(e: unknown): NonNullable<RegistrationStatus['error']> {
  const err = e instanceof Error ? e : new Error(String(e));
  return {
    code: err instanceof SignalError ? err.code : 'ERROR',
    message: err.message,
    ...(err instanceof RegistrationError ? { reason: err.reason } : {}),
    ...(err instanceof RateLimitedError ? { retryAfterSeconds: err.retryAfterSeconds } : {}),
  };
}

/** The status of a registration in progress, from what the registrar keeps of it. */
export function describeRegistration(p: InProgress): RegistrationStatus {
  const s = p.session;
  return {
    state: p.step,
    number: p.number,
    ...(p.transport ? { transport: p.transport } : {}),
    ...(s.nextSms !== undefined ? { nextSms: s.nextSms } : {}),
    ...(s.nextCall !== undefined ? { nextCall: s.nextCall } : {}),
    ...(s.nextVerificationAttempt !== undefined
      ? { nextVerificationAttempt: s.nextVerificationAttempt }
      : {}),
    ...(p.step === 'code-sent' ? { codeAttemptsLeft: MAX_WRONG_CODES - p.wrongCodes } : {}),
    ...(p.ticket
      ? {
          protected: p.ticket.protected,
          replacesVerified: p.ticket.replacesVerified,
          ...(p.ticket.notice ? { notice: p.ticket.notice } : {}),
        }
      : {}),
  };
}
