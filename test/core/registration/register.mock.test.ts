/**
 * The verification flow against Signal's mock server over a real unauthenticated chat socket: proves
 * the routes, field names and statuses the mock serves (PROTOCOL.md §9, §11). The mock accepts any
 * captcha and the code 111111; it serves these routes on the WebSocket only.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { IdentityKeyPair } from '@signalapp/libsignal-client';
import { startSandbox, type Sandbox } from '../../harness/sandbox';
import { resolveEnvironment } from '../../../core/config';
import { ChatConnection } from '../../../core/net/connection';
import { httpsGet } from '../../../core/net/https';
import { silentLogger } from '../../../core/log';
import { whoami } from '../../../core/api';
import { ServerError } from '../../../core/errors';
import {
  generateKyberPreKey,
  generatePassword,
  generateRegistrationId,
  generateSignedPreKey,
} from '../../../core/crypto/keys';
import {
  createVerificationSession,
  getVerificationSession,
  registerAccount,
  requestVerificationCode,
  sessionNeedsCaptcha,
  submitCaptcha,
  submitVerificationCode,
  type RegisterAccountArgs,
} from '../../../core/registration/register';
import {
  RegistrationError,
  RegistrationLockedError,
  VerificationCodeError,
} from '../../../core/registration/errors';

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

function registrationKeys(
  number: string,
  password: string,
  sessionId: string,
): RegisterAccountArgs {
  const aci = IdentityKeyPair.generate();
  const pni = IdentityKeyPair.generate();
  return {
    number,
    password,
    sessionId,
    accountAttributes: {
      fetchesMessages: true,
      registrationId: generateRegistrationId(),
      pniRegistrationId: generateRegistrationId(),
      capabilities: { attachmentBackfill: true, spqr: true, usernameChangeSyncMessage: true },
      unidentifiedAccessKey: Array.from(crypto.randomBytes(16)),
      unrestrictedUnidentifiedAccess: false,
      discoverableByPhoneNumber: true,
      recoveryPassword: crypto.randomBytes(32).toString('base64'),
    },
    aciIdentityKey: b64(aci.publicKey.serialize()),
    pniIdentityKey: b64(pni.publicKey.serialize()),
    aciSignedPreKey: generateSignedPreKey(aci.privateKey, 1).upload,
    pniSignedPreKey: generateSignedPreKey(pni.privateKey, 1).upload,
    aciPqLastResortPreKey: generateKyberPreKey(aci.privateKey, 1).upload,
    pniPqLastResortPreKey: generateKyberPreKey(pni.privateKey, 1).upload,
  };
}

describe('registration/register against the mock server', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let unauth: ChatConnection;

  before(async () => {
    sandbox = await startSandbox();
  });
  beforeEach(async () => {
    unauth = sandbox.track(
      await ChatConnection.open({
        env: resolveEnvironment(sandbox.environment),
        path: '/v1/websocket/',
        logger: silentLogger,
        keepalive: false,
      }),
    );
  });
  after(async () => {
    await sandbox.close();
  });

  it('registers a new number: session, captcha, code by SMS, wrong then right code, registration', async () => {
    const number = '+14155550177';
    const created = await createVerificationSession(unauth, number);
    assert.deepEqual(created.requestedInformation, ['captcha']);
    assert.equal(sessionNeedsCaptcha(created), true);
    assert.equal(created.allowedToRequestCode, false);
    assert.equal(created.verified, false);

    const solved = await submitCaptcha(unauth, created.id, 'signalcaptcha://any.token.works');
    assert.equal(solved.allowedToRequestCode, true);
    // The mock keeps "captcha" listed after solving it; allowedToRequestCode is what opens the code.
    assert.equal(sessionNeedsCaptcha(solved), false);

    const sent = await requestVerificationCode(unauth, created.id, 'sms');
    assert.equal(sent.nextSms, 60);

    await assert.rejects(
      submitVerificationCode(unauth, created.id, '222222'),
      VerificationCodeError,
    );
    const verified = await submitVerificationCode(unauth, created.id, '111111');
    assert.equal(verified.verified, true);

    const password = generatePassword();
    const account = await registerAccount(unauth, registrationKeys(number, password, created.id));
    assert.equal(account.number, number);
    assert.match(account.aci, /^[0-9a-f-]{36}$/);
    assert.match(account.pni, /^[0-9a-f-]{36}$/);

    // The new credentials open an authenticated socket as the primary device 1.
    const authed = sandbox.track(
      await ChatConnection.open({
        env: resolveEnvironment(sandbox.environment),
        path: '/v1/websocket/',
        auth: { username: `${account.aci}.1`, password },
        logger: silentLogger,
        keepalive: false,
        handler: () => 200,
      }),
    );
    assert.deepEqual(await whoami(authed), { aci: account.aci, pni: account.pni, number });
  });

  it('the mock takes only "desktop", "ios" or "android" as the code-request client (Signal-Server takes any)', async () => {
    const created = await createVerificationSession(unauth, '+14155550180');
    await submitCaptcha(unauth, created.id, 'tok');
    await assert.rejects(
      requestVerificationCode(unauth, created.id, 'sms', { client: 'sigflow' }),
      (e: unknown) => e instanceof ServerError && e.status === 400,
    );
    const sent = await requestVerificationCode(unauth, created.id, 'sms');
    assert.equal(sent.allowedToRequestCode, true);
  });

  it('serves the verification routes on the WebSocket only: plain HTTPS falls to its catch-all', async () => {
    const created = await createVerificationSession(unauth, '+14155550181');
    assert.equal((await getVerificationSession(unauth, created.id)).id, created.id);
    await assert.rejects(
      httpsGet(
        resolveEnvironment(sandbox.environment),
        `${sandbox.url}/v1/verification/session/${created.id}`,
        { timeoutMs: 10_000 },
      ),
      // The HTTP catch-all asks for credentials (401) and then answers 404 "Not supported yet".
      (e: unknown) => e instanceof ServerError && e.status === 401,
    );
  });

  it('refuses registration on an unverified session', async () => {
    const number = '+14155550178';
    const created = await createVerificationSession(unauth, number);
    await assert.rejects(
      registerAccount(unauth, registrationKeys(number, generatePassword(), created.id)),
      (e: unknown) => e instanceof RegistrationError && e.reason === 'SESSION_NOT_VERIFIED',
    );
  });

  it('maps the server’s registration-lock answer (423) to RegistrationLockedError', async () => {
    const number = '+14155550179';
    const created = await createVerificationSession(unauth, number);
    await submitCaptcha(unauth, created.id, 'tok');
    await requestVerificationCode(unauth, created.id, 'voice');
    await submitVerificationCode(unauth, created.id, '111111');
    sandbox.server.setRegisterResponseError({
      code: 423,
      data: { timeRemaining: 86_400_000, svr2Credentials: null },
    });
    try {
      await assert.rejects(
        registerAccount(unauth, registrationKeys(number, generatePassword(), created.id)),
        (e: unknown) => e instanceof RegistrationLockedError && e.timeRemainingMs === 86_400_000,
      );
    } finally {
      sandbox.server.setRegisterResponseError(undefined);
    }
  });
});
