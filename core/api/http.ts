/**
 * What every REST call over the chat socket shares (PROTOCOL.md §3–§9): the request, JSON checked
 * with one ajv instance, the statuses any route may answer, and the encodings Signal's JSON uses.
 */
import Ajv, { type ValidateFunction } from 'ajv';
import {
  ClientTooOldError,
  ProtocolError,
  RateLimitedError,
  ServerError,
  UnauthorizedError,
} from '../errors';
import type { ChatRequester, ChatResponse, HttpVerb } from '../net/types';

export const ajv = new Ajv({ allErrors: false, coerceTypes: false });

export async function call(
  requester: ChatRequester,
  verb: HttpVerb,
  path: string,
  body?: object,
  headers?: Record<string, string>,
): Promise<ChatResponse> {
  return requester.request({
    verb,
    path,
    ...(body ? { body } : {}),
    ...(headers ? { headers } : {}),
  });
}

/** The body as JSON, or undefined: for error answers, whose body may be anything. */
export function json(res: ChatResponse): unknown {
  try {
    return JSON.parse(Buffer.from(res.body).toString('utf8'));
  } catch {
    return undefined;
  }
}

/** `data` as the schema says, or a ProtocolError naming what did not match. */
export function check<T>(data: unknown, validate: ValidateFunction<T>, what: string): T {
  if (!validate(data)) {
    throw new ProtocolError(
      `${what}: unexpected answer from the server (${ajv.errorsText(validate.errors)})`,
    );
  }
  return data;
}

/** A success answer's body: JSON, and as the schema says. */
export function parse<T>(res: ChatResponse, validate: ValidateFunction<T>, what: string): T {
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(res.body).toString('utf8'));
  } catch (e) {
    throw new ProtocolError(`${what}: the server's answer is not JSON`, { cause: e });
  }
  return check(data, validate, what);
}

/** Retry-After in whole seconds, when the server sent a usable one. */
export function retryAfterHeader(res: ChatResponse): number | undefined {
  const raw = res.headers['retry-after'];
  if (raw === undefined || raw.trim() === '') return undefined;
  const v = Number(raw);
  return Number.isFinite(v) && v >= 0 ? Math.ceil(v) : undefined;
}

/** Retry-After, or a minute when the server gave none (Signal-Server always sends it with 429). */
export const retryAfter = (res: ChatResponse): number => retryAfterHeader(res) ?? 60;

/**
 * The statuses any call may meet; call-specific ones are handled before this. `refused` says what a
 * 401/403 refused: a device's credentials, or (registration) the request.
 */
export function fail(
  res: ChatResponse,
  what: string,
  refused = "this device's credentials",
): never {
  // Signal-Server answers 499 to clients it no longer serves: too old a User-Agent, or a missing
  // capability it requires (PROTOCOL.md §12).
  if (res.status === 499) throw new ClientTooOldError(what);
  if (res.status === 401 || res.status === 403) {
    throw new UnauthorizedError(`${what}: the server refused ${refused} (${res.status})`);
  }
  if (res.status === 413 || res.status === 429) throw new RateLimitedError(retryAfter(res), what);
  throw new ServerError(res.status, what);
}

export const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
export const fromB64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** Sealed-sender routes are authorized by the recipient's access key instead of our account (§5). */
export const accessKeyHeaders = (accessKey?: Uint8Array): Record<string, string> | undefined =>
  accessKey ? { 'Unidentified-Access-Key': b64(accessKey) } : undefined;

/**
 * A PNI without the `PNI:` tag Signal's service-id strings carry (the ACI is untagged). The engine
 * keeps PNIs untagged.
 */
export const stripPni = (pni: string): string => pni.replace(/^PNI:/, '');
