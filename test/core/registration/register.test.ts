import assert from 'node:assert/strict';
import type { ChatRequest, ChatRequester, ChatResponse } from '../../../core/net/types';
import {
  captchaToken,
  createVerificationSession,
  getVerificationSession,
  registerAccount,
  requestVerificationCode,
  submitCaptcha,
  submitVerificationCode,
  type RegisterAccountArgs,
} from '../../../core/registration/register';
import {
  CaptchaRequiredError,
  RegistrationError,
  RegistrationLockedError,
  VerificationCodeError,
} from '../../../core/registration/errors';
import {
  InvalidInputError,
  InvalidNumberError,
  ProtocolError,
  RateLimitedError,
  ServerError,
} from '../../../core/errors';

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** Answers each request with the next scripted reply and records what was asked. */
class FakeRequester implements ChatRequester {
  readonly requests: ChatRequest[] = [];
  constructor(private readonly replies: Reply[]) {}
  async request(req: ChatRequest): Promise<ChatResponse> {
    this.requests.push(req);
    const r = this.replies.shift();
    assert.ok(r, `unexpected request ${req.verb} ${req.path}`);
    return {
      status: r.status,
      message: '',
      headers: r.headers ?? {},
      body: new Uint8Array(Buffer.from(r.body === undefined ? '' : JSON.stringify(r.body))),
    };
  }
  get last(): ChatRequest {
    const r = this.requests.at(-1);
    assert.ok(r);
    return r;
  }
}

const SESSION_ID = 'c2Vzc2lvbi1pZA==';
const session = (over: Record<string, unknown> = {}) => ({
  id: SESSION_ID,
  nextSms: null,
  nextCall: null,
  nextVerificationAttempt: null,
  allowedToRequestCode: false,
  requestedInformation: ['captcha'],
  verified: false,
  ...over,
});
const ENC = encodeURIComponent(SESSION_ID);

const signed = (keyId: number) => ({ keyId, publicKey: `pub${keyId}`, signature: `sig${keyId}` });
const registerArgs: RegisterAccountArgs = {
  number: '+14155550123',
  password: 'new-password',
  sessionId: SESSION_ID,
  accountAttributes: {
    fetchesMessages: true,
    registrationId: 42,
    pniRegistrationId: 43,
    capabilities: { spqr: true },
    unidentifiedAccessKey: Array.from({ length: 16 }, (_, i) => i),
    unrestrictedUnidentifiedAccess: false,
    discoverableByPhoneNumber: true,
    recoveryPassword: 'cmVjb3Zlcnk=',
  },
  aciIdentityKey: 'aciIdentity',
  pniIdentityKey: 'pniIdentity',
  aciSignedPreKey: signed(1),
  pniSignedPreKey: signed(2),
  aciPqLastResortPreKey: signed(3),
  pniPqLastResortPreKey: signed(4),
};

