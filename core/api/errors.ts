/**
 * The errors the REST answers map to beyond core/errors: the send path's recoverable statuses
 * (PROTOCOL.md §5), and the answers of registration's verification-session and registration routes
 * (§9). They live next to the mapping so core/api depends on no service; core/messaging and
 * core/registration import them from here (core/registration/errors.ts re-exports its own).
 *
 * Registration messages say what happened and what the user can do next; none carries a secret, a
 * verification code or a captcha token. The `reason` lets a UI pick its own wording without parsing
 * messages.
 */
import { SignalError } from '../errors';

// ---- sending (§5) ----

/** 409: the server's view of the recipient's devices differs from ours. */
export class MismatchedDevices extends SignalError {
  constructor(
    readonly missingDevices: number[],
    readonly extraDevices: number[],
  ) {
    super(
      'SERVER',
      `device list out of date: missing ${missingDevices.join(',')} extra ${extraDevices.join(',')}`,
    );
  }
}

/** 410: sessions with these devices are stale (the device re-registered). */
export class StaleDevices extends SignalError {
  constructor(readonly staleDevices: number[]) {
    super('SERVER', `stale devices ${staleDevices.join(',')}`);
  }
}

/** 401 on a sealed-sender send: our access key is wrong (profile key changed): fall back. */
export class UnidentifiedAccessRejected extends SignalError {
  constructor() {
    super('UNAUTHORIZED', 'unidentified access rejected');
  }
}

/** 409 on a multi-recipient send: per recipient, the devices we missed or named in excess. */
export class MultiRecipientMismatch extends SignalError {
  constructor(
    readonly entries: Array<{
      serviceId: string;
      missingDevices: number[];
      extraDevices: number[];
    }>,
  ) {
    super('SERVER', `device lists out of date for ${entries.map((e) => e.serviceId).join(', ')}`);
  }
}

/** 410 on a multi-recipient send: per recipient, the devices whose sessions are stale. */
export class MultiRecipientStale extends SignalError {
  constructor(readonly entries: Array<{ serviceId: string; staleDevices: number[] }>) {
    super('SERVER', `stale devices for ${entries.map((e) => e.serviceId).join(', ')}`);
  }
}

/** 404 on a multi-recipient send: some recipient is not on Signal (the server does not say who). */
export class MultiRecipientUnknown extends SignalError {
  constructor() {
    super(
      'NOT_ON_SIGNAL',
      'a recipient of the multi-recipient message is not registered on Signal',
    );
  }
}

// ---- registration (§9) ----

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

export class VerificationCodeError extends RegistrationError {
  constructor(message: string) {
    super('WRONG_CODE', message);
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
