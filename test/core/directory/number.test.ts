import assert from 'node:assert/strict';
import { normalizeNumber } from '../../../core/directory/number';
import { SignalError } from '../../../core/errors';

const fails = (input: string, code: string, region?: string): void =>
  assert.throws(
    () => normalizeNumber(input, region),
    (e: unknown) =>
      e instanceof SignalError &&
      e.code === code &&
      e.message.includes(`"${input.trim() || input}"`),
    `${JSON.stringify(input)} should fail with ${code}`,
  );

describe('directory: normalizeNumber', () => {
  it('tolerates spaces, dashes, brackets, dots and a leading 00', () => {
    for (const input of [
      '+14154901234',
      '+1 (415) 490-1234',
      ' +1 415.490.1234 ',
      '0014154901234',
      '00 1 415 490 1234',
      '+1\u00a0415\u2013490\u20131234',
    ])
      assert.equal(normalizeNumber(input), '+14154901234', input);
    assert.equal(normalizeNumber('+49 (0) 30 1234567'), '+49301234567');
    assert.equal(normalizeNumber('+44 20 7946 0958'), '+442079460958');
  });

  it('accepts every number the mock server hands out (+141549 and five random digits)', () => {
    // The same recipe as @signalapp/mock-server's generateRandomE164, over its whole range's edges
    // and a sample of its middle.
    const suffixes = ['00000', '99999', '12345', '50000', '00001', '98765'];
    for (let i = 0; i < 200; i++)
      suffixes.push(String(Math.floor(Math.random() * 100_000)).padStart(5, '0'));
    for (const s of suffixes) assert.equal(normalizeNumber(`+141549${s}`), `+141549${s}`);
  });

  it('accepts possible numbers that are not in an assigned range (the fictional +1 555 area)', () => {
    assert.equal(normalizeNumber('+1 555 000 1111'), '+15550001111');
  });

  it('national numbers need a default region', () => {
    assert.equal(normalizeNumber('(415) 490-1234', 'US'), '+14154901234');
    assert.equal(normalizeNumber('030 1234567', 'de'), '+49301234567');
    assert.throws(() => normalizeNumber('4154901234'), /has no country code/);
    assert.throws(
      () => normalizeNumber('4154901234', 'XX'),
      (e: unknown) =>
        e instanceof SignalError && e.code === 'INVALID_INPUT' && /"XX"/.test(e.message),
    );
  });

  it('refuses what cannot be a phone number, naming it', () => {
    fails('+1 555 123', 'INVALID_NUMBER');
    fails('+999 123456', 'INVALID_NUMBER');
    fails('+1-800-FLOWERS', 'INVALID_NUMBER');
    fails('hello', 'INVALID_NUMBER');
    fails('+12', 'INVALID_NUMBER');
    fails('+1234567890123456789', 'INVALID_NUMBER');
    assert.throws(
      () => normalizeNumber(42 as unknown as string),
      (e: unknown) =>
        e instanceof SignalError && e.code === 'INVALID_NUMBER' && /"42"/.test(e.message),
    );
  });
});
