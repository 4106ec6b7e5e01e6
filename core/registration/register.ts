/**
 * Registering a primary number through a verification session (PROTOCOL.md §9), over any
 * ChatRequester. Signal's mock server serves these routes only on the chat WebSocket (no plain HTTPS
 * route), and Signal's own server takes them both ways, so callers pass an UNauthenticated chat socket:
 * the registration call carries its own Basic credentials.
 *
 * Order: createVerificationSession → (captcha requested) submitCaptcha → requestVerificationCode →
 * submitVerificationCode → registerAccount (account.ts) → upload one-time keys (with the new
 * credentials). Statuses follow Signal-Server's VerificationController and RegistrationController;
 * every answer the user must act on becomes a typed error that says what to do next.
 */
import Ajv from 'ajv';
import { InvalidInputError, InvalidNumberError, ProtocolError, RateLimitedError } from '../errors';
import { normalizeNumber } from '../directory/number';
import type { ChatRequester, ChatResponse, HttpVerb } from '../net/types';
import { fail, json, retryAfterHeader, sessionNotFound } from './answers';
import { CaptchaRequiredError, RegistrationError, VerificationCodeError } from './errors';

// The account creation step moved to account.ts; importers of register.ts keep finding it here.
export {
  registerAccount,
  type RegisterAccountArgs,
  type RegisteredAccount,
  type RegistrationAccountAttributes,
  type SignedKeyUpload,
} from './account';

export type VerificationTransport = 'sms' | 'voice';

/** Signal's VerificationSessionResponse. `next*` are seconds from now; absent when not applicable. */
export interface VerificationSession {
  id: string;
  /** What the server wants before it sends a code: "captcha", "pushChallenge". */
  requestedInformation: string[];
  allowedToRequestCode: boolean;
  nextSms?: number;
  /** Seconds until a voice call may be requested (the server's field is `nextCall`). */
  nextCall?: number;
  /** Seconds until a code may be submitted; set once a code was sent. */
  nextVerificationAttempt?: number;
  verified: boolean;
}

/** Signal-Server maps any `client` it does not know to "unknown"; the mock accepts only these three. */
export const DEFAULT_VERIFICATION_CLIENT = 'desktop';

// ---- parsing ----

const ajv = new Ajv({ allErrors: false, coerceTypes: false });

const optionalSeconds = { type: ['integer', 'null'] } as const;
const validateSession = ajv.compile<{
  id: string;
  requestedInformation: string[];
  allowedToRequestCode: boolean;
  verified: boolean;
  nextSms?: number | null;
  nextCall?: number | null;
  nextVerificationAttempt?: number | null;
}>({
  type: 'object',
  properties: {
    id: { type: 'string', minLength: 1 },
    requestedInformation: { type: 'array', items: { type: 'string' } },
    allowedToRequestCode: { type: 'boolean' },
    verified: { type: 'boolean' },
    nextSms: optionalSeconds,
    nextCall: optionalSeconds,
    nextVerificationAttempt: optionalSeconds,
  },
  required: ['id', 'requestedInformation', 'allowedToRequestCode', 'verified'],
});

function toSession(data: unknown): VerificationSession | undefined {
  if (!validateSession(data)) return undefined;
  const s: VerificationSession = {
    id: data.id,
    requestedInformation: [...data.requestedInformation],
    allowedToRequestCode: data.allowedToRequestCode,
    verified: data.verified,
  };
  if (typeof data.nextSms === 'number') s.nextSms = data.nextSms;
  if (typeof data.nextCall === 'number') s.nextCall = data.nextCall;
  if (typeof data.nextVerificationAttempt === 'number')
    s.nextVerificationAttempt = data.nextVerificationAttempt;
  return s;
}

function sessionOf(res: ChatResponse, what: string): VerificationSession {
  const s = toSession(json(res));
  if (!s) {
    throw new ProtocolError(
      `${what}: unexpected answer from the server (${ajv.errorsText(validateSession.errors)})`,
    );
  }
  return s;
}

/** A session carried in an error answer (409/429 bodies), when there is one. */
const sessionIn = (res: ChatResponse) => toSession(json(res));

/**
 * Whether the session waits for a captcha before a code can be requested. A push challenge counts:
 * we cannot receive push, and Signal-Server accepts a captcha in its place.
 */
export function sessionNeedsCaptcha(s: VerificationSession): boolean {
  // allowedToRequestCode decides: the mock leaves "captcha" listed after it was solved.
  return (
    !s.verified &&
    !s.allowedToRequestCode &&
    (s.requestedInformation.includes('captcha') || s.requestedInformation.includes('pushChallenge'))
  );
}
const captchaWanted = sessionNeedsCaptcha;

function sessionPath(sessionId: string, tail = ''): string {
  if (typeof sessionId !== 'string' || sessionId === '') {
    throw new InvalidInputError('A verification session id is required');
  }
  return `/v1/verification/session/${encodeURIComponent(sessionId)}${tail}`;
}

async function call(
  requester: ChatRequester,
  verb: HttpVerb,
  path: string,
  body: object,
  headers?: Record<string, string>,
): Promise<ChatResponse> {
  return requester.request({ verb, path, body, ...(headers ? { headers } : {}) });
}

// ---- the steps ----

/** POST /v1/verification/session {number}. A fresh session normally asks for a captcha first. */
export async function createVerificationSession(
  requester: ChatRequester,
  number: string,
): Promise<VerificationSession> {
  const e164 = normalizeNumber(number);
  const what = `Starting the verification of ${e164}`;
  const res = await call(requester, 'POST', '/v1/verification/session', { number: e164 });
  if (res.status === 200) return sessionOf(res, what);
  if (res.status === 422) {
    throw new InvalidNumberError(e164, 'was not accepted by Signal as a phone number to verify');
  }
  fail(res, what);
}

