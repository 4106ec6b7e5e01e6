import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  GuardRegistry,
  UNPROTECTED_NOTICE,
  type GuardRegistryOptions,
} from '../../../core/registration/guard';
import { GuardRefusedError, GuardRegistryError } from '../../../core/registration/errors';
import { InvalidNumberError, RateLimitedError } from '../../../core/errors';

const A = '+14155550101';
const B = '+14155550102';
const SECRET = 'correct horse battery staple';
const OTHER = 'another secret entirely';

/** Decrypts a key-file registry the way the format says (header = AAD), independently of the code. */
function decryptWithKeyFile(file: string, keyFile: string): string {
  const blob = fs.readFileSync(file);
  assert.equal(blob.subarray(0, 4).toString('ascii'), 'SFGR');
  assert.equal(blob[4], 1, 'format version 1');
  assert.equal(blob[5], 2, 'key-file KDF');
  const salt = blob.subarray(6, 22);
  const nonce = blob.subarray(22, 34);
  const key = Buffer.from(
    crypto.hkdfSync(
      'sha256',
      fs.readFileSync(keyFile),
      salt,
      Buffer.from('sigflow registration guard v1'),
      32,
    ),
  );
  const d = crypto.createDecipheriv('aes-256-gcm', key, nonce);
  d.setAAD(blob.subarray(0, 34));
  d.setAuthTag(blob.subarray(blob.length - 16));
  return Buffer.concat([d.update(blob.subarray(34, blob.length - 16)), d.final()]).toString('utf8');
}

function isRefused(reason: string, pattern?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof GuardRefusedError, `expected GuardRefusedError, got ${String(e)}`);
    assert.equal(e.code, 'REGISTRATION');
    assert.equal(e.reason, reason);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

function isUnreadable(file: string) {
  return (e: unknown) => {
    assert.ok(e instanceof GuardRegistryError, `expected GuardRegistryError, got ${String(e)}`);
    assert.equal(e.code, 'STORE');
    assert.equal(e.path, file);
    assert.match(
      e.message,
      new RegExp(`registry at ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be decrypted`),
    );
    return true;
  };
}

