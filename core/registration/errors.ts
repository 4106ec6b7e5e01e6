/**
 * Errors of primary-number registration (PROTOCOL.md §9) and of the guard registry. Each message says
 * what happened and what the user can do next; none carries a secret, a verification code or a
 * captcha token. The `reason` lets a UI pick its own wording without parsing messages.
 */
import { SignalError } from '../errors';

export type RegistrationFailure =
  /** Guard: the number is claimed through this Node-RED by someone else (or unprotected but verified). */
  | 'NUMBER_CLAIMED'
  /** Guard: an ownership secret was given but does not match the one the number was claimed with. */
  | 'WRONG_SECRET'
  /**
   * A step of a pending registration protected by an ownership secret was asked for without that
   * secret (or with another one): only the holder may go on with it.
   */
  | 'NOT_OWNER'
  /** Guard: the attempt's ticket was superseded by another claim after it expired. */
  | 'STALE_ATTEMPT'
  /** The verification code was wrong, expired, or none was requested yet. */
  | 'WRONG_CODE'
  /** Too many wrong codes in one session here: the attempt ended, the registration must restart. */
  | 'CODE_ATTEMPTS_EXHAUSTED'
  /** The verification session is unknown to the server (expired or never created). */
  | 'SESSION_NOT_FOUND'
  /** The session allows no more codes or guesses: a new session is needed. */
  | 'SESSION_EXHAUSTED'
  /** POST /v1/registration without a verified session. */
  | 'SESSION_NOT_VERIFIED'
  /** 418: the server cannot use that transport (SMS or voice) for this number now. */
  | 'TRANSPORT_NOT_ALLOWED'
  /** 440: the SMS or voice provider refused to deliver the code. */
  | 'CODE_NOT_SENT'
  /** 423: the number is registered elsewhere with a registration lock (PIN). */
  | 'REGISTRATION_LOCKED'
  /** 409 on registration: the server wants a device transfer decision. */
  | 'DEVICE_TRANSFER'
  /** The server refused the request (422 and similar). */
  | 'REJECTED'
  /** This client already holds an account: registering would replace nothing, it is refused. */
  | 'ACCOUNT_EXISTS'
  /** Verify or cancel without a registration in progress (or with one at another step). */
  | 'NOT_STARTED'
  /** Another registration step of this client is still running. */
  | 'BUSY';

export class RegistrationError extends SignalError {
  readonly reason: RegistrationFailure;
  constructor(reason: RegistrationFailure, message: string, options?: { cause?: unknown }) {
    super('REGISTRATION', message, options);
    this.reason = reason;
  }
}

/** The guard registry refused an operation on a number claimed through this Node-RED instance. */
export class GuardRefusedError extends RegistrationError {
  readonly number: string;
  constructor(
    number: string,
    reason: Extract<RegistrationFailure, 'NUMBER_CLAIMED' | 'WRONG_SECRET' | 'STALE_ATTEMPT'>,
    message: string,
  ) {
    super(reason, message);
    this.number = number;
  }
}

/** The guard registry file cannot be read, decrypted or written. Never answered by resetting it. */
export class GuardRegistryError extends SignalError {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super('STORE', message, options);
    this.path = path;
  }
}

/** Where a user solves a registration captcha; its result is a `signalcaptcha://…` link. */
export const REGISTRATION_CAPTCHA_URL = 'https://signalcaptchas.org/registration/generate.html';

/**
 * Signal wants a captcha before it sends a code (the session's `requestedInformation` holds
 * "captcha", or the server answered 402), or it rejected the captcha given (403 on PATCH).
 */
export class CaptchaRequiredError extends SignalError {
  readonly sessionId: string | undefined;
  readonly rejected: boolean;
  constructor(sessionId: string | undefined, rejected = false) {
    super(
      'CHALLENGE_REQUIRED',
      (rejected
        ? 'Signal did not accept the captcha (it expires after a short while and works once). '
        : 'Signal requires a captcha before it sends a verification code. ') +
        `Open ${REGISTRATION_CAPTCHA_URL}, solve the captcha, copy the "Open Signal" link ` +
        '(it starts with signalcaptcha://) and submit it.',
    );
    this.sessionId = sessionId;
    this.rejected = rejected;
  }
}

/**
 * A verification code was submitted to a pending registration protected by an ownership secret
 * without that secret, or with another one. Refused before it reaches Signal and not counted as a
 * wrong code: otherwise anyone with editor access could burn the holder's guesses and end their
 * session.
 */
export class NotOwnerError extends RegistrationError {
  readonly number: string;
  constructor(number: string, secretGiven: boolean) {
    super(
      'NOT_OWNER',
      secretGiven
        ? `The ownership secret does not match the one ${number} is being registered with: enter ` +
            'the secret given when the code was requested.'
        : `The registration of ${number} is protected by an ownership secret: enter it with the ` +
            'verification code.',
    );
    this.number = number;
  }
}

export class VerificationCodeError extends RegistrationError {
  constructor(message: string) {
    super('WRONG_CODE', message);
  }
}

/**
 * The wrong-code limit of one verification session was reached: the session was given up (its claim
 * ended; a claim protected by a secret stays with its holder), so guessing cannot go on. Starting the
 * registration again asks for a new code.
 */
export class CodeAttemptsExhaustedError extends RegistrationError {
  readonly attempts: number;
  constructor(attempts: number) {
    super(
      'CODE_ATTEMPTS_EXHAUSTED',
      `The verification code was wrong ${attempts} times, the most one registration allows: it was ` +
        'ended. Start the registration again to get a new code.',
    );
    this.attempts = attempts;
  }
}

export class RegistrationLockedError extends RegistrationError {
  readonly number: string;
  /** How long the lock still holds, in ms, when the server says so. */
  readonly timeRemainingMs: number | undefined;
  constructor(number: string, timeRemainingMs?: number) {
    const days =
      timeRemainingMs !== undefined ? Math.ceil(timeRemainingMs / 86_400_000) : undefined;
    super(
      'REGISTRATION_LOCKED',
      `${number} is already registered on Signal with a registration lock (PIN). Turn off the ` +
        'registration lock in the Signal app that uses this number (Settings › Account › ' +
        'Registration Lock) and try again' +
        (days !== undefined ? `, or wait about ${days} day(s) until the lock expires.` : '.'),
    );
    this.number = number;
    this.timeRemainingMs = timeRemainingMs;
  }
}
