/**
 * The verification-session and registration routes (PROTOCOL.md §9), over any ChatRequester. Signal's
 * mock server serves them only on the chat WebSocket, and Signal's own server takes them both ways, so
 * callers pass an UNauthenticated chat socket: the registration call carries its own Basic
 * credentials. Statuses follow Signal-Server's VerificationController and RegistrationController;
 * every answer the user must act on becomes a typed error that says what to do next.
 *
 * What the user typed arrives checked and normalized (E.164 number, code digits) from
 * core/registration/register.ts, which holds the flow.
 */
import { InvalidInputError, InvalidNumberError, ProtocolError, RateLimitedError } from '../errors';
import type { ChatRequester, ChatResponse } from '../net/types';
import {
  CaptchaRequiredError,
  RegistrationError,
  RegistrationLockedError,
  VerificationCodeError,
} from './errors';
import { ajv, basicAuth, call, check, fail, json, retryAfterHeader, stripPni } from './http';
import type { UploadSignedKey } from './keys';

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

/** A signed prekey in the registration body: the same upload form PUT /v2/keys takes (§4). */
export type SignedKeyUpload = UploadSignedKey;

/**
 * The account attributes POST /v1/registration takes. Field types follow what both Signal-Server
 * (Jackson: a byte[] accepts an array of numbers) and the mock server (zod: only an array) accept.
 */
export interface RegistrationAccountAttributes {
  fetchesMessages: boolean;
  registrationId: number;
  pniRegistrationId: number;
  name?: string;
  capabilities: Record<string, boolean>;
  /** The 16-byte unidentified access key derived from the profile key, as an array of bytes. */
  unidentifiedAccessKey: number[];
  unrestrictedUnidentifiedAccess: boolean;
  discoverableByPhoneNumber: boolean;
  /** Registration recovery password (base64); the mock requires it. */
  recoveryPassword: string;
  registrationLock?: string;
  [extra: string]: unknown;
}

export interface RegisterAccountArgs {
  /** E.164 of the verified session; the username of the Basic credentials. */
  number: string;
  /** The new account's password (primary device 1); never logged. */
  password: string;
  sessionId: string;
  accountAttributes: RegistrationAccountAttributes;
  /** base64 serialized identity public keys */
  aciIdentityKey: string;
  pniIdentityKey: string;
  aciSignedPreKey: SignedKeyUpload;
  pniSignedPreKey: SignedKeyUpload;
  aciPqLastResortPreKey: SignedKeyUpload;
  pniPqLastResortPreKey: SignedKeyUpload;
}

export interface RegisteredAccount {
  aci: string;
  /** Untagged PNI UUID. */
  pni: string;
  number: string;
  /** The server says an account already existed for this number and was replaced. */
  reregistration?: boolean;
}

/** Signal-Server maps any `client` it does not know to "unknown"; the mock accepts only these three. */
export const DEFAULT_VERIFICATION_CLIENT = 'desktop';

// ---- parsing ----

/** The session as the server sends it: `next*` may be null. */
interface RawSession {
  id: string;
  requestedInformation: string[];
  allowedToRequestCode: boolean;
  verified: boolean;
  nextSms?: number | null;
  nextCall?: number | null;
  nextVerificationAttempt?: number | null;
}