/** GET /v1/verification/session/<id>: the session as it stands. */
export async function getVerificationSession(
  requester: ChatRequester,
  sessionId: string,
): Promise<VerificationSession> {
  const what = 'Reading the verification session';
  const res = await requester.request({ verb: 'GET', path: sessionPath(sessionId) });
  if (res.status === 200) return sessionOf(res, what);
  if (res.status === 404) throw sessionNotFound();
  fail(res, what);
}

/** The token from the captcha page, without its `signalcaptcha://` prefix (PROTOCOL.md §9). */
export function captchaToken(captcha: string): string {
  const token = String(captcha)
    .trim()
    .replace(/^signalcaptcha:\/\//i, '')
    .trim();
  if (!token) {
    throw new InvalidInputError(
      'The captcha is empty: paste the link the captcha page gives (signalcaptcha://…)',
    );
  }
  return token;
}

/** PATCH /v1/verification/session/<id> {captcha}. 403 = the captcha was not accepted. */
export async function submitCaptcha(
  requester: ChatRequester,
  sessionId: string,
  captcha: string,
): Promise<VerificationSession> {
  const what = 'Submitting the captcha';
  const res = await call(requester, 'PATCH', sessionPath(sessionId), {
    captcha: captchaToken(captcha),
  });
  if (res.status === 200) return sessionOf(res, what);
  if (res.status === 403) throw new CaptchaRequiredError(sessionId, true);
  if (res.status === 404) throw sessionNotFound();
  fail(res, what);
}

/**
 * POST /v1/verification/session/<id>/code {transport, client}: Signal sends the code by SMS or
 * voice call. Needs `allowedToRequestCode` (a solved captcha first).
 */
export async function requestVerificationCode(
  requester: ChatRequester,
  sessionId: string,
  transport: VerificationTransport,
  opts: { client?: string; acceptLanguage?: string } = {},
): Promise<VerificationSession> {
  if (transport !== 'sms' && transport !== 'voice') {
    throw new InvalidInputError(
      `The code can be sent by "sms" or "voice", not "${String(transport)}"`,
    );
  }
  const how = transport === 'sms' ? 'an SMS' : 'a voice call';
  const what = `Requesting a verification code by ${transport === 'sms' ? 'SMS' : 'voice call'}`;
  const res = await call(
    requester,
    'POST',
    sessionPath(sessionId, '/code'),
    { transport, client: opts.client ?? DEFAULT_VERIFICATION_CLIENT },
    opts.acceptLanguage ? { 'Accept-Language': opts.acceptLanguage } : undefined,
  );
  if (res.status === 200) return sessionOf(res, what);
  const session = sessionIn(res);
  switch (res.status) {
    case 404:
      throw sessionNotFound();
    case 409:
      // Already verified (nothing to send: go on to register) or information still missing.
      if (session?.verified) return session;
      if (!session || captchaWanted(session)) throw new CaptchaRequiredError(sessionId);
      throw new RegistrationError(
        'SESSION_EXHAUSTED',
        'Signal will not send a code for this verification session: start the verification again.',
      );
    case 418:
      throw new RegistrationError(
        'TRANSPORT_NOT_ALLOWED',
        `Signal cannot send the code by ${how} to this number right now: try ` +
          `${transport === 'sms' ? 'a voice call' : 'an SMS'} instead.`,
      );
    case 429: {
      const wait =
        retryAfterHeader(res) ?? (transport === 'sms' ? session?.nextSms : session?.nextCall);
      if (wait === undefined) {
        throw new RegistrationError(
          'SESSION_EXHAUSTED',
          `No more codes can be sent by ${how} in this verification session: try the other ` +
            'way, or start the verification again.',
        );
      }
      throw new RateLimitedError(wait, what);
    }
    case 440: {
      const body = json(res) as { permanentFailure?: unknown } | undefined;
      const permanent = body?.permanentFailure === true;
      throw new RegistrationError(
        'CODE_NOT_SENT',
        permanent
          ? `Signal's provider refused to deliver the code by ${how} to this number; it will not ` +
              'work for this number: try the other way.'
          : `Signal's provider could not deliver the code by ${how} just now: try again in a ` +
              'few minutes, or try the other way.',
      );
    }
  }
  fail(res, what);
}

/**
 * PUT /v1/verification/session/<id>/code {code}. Signal answers a wrong code with 200 and
 * `verified: false`; that and 400/403/409 become VerificationCodeError.
 */
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
  const what = 'Submitting the verification code';
  const res = await call(requester, 'PUT', sessionPath(sessionId, '/code'), { code: digits });
  const wrong = () =>
    new VerificationCodeError(
      'The verification code is wrong or expired: check the code from the SMS or voice call, or ' +
        'request a new code.',
    );
  if (res.status === 200) {
    const s = sessionOf(res, what);
    if (!s.verified) throw wrong();
    return s;
  }
  const session = sessionIn(res);
  switch (res.status) {
    case 400:
    case 403:
      throw wrong();
    case 404:
      throw sessionNotFound();
    case 409:
      if (session?.verified) return session;
      throw new VerificationCodeError(
        'No verification code is waiting for this session (none was requested, or it expired): ' +
          'request a new code.',
      );
    case 429: {
      const wait = retryAfterHeader(res) ?? session?.nextVerificationAttempt;
      if (wait === undefined) {
        throw new RegistrationError(
          'SESSION_EXHAUSTED',
          'Too many wrong codes for this verification session: start the verification again.',
        );
      }
      throw new RateLimitedError(wait, what);
    }
  }
  fail(res, what);
}
