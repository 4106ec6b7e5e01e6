/**
 * Errors of primary-number registration (PROTOCOL.md §9) and of the guard registry. Each message says
 * what happened and what the user can do next; none carries a secret, a verification code or a
 * captcha token. The `reason` lets a UI pick its own wording without parsing messages.
 *
 * The errors the server's answers map to (RegistrationError and its reasons, the captcha, wrong code
 * and registration lock) are defined in core/api/errors.ts, next to that mapping, so core/api needs
 * no service; they are re-exported here for the registration flow, the guard and their importers.
 */
import { SignalError } from '../errors';
import { RegistrationError, type RegistrationFailure } from '../api/errors';

export {
  CaptchaRequiredError,
  REGISTRATION_CAPTCHA_URL,
  RegistrationError,
  RegistrationLockedError,
  VerificationCodeError,
  type RegistrationFailure,
} from '../api/errors';

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