describe('registration/register (verification session flow)', () => {
  describe('createVerificationSession', () => {
    it('POSTs the E.164 number and returns the session, nulls dropped', async () => {
      const fake = new FakeRequester([{ status: 200, body: session({ nextSms: 0 }) }]);
      const s = await createVerificationSession(fake, '+1 415-555-0123');
      assert.deepEqual(fake.requests, [
        { verb: 'POST', path: '/v1/verification/session', body: { number: '+14155550123' } },
      ]);
      assert.deepEqual(s, {
        id: SESSION_ID,
        requestedInformation: ['captcha'],
        allowedToRequestCode: false,
        verified: false,
        nextSms: 0,
      });
    });

    it('maps 422 to an invalid number, 429 to the Retry-After wait, and rejects a malformed answer', async () => {
      await assert.rejects(
        createVerificationSession(new FakeRequester([{ status: 422 }]), '+14155550123'),
        InvalidNumberError,
      );
      await assert.rejects(
        createVerificationSession(
          new FakeRequester([{ status: 429, headers: { 'retry-after': '75' } }]),
          '+14155550123',
        ),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 75,
      );
      await assert.rejects(
        createVerificationSession(
          new FakeRequester([{ status: 200, body: { id: 'x' } }]),
          '+14155550123',
        ),
        ProtocolError,
      );
      // No network call for a number that cannot be one.
      const none = new FakeRequester([]);
      await assert.rejects(createVerificationSession(none, 'call me'), InvalidNumberError);
      assert.equal(none.requests.length, 0);
    });
  });

  describe('submitCaptcha', () => {
    it('strips the signalcaptcha:// prefix and PATCHes the session', async () => {
      const fake = new FakeRequester([
        { status: 200, body: session({ allowedToRequestCode: true, requestedInformation: [] }) },
      ]);
      const s = await submitCaptcha(
        fake,
        SESSION_ID,
        '  signalcaptcha://signal-hcaptcha.abc.registration.P1_token \n',
      );
      assert.deepEqual(fake.requests, [
        {
          verb: 'PATCH',
          path: `/v1/verification/session/${ENC}`,
          body: { captcha: 'signal-hcaptcha.abc.registration.P1_token' },
        },
      ]);
      assert.equal(s.allowedToRequestCode, true);
      assert.equal(captchaToken('SIGNALCAPTCHA://tok'), 'tok');
      assert.equal(captchaToken('tok-without-prefix'), 'tok-without-prefix');
      assert.throws(() => captchaToken('signalcaptcha://'), InvalidInputError);
    });

    it('maps 403 to a rejected captcha, 404 to an expired session, 429 to the wait', async () => {
      await assert.rejects(
        submitCaptcha(new FakeRequester([{ status: 403 }]), SESSION_ID, 'tok'),
        (e: unknown) =>
          e instanceof CaptchaRequiredError &&
          e.code === 'CHALLENGE_REQUIRED' &&
          e.rejected &&
          e.sessionId === SESSION_ID &&
          /signalcaptchas\.org\/registration\/generate\.html/.test(e.message),
      );
      await assert.rejects(
        submitCaptcha(new FakeRequester([{ status: 404 }]), SESSION_ID, 'tok'),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'SESSION_NOT_FOUND',
      );
      await assert.rejects(
        submitCaptcha(
          new FakeRequester([{ status: 429, headers: { 'retry-after': '30' }, body: session() }]),
          SESSION_ID,
          'tok',
        ),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 30,
      );
    });
  });

  describe('requestVerificationCode', () => {
    it('POSTs {transport, client} to the session’s code path', async () => {
      const fake = new FakeRequester([
        {
          status: 200,
          body: session({ allowedToRequestCode: true, requestedInformation: [], nextSms: 60 }),
        },
        { status: 200, body: session({ allowedToRequestCode: true, requestedInformation: [] }) },
      ]);
      const s = await requestVerificationCode(fake, SESSION_ID, 'sms');
      assert.equal(s.nextSms, 60);
      assert.deepEqual(fake.last, {
        verb: 'POST',
        path: `/v1/verification/session/${ENC}/code`,
        body: { transport: 'sms', client: 'desktop' },
      });
      await requestVerificationCode(fake, SESSION_ID, 'voice', {
        client: 'sigflow',
        acceptLanguage: 'de-DE',
      });
      assert.deepEqual(fake.last, {
        verb: 'POST',
        path: `/v1/verification/session/${ENC}/code`,
        body: { transport: 'voice', client: 'sigflow' },
        headers: { 'Accept-Language': 'de-DE' },
      });
      await assert.rejects(
        requestVerificationCode(fake, SESSION_ID, 'fax' as 'sms'),
        InvalidInputError,
      );
    });

    it('maps a 409 that still wants a captcha (and 402) to CaptchaRequiredError', async () => {
      await assert.rejects(
        requestVerificationCode(
          new FakeRequester([{ status: 409, body: session() }]),
          SESSION_ID,
          'sms',
        ),
        (e: unknown) =>
          e instanceof CaptchaRequiredError && !e.rejected && e.sessionId === SESSION_ID,
      );
      await assert.rejects(
        requestVerificationCode(new FakeRequester([{ status: 402 }]), SESSION_ID, 'sms'),
        CaptchaRequiredError,
      );
    });

    it('returns an already verified session from a 409 instead of failing', async () => {
      const s = await requestVerificationCode(
        new FakeRequester([
          { status: 409, body: session({ verified: true, requestedInformation: [] }) },
        ]),
        SESSION_ID,
        'sms',
      );
      assert.equal(s.verified, true);
    });

    it('maps 429 to the Retry-After header, else the session’s nextSms / nextCall, else an exhausted session', async () => {
      const limited = (reply: Reply, transport: 'sms' | 'voice') =>
        requestVerificationCode(new FakeRequester([reply]), SESSION_ID, transport);
      await assert.rejects(
        limited(
          { status: 429, headers: { 'retry-after': '12' }, body: session({ nextSms: 99 }) },
          'sms',
        ),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 12,
      );
      await assert.rejects(
        limited({ status: 429, body: session({ nextSms: 45, nextCall: 300 }) }, 'sms'),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 45,
      );
      await assert.rejects(
        limited({ status: 429, body: session({ nextSms: 45, nextCall: 300 }) }, 'voice'),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 300,
      );
      await assert.rejects(
        limited({ status: 429, body: session({ requestedInformation: [] }) }, 'sms'),
        (e: unknown) =>
          e instanceof RegistrationError &&
          e.reason === 'SESSION_EXHAUSTED' &&
          /start the verification again/.test(e.message),
      );
    });

    it('maps 418 to "try the other transport" and 440 to a delivery failure', async () => {
      await assert.rejects(
        requestVerificationCode(
          new FakeRequester([{ status: 418, body: session() }]),
          SESSION_ID,
          'sms',
        ),
        (e: unknown) =>
          e instanceof RegistrationError &&
          e.reason === 'TRANSPORT_NOT_ALLOWED' &&
          /try a voice call/.test(e.message),
      );
      await assert.rejects(
        requestVerificationCode(
          new FakeRequester([
            { status: 440, body: { reason: 'providerRejected', permanentFailure: true } },
          ]),
          SESSION_ID,
          'voice',
        ),
        (e: unknown) =>
          e instanceof RegistrationError &&
          e.reason === 'CODE_NOT_SENT' &&
          /will not work for this number/.test(e.message),
      );
    });
  });

  describe('submitVerificationCode', () => {
    it('PUTs the digits (separators removed) and returns the verified session', async () => {
      const fake = new FakeRequester([
        { status: 200, body: session({ verified: true, requestedInformation: [] }) },
      ]);
      const s = await submitVerificationCode(fake, SESSION_ID, '111-111');
      assert.equal(s.verified, true);
      assert.deepEqual(fake.requests, [
        { verb: 'PUT', path: `/v1/verification/session/${ENC}/code`, body: { code: '111111' } },
      ]);
    });

    it('maps a 200 with verified:false, 400, 403 and an unverified 409 to "wrong or expired"', async () => {
      for (const reply of [
        { status: 200, body: session({ verified: false }) },
        { status: 400 },
        { status: 403 },
      ]) {
        await assert.rejects(
          submitVerificationCode(new FakeRequester([reply]), SESSION_ID, '123456'),
          (e: unknown) =>
            e instanceof VerificationCodeError &&
            e.code === 'REGISTRATION' &&
            e.reason === 'WRONG_CODE' &&
            /the verification code is wrong or expired/i.test(e.message),
          `status ${reply.status}`,
        );
      }
      await assert.rejects(
        submitVerificationCode(
          new FakeRequester([{ status: 409, body: session() }]),
          SESSION_ID,
          '123456',
        ),
        (e: unknown) => e instanceof VerificationCodeError && /request a new code/.test(e.message),
      );
      const done = await submitVerificationCode(
        new FakeRequester([{ status: 409, body: session({ verified: true }) }]),
        SESSION_ID,
        '123456',
      );
      assert.equal(done.verified, true);
    });

    it('maps 429 to nextVerificationAttempt when no Retry-After, and refuses a non-code locally', async () => {
      await assert.rejects(
        submitVerificationCode(
          new FakeRequester([{ status: 429, body: session({ nextVerificationAttempt: 31 }) }]),
          SESSION_ID,
          '123456',
        ),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 31,
      );
      await assert.rejects(
        submitVerificationCode(
          new FakeRequester([{ status: 429, body: session() }]),
          SESSION_ID,
          '123456',
        ),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'SESSION_EXHAUSTED',
      );
      const none = new FakeRequester([]);
      await assert.rejects(submitVerificationCode(none, SESSION_ID, 'abc'), VerificationCodeError);
      assert.equal(none.requests.length, 0);
    });
  });

  describe('registerAccount', () => {
    it('POSTs /v1/registration with Basic <number>:<password> and the exact body', async () => {
      const fake = new FakeRequester([
        {
          status: 200,
          body: {
            uuid: 'aci-uuid',
            pni: 'PNI:pni-uuid',
            number: '+14155550123',
            storageCapable: false,
            reregistration: false,
          },
        },
      ]);
      const account = await registerAccount(fake, registerArgs);
      assert.deepEqual(account, {
        aci: 'aci-uuid',
        pni: 'pni-uuid',
        number: '+14155550123',
        reregistration: false,
      });
      assert.deepEqual(fake.requests, [
        {
          verb: 'POST',
          path: '/v1/registration',
          headers: {
            Authorization: `Basic ${Buffer.from('+14155550123:new-password').toString('base64')}`,
          },
          body: {
            sessionId: SESSION_ID,
            accountAttributes: registerArgs.accountAttributes,
            skipDeviceTransfer: true,
            aciIdentityKey: 'aciIdentity',
            pniIdentityKey: 'pniIdentity',
            aciSignedPreKey: signed(1),
            pniSignedPreKey: signed(2),
            aciPqLastResortPreKey: signed(3),
            pniPqLastResortPreKey: signed(4),
          },
        },
      ]);
    });

    it('maps 423 to a registration lock with the time left, and other refusals to what to do', async () => {
      const reg = (reply: Reply) => registerAccount(new FakeRequester([reply]), registerArgs);
      await assert.rejects(
        reg({ status: 423, body: { timeRemaining: 3 * 86_400_000, svr2Credentials: null } }),
        (e: unknown) =>
          e instanceof RegistrationLockedError &&
          e.reason === 'REGISTRATION_LOCKED' &&
          e.timeRemainingMs === 3 * 86_400_000 &&
          /already registered on Signal with a registration lock/.test(e.message) &&
          /about 3 day/.test(e.message),
      );
      await assert.rejects(
        reg({ status: 400, body: { error: 'session is not verified' } }),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'SESSION_NOT_VERIFIED',
      );
      await assert.rejects(
        reg({ status: 403 }),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'SESSION_NOT_VERIFIED',
      );
      await assert.rejects(reg({ status: 400, body: { error: 'malformed body' } }), ProtocolError);
      await assert.rejects(
        reg({ status: 429, headers: { 'retry-after': '3600' } }),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 3600,
      );
      await assert.rejects(
        reg({ status: 422 }),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'REJECTED',
      );
      await assert.rejects(reg({ status: 500 }), ServerError);
    });

    it('never puts the password in an error message', async () => {
      for (const status of [400, 401, 403, 409, 422, 423, 429, 500]) {
        await assert.rejects(
          registerAccount(new FakeRequester([{ status }]), registerArgs),
          (e: unknown) => {
            assert.ok(!(e as Error).message.includes('new-password'));
            return true;
          },
        );
      }
    });
  });

  it('GETs a session and maps 404 to an expired session', async () => {
    const fake = new FakeRequester([{ status: 200, body: session() }, { status: 404 }]);
    assert.equal((await getVerificationSession(fake, SESSION_ID)).id, SESSION_ID);
    assert.deepEqual(fake.last, { verb: 'GET', path: `/v1/verification/session/${ENC}` });
    await assert.rejects(
      getVerificationSession(fake, SESSION_ID),
      (e: unknown) => e instanceof RegistrationError && e.reason === 'SESSION_NOT_FOUND',
    );
  });
});
