/**
 * The Registrar state machine with a real guard registry and a scripted Signal (a fake requester that
 * answers the verification routes like Signal-Server does): abandoning a local session never frees a
 * protected claim, code requests and submissions go through the guard (audited, rate-limited, at most
 * MAX_WRONG_CODES wrong codes per session), and a replaced registration elsewhere is reported.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChatRequest, ChatRequester, ChatResponse } from '../../../core/net/types';
import { RateLimitedError, SignalError } from '../../../core/errors';
import { silentLogger } from '../../../core/log';
import {
  CodeAttemptsExhaustedError,
  GuardRefusedError,
  NotOwnerError,
  RegistrationError,
  VerificationCodeError,
} from '../../../core/registration/errors';
import { GuardRegistry } from '../../../core/registration/guard';
import {
  MAX_WRONG_CODES,
  REREGISTRATION_NOTICE,
  Registrar,
} from '../../../core/registration/registrar';

const A = '+14155550101';
const B = '+14155550102';
const SECRET = 'the holder’s secret';
const CODE = '246810';

/** Signal's verification routes for any number of sessions: no captcha, code CODE. */
class FakeSignal {
  readonly requests: ChatRequest[] = [];
  private seq = 0;
  private readonly sessions = new Map<string, { verified: boolean }>();
  reregistration = false;
  /** The next this many code requests are answered 440 (the provider did not deliver the code). */
  failCodeRequests = 0;
  /** The next this many account creations fail after the code was verified (a network error). */
  failAccountCreations = 0;
  accountCreations = 0;

  requester(): ChatRequester & { close(): void } {
    return { request: (req) => this.answer(req), close: () => undefined };
  }

