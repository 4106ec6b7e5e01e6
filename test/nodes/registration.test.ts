/**
 * Registering a number of its own through the signal-account admin routes, the way the editor does
 * (node-red-node-test-helper + Signal's mock server: any captcha, code 111111): start → verify → the
 * deployed account connects; the instance's guard registry refuses a second registration of a
 * verified number without its ownership secret and allows it with it; the registry shows no secret;
 * release needs the secret; a linked number is recorded too. Then the same routes under adminAuth in
 * a real Node-RED: every registration route, reads included, needs `signal-account.write`.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import accountNode = require('../../nodes/signal-account');
import { GUARD_FILE } from '../../nodes/lib/registration';
import { startNodeRed, type NodeRedProcess } from '../harness/node-red';
import { startSandbox, type PrimaryDevice, type Sandbox } from '../harness/sandbox';
import {
  accountConfig,
  helper,
  linkThroughAdminRoutes,
  poll,
  type AccountTestNode,
} from './support';

/** What the registration routes answer, as far as the tests read it. */
interface RegBody {
  state?: string;
  number?: string;
  transport?: string;
  protected?: boolean;
  replacesVerified?: boolean;
  notice?: string;
  reregistration?: boolean;
  codeAttemptsLeft?: number;
  connected?: boolean;
  linked?: boolean;
  account?: { aci: string; number?: string; deviceId: number };
  error?: { code: string; message: string; reason?: string; retryAfterSeconds?: number };
  numbers?: Array<{ number: string; state: string; protected: boolean; via?: string }>;
  audit?: Array<{ number: string; action: string; outcome: string; reason?: string }>;
  released?: string;
}
interface Res {
  status: number;
  body: RegBody;
  text: string;
}
interface RawReq extends Promise<Res> {
  send(body: unknown): RawReq;
}
/** node-red-node-test-helper's redeploy (its typings in ./support leave it out). */
const redeploy = (flow: unknown[]) =>
  (helper as unknown as { setFlows(f: unknown[], type: string): Promise<void> }).setFlows(
    flow,
    'full',
  );
interface RawAgent {
  get(path: string): RawReq;
  post(path: string): RawReq;
  delete(path: string): RawReq;
}
const agent = () => helper.request() as unknown as RawAgent;

/**
 * Makes the mock answer the next `count` code requests (POST /v1/verification/session/<id>/code)
 * with 440, as Signal does when its SMS or voice provider did not deliver the code; the mock has no
 * setting for it. Wraps the connections' request handling until restore().
 */
function failCodeRequests(count: number): { restore(): void } {
  interface Route {
    method: string;
    pattern: { match(path: string): Record<string, string> | null };
    handler: () => Promise<[number, unknown]>;
  }
  const { Connection } = require('@signalapp/mock-server/src/server/ws/connection') as {
    Connection: {
      prototype: {
        handleRequest(this: { router: { routes: Route[] } }, request: unknown): Promise<unknown>;
      };
    };
  };
  const original = Connection.prototype.handleRequest;
  let left = count;
  Connection.prototype.handleRequest = async function handleRequest(request) {
    const r = request as { verb?: string; path?: string };
    if (
      left > 0 &&
      r.verb === 'POST' &&
      /^\/v1\/verification\/session\/[^/]+\/code$/.test(r.path ?? '')
    ) {
      left--;
      const route: Route = {
        method: 'POST',
        pattern: { match: () => ({}) },
        handler: async () => [440, { permanentFailure: false }],
      };
      this.router.routes.unshift(route);
      try {
        return await original.call(this, request);
      } finally {
        this.router.routes.splice(this.router.routes.indexOf(route), 1);
      }
    }
    return original.call(this, request);
  };
  return {
    restore: () => {
      Connection.prototype.handleRequest = original;
    },
  };
}

