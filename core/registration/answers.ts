/**
 * How Signal's answers to the registration routes read, for the verification steps (register.ts)
 * and the account creation (account.ts) alike: the JSON body, and the statuses any step may meet.
 */
import { ClientTooOldError, RateLimitedError, ServerError, UnauthorizedError } from '../errors';
import type { ChatResponse } from '../net/types';
import { CaptchaRequiredError, RegistrationError } from './errors';

export function json(res: ChatResponse): unknown {
  try {
    return JSON.parse(Buffer.from(res.body).toString('utf8'));
  } catch {
    return undefined;
  }
}

export function retryAfterHeader(res: ChatResponse): number | undefined {
  const raw = res.headers['retry-after'];
  if (raw === undefined || raw.trim() === '') return undefined;
  const v = Number(raw);
  return Number.isFinite(v) && v >= 0 ? Math.ceil(v) : undefined;
}

export function sessionNotFound(): RegistrationError {
  return new RegistrationError(
    'SESSION_NOT_FOUND',
    'Signal does not know this verification session any more (it expired): start the verification again.',
  );
}

/** Statuses any step may meet, after the step's own. */
export function fail(res: ChatResponse, what: string): never {
  // POST /v1/registration without a capability Signal requires is answered 499 (PROTOCOL.md §12).
  if (res.status === 499) throw new ClientTooOldError(what);
  if (res.status === 402) throw new CaptchaRequiredError(undefined);
  if (res.status === 413 || res.status === 429) {
    throw new RateLimitedError(retryAfterHeader(res) ?? 60, what);
  }
  if (res.status === 401 || res.status === 403) {
    throw new UnauthorizedError(`${what}: the server refused the request (${res.status})`);
  }
  throw new ServerError(res.status, what);
}
