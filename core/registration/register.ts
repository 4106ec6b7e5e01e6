/**
 * Registering a primary number through a verification session (PROTOCOL.md §9), over any
 * ChatRequester: callers pass an UNauthenticated chat socket (the registration call carries its own
 * Basic credentials).
 *
 * Order: createVerificationSession → (captcha requested) submitCaptcha → requestVerificationCode →
 * submitVerificationCode → registerAccount → upload one-time keys (with the new credentials).
 * This module checks and normalizes what the user typed before anything reaches Signal; the REST
 * calls, their JSON and the statuses mapped to typed errors are core/api/registration.ts. Key
 * generation lives in core/crypto: this module takes the prepared upload objects.
 */
import * as wire from '../api/registration';
import type {
  RegisterAccountArgs,
  RegisteredAccount,
  VerificationSession,
} from '../api/registration';
import type { ChatRequester } from '../net/types';
import { InvalidInputError } from '../errors';
import { normalizeNumber } from '../directory/number';
import { VerificationCodeError } from './errors';

export {
  DEFAULT_VERIFICATION_CLIENT,
  captchaToken,
  getVerificationSession,
  requestVerificationCode,
  sessionNeedsCaptcha,
  submitCaptcha,
  type RegisterAccountArgs,
  type RegisteredAccount,
  type RegistrationAccountAttributes,
  type SignedKeyUpload,
  type VerificationSession,
  type VerificationTransport,
} from '../api/registration';

/** POST /v1/verification/session {number}. A fresh session normally asks for a captcha first. */
export async function createVerificationSession(
  requester: ChatRequester,
  number: string,
): Promise<VerificationSession> {
  return wire.createVerificationSession(requester, normalizeNumber(number));
}

/** Checks the code is digits before it costs one of the session's guesses, then submits it. */
export async function submitVerificationCode(
  requester: ChatRequester,
  sessionId: string,
  code: string,
): Promise<VerificationSession> {
  // People copy "123-456" or "123 456" from the SMS.
  const digits = String(code).replace(/[\s-]/g, '');
  if (!/^\d{4,10}$/.test(digits)) {
    throw new VerificationCodeError(
      'The verification code should be the digits from the SMS or voice call (usually 6).',
    );
  }
  return wire.submitVerificationCode(requester, sessionId, digits);
}

/**
 * POST /v1/registration on a verified session, as `<number>:<password>` with the number in E.164.
 * Creates the account (or replaces the one registered for the number): the caller then connects as
 * `<aci>.1` with the same password and uploads one-time keys.
 */
export async function registerAccount(
  requester: ChatRequester,
  args: RegisterAccountArgs,
): Promise<RegisteredAccount> {
  const number = normalizeNumber(args.number);
  if (!args.password) throw new InvalidInputError('A password for the new account is required');
  return wire.registerAccount(requester, { ...args, number });
}