describe('registration/guard', function () {
  this.timeout(60_000);
  let dir: string;
  let file: string;
  let clock: number;
  const now = () => clock;
  const open = (extra: Partial<GuardRegistryOptions> = {}) =>
    GuardRegistry.open({ file, now, ...extra });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-guard-'));
    file = path.join(dir, 'state', 'registration-guard.bin');
    clock = Date.UTC(2025, 0, 1);
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('ownership rules', () => {
    it('refuses a second registration of a verified number without the secret, and allows it with the secret', async () => {
      const reg = await open();
      const t1 = await reg.beginAttempt(A, SECRET);
      assert.equal(t1.protected, true);
      assert.equal(t1.replacesVerified, false);
      assert.equal(t1.notice, undefined);
      await reg.markVerified(t1);

      await assert.rejects(reg.beginAttempt(A), isRefused('NUMBER_CLAIMED', /ownership secret/));
      await assert.rejects(reg.beginAttempt(A, OTHER), isRefused('WRONG_SECRET', /does not match/));
      await assert.rejects(reg.release(A), isRefused('NUMBER_CLAIMED'));
      await assert.rejects(reg.release(A, OTHER), isRefused('WRONG_SECRET'));

      const t2 = await reg.beginAttempt(' +1 (415) 555-0101 ', SECRET);
      assert.equal(t2.number, A, 'the number is normalized to E.164');
      assert.equal(t2.replacesVerified, true);
      // A failed re-registration leaves the old (still live) registration verified and protected.
      await reg.markFailed(t2, 'the code was wrong');
      const [entry] = await reg.list();
      assert.deepEqual(
        { number: entry?.number, state: entry?.state, protected: entry?.protected },
        { number: A, state: 'verified', protected: true },
      );
      await assert.rejects(reg.beginAttempt(A), isRefused('NUMBER_CLAIMED'));

      await reg.release(A, SECRET);
      assert.deepEqual(await reg.list(), []);
      const t3 = await reg.beginAttempt(A, OTHER);
      assert.equal(t3.replacesVerified, false);
    });

    it('an unprotected verified number must be released (by anyone) before it is registered again', async () => {
      const reg = await open();
      const t = await reg.beginAttempt(A);
      assert.equal(t.protected, false);
      assert.equal(t.notice, UNPROTECTED_NOTICE);
      await reg.markVerified(t);
      await assert.rejects(
        reg.beginAttempt(A),
        isRefused('NUMBER_CLAIMED', /release the number first/),
      );
      await assert.rejects(reg.beginAttempt(A, SECRET), isRefused('NUMBER_CLAIMED'));
      await reg.release(A);
      const again = await reg.beginAttempt(A, SECRET);
      assert.equal(again.protected, true);
    });

    it('a protected pending claim can be retried only by its secret holder', async () => {
      const reg = await open();
      const t1 = await reg.beginAttempt(A, SECRET);
      await assert.rejects(reg.beginAttempt(A), isRefused('NUMBER_CLAIMED', /being registered/));
      await assert.rejects(
        reg.beginAttempt(A, OTHER),
        isRefused('WRONG_SECRET', /being registered/),
      );
      const t2 = await reg.beginAttempt(A, SECRET);
      assert.notEqual(t2.attemptId, t1.attemptId);
      // The superseded ticket no longer decides anything.
      await reg.markFailed(t1, 'old attempt');
      assert.equal((await reg.list())[0]?.state, 'pending');
      await assert.rejects(reg.markVerified(t1), isRefused('STALE_ATTEMPT'));
      await reg.markVerified(t2);
      assert.equal((await reg.list())[0]?.state, 'verified');
    });

    it('an unprotected pending claim may be retried by anyone, and a secret given then protects it', async () => {
      const reg = await open();
      await reg.beginAttempt(A);
      const t2 = await reg.beginAttempt(A);
      assert.equal(t2.protected, false);
      const t3 = await reg.beginAttempt(A, SECRET);
      assert.equal(t3.protected, true);
      assert.equal((await reg.list())[0]?.protected, true);
      await assert.rejects(reg.beginAttempt(A), isRefused('NUMBER_CLAIMED'));
    });

    it('a failed number is free for anyone', async () => {
      const reg = await open();
      const t = await reg.beginAttempt(A, SECRET);
      await reg.markFailed(t, 'captcha was not solved');
      const [entry] = await reg.list();
      assert.equal(entry?.state, 'failed');
      assert.equal(entry?.protected, false);
      const other = await reg.beginAttempt(A);
      assert.equal(other.protected, false);
    });

    it('a protected pending claim expires after the pending TTL, then the number is free', async () => {
      const reg = await open({ pendingTtlMs: 10 * 60_000 });
      await reg.beginAttempt(A, SECRET);
      clock += 9 * 60_000;
      await assert.rejects(reg.beginAttempt(A), isRefused('NUMBER_CLAIMED', /about 1 min/));
      clock += 60_000;
      assert.equal((await reg.list())[0]?.state, 'failed');
      const t = await reg.beginAttempt(A, OTHER);
      assert.equal(t.protected, true);
    });

    it('records linked numbers as verified, protected by the secret given', async () => {
      const reg = await open();
      await reg.recordLinked(B, SECRET);
      const [entry] = await reg.list();
      assert.equal(entry?.state, 'verified');
      assert.equal(entry?.via, 'linked');
      assert.equal(entry?.protected, true);
      await assert.rejects(reg.beginAttempt(B), isRefused('NUMBER_CLAIMED'));
      await assert.rejects(reg.recordLinked(B, OTHER), isRefused('WRONG_SECRET'));
      const t = await reg.beginAttempt(B, SECRET);
      assert.equal(t.replacesVerified, true);
    });

    it('abandoning an attempt keeps a protected pending claim for its holder and frees an unprotected one', async () => {
      const reg = await open();
      const held = await reg.beginAttempt(A, SECRET);
      await reg.abandon(held, 'superseded by a new registration');
      assert.equal((await reg.list())[0]?.state, 'pending');
      await assert.rejects(reg.beginAttempt(A), isRefused('NUMBER_CLAIMED', /being registered/));
      await assert.rejects(reg.beginAttempt(A, OTHER), isRefused('WRONG_SECRET'));
      // The abandoned ticket decides nothing any more; its holder starts a new attempt.
      await assert.rejects(reg.markVerified(held), isRefused('STALE_ATTEMPT'));
      await assert.rejects(reg.requestCode(held, 'sms'), isRefused('STALE_ATTEMPT'));
      const again = await reg.beginAttempt(A, SECRET);
      await reg.markVerified(again);
      assert.equal((await reg.list())[0]?.state, 'verified');

      const open1 = await reg.beginAttempt(B);
      await reg.abandon(open1, 'the account was closed');
      assert.equal((await reg.list()).find((e) => e.number === B)?.state, 'failed');
      await reg.beginAttempt(B, OTHER);
    });

    it('abandoning a re-registration of a verified number leaves it verified and protected', async () => {
      const reg = await open();
      await reg.markVerified(await reg.beginAttempt(A, SECRET));
      await reg.abandon(await reg.beginAttempt(A, SECRET), 'the account was closed');
      const [entry] = await reg.list();
      assert.deepEqual([entry?.state, entry?.protected], ['verified', true]);
    });

    it('code requests: the attempt covers its first, each re-send counts against the limits; a replaced ticket is refused', async () => {
      const reg = await open();
      const t = await reg.beginAttempt(A, SECRET);
      await reg.requestCode(t, 'sms');
      await reg.requestCode(t, 'voice');
      await reg.requestCode(t, 'sms');
      await assert.rejects(
        reg.requestCode(t, 'sms'),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 3600,
      );
      await assert.rejects(reg.beginAttempt(A, SECRET), RateLimitedError);
      clock += 60 * 60_000;
      const t2 = await reg.beginAttempt(A, SECRET);
      await assert.rejects(reg.requestCode(t, 'sms'), isRefused('STALE_ATTEMPT'));
      await assert.rejects(reg.verifyAttempt(t, 1), isRefused('STALE_ATTEMPT'));
      await reg.verifyAttempt(t2, 1);
      await reg.verifyRefused(t2, 'WRONG_CODE (1 of 5)');
      assert.deepEqual(
        (await reg.audit())
          .filter((e) => e.action === 'code-request' || e.action === 'verify')
          .map((e) => [e.action, e.outcome, e.reason]),
        [
          ['code-request', 'allowed', 'sms'],
          ['code-request', 'allowed', 'voice, re-sent'],
          ['code-request', 'allowed', 'sms, re-sent'],
          ['code-request', 'rate-limited', 'retry in 3600 s'],
          ['code-request', 'refused', 'STALE_ATTEMPT'],
          ['verify', 'refused', 'STALE_ATTEMPT'],
          ['verify', 'allowed', 'code submission 1'],
          ['verify', 'refused', 'WRONG_CODE (1 of 5)'],
        ],
      );
    });

    it('a code request Signal did not send is handed back: it is no longer counted, for the number or the instance', async () => {
      const reg = await open({ limits: { perNumberPerHour: 3, perInstancePerMinute: 3 } });
      const t = await reg.beginAttempt(A, SECRET);
      // The first request fails: the next is the first again, not a re-send.
      await reg.codeRequestFailed(t, await reg.requestCode(t, 'sms'), 'CODE_NOT_SENT');
      await reg.requestCode(t, 'sms');
      // A failed re-send a second later (still in both windows) uses up neither limit.
      clock += 1_000;
      await reg.codeRequestFailed(t, await reg.requestCode(t, 'voice'), 'NETWORK');
      await reg.requestCode(t, 'sms');
      await reg.requestCode(t, 'sms');
      await assert.rejects(reg.requestCode(t, 'sms'), RateLimitedError);
      assert.deepEqual(
        (await reg.audit())
          .filter((e) => e.action === 'code-request')
          .map((e) => [e.outcome, e.reason]),
        [
          ['allowed', 'sms'],
          ['refused', 'not sent by Signal (CODE_NOT_SENT): not counted'],
          ['allowed', 'sms'],
          ['allowed', 'voice, re-sent'],
          ['refused', 'not sent by Signal (NETWORK): not counted'],
          ['allowed', 'sms, re-sent'],
          ['allowed', 'sms, re-sent'],
          ['rate-limited', 'retry in 3599 s'],
        ],
      );
    });

    it('a code request renews the pending claim', async () => {
      const reg = await open({ pendingTtlMs: 10 * 60_000 });
      const t = await reg.beginAttempt(A, SECRET);
      clock += 9 * 60_000;
      await reg.requestCode(t, 'sms');
      clock += 9 * 60_000;
      assert.equal((await reg.list())[0]?.state, 'pending');
      await assert.rejects(reg.beginAttempt(A), isRefused('NUMBER_CLAIMED'));
    });

    it('rejects an invalid number before touching the registry', async () => {
      const reg = await open();
      await assert.rejects(reg.beginAttempt('12'), InvalidNumberError);
      assert.equal(fs.existsSync(file), false);
    });
  });

  describe('rate limits', () => {
    it('allows 3 attempts per number per hour and reports the real wait', async () => {
      const reg = await open();
      await reg.beginAttempt(A, SECRET);
      clock += 10 * 60_000;
      await reg.beginAttempt(A, SECRET);
      clock += 10 * 60_000;
      await reg.beginAttempt(A, SECRET);
      clock += 10 * 60_000;
      // The first attempt leaves the hour window 30 min from now.
      await assert.rejects(reg.beginAttempt(A, SECRET), (e: unknown) => {
        assert.ok(e instanceof RateLimitedError);
        assert.equal(e.code, 'RATE_LIMITED');
        assert.equal(e.retryAfterSeconds, 30 * 60);
        assert.match(e.message, /retry in 1800 s/);
        return true;
      });
      clock += 30 * 60_000 - 1500;
      await assert.rejects(
        reg.beginAttempt(A, SECRET),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 2,
      );
      // Another number is not affected by A's budget.
      await reg.beginAttempt(B);
      clock += 1500;
      await reg.beginAttempt(A, SECRET);
    });

    it('allows 10 attempts per instance per minute across numbers', async () => {
      const reg = await open();
      for (let i = 0; i < 10; i++) {
        await reg.beginAttempt(`+1415555${String(1000 + i)}`);
        clock += 2000;
      }
      // First attempt was 20 s ago: it leaves the minute window in 40 s.
      await assert.rejects(
        reg.beginAttempt('+14155552000'),
        (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 40,
      );
      clock += 40_000;
      await reg.beginAttempt('+14155552000');
    });

    it('refusals by ownership do not use up the owner’s budget, and limits survive release and restart', async () => {
      let reg = await open();
      await reg.beginAttempt(A, SECRET);
      for (let i = 0; i < 5; i++) await assert.rejects(reg.beginAttempt(A), GuardRefusedError);
      await reg.beginAttempt(A, SECRET);
      await reg.release(A, SECRET);
      reg = await open();
      await reg.beginAttempt(A);
      await assert.rejects(reg.beginAttempt(A), RateLimitedError);
    });
  });

  describe('persistence and encryption', () => {
    it('survives a restart: claims, protection and state are read back', async () => {
      const reg = await open();
      const t = await reg.beginAttempt(A, SECRET);
      await reg.markVerified(t);
      await reg.beginAttempt(B);
      const before = await reg.list();

      const reopened = await open();
      assert.deepEqual(await reopened.list(), before);
      await assert.rejects(reopened.beginAttempt(A), isRefused('NUMBER_CLAIMED'));
      await reopened.release(A, SECRET);
      assert.deepEqual(
        (await reopened.list()).map((e) => e.number),
        [B],
      );
    });

    it('survives a restart with the credential secret, and refuses a wrong one, leaving the file untouched', async () => {
      const reg = await open({ credentialSecret: 'node-red secret 1' });
      await reg.markVerified(await reg.beginAttempt(A, SECRET));
      assert.equal(
        fs.existsSync(`${file}.key`),
        false,
        'no key file when a credential secret is used',
      );
      const bytes = fs.readFileSync(file);
      assert.equal(bytes[5], 1, 'credential-secret KDF in the header');

      const reopened = await open({ credentialSecret: 'node-red secret 1' });
      assert.equal((await reopened.list())[0]?.state, 'verified');

      await assert.rejects(
        open({ credentialSecret: 'node-red secret 2' }),
        (e: unknown) =>
          isUnreadable(file)(e) &&
          /wrong credential secret or the file was modified/.test((e as Error).message),
      );
      await assert.rejects(
        open(),
        (e: unknown) => isUnreadable(file)(e) && /none was given/.test((e as Error).message),
      );
      assert.deepEqual(fs.readFileSync(file), bytes);
    });

    it('refuses a tampered file (any flipped byte) with a clear error and leaves it untouched', async () => {
      const reg = await open();
      await reg.markVerified(await reg.beginAttempt(A, SECRET));
      const original = fs.readFileSync(file);
      const positions = [0, 4, 5, 10, 25, 40, Math.floor(original.length / 2), original.length - 1];
      for (const at of positions) {
        const tampered = Buffer.from(original);
        tampered[at] = (tampered[at] ?? 0) ^ 0x01;
        fs.writeFileSync(file, tampered);
        await assert.rejects(open(), isUnreadable(file), `byte ${at}`);
        assert.deepEqual(fs.readFileSync(file), tampered, `byte ${at}: file left as it was`);
      }
      // An open registry whose file is modified under it refuses the next operation too.
      fs.writeFileSync(file, original);
      const live = await open();
      const tampered = Buffer.from(original);
      tampered[original.length - 20] = (tampered[original.length - 20] ?? 0) ^ 0x80;
      fs.writeFileSync(file, tampered);
      await assert.rejects(live.beginAttempt(A, SECRET), isUnreadable(file));
      await assert.rejects(live.release(A, SECRET), isUnreadable(file));
      assert.deepEqual(fs.readFileSync(file), tampered);
      // A truncated file is refused as well.
      fs.writeFileSync(file, original.subarray(0, 20));
      await assert.rejects(open(), isUnreadable(file));
    });

    it('refuses a wrong or missing key file and never regenerates it', async () => {
      const reg = await open();
      await reg.markVerified(await reg.beginAttempt(A, SECRET));
      const keyFile = `${file}.key`;
      const original = fs.readFileSync(file);
      const key = fs.readFileSync(keyFile);

      fs.writeFileSync(keyFile, crypto.randomBytes(32));
      await assert.rejects(
        open(),
        (e: unknown) => isUnreadable(file)(e) && /wrong key file/.test((e as Error).message),
      );
      fs.rmSync(keyFile);
      await assert.rejects(
        open(),
        (e: unknown) =>
          isUnreadable(file)(e) && /key file .* is missing/.test((e as Error).message),
      );
      assert.equal(fs.existsSync(keyFile), false, 'a missing key file is not recreated');
      await assert.rejects(
        open({ credentialSecret: 'now set' }),
        (e: unknown) =>
          isUnreadable(file)(e) && /encrypted with the key file/.test((e as Error).message),
      );
      assert.deepEqual(fs.readFileSync(file), original);

      fs.writeFileSync(keyFile, key, { mode: 0o600 });
      assert.equal((await (await open()).list())[0]?.state, 'verified');
    });

    it('creates the key file and the registry with mode 0600 in a 0700 folder, and writes atomically', async () => {
      const keyFile = path.join(dir, 'keys', 'guard.key');
      const reg = await open({ keyFile });
      await reg.beginAttempt(A);
      const mode = (p: string) => fs.statSync(p).mode & 0o777;
      assert.equal(mode(keyFile), 0o600);
      assert.equal(fs.readFileSync(keyFile).length, 32);
      assert.equal(mode(path.dirname(keyFile)), 0o700);
      assert.equal(mode(file), 0o600);
      assert.equal(mode(path.dirname(file)), 0o700);
      assert.deepEqual(
        fs.readdirSync(path.dirname(file)),
        [path.basename(file)],
        'no temp file left',
      );
      // Each write uses a fresh nonce: the same content never gives the same bytes.
      const first = fs.readFileSync(file);
      await reg.release('+14155559999');
      const second = fs.readFileSync(file);
      assert.notDeepEqual(first.subarray(22, 34), second.subarray(22, 34));
    });

    it('two registries on the same file see each other’s changes (no lost update)', async () => {
      const one = await open();
      const two = await open();
      await Promise.all([one.beginAttempt(A, SECRET), two.beginAttempt(B, OTHER)]);
      assert.deepEqual(
        (await one.list()).map((e) => e.number),
        [A, B],
      );
      await assert.rejects(two.beginAttempt(A), isRefused('NUMBER_CLAIMED'));
    });
  });

  describe('audit log', () => {
    it('records every attempt with its outcome and reason, and holds no secret anywhere', async () => {
      const reg = await open();
      const t = await reg.beginAttempt(A, SECRET);
      await assert.rejects(reg.beginAttempt(A, OTHER), GuardRefusedError);
      await reg.markFailed(
        t,
        'code rejected; captcha signalcaptcha://signal-hcaptcha.5fad97ac.registration.P1_eyJ0eXAi',
      );
      await reg.beginAttempt(A, SECRET);
      await reg.beginAttempt(A, SECRET);
      await assert.rejects(reg.beginAttempt(A, SECRET), RateLimitedError);
      await reg.release(A, SECRET);

      const log = await reg.audit();
      assert.deepEqual(
        log.map((e) => [e.number, e.action, e.outcome, e.reason]),
        [
          [A, 'attempt', 'allowed', undefined],
          [A, 'attempt', 'refused', 'WRONG_SECRET'],
          [A, 'failed', 'done', 'code rejected; captcha signalcaptcha://[redacted]'],
          [A, 'attempt', 'allowed', undefined],
          [A, 'attempt', 'allowed', undefined],
          [A, 'attempt', 'rate-limited', 'retry in 3600 s'],
          [A, 'release', 'done', undefined],
        ],
      );
      assert.ok(log.every((e) => e.at === clock));

      const decrypted = decryptWithKeyFile(file, `${file}.key`);
      const raw = fs.readFileSync(file);
      for (const secret of [SECRET, OTHER]) {
        for (const form of [
          secret,
          Buffer.from(secret).toString('base64'),
          Buffer.from(secret).toString('hex'),
        ]) {
          assert.ok(!decrypted.includes(form), 'decrypted registry holds no secret');
          assert.ok(!raw.includes(form), 'raw file holds no secret');
          assert.ok(!JSON.stringify(log).includes(form), 'audit() holds no secret');
        }
      }
      assert.ok(!decrypted.includes('P1_eyJ0eXAi'), 'no captcha token in the registry');
      assert.ok(!raw.includes(Buffer.from(A)), 'the file is encrypted (no number in clear)');
      assert.ok(decrypted.includes(A));
    });

    it('keeps only the newest entries up to its cap', async () => {
      const reg = await open({ auditCap: 3 });
      for (let i = 0; i < 5; i++) {
        clock += 1000;
        await reg.release(`+1415555000${i}`);
      }
      const log = await reg.audit();
      assert.deepEqual(
        log.map((e) => e.number),
        ['+14155550002', '+14155550003', '+14155550004'],
      );
    });
  });
});
