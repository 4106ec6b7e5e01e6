/**
 * The sender's recovery paths (rate limits, sealed-sender fallback, device-list changes, the sender
 * certificate cache, PNI recipients) over real libsignal sessions and a scripted fake network.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { MismatchedDevices, UnidentifiedAccessRejected } from '../../../core/api';
import { WireType } from '../../../core/messaging/sender';
import { NetworkError, NotOnSignalError, RateLimitedError } from '../../../core/errors';
import { tempDir } from '../store/helpers';
import { makePair, type Pair } from './fake-api';

describe('messaging: sender recovery paths', () => {
  let dir: string;
  let pair: Pair;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    pair?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Alice knows Bob's profile key: her sends to him go sealed. */
  function shareBobsProfileKey(p: Pair): void {
    p.alice.contacts.upsert({
      aci: p.bobAci,
      profileKey: new Uint8Array(32).fill(7),
      source: 'message',
    });
  }

  it('413/429 on the PUT: waits the Retry-After, then the send succeeds', async () => {
    pair = makePair(dir);
    pair.api.putScript = [new RateLimitedError(3, 'Sending')];
    const result = await pair.sender.sendText(pair.bobAci, 'hi');
    assert.deepEqual(result.devices, [1]);
    assert.deepEqual(pair.sleeps, [3000]);
    const toBob = pair.api.puts.filter((p) => p.serviceId === pair.bobAci);
    assert.equal(toBob.length, 2);
    const last = toBob[1]?.messages[0];
    assert.ok(last);
    assert.equal((await pair.decrypt(last)).dataMessage?.body, 'hi');
  });

  it('a PUT whose connection keeps dropping goes again, same ciphertexts, until it is answered', async () => {
    pair = makePair(dir);
    // Eight drops in a row before the answer: more than a fixed handful of retries would allow.
    pair.api.putScript = Array.from({ length: 8 }, () => new NetworkError('dropped'));
    const result = await pair.sender.sendText(pair.bobAci, 'hi');
    assert.deepEqual(result.devices, [1]);
    const toBob = pair.api.puts.filter((p) => p.serviceId === pair.bobAci);
    assert.equal(toBob.length, 9);
    const first = toBob[0]?.messages[0]?.content;
    assert.ok(
      toBob.every((p) => p.messages[0]?.content === first),
      'never re-encrypted',
    );
  });

  it('gives up on a dropping connection once its retry window has passed', async () => {
    pair = makePair(dir);
    const p = pair;
    p.api.putScript = Array.from({ length: 50 }, () => new NetworkError('dropped'));
    const put = p.api.sendMessages.bind(p.api);
    // Each attempt costs ten seconds (waiting for the connection, then the drop).
    p.api.sendMessages = async (...args) => {
      p.clock.now += 10_000;
      return put(...args);
    };
    await assert.rejects(
      p.sender.sendText(p.bobAci, 'hi'),
      (e: unknown) => e instanceof NetworkError,
    );
    // 60 s of window at 10 s an attempt: the first attempt and six more, not 20.
    assert.equal(p.api.puts.length, 7);
  });

  it('fails RATE_LIMITED with retryAfterSeconds once its retries are spent', async () => {
    pair = makePair(dir, { sender: { maxRateLimitRetries: 2 } });
    pair.api.putScript = [1, 2, 3].map(() => new RateLimitedError(4, 'Sending'));
    await assert.rejects(pair.sender.sendText(pair.bobAci, 'hi'), (e: unknown) => {
      assert.ok(e instanceof RateLimitedError);
      assert.equal(e.code, 'RATE_LIMITED');
      assert.equal(e.retryAfterSeconds, 4);
      return true;
    });
    assert.deepEqual(pair.sleeps, [4000, 4000]);
    assert.equal(pair.api.puts.length, 3);
  });

  it('fails RATE_LIMITED at once when the Retry-After is longer than it may wait', async () => {
    pair = makePair(dir, { sender: { maxRateLimitWaitSeconds: 30 } });
    pair.api.putScript = [new RateLimitedError(120, 'Sending')];
    await assert.rejects(
      pair.sender.sendText(pair.bobAci, 'hi'),
      (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 120,
    );
    assert.deepEqual(pair.sleeps, []);
    assert.equal(pair.api.puts.length, 1);
  });

  it('429 on the prekey-bundle fetch is waited out like one on the PUT', async () => {
    pair = makePair(dir);
    pair.api.getScript = [new RateLimitedError(2, 'Fetching keys')];
    const result = await pair.sender.sendText(pair.bobAci, 'hi');
    assert.deepEqual(result.devices, [1]);
    assert.deepEqual(pair.sleeps, [2000]);
  });

  it('401 on the access key for the PUT: sends the message again authenticated', async () => {
    pair = makePair(dir);
    shareBobsProfileKey(pair);
    pair.api.putScript = [new UnidentifiedAccessRejected()];
    const result = await pair.sender.sendText(pair.bobAci, 'hi');
    assert.equal(result.sealed, false);
    const toBob = pair.api.puts.filter((p) => p.serviceId === pair.bobAci);
    assert.deepEqual(
      toBob.map((p) => [p.sealed, p.messages.map((m) => m.type)]),
      [
        [true, [WireType.UNIDENTIFIED]],
        [false, [WireType.PREKEY]],
      ],
    );
    const resent = toBob[1]?.messages[0];
    assert.ok(resent);
    assert.equal((await pair.decrypt(resent)).dataMessage?.body, 'hi');
  });

  it('401 on the access key for the bundle fetch: fetches and sends authenticated', async () => {
    pair = makePair(dir);
    shareBobsProfileKey(pair);
    pair.api.getScript = [new UnidentifiedAccessRejected()];
    const result = await pair.sender.sendText(pair.bobAci, 'hi');
    assert.equal(result.sealed, false);
    assert.deepEqual(
      pair.api.gets.map((g) => g.sealed),
      [true, false],
    );
    assert.ok(pair.api.puts.every((p) => !p.sealed));
  });

  it('401 on the access key for a bundle fetched during 409 recovery: goes on authenticated', async () => {
    pair = makePair(dir);
    shareBobsProfileKey(pair);
    await pair.sender.sendText(pair.bobAci, 'first');
    pair.addBobDevice(2);
    pair.api.putScript = [new MismatchedDevices([2], [])];
    pair.api.getScript = [new UnidentifiedAccessRejected()];
    const result = await pair.sender.sendText(pair.bobAci, 'second');
    assert.equal(result.sealed, false);
    assert.deepEqual(result.devices, [1, 2]);
    const last = pair.api.puts.filter((p) => p.serviceId === pair.bobAci).at(-1);
    assert.equal(last?.sealed, false);
    const forTwo = last?.messages.find((m) => m.destinationDeviceId === 2);
    assert.ok(forTwo);
    assert.equal((await pair.decrypt(forTwo)).dataMessage?.body, 'second');
  });

  it('a device named missing in a 409 but gone (404) by its bundle fetch is skipped', async () => {
    pair = makePair(dir);
    await pair.sender.sendText(pair.bobAci, 'first');
    pair.api.putScript = [new MismatchedDevices([2], [])];
    pair.api.deviceFailure.set(2, () => new NotOnSignalError(pair.bobAci));
    const result = await pair.sender.sendText(pair.bobAci, 'second');
    assert.deepEqual(result.devices, [1]);
    assert.ok(pair.lines.some((l) => l.includes('device 2 of') && l.includes('gone')));
  });

  it('a device that stays missing and gone still fails within the retry bound', async () => {
    pair = makePair(dir, { sender: { maxDeviceRetries: 2 } });
    await pair.sender.sendText(pair.bobAci, 'first');
    pair.api.putScript = [1, 2, 3].map(() => new MismatchedDevices([2], []));
    pair.api.deviceFailure.set(2, () => new NotOnSignalError(pair.bobAci));
    await assert.rejects(
      pair.sender.sendText(pair.bobAci, 'second'),
      (e: unknown) => (e as { code?: string }).code === 'PROTOCOL',
    );
    assert.equal(pair.api.puts.filter((p) => p.serviceId === pair.bobAci).length, 1 + 3);
  });

  it('fetches the sender certificate once, reuses it, and fetches a new one near its expiry', async () => {
    pair = makePair(dir);
    shareBobsProfileKey(pair);
    pair.api.certificateExpiresIn = 24 * 3600 * 1000;
    const first = await pair.sender.sendText(pair.bobAci, 'one');
    assert.equal(first.sealed, true);
    pair.clock.now += 3600 * 1000;
    await pair.sender.sendText(pair.bobAci, 'two');
    assert.equal(pair.api.certificateFetches, 1, 'reused while valid');
    // 30 minutes before it expires: inside the refresh margin.
    pair.clock.now += 22.5 * 3600 * 1000;
    await pair.sender.sendText(pair.bobAci, 'three');
    assert.equal(pair.api.certificateFetches, 2, 'refetched near expiry');
    await pair.sender.sendText(pair.bobAci, 'four');
    assert.equal(pair.api.certificateFetches, 2, 'the new one is reused');
  });

  it('sends to a PNI: service id: bundles, sessions and the PUT under PNI:<uuid>, never sealed', async () => {
    pair = makePair(dir);
    const pni = `PNI:${pair.bob.requireAccount().pni}`;
    // Even with a profile key known for that contact: Signal accepts no sealed sender to a PNI.
    pair.alice.contacts.upsert({
      aci: pair.bobAci,
      pni,
      profileKey: new Uint8Array(32).fill(7),
      source: 'cdsi',
    });
    const result = await pair.sender.sendText(pni, 'to your number');
    assert.equal(result.serviceId, pni);
    assert.equal(result.sealed, false);
    assert.deepEqual(result.devices, [1]);
    assert.deepEqual(
      pair.api.gets.map((g) => g.serviceId),
      [pni],
    );
    assert.deepEqual(pair.alice.deviceIds(pni), [1]);
    assert.deepEqual(pair.alice.deviceIds(pair.bobAci), [], 'no session under the ACI');
    const put = pair.api.puts.find((p) => p.serviceId === pni);
    assert.ok(put && !put.sealed);
    const message = put.messages[0];
    assert.ok(message);
    assert.equal(message.type, WireType.PREKEY);
    assert.equal((await pair.decrypt(message, pni)).dataMessage?.body, 'to your number');
    assert.ok(pair.alice.sent.find(pni, result.timestamp), 'logged under the PNI');
  });
});