describe('nodes: registering a number through the signal-account admin routes', function () {
  this.timeout(90_000);
  let sandbox: Sandbox;
  let alice: PrimaryDevice;
  let dataDir: string;
  let seq = 0;
  const nextNumber = () => `+1415555${String(3100 + seq++).padStart(4, '0')}`;

  before(async () => {
    sandbox = await startSandbox();
    alice = await sandbox.createPrimary({ profileName: 'Alice' });
  });
  after(async () => {
    await sandbox.close();
  });
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-reg-nodes-'));
    helper.settings({ signalAccountDataDir: dataDir });
  });
  afterEach(async () => {
    await helper.unload();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const server = () => ({
    server: 'custom',
    serviceUrl: sandbox.url,
    caCert: sandbox.caCert,
    trustRoots: sandbox.trustRoot,
  });
  const start = (id: string, body: Record<string, unknown>) =>
    agent()
      .post(`/signal-account/${id}/register`)
      .send({ ...server(), ...body });
  const verify = (id: string, code: unknown, secret?: string) =>
    agent()
      .post(`/signal-account/${id}/register/verify`)
      .send({ code, ...(secret !== undefined ? { secret } : {}) });
  const registry = async () => (await agent().get('/signal-account/registry')).body;

  function expectError(r: Res, status: number, code: string, reason?: string): void {
    assert.equal(r.status, status, `${r.status} ${r.text}`);
    assert.equal(r.body.error?.code, code, r.text);
    if (reason) assert.equal(r.body.error?.reason, reason, r.text);
    assert.ok(r.body.error?.message, 'the error says what happened');
  }

  async function registerThroughRoutes(id: string, number: string, secret?: string) {
    const needsCaptcha = await start(id, { number, transport: 'sms' });
    expectError(needsCaptcha, 428, 'CHALLENGE_REQUIRED');
    assert.match(String(needsCaptcha.body.error?.message), /signalcaptchas\.org/);
    assert.equal(
      (await agent().get(`/signal-account/${id}/register`)).body.state,
      'captcha-required',
    );
    const sent = await start(id, {
      number,
      transport: 'voice',
      captcha: 'signalcaptcha://token.for.the.test',
      ...(secret ? { secret } : {}),
    });
    assert.equal(sent.status, 200, sent.text);
    assert.equal(sent.body.state, 'code-sent');
    assert.equal(sent.body.transport, 'voice');
    assert.equal(sent.body.protected, Boolean(secret));
    if (!secret) assert.match(String(sent.body.notice), /No ownership secret/);
    expectError(await verify(id, '123456', secret), 422, 'REGISTRATION', 'WRONG_CODE');
    const done = await verify(id, '111111', secret);
    assert.equal(done.status, 200, done.text);
    assert.equal(done.body.state, 'registered');
    assert.equal(done.body.account?.number, number);
    assert.equal(done.body.account?.deviceId, 1);
    return done.body;
  }

  it('start → verify: the deployed account registers, connects, and the registry records the claim without its secret', async () => {
    await helper.load([accountNode], [accountConfig(sandbox, 'acct1', 'Signal acct1')]);
    const number = nextNumber();
    const secret = `secret-${crypto.randomBytes(6).toString('hex')}`;
    const done = await registerThroughRoutes('acct1', number, secret);
    assert.equal(done.connected, true);
    const status = await poll(
      async () => (await agent().get('/signal-account/acct1/status')).body,
      (b) => Boolean(b.connected),
      10_000,
      'connected',
    );
    assert.equal(status.linked, true);
    const client = await (helper.getNode('acct1') as AccountTestNode).client();
    assert.equal(client.account?.number, number);
    assert.equal(client.state, 'connected');
    assert.ok(fs.existsSync(path.join(dataDir, 'acct1.db')));

    const reg = await agent().get('/signal-account/registry');
    assert.equal(reg.status, 200);
    assert.deepEqual(
      reg.body.numbers?.map((e) => [e.number, e.state, e.protected, e.via]),
      [[number, 'verified', true, 'registered']],
    );
    assert.ok(reg.body.audit?.some((a) => a.action === 'verified' && a.number === number));
    for (const bad of [secret, 'salt', 'hash', 'scrypt'])
      assert.equal(reg.text.includes(bad), false, `the registry answer holds "${bad}"`);
    // Neither the secret, the captcha token nor the codes reach any log line.
    const logged = JSON.stringify(
      helper
        .log()
        .getCalls()
        .map((c) => c.args),
    );
    assert.match(logged, /registered \+\d+ as a primary device/, 'the log lines are captured');
    for (const bad of [secret, 'token.for.the.test', '111111', '123456'])
      assert.equal(logged.includes(bad), false, `a log line holds "${bad}"`);
    // No credentialSecret in these settings: the registry is encrypted under a 0600 key file.
    assert.ok(fs.existsSync(path.join(dataDir, GUARD_FILE)));
    assert.equal(fs.statSync(path.join(dataDir, `${GUARD_FILE}.key`)).mode & 0o777, 0o600);
    // A second registration on the same account is refused: it already holds one.
    expectError(
      await start('acct1', { number: nextNumber(), captcha: 'x' }),
      409,
      'REGISTRATION',
      'ACCOUNT_EXISTS',
    );
  });

  it('a verified number: refused without the secret or with a wrong one, allowed with it; release needs the secret', async () => {
    await helper.load(
      [accountNode],
      [
        accountConfig(sandbox, 'acct1', 'Signal acct1'),
        accountConfig(sandbox, 'acct2', 'Signal acct2'),
      ],
    );
    const number = nextNumber();
    const secret = 'the owner’s secret';
    await registerThroughRoutes('acct1', number, secret);

    expectError(
      await start('acct2', { number, captcha: 'x' }),
      403,
      'REGISTRATION',
      'NUMBER_CLAIMED',
    );
    const wrong = await start('acct2', { number, captcha: 'x', secret: 'not it' });
    expectError(wrong, 403, 'REGISTRATION', 'WRONG_SECRET');
    assert.equal(wrong.text.includes('not it'), false);
    const allowed = await start('acct2', { number, captcha: 'x', secret });
    assert.equal(allowed.status, 200, allowed.text);
    assert.equal(allowed.body.state, 'code-sent');
    assert.equal(allowed.body.replacesVerified, true);
    // Cancelling someone's protected attempt needs their secret; the number stays verified.
    expectError(
      await agent().delete('/signal-account/acct2/register').send({}),
      403,
      'REGISTRATION',
      'NUMBER_CLAIMED',
    );
    const cancelled = await agent().delete('/signal-account/acct2/register').send({ secret });
    assert.equal(cancelled.body.state, 'cancelled', cancelled.text);
    assert.equal((await registry()).numbers?.[0]?.state, 'verified');

    const release = (body: Record<string, unknown>) =>
      agent().post('/signal-account/registry/release').send(body);
    expectError(await release({ number }), 403, 'REGISTRATION', 'NUMBER_CLAIMED');
    expectError(await release({ number, secret: 'nope' }), 403, 'REGISTRATION', 'WRONG_SECRET');
    const released = await release({ number, secret });
    assert.equal(released.status, 200, released.text);
    assert.equal(released.body.released, number);
    assert.deepEqual((await registry()).numbers, []);
    expectError(await release({ number, secret }), 404, 'INVALID_INPUT');
    expectError(await release({}), 400, 'INVALID_INPUT');
  });

  it('a number linked through the editor is recorded, and registering it then needs a release first', async () => {
    await helper.load(
      [accountNode],
      [
        accountConfig(sandbox, 'linked1', 'Signal linked1'),
        accountConfig(sandbox, 'acct2', 'Signal acct2'),
      ],
    );
    await linkThroughAdminRoutes(sandbox, 'linked1', alice);
    const entry = await poll(
      async () => (await registry()).numbers?.find((e) => e.number === alice.device.number),
      (e) => e !== undefined,
      10_000,
      'linked number in the registry',
    );
    assert.equal(entry?.state, 'verified');
    assert.equal(entry?.via, 'linked');
    expectError(
      await start('acct2', { number: alice.device.number, captcha: 'x' }),
      403,
      'REGISTRATION',
      'NUMBER_CLAIMED',
    );
  });

  it('starting another number on the same account does not free a protected pending claim', async () => {
    await helper.load(
      [accountNode],
      [
        accountConfig(sandbox, 'acct1', 'Signal acct1'),
        accountConfig(sandbox, 'acct2', 'Signal acct2'),
      ],
    );
    const held = nextNumber();
    const secret = 'the holder’s secret';
    const sent = await start('acct1', { number: held, captcha: 'x', secret });
    assert.equal(sent.status, 200, sent.text);
    // Someone else with editor access starts another number on the same account…
    const other = await start('acct1', { number: nextNumber(), captcha: 'x' });
    assert.equal(other.status, 200, other.text);
    // …which gives up the holder's session here, but not their claim.
    const entry = (await registry()).numbers?.find((e) => e.number === held);
    assert.deepEqual([entry?.state, entry?.protected], ['pending', true]);
    expectError(
      await start('acct2', { number: held, captcha: 'x' }),
      403,
      'REGISTRATION',
      'NUMBER_CLAIMED',
    );
    expectError(
      await start('acct2', { number: held, captcha: 'x', secret: 'a guess' }),
      403,
      'REGISTRATION',
      'WRONG_SECRET',
    );
    const holder = await start('acct2', { number: held, captcha: 'x', secret });
    assert.equal(holder.status, 200, holder.text);
    assert.equal((await verify('acct2', '111111', secret)).body.state, 'registered');
  });

  it('a redeploy, or the editor’s temporary client being dropped, does not free a protected pending claim', async () => {
    const flow = [accountConfig(sandbox, 'acct1', 'Signal acct1')];
    await helper.load([accountNode], flow);
    const secret = 'the holder’s secret';
    const onDeployed = nextNumber();
    const onTemporary = nextNumber();
    assert.equal((await start('acct1', { number: onDeployed, captcha: 'x', secret })).status, 200);
    // Not deployed yet: the registration runs in a temporary client of its own.
    assert.equal(
      (await start('fresh1', { number: onTemporary, captcha: 'x', secret })).status,
      200,
    );
    // Redeploy: acct1 restarts (its client closes), fresh1 is deployed now.
    await redeploy([
      { ...flow[0], name: 'Signal acct1 renamed' },
      accountConfig(sandbox, 'fresh1', 'Signal fresh1'),
    ]);
    // The deployed fresh1 takes over: its temporary client is dropped.
    assert.equal((await start('fresh1', { number: nextNumber(), captcha: 'x' })).status, 200);
    const ended = await poll(
      registry,
      (b) =>
        [onDeployed, onTemporary].every((n) =>
          b.audit?.some((a) => a.number === n && ['abandoned', 'failed'].includes(a.action)),
        ),
      10_000,
      'both sessions given up',
    );
    for (const n of [onDeployed, onTemporary]) {
      const entry = ended.numbers?.find((e) => e.number === n);
      assert.deepEqual([n, entry?.state, entry?.protected], [n, 'pending', true]);
      expectError(await start('acct1', { number: n, captcha: 'x' }), 403, 'REGISTRATION');
    }
  });

  it('re-sent codes count against the rate limit, wrong codes are limited per session, and both are audited', async () => {
    await helper.load([accountNode], [accountConfig(sandbox, 'acct1', 'Signal acct1')]);
    const number = nextNumber();
    const secret = 'the holder’s secret';
    expectError(await start('acct1', { number, secret }), 428, 'CHALLENGE_REQUIRED');
    const first = await start('acct1', { number, captcha: 'x', secret });
    assert.equal(first.status, 200, first.text);
    for (let i = 0; i < 2; i++)
      assert.equal((await start('acct1', { number, secret })).status, 200, 're-send');
    const limited = await start('acct1', { number, secret });
    expectError(limited, 429, 'RATE_LIMITED');
    assert.match(String(limited.body.error?.message), /re-sent code counts as an attempt/);

    for (let i = 1; i < 5; i++) {
      const wrong = await verify('acct1', '123456', secret);
      expectError(wrong, 422, 'REGISTRATION', 'WRONG_CODE');
    }
    const status = (await agent().get('/signal-account/acct1/register')).body;
    assert.equal(status.codeAttemptsLeft, 1);
    expectError(
      await verify('acct1', '123456', secret),
      410,
      'REGISTRATION',
      'CODE_ATTEMPTS_EXHAUSTED',
    );
    expectError(await verify('acct1', '111111', secret), 409, 'REGISTRATION', 'NOT_STARTED');

    const reg = await registry();
    const mine = (reg.audit ?? []).filter((a) => a.number === number);
    assert.deepEqual(
      mine.filter((a) => a.action === 'code-request').map((a) => a.outcome),
      ['allowed', 'allowed', 'allowed', 'rate-limited'],
    );
    assert.equal(mine.filter((a) => a.action === 'verify' && a.outcome === 'allowed').length, 5);
    assert.equal(
      mine.filter((a) => a.action === 'verify' && /WRONG_CODE/.test(a.reason ?? '')).length,
      5,
    );
    // The protected claim stays with its holder; neither code nor secret is in the audit.
    assert.deepEqual(
      reg.numbers?.filter((e) => e.number === number).map((e) => [e.state, e.protected]),
      [['pending', true]],
    );
    for (const bad of ['123456', '111111', secret])
      assert.equal(JSON.stringify(reg).includes(bad), false, `the registry answer holds ${bad}`);
  });

  it('a protected registration takes codes only with its secret: 403 NOT_OWNER, no guess used, and the holder still registers', async () => {
    await helper.load([accountNode], [accountConfig(sandbox, 'acct1', 'Signal acct1')]);
    const number = nextNumber();
    const secret = 'the holder’s secret';
    assert.equal((await start('acct1', { number, captcha: 'x', secret })).status, 200);
    // Someone with signal-account.write but without the secret: more tries than the limit.
    for (let i = 0; i < 6; i++)
      expectError(await verify('acct1', '123456'), 403, 'REGISTRATION', 'NOT_OWNER');
    const guessed = await verify('acct1', '111111', 'a guess');
    expectError(guessed, 403, 'REGISTRATION', 'NOT_OWNER');
    assert.equal(guessed.text.includes('a guess'), false);
    const status = (await agent().get('/signal-account/acct1/register')).body;
    assert.equal(status.state, 'code-sent');
    assert.equal(status.codeAttemptsLeft, 5, 'no guess of the holder was used');
    const mine = ((await registry()).audit ?? []).filter(
      (a) => a.number === number && a.action === 'verify',
    );
    assert.equal(mine.length, 7);
    assert.ok(mine.every((a) => a.outcome === 'refused' && a.reason === 'NOT_OWNER'));
    const done = await verify('acct1', '111111', secret);
    assert.equal(done.status, 200, done.text);
    assert.equal(done.body.state, 'registered');
  });

  it('retrying the account creation after the code was verified is refused once the claim is someone else’s', async () => {
    await helper.load(
      [accountNode],
      [
        accountConfig(sandbox, 'acct1', 'Signal acct1'),
        accountConfig(sandbox, 'acct2', 'Signal acct2'),
      ],
    );
    const number = nextNumber();
    assert.equal((await start('acct1', { number, captcha: 'x' })).status, 200);
    // Signal verifies the code, then POST /v1/registration fails: the retry goes on from there.
    sandbox.server.setRegisterResponseError({ code: 503, data: {} });
    try {
      const failed = await verify('acct1', '111111');
      assert.equal(failed.status, 502, failed.text);
    } finally {
      sandbox.server.setRegisterResponseError(undefined);
    }
    assert.equal((await agent().get('/signal-account/acct1/register')).body.state, 'code-sent');
    // Meanwhile someone else takes the unprotected claim and protects it.
    assert.equal((await start('acct2', { number, captcha: 'x', secret: 'newcomer' })).status, 200);
    expectError(await verify('acct1', '111111'), 409, 'REGISTRATION', 'STALE_ATTEMPT');
    assert.equal((await agent().get('/signal-account/acct1/register')).body.state, 'failed');
    const entry = (await registry()).numbers?.find((e) => e.number === number);
    assert.deepEqual([entry?.state, entry?.protected], ['pending', true]);
  });

  it('a code Signal did not send is not counted: the retry is no re-send and the rate limit is not used up', async () => {
    await helper.load([accountNode], [accountConfig(sandbox, 'acct1', 'Signal acct1')]);
    const number = nextNumber();
    const undelivered = failCodeRequests(1);
    try {
      const failed = await start('acct1', { number, captcha: 'x' });
      expectError(failed, 502, 'REGISTRATION', 'CODE_NOT_SENT');
    } finally {
      undelivered.restore();
    }
    assert.equal((await start('acct1', { number, captcha: 'x' })).status, 200, 'retry');
    // The two re-sends the limit leaves (3 per hour, the attempt included) both go through.
    for (let i = 0; i < 2; i++)
      assert.equal((await start('acct1', { number })).status, 200, 're-send');
    expectError(await start('acct1', { number }), 429, 'RATE_LIMITED');
    const requests = ((await registry()).audit ?? []).filter(
      (a) => a.number === number && a.action === 'code-request',
    );
    assert.deepEqual(
      requests.map((a) => [a.outcome, a.reason]),
      [
        ['allowed', 'sms'],
        ['refused', 'not sent by Signal (CODE_NOT_SENT): not counted'],
        ['allowed', 'sms'],
        ['allowed', 'sms, re-sent'],
        ['allowed', 'sms, re-sent'],
        ['rate-limited', 'retry in 3600 s'],
      ],
    );
  });

  it('registering a number active elsewhere says that install was signed out', async () => {
    await helper.load([accountNode], [accountConfig(sandbox, 'acct1', 'Signal acct1')]);
    assert.equal((await start('acct1', { number: nextNumber(), captcha: 'x' })).status, 200);
    sandbox.server.setRegisterResponseData({ reregistration: true });
    let done: Res;
    try {
      done = await verify('acct1', '111111');
    } finally {
      sandbox.server.setRegisterResponseData({});
    }
    assert.equal(done.status, 200, done.text);
    assert.equal(done.body.state, 'registered');
    assert.equal(done.body.reregistration, true);
    assert.match(String(done.body.notice), /signed out/);
  });

  it('an account not deployed yet registers through its own client; the file is there for the deploy', async () => {
    await helper.load([accountNode], []);
    const number = nextNumber();
    const done = await registerThroughRoutes('fresh1', number);
    assert.equal(done.account?.number, number);
    assert.ok(fs.existsSync(path.join(dataDir, 'fresh1.db')));
    // The registration's client is closed; the route falls back to "nothing in progress".
    assert.equal((await agent().get('/signal-account/fresh1/register')).body.state, 'idle');
  });

  it('the guard’s rate limit answers 429 with the seconds to wait', async () => {
    await helper.load([accountNode], []);
    const number = nextNumber();
    // Without a secret anyone may retry a pending claim: each retry from another account counts.
    for (const id of ['try1', 'try2', 'try3']) {
      const r = await start(id, { number, captcha: 'x' });
      assert.equal(r.status, 200, r.text);
    }
    const limited = await start('try4', { number, captcha: 'x' });
    expectError(limited, 429, 'RATE_LIMITED');
    const wait = Number(limited.body.error?.retryAfterSeconds);
    assert.ok(wait > 3500 && wait <= 3600, `retry after ${wait} s`);
    assert.match(String(limited.body.error?.message), /3 per number per hour/);
  });

  it('with a credentialSecret in settings the registry is keyed from it: no key file is written', async () => {
    helper.settings({ signalAccountDataDir: dataDir, credentialSecret: 'instance secret' });
    await helper.load([accountNode], []);
    const r = await start('keyed1', { number: nextNumber(), captcha: 'x' });
    assert.equal(r.status, 200, r.text);
    assert.ok(fs.existsSync(path.join(dataDir, GUARD_FILE)));
    assert.equal(fs.existsSync(path.join(dataDir, `${GUARD_FILE}.key`)), false);
    assert.equal((await registry()).numbers?.length, 1);
  });

  it('bad input gets a clear 4xx naming what was wrong', async () => {
    await helper.load([accountNode], [accountConfig(sandbox, 'acct1', 'Signal acct1')]);
    expectError(await start('acct1', {}), 400, 'INVALID_INPUT');
    expectError(await start('acct1', { number: 15551234567 }), 400, 'INVALID_INPUT');
    const badNumber = await start('acct1', { number: '+1 555' });
    expectError(badNumber, 400, 'INVALID_NUMBER');
    assert.match(String(badNumber.body.error?.message), /\+1 555/);
    const fax = await start('acct1', { number: nextNumber(), transport: 'fax' });
    expectError(fax, 400, 'INVALID_INPUT');
    assert.match(String(fax.body.error?.message), /"sms" or "voice", not "fax"/);
    expectError(
      await start('acct1', { number: nextNumber(), server: 'moon' }),
      400,
      'INVALID_INPUT',
    );
    expectError(await start('bad%20id', { number: nextNumber() }), 400, 'INVALID_INPUT');
    expectError(await verify('acct1', ''), 400, 'INVALID_INPUT');
    expectError(await verify('acct1', { digits: 1 }), 400, 'INVALID_INPUT');
    expectError(await verify('acct1', '111111'), 409, 'REGISTRATION', 'NOT_STARTED');
    expectError(await verify('nobody', '111111'), 409, 'REGISTRATION', 'NOT_STARTED');
  });
});