const optionalSeconds = { type: ['integer', 'null'] } as const;
const validateSession = ajv.compile<RawSession>({
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

const validateRegistered = ajv.compile<{
  uuid: string;
  pni: string;
  number: string;
  reregistration?: boolean;
}>({
  type: 'object',
  properties: {
    uuid: { type: 'string', minLength: 1 },
    pni: { type: 'string', minLength: 1 },
    number: { type: 'string' },
    reregistration: { type: 'boolean' },
  },
  required: ['uuid', 'pni', 'number'],
});

function toSession(data: RawSession): VerificationSession {
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

/** A success answer's session; a body that is not one (or not JSON) is a ProtocolError. */
const sessionOf = (res: ChatResponse, what: string): VerificationSession =>
  toSession(check(json(res), validateSession, what));

/** A session carried in an error answer (409/429 bodies), when there is one. */
function sessionIn(res: ChatResponse): VerificationSession | undefined {
  const data = json(res);
  return validateSession(data) ? toSession(data) : undefined;
}

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

function sessionPath(sessionId: string, tail = ''): string {
  if (typeof sessionId !== 'string' || sessionId === '') {
    throw new InvalidInputError('A verification session id is required');
  }
  return `/v1/verification/session/${encodeURIComponent(sessionId)}${tail}`;
}

function sessionNotFound(): RegistrationError {
  return new RegistrationError(
    'SESSION_NOT_FOUND',
    'Signal does not know this verification session any more (it expired): start the verification again.',
  );
}

/** Statuses any step may meet, after the step's own. */
function failStep(res: ChatResponse, what: string): never {
  if (res.status === 402) throw new CaptchaRequiredError(undefined);
  // POST /v1/registration without a capability Signal requires is answered 499 (PROTOCOL.md §12):
  // fail() maps it. A 401/403 here refuses the request, not a device (there is none yet).
  fail(res, what, 'the request');
}

// ---- the steps ----

/** POST /v1/verification/session {number}. A fresh session normally asks for a captcha first. */
export async function createVerificationSession(
  requester: ChatRequester,
  e164: string,
): Promise<VerificationSession> {
  const what = `Starting the verification of ${e164}`;
  const res = await call(requester, 'POST', '/v1/verification/session', { number: e164 });
  if (res.status === 200) return sessionOf(res, what);
  if (res.status === 422) {
    throw new InvalidNumberError(e164, 'was not accepted by Signal as a phone number to verify');
  }
  failStep(res, what);
}

/** GET /v1/verification/session/<id>: the session as it stands. */
export async function getVerificationSession(
  requester: ChatRequester,
  sessionId: string,
): Promise<VerificationSession> {
  const what = 'Reading the verification session';
  const res = await call(requester, 'GET', sessionPath(sessionId));
  if (res.status === 200) return sessionOf(res, what);
  if (res.status === 404) throw sessionNotFound();
  failStep(res, what);
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
  failStep(res, what);
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
  // Signal-Server's VerificationController knows these two transports only.
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
      if (!session || sessionNeedsCaptcha(session)) throw new CaptchaRequiredError(sessionId);
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
  failStep(res, what);
}

/**
 * PUT /v1/verification/session/<id>/code {code}. Signal answers a wrong code with 200 and
 * `verified: false`; that and 400/403/409 become VerificationCodeError.
 */
export async function submitVerificationCode(
  requester: ChatRequester,
  sessionId: string,
  digits: string,
): Promise<VerificationSession> {
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
  failStep(res, what);
}

/**
 * POST /v1/registration with `Authorization: Basic base64("<number>:<password>")` on a verified
 * session (`args.number` in E.164). Creates the account (or replaces the one registered for the
 * number): the caller then connects as `<aci>.1` with the same password and uploads one-time keys.
 */
export async function registerAccount(
  requester: ChatRequester,
  args: RegisterAccountArgs,
): Promise<RegisteredAccount> {
  const e164 = args.number;
  const what = `Registering ${e164}`;
  const res = await call(
    requester,
    'POST',
    '/v1/registration',
    {
      sessionId: args.sessionId,
      accountAttributes: args.accountAttributes,
      skipDeviceTransfer: true,
      aciIdentityKey: args.aciIdentityKey,
      pniIdentityKey: args.pniIdentityKey,
      aciSignedPreKey: args.aciSignedPreKey,
      pniSignedPreKey: args.pniSignedPreKey,
      aciPqLastResortPreKey: args.aciPqLastResortPreKey,
      pniPqLastResortPreKey: args.pniPqLastResortPreKey,
    },
    { Authorization: basicAuth(e164, args.password) },
  );
  if (res.status === 200) {
    const data = check(json(res), validateRegistered, what);
    return {
      aci: data.uuid,
      pni: stripPni(data.pni),
      number: data.number || e164,
      ...(data.reregistration !== undefined ? { reregistration: data.reregistration } : {}),
    };
  }
  const notVerified = () =>
    new RegistrationError(
      'SESSION_NOT_VERIFIED',
      `Signal did not accept the verification of ${e164} (the session is not verified, or was ` +
        'already used): verify the number again.',
    );
  switch (res.status) {
    case 400: {
      // The mock answers 400 "session is not verified"; anything else at 400 is our bug.
      const body = json(res) as { error?: unknown } | undefined;
      if (typeof body?.error === 'string' && /not verified/i.test(body.error)) throw notVerified();
      throw new ProtocolError(`${what}: the server rejected the request as malformed (400)`);
    }
    case 401:
    case 403:
      throw notVerified();
    case 404:
      throw sessionNotFound();
    case 409:
      throw new RegistrationError(
        'DEVICE_TRANSFER',
        `${what}: Signal offers a transfer from the phone that has this number; register again ` +
          'from the start.',
      );
    case 422:
      throw new RegistrationError(
        'REJECTED',
        `${what}: Signal rejected the account keys or attributes (422).`,
      );
    case 423: {
      const body = json(res) as { timeRemaining?: unknown } | undefined;
      const ms = typeof body?.timeRemaining === 'number' ? body.timeRemaining : undefined;
      throw new RegistrationLockedError(e164, ms);
    }
  }
  failStep(res, what);
}