  private async answer(req: ChatRequest): Promise<ChatResponse> {
    this.requests.push(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const m = /^\/v1\/verification\/session(?:\/([^/]+))?(\/code)?$/.exec(req.path);
    if (m && req.verb === 'POST' && !m[1]) {
      const id = `session-${++this.seq}`;
      this.sessions.set(id, { verified: false });
      return this.session(id);
    }
    const id = m?.[1] ? decodeURIComponent(m[1]) : '';
    const s = this.sessions.get(id);
    if (!s) return reply(404, {});
    if (req.verb === 'POST' && m?.[2]) {
      if (this.failCodeRequests > 0) {
        this.failCodeRequests--;
        return reply(440, { permanentFailure: false });
      }
      return this.session(id);
    }
    if (req.verb === 'PUT' && m?.[2]) {
      if (body.code === CODE) s.verified = true;
      return this.session(id);
    }
    return reply(404, {});
  }

  private session(id: string): ChatResponse {
    return reply(200, {
      id,
      nextSms: 60,
      nextCall: 60,
      nextVerificationAttempt: 0,
      allowedToRequestCode: true,
      requestedInformation: [],
      verified: this.sessions.get(id)?.verified ?? false,
    });
  }

  count(verb: string, tail: string): number {
    return this.requests.filter((r) => r.verb === verb && r.path.endsWith(tail)).length;
  }
}

function reply(status: number, body: unknown): ChatResponse {
  return {
    status,
    message: '',
    headers: {},
    body: new Uint8Array(Buffer.from(JSON.stringify(body))),
  };
}

describe('registration/registrar with the guard', function () {
  this.timeout(60_000);
  let dir: string;
  let guard: GuardRegistry;
  let clock: number;
  let signal: FakeSignal;
  const registrar = () =>
    new Registrar({
      logger: silentLogger,
      openRequester: async () => signal.requester(),
      createAccount: async (_r, args) => {
        signal.accountCreations++;
        if (signal.failAccountCreations > 0) {
          signal.failAccountCreations--;
          throw new SignalError('NETWORK', 'the connection dropped during POST /v1/registration');
        }
        return {
          aci: '00000000-0000-4000-8000-000000000001',
          pni: '00000000-0000-4000-8000-000000000002',
          number: args.number,
          deviceId: 1,
          ...(signal.reregistration ? { reregistration: true } : {}),
        };
      },
    });
  const entry = async (n: string) => (await guard.list()).find((e) => e.number === n);

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-registrar-'));
    clock = Date.UTC(2025, 0, 1);
    guard = await GuardRegistry.open({ file: path.join(dir, 'guard.bin'), now: () => clock });
    signal = new FakeSignal();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('abandoning a local session never frees a protected claim', () => {
    it('starting another number on the same account leaves the protected claim pending, and only its holder can go on', async () => {
      const r = registrar();
      await r.start({ number: A, secret: SECRET, guard });
      // Someone else with editor access starts another number on the same account.
      await r.start({ number: B, guard });
      assert.equal((await entry(A))?.state, 'pending');
      assert.equal((await entry(A))?.protected, true);
      const other = registrar();
      await assert.rejects(
        other.start({ number: A, guard }),
        (e: unknown) => e instanceof GuardRefusedError && e.reason === 'NUMBER_CLAIMED',
      );
      await assert.rejects(
        other.start({ number: A, secret: 'a guess', guard }),
        (e: unknown) => e instanceof GuardRefusedError && e.reason === 'WRONG_SECRET',
      );
      // The holder goes on with their secret and registers.
      const holder = registrar();
      assert.equal((await holder.start({ number: A, secret: SECRET, guard })).state, 'code-sent');
      assert.equal((await holder.verify(CODE, SECRET)).state, 'registered');
      assert.equal((await entry(A))?.state, 'verified');
      const audit = await guard.audit();
      assert.ok(
        audit.some((e) => e.number === A && e.action === 'abandoned' && e.outcome === 'done'),
        'the abandoned session is audited',
      );
    });

    it('closing the client (redeploy, temporary client dropped) keeps a protected claim, frees an unprotected one', async () => {
      const r1 = registrar();
      await r1.start({ number: A, secret: SECRET, guard });
      await r1.close();
      assert.equal((await entry(A))?.state, 'pending');
      await assert.rejects(registrar().start({ number: A, guard }), GuardRefusedError);

      const r2 = registrar();
      await r2.start({ number: B, guard });
      await r2.close();
      assert.equal((await entry(B))?.state, 'failed');
      assert.equal((await registrar().start({ number: B, guard })).state, 'code-sent');
    });

    it('the protected claim ends when its holder cancels with the secret, or when it expires', async () => {
      const r = registrar();
      await r.start({ number: A, secret: SECRET, guard });
      await assert.rejects(r.cancel(), GuardRefusedError);
      assert.equal((await r.cancel(SECRET)).state, 'cancelled');
      assert.equal((await entry(A))?.state, 'failed');

      const r2 = registrar();
      await r2.start({ number: B, secret: SECRET, guard });
      await r2.close();
      clock += 60 * 60_000;
      assert.equal((await entry(B))?.state, 'failed', 'an abandoned claim still expires');
      assert.equal((await registrar().start({ number: B, guard })).state, 'code-sent');
    });
  });

  describe('code requests and submissions go through the guard', () => {
    it('re-sending the code is audited and counts against the per-number rate limit', async () => {
      const r = registrar();
      await r.start({ number: A, secret: SECRET, guard });
      await r.start({ number: A, secret: SECRET, guard, transport: 'voice' });
      await r.start({ number: A, secret: SECRET, guard });
      assert.equal(signal.count('POST', '/code'), 3);
      await assert.rejects(r.start({ number: A, secret: SECRET, guard }), (e: unknown) => {
        assert.ok(e instanceof RateLimitedError, String(e));
        assert.equal(e.retryAfterSeconds, 3600);
        assert.match(e.message, /re-sent code counts as an attempt/);
        return true;
      });
      assert.equal(signal.count('POST', '/code'), 3, 'the refused re-send never reached Signal');
      assert.equal(r.status.state, 'code-sent', 'the code already sent can still be entered');
      assert.equal(r.status.error?.code, 'RATE_LIMITED');
      const requests = (await guard.audit()).filter((e) => e.action === 'code-request');
      assert.deepEqual(
        requests.map((e) => [e.outcome, e.reason]),
        [
          ['allowed', 'sms'],
          ['allowed', 'voice, re-sent'],
          ['allowed', 'sms, re-sent'],
          ['rate-limited', 'retry in 3600 s'],
        ],
      );
      assert.equal((await r.verify(CODE, SECRET)).state, 'registered');
    });

    it('every code submission is audited without the code', async () => {
      const r = registrar();
      await r.start({ number: A, guard });
      await assert.rejects(r.verify('135791'), VerificationCodeError);
      assert.equal(r.status.codeAttemptsLeft, MAX_WRONG_CODES - 1);
      await r.verify(CODE);
      const audit = await guard.audit();
      assert.deepEqual(
        audit.filter((e) => e.action === 'verify').map((e) => [e.outcome, e.reason]),
        [
          ['allowed', 'code submission 1'],
          ['refused', `WRONG_CODE (1 of ${MAX_WRONG_CODES})`],
          ['allowed', 'code submission 2'],
        ],
      );
      const text = JSON.stringify(audit);
      assert.equal(text.includes('135791'), false);
      assert.equal(text.includes(CODE), false);
    });

    it(`after ${MAX_WRONG_CODES} wrong codes the session ends with a typed error and must restart`, async () => {
      const r = registrar();
      await r.start({ number: A, guard });
      for (let i = 1; i < MAX_WRONG_CODES; i++)
        await assert.rejects(r.verify('000000'), VerificationCodeError);
      await assert.rejects(r.verify('000000'), (e: unknown) => {
        assert.ok(e instanceof CodeAttemptsExhaustedError, String(e));
        assert.equal(e.reason, 'CODE_ATTEMPTS_EXHAUSTED');
        assert.match(e.message, /Start the registration again/);
        return true;
      });
      assert.equal(signal.count('PUT', '/code'), MAX_WRONG_CODES);
      assert.equal(r.status.state, 'failed');
      assert.equal(r.status.error?.reason, 'CODE_ATTEMPTS_EXHAUSTED');
      // Even the right code is no longer taken: the session is gone.
      await assert.rejects(
        r.verify(CODE),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'NOT_STARTED',
      );
      assert.equal(signal.count('PUT', '/code'), MAX_WRONG_CODES);
      assert.equal((await entry(A))?.state, 'failed', 'the unprotected claim is freed');
      // A new session works.
      await r.start({ number: A, guard });
      assert.equal((await r.verify(CODE)).state, 'registered');
    });

    it('a protected claim whose session ran out of guesses stays with its holder', async () => {
      const r = registrar();
      await r.start({ number: A, secret: SECRET, guard });
      for (let i = 1; i < MAX_WRONG_CODES; i++)
        await assert.rejects(r.verify('000000', SECRET), VerificationCodeError);
      await assert.rejects(
        r.verify('000000', SECRET),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'CODE_ATTEMPTS_EXHAUSTED',
      );
      assert.equal((await entry(A))?.state, 'pending');
      await assert.rejects(registrar().start({ number: A, guard }), GuardRefusedError);
    });

    it('a protected registration takes codes only with its secret: others can neither use up its guesses nor guess', async () => {
      const r = registrar();
      await r.start({ number: A, secret: SECRET, guard });
      const before = r.status;
      // Someone with editor access but without the secret submits codes, more than the limit.
      for (let i = 0; i < MAX_WRONG_CODES + 2; i++) {
        await assert.rejects(r.verify('000000'), (e: unknown) => {
          assert.ok(e instanceof NotOwnerError, String(e));
          assert.equal(e.reason, 'NOT_OWNER');
          assert.match(e.message, /protected by an ownership secret/);
          return true;
        });
      }
      await assert.rejects(
        r.verify(CODE, 'a guess'),
        (e: unknown) =>
          e instanceof NotOwnerError &&
          /does not match/.test(e.message) &&
          e.reason === 'NOT_OWNER',
      );
      assert.equal(signal.count('PUT', '/code'), 0, 'no submission reached Signal');
      assert.deepEqual(r.status, before, 'the holder’s registration is where it was');
      assert.equal(r.status.codeAttemptsLeft, MAX_WRONG_CODES);
      const verifies = (await guard.audit()).filter((e) => e.action === 'verify');
      assert.ok(verifies.length > 0 && verifies.every((e) => e.reason === 'NOT_OWNER'));
      // The holder's code still works.
      assert.equal((await r.verify(CODE, SECRET)).state, 'registered');
      assert.equal((await entry(A))?.state, 'verified');
    });

    it('an unprotected registration takes the code without a secret', async () => {
      const r = registrar();
      await r.start({ number: A, guard });
      assert.equal((await r.verify(CODE, 'any text')).state, 'registered');
    });

    it('retrying the account creation after Signal verified the code goes through the guard too', async () => {
      const r = registrar();
      await r.start({ number: A, guard });
      signal.failAccountCreations = 1;
      await assert.rejects(
        r.verify(CODE),
        (e: unknown) => e instanceof SignalError && e.code === 'NETWORK',
      );
      assert.equal(r.status.state, 'code-sent', 'the registration can be retried');
      // The claim expires and someone else takes the number.
      clock += 60 * 60_000;
      await registrar().start({ number: A, secret: 'newcomer', guard });
      await assert.rejects(
        r.verify(CODE),
        (e: unknown) => e instanceof GuardRefusedError && e.reason === 'STALE_ATTEMPT',
      );
      assert.equal(signal.accountCreations, 1, 'the number was not registered by the retry');
      assert.equal(r.status.state, 'failed');
      assert.equal((await entry(A))?.protected, true, 'the newcomer’s claim is untouched');
    });

    it('a retried account creation while the claim holds registers, and is audited as a retry', async () => {
      const r = registrar();
      await r.start({ number: A, guard });
      signal.failAccountCreations = 1;
      await assert.rejects(r.verify(CODE), SignalError);
      assert.equal((await r.verify(CODE)).state, 'registered');
      assert.equal(signal.count('PUT', '/code'), 1, 'the verified code is not submitted again');
      const verifies = (await guard.audit()).filter((e) => e.action === 'verify');
      assert.deepEqual(
        verifies.map((e) => [e.outcome, e.reason]),
        [
          ['allowed', 'code submission 1'],
          ['allowed', 'account creation retried (code already verified)'],
        ],
      );
    });

    it('a code request Signal did not send is not counted: the retry is no re-send, and failed re-sends use up no attempts', async () => {
      const r = registrar();
      signal.failCodeRequests = 1;
      await assert.rejects(
        r.start({ number: A, guard }),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'CODE_NOT_SENT',
      );
      assert.equal((await r.start({ number: A, guard })).state, 'code-sent');
      // Re-sends: one fails, then the two the rate limit leaves (3 per hour, the attempt included)
      // both go through.
      signal.failCodeRequests = 1;
      await assert.rejects(
        r.start({ number: A, guard }),
        (e: unknown) => e instanceof RegistrationError && e.reason === 'CODE_NOT_SENT',
      );
      await r.start({ number: A, guard, transport: 'voice' });
      await r.start({ number: A, guard });
      await assert.rejects(r.start({ number: A, guard }), RateLimitedError);
      const requests = (await guard.audit()).filter((e) => e.action === 'code-request');
      assert.deepEqual(
        requests.map((e) => [e.outcome, e.reason]),
        [
          ['allowed', 'sms'],
          ['refused', 'not sent by Signal (CODE_NOT_SENT): not counted'],
          ['allowed', 'sms'],
          ['allowed', 'sms, re-sent'],
          ['refused', 'not sent by Signal (CODE_NOT_SENT): not counted'],
          ['allowed', 'voice, re-sent'],
          ['allowed', 'sms, re-sent'],
          ['rate-limited', 'retry in 3600 s'],
        ],
      );
      assert.equal((await r.verify(CODE)).state, 'registered');
    });

    it('a session whose claim expired and was taken by someone else can neither re-send nor verify', async () => {
      const r = registrar();
      await r.start({ number: A, guard });
      clock += 60 * 60_000;
      await registrar().start({ number: A, secret: 'newcomer', guard });
      const puts = signal.count('PUT', '/code');
      await assert.rejects(
        r.verify(CODE),
        (e: unknown) => e instanceof GuardRefusedError && e.reason === 'STALE_ATTEMPT',
      );
      assert.equal(signal.count('PUT', '/code'), puts, 'the code never reached Signal');
      assert.equal(r.status.state, 'failed');
      assert.equal((await entry(A))?.protected, true, 'the newcomer’s claim is untouched');
    });
  });

  it('reports a registration elsewhere that was signed out (reregistration)', async () => {
    const r = registrar();
    await r.start({ number: A, guard });
    signal.reregistration = true;
    const done = await r.verify(CODE);
    assert.equal(done.state, 'registered');
    assert.equal(done.reregistration, true);
    assert.equal(done.notice, REREGISTRATION_NOTICE);
    const verified = (await guard.audit()).find((e) => e.action === 'verified');
    assert.match(String(verified?.reason), /signed out/);

    const plain = registrar();
    signal.reregistration = false;
    await plain.start({ number: B, guard });
    assert.equal((await plain.verify(CODE)).reregistration, undefined);
  });
});
