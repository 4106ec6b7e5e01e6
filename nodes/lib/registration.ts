/**
 * Admin-route plumbing for registering a number of its own: the one guard registry of this Node-RED
 * instance, and the mapping of engine errors to HTTP answers. The routes themselves are in admin/;
 * what they call is the engine (SignalClient.startRegistration and friends).
 */
import path from 'node:path';
import { SignalError } from '../../core/errors';
import { GuardRegistry, RegistrationError } from '../../core/registration';
import { errorSummary } from '../../core/registration/registrar';
import type { RED, RedResponse } from './red';
import { errorFields, type ErrorFields } from './status';

/** The registry file beside the account files; its key file (when used) is `<file>.key`. */
export const GUARD_FILE = 'registrations.guard';

/**
 * One GuardRegistry per Node-RED instance (per signal data folder), keyed from the instance's
 * credentialSecret when settings.js sets one, else from a generated 0600 key file. A registry that
 * cannot be opened (tampered, wrong key) is not cached: each use reports it again, and a restored
 * file is picked up without a restart.
 */
export function guardRegistry(RED: RED, dataDir: () => string): () => Promise<GuardRegistry> {
  const opened = new Map<string, Promise<GuardRegistry>>();
  return () => {
    const file = path.join(dataDir(), GUARD_FILE);
    let p = opened.get(file);
    if (!p) {
      const secret = RED.settings.credentialSecret;
      p = GuardRegistry.open({
        file,
        ...(typeof secret === 'string' && secret ? { credentialSecret: secret } : {}),
      });
      opened.set(file, p);
      p.catch(() => opened.delete(file));
    }
    return p;
  };
}

/** The HTTP status for an engine error; never 401, which the editor takes for an expired login. */
export function httpStatusOf(e: unknown): number {
  if (e instanceof RegistrationError) {
    switch (e.reason) {
      case 'NUMBER_CLAIMED':
      case 'WRONG_SECRET':
      case 'NOT_OWNER':
        return 403;
      case 'WRONG_CODE':
      case 'REJECTED':
      case 'TRANSPORT_NOT_ALLOWED':
        return 422;
      case 'REGISTRATION_LOCKED':
        return 423;
      case 'SESSION_NOT_FOUND':
      case 'SESSION_EXHAUSTED':
      case 'CODE_ATTEMPTS_EXHAUSTED':
      case 'SESSION_NOT_VERIFIED':
        return 410;
      case 'CODE_NOT_SENT':
        return 502;
      default:
        // STALE_ATTEMPT, DEVICE_TRANSFER, ACCOUNT_EXISTS, NOT_STARTED, BUSY
        return 409;
    }
  }
  if (!(e instanceof SignalError)) return 500;
  switch (e.code) {
    case 'INVALID_INPUT':
    case 'INVALID_NUMBER':
      return 400;
    case 'CHALLENGE_REQUIRED':
      return 428;
    case 'RATE_LIMITED':
      return 429;
    case 'TIMEOUT':
      return 504;
    case 'CLOSED':
      return 503;
    case 'NETWORK':
    case 'SERVER':
    case 'PROTOCOL':
    case 'UNAUTHORIZED':
      return 502;
    default:
      return 500;
  }
}

/**
 * The one shape of every admin route's error: `{code, message}` and the typed fields a caller can
 * act on (reason, retryAfterSeconds, token, options, recipient, serviceId, number). Never a secret:
 * the engine's messages hold none, and the fields are copied by name.
 */
export type ErrorBody = ErrorFields & { reason?: string };

export function errorBody(e: unknown): ErrorBody {
  return { ...errorFields(e), ...errorSummary(e) };
}

/**
 * Answers `{error: ErrorBody, ...extra}` with the error's HTTP status, or `status` where the route
 * knows better (a bad setting is 400 whatever the engine calls it).
 */
export function sendError(
  res: RedResponse,
  e: unknown,
  status: number = httpStatusOf(e),
  extra: Record<string, unknown> = {},
): void {
  res.status(status).json({ error: errorBody(e), ...extra });
}

/** A string field of a JSON body, or undefined; anything else is refused naming the field. */
export function stringField(body: Record<string, unknown>, name: string): string | undefined {
  const v = body[name];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number' && name === 'code') return String(v);
  if (typeof v !== 'string')
    throw new SignalError('INVALID_INPUT', `"${name}" must be text, not ${typeof v}`);
  return v;
}
