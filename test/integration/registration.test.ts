/**
 * Registering a number of its own (PROTOCOL.md §9) through SignalClient against Signal's mock server
 * (any captcha, code 111111): the registered account connects as primary device 1, sends to and
 * receives from a mock phone; the guard registry is consulted and updated on the way; a cancelled or
 * failed registration leaves no account file.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getKeyCounts } from '../../core/api';
import type { SignalClient } from '../../core/client';
import {
  CaptchaRequiredError,
  GuardRefusedError,
  GuardRegistry,
  RegistrationError,
  RegistrationLockedError,
  VerificationCodeError,
} from '../../core/registration';
import type { IncomingEvent, MessageEvent } from '../../core/types';
import {
  captureLogger,
  openClient,
  startSandbox,
  tempDataFile,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
  inspect,
} from './helpers';

function nextMessage(client: SignalClient, from: string): Promise<MessageEvent> {
  return new Promise((resolve) => {
    const on = (ev: IncomingEvent) => {
      if (ev.type === 'message' && ev.from.aci === from) {
        client.off('event', on);
        resolve(ev);
      }
    };
    client.on('event', on);
  });
}

describe('integration: registering a number of its own', function () {
  this.timeout(90_000);
  let sandbox: Sandbox;
  let bob: PrimaryDevice;
  let guardDir: string;
  let numberSeq = 0;
  /** A fresh number per test: the mock keeps what earlier tests registered. */
  const nextNumber = () => `+1415555${String(2100 + numberSeq++).padStart(4, '0')}`;

  before(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
  });
  after(async () => {
    await sandbox.close();
  });
  beforeEach(() => {
    guardDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-guard-'));
  });
  afterEach(() => {
    fs.rmSync(guardDir, { recursive: true, force: true });
  });

  const openGuard = () => GuardRegistry.open({ file: path.join(guardDir, 'registry.guard') });

  it('registers a new number (captcha, code 111111), connects as device 1, sends to and receives from a mock phone', async () => {
    const lines: string[] = [];
    const dataFile = tempDataFile();
    const client = await openClient(sandbox, dataFile, { logger: captureLogger(lines) });
    const number = nextNumber();

    // Signal asks for a captcha first; nothing is written yet.
    await assert.rejects(
      client.startRegistration({ number, transport: 'sms' }),
      (e: unknown) => e instanceof CaptchaRequiredError && /signalcaptchas\.org/.test(e.message),
    );
    assert.equal(client.registration.state, 'captcha-required');
    const captcha =
      'signalcaptcha://signal-hcaptcha.5fad97ac-7d06-4e44-b18a-b950b20148ff.registration.P1_secret';
    const sent = await client.startRegistration({ number, captcha, transport: 'sms' });
    assert.equal(sent.state, 'code-sent');
    assert.equal(sent.number, number);
    assert.equal(sent.transport, 'sms');
    assert.equal(sent.nextSms, 60);
    assert.equal(fs.existsSync(dataFile), false, 'no account file before the code is verified');

    await assert.rejects(client.verifyRegistration('222-222'), VerificationCodeError);
    assert.equal(
      client.registration.state,
      'code-sent',
      'a wrong code leaves the registration open',
    );
    assert.equal(client.registration.error?.reason, 'WRONG_CODE');

    const account = await client.verifyRegistration('111 111');
    assert.equal(account.number, number);
    assert.equal(account.deviceId, 1);
    assert.match(account.aci, /^[0-9a-f-]{36}$/);
    assert.equal(client.state, 'connected');
    assert.equal(client.registration.state, 'registered');
    assert.equal(fs.existsSync(dataFile), true);
    const device = await sandbox.server.getDeviceByServiceId(account.aci as never, 1 as never);
    assert.ok(device, 'the mock knows our primary device');
    assert.equal(device.number, number);
    // One-time prekeys for both identities are on the server.
    const chat = inspect(client).chat();
    assert.ok(chat);
    for (const kind of ['aci', 'pni'] as const) {
      const counts = await getKeyCounts(chat, kind);
      assert.equal(counts.count, 100, `${kind} one-time EC prekeys`);
      assert.equal(counts.pqCount, 100, `${kind} one-time Kyber prekeys`);
    }

    const result = await client.send(bob.device.aci, { text: 'hello from a registered number' });
    assert.deepEqual(result.devices, [1]);
    const got = await withTimeout(bob.waitForMessage(), 10_000, 'bob.waitForMessage');
    assert.equal(got.body, 'hello from a registered number');
    assert.equal(got.source.aci, account.aci);

    // Bob answers through one of our one-time prekeys (we are connected: his send can be awaited).
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    const incoming = nextMessage(client, bob.device.aci);
    await withTimeout(bob.sendText(device, 'hello back'), 10_000, 'bob.sendText');
    const ev = await withTimeout(incoming, 10_000, 'message from bob');
    assert.equal(ev.body, 'hello back');

    // The captcha token, the codes and the password never reach the log.
    const password = inspect(client).store()?.account.get()?.password;
    assert.ok(password);
    const log = lines.join('\n');
    for (const secret of ['P1_secret', '111111', '111 111', '222-222', password])
      assert.equal(log.includes(secret), false, `the log holds ${secret}`);

    // Registered once, the client refuses to register again.
    await assert.rejects(
      client.startRegistration({ number: nextNumber(), captcha: 'x' }),
      (e: unknown) => e instanceof RegistrationError && e.reason === 'ACCOUNT_EXISTS',
    );
  });

  it('a cancelled registration leaves no account file, and verify then says to start again', async () => {
    const dataFile = tempDataFile();
    const client = await openClient(sandbox, dataFile);
    await client.startRegistration({ number: nextNumber(), captcha: 'tok', transport: 'voice' });
    assert.equal(client.registration.state, 'code-sent');
    assert.equal((await client.cancelRegistration()).state, 'cancelled');
    await assert.rejects(
      client.verifyRegistration('111111'),
      (e: unknown) => e instanceof RegistrationError && e.reason === 'NOT_STARTED',
    );
    assert.equal(fs.existsSync(dataFile), false);
    assert.equal(client.account, null);
  });

  it('bad input is refused naming what is wrong, before any request', async () => {
    const client = await openClient(sandbox, tempDataFile());
    await assert.rejects(client.startRegistration({ number: '12' }), /"12"/);
    await assert.rejects(
      client.startRegistration({ number: nextNumber(), transport: 'pigeon' as never }),
      /"sms" or "voice", not "pigeon"/,
    );
    await assert.rejects(
      client.startRegistration({ number: nextNumber(), captcha: 42 as never }),
      /captcha must be text/,
    );
    await assert.rejects(client.verifyRegistration('111111'), /No registration is in progress/);
  });

  it('with the guard: the claim becomes verified; another client is refused without the secret and may go on with it', async () => {
    const guard = await openGuard();
    const number = nextNumber();
    const first = await openClient(sandbox, tempDataFile());
    await first.startRegistration({ number, captcha: 'tok', secret: 'owner secret', guard });
    assert.deepEqual(
      (await guard.list()).map((e) => [e.number, e.state, e.protected]),
      [[number, 'pending', true]],
    );
    // A protected registration takes its code only with its secret (never reaching Signal without).
    await assert.rejects(first.verifyRegistration('111111'), { reason: 'NOT_OWNER' });
    await first.verifyRegistration('111111', 'owner secret');
    assert.deepEqual(
      (await guard.list()).map((e) => [e.number, e.state, e.via]),
      [[number, 'verified', 'registered']],
    );

    const second = await openClient(sandbox, tempDataFile());
    await assert.rejects(
      second.startRegistration({ number, captcha: 'tok', guard }),
      (e: unknown) => e instanceof GuardRefusedError && e.reason === 'NUMBER_CLAIMED',
    );
    await assert.rejects(
      second.startRegistration({ number, captcha: 'tok', secret: 'guess', guard }),
      (e: unknown) => e instanceof GuardRefusedError && e.reason === 'WRONG_SECRET',
    );
    const again = await second.startRegistration({
      number,
      captcha: 'tok',
      secret: 'owner secret',
      guard,
    });
    assert.equal(again.state, 'code-sent');
    assert.equal(again.replacesVerified, true);
    // Cancelling needs the secret too; the number stays verified afterwards.
    await assert.rejects(second.cancelRegistration(), GuardRefusedError);
    await second.cancelRegistration('owner secret');
    assert.equal((await guard.list())[0]?.state, 'verified');
    const audit = JSON.stringify(await guard.audit());
    assert.equal(audit.includes('owner secret'), false);
    assert.equal(audit.includes('guess'), false);
  });

  it('a number registered elsewhere without a registration lock: the status says that install was signed out', async () => {
    const guard = await openGuard();
    const client = await openClient(sandbox, tempDataFile());
    const number = nextNumber();
    await client.startRegistration({ number, captcha: 'tok', guard });
    // Signal-Server answers reregistration: true when an account of that number already existed.
    sandbox.server.setRegisterResponseData({ reregistration: true });
    try {
      await client.verifyRegistration('111111');
    } finally {
      sandbox.server.setRegisterResponseData({});
    }
    const status = client.registration;
    assert.equal(status.state, 'registered');
    assert.equal(status.reregistration, true);
    assert.match(String(status.notice), /signed out/);
    assert.match(
      String((await guard.audit()).find((e) => e.action === 'verified')?.reason),
      /signed out/,
    );

    const fresh = await openClient(sandbox, tempDataFile());
    await fresh.startRegistration({ number: nextNumber(), captcha: 'tok' });
    await fresh.verifyRegistration('111111');
    assert.equal(fresh.registration.reregistration, undefined);
  });

  it('a number locked elsewhere (423) fails with what to do, frees the claim and writes nothing', async () => {
    const guard = await openGuard();
    const dataFile = tempDataFile();
    const client = await openClient(sandbox, dataFile);
    const number = nextNumber();
    await client.startRegistration({ number, captcha: 'tok', guard });
    sandbox.server.setRegisterResponseError({
      code: 423,
      data: { timeRemaining: 3 * 86_400_000, svr2Credentials: null },
    });
    try {
      await assert.rejects(
        client.verifyRegistration('111111'),
        (e: unknown) => e instanceof RegistrationLockedError && /Registration Lock/.test(e.message),
      );
    } finally {
      sandbox.server.setRegisterResponseError(undefined);
    }
    assert.equal(client.registration.state, 'failed');
    assert.equal(client.registration.error?.reason, 'REGISTRATION_LOCKED');
    assert.equal(fs.existsSync(dataFile), false);
    assert.equal((await guard.list())[0]?.state, 'failed');
  });
});