describe('nodes: registration routes under adminAuth (real Node-RED process)', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let red: NodeRedProcess;
  const password = {
    admin: crypto.randomBytes(12).toString('hex'),
    reader: crypto.randomBytes(12).toString('hex'),
  };
  const tokens = {
    signalRead: crypto.randomBytes(16).toString('hex'),
    signalWrite: crypto.randomBytes(16).toString('hex'),
  };
  const bearer = { admin: '', reader: '' };

  type Call = [method: string, path: string, body?: Record<string, unknown>];
  const ROUTES: Call[] = [
    ['POST', '/signal-account/acct1/register', { number: '+14155553999', captcha: 'x' }],
    ['POST', '/signal-account/acct1/register/verify', { code: '111111' }],
    ['DELETE', '/signal-account/acct1/register', {}],
    ['POST', '/signal-account/registry/release', { number: '+14155553999' }],
    ['GET', '/signal-account/acct1/register'],
    ['GET', '/signal-account/registry'],
  ];

  before(async () => {
    sandbox = await startSandbox();
    const users = {
      admin: { password: password.admin, permissions: '*' },
      reader: { password: password.reader, permissions: 'read' },
    };
    const apiTokens = {
      [tokens.signalRead]: { username: 'signal-reader', permissions: ['signal-account.read'] },
      [tokens.signalWrite]: { username: 'signal-writer', permissions: ['signal-account.write'] },
    };
    red = await startNodeRed({
      flows: [
        { id: 'tab1', type: 'tab', label: 'Flow 1' },
        accountConfig(sandbox, 'acct1', 'Signal acct1'),
      ],
      settingsSource: `adminAuth: {
        type: 'credentials',
        users: function (username) {
          const u = (${JSON.stringify(users)})[username];
          return Promise.resolve(u ? { username: username, permissions: u.permissions } : null);
        },
        authenticate: function (username, password) {
          const u = (${JSON.stringify(users)})[username];
          return Promise.resolve(u && u.password === password ? { username: username, permissions: u.permissions } : null);
        },
        tokens: function (token) {
          return Promise.resolve((${JSON.stringify(apiTokens)})[token] || null);
        }
      }`,
    });
    for (const who of ['admin', 'reader'] as const) {
      const res = await fetch(`${red.url}/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          client_id: 'node-red-admin',
          grant_type: 'password',
          scope: '',
          username: who,
          password: password[who],
        }),
      });
      assert.equal(res.status, 200, `login of ${who}`);
      bearer[who] = ((await res.json()) as { access_token: string }).access_token;
    }
  });
  after(async () => {
    await red?.stop();
    await sandbox?.close();
  });

  async function call([method, p, body]: Call, token?: string): Promise<number> {
    const res = await fetch(`${red.url}${p}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    await res.text();
    return res.status;
  }

  async function expectRefused(calls: Call[], token: string | undefined, who: string) {
    for (const c of calls) {
      const status = await call(c, token);
      assert.ok(status === 401 || status === 403, `${c[0]} ${c[1]} by ${who}: ${status}`);
    }
  }

  it('no credentials or an unknown token: every registration route is refused', async () => {
    await expectRefused(ROUTES, undefined, 'an anonymous request');
    await expectRefused(ROUTES, crypto.randomBytes(16).toString('hex'), 'a stranger');
  });

  it('a read-only user and a signal-account.read token get no registration route, not even the registry or the status', async () => {
    for (const [token, who] of [
      [bearer.reader, 'reader'],
      [tokens.signalRead, 'a signal-account.read token'],
    ] as const) {
      await expectRefused(ROUTES, token, who);
    }
    // Nothing was claimed by the refused writes.
    const res = await fetch(`${red.url}/signal-account/registry`, {
      headers: { authorization: `Bearer ${bearer.admin}` },
    });
    assert.deepEqual(((await res.json()) as { numbers: unknown[] }).numbers, []);
  });

  it('a signal-account.write token and a full user get through to the route (its own answer, not 401/403)', async () => {
    // Without a captcha the mock asks for one: the route's own 428 proves the request got through.
    const start: Call = [
      'POST',
      '/signal-account/acct1/register',
      { ...{ number: '+14155553998' } },
    ];
    assert.equal(await call(start, tokens.signalWrite), 428);
    assert.equal(await call(start, bearer.admin), 428);
    assert.equal(
      await call(['DELETE', '/signal-account/acct1/register', {}], tokens.signalWrite),
      200,
    );
    for (const token of [tokens.signalWrite, bearer.admin]) {
      assert.equal(await call(['GET', '/signal-account/acct1/register'], token), 200);
      assert.equal(await call(['GET', '/signal-account/registry'], token), 200);
    }
  });
});
