/**
 * Phone numbers to E.164. Users write numbers with spaces, dashes, brackets or a 00 prefix; Signal
 * addresses them as E.164. A number that cannot be a phone number fails here, naming it, before any
 * network call. "Possible" (right length for its country) rather than "valid" (a known number range):
 * ranges change faster than the library, and Signal's own test numbers are possible but not valid.
 */
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';
import { InvalidNumberError } from '../errors';

export function normalizeNumber(input: string, defaultRegion?: string): string {
  if (typeof input !== 'string')
    throw new InvalidNumberError(String(input), 'is not a phone number');
  const trimmed = input.trim();
  const compact = trimmed.replace(/[\s\-().]/g, '').replace(/^00/, '+');
  if (!/^\+?\d{4,17}$/.test(compact)) throw new InvalidNumberError(trimmed);
  const parsed = parsePhoneNumberFromString(compact, defaultRegion as CountryCode | undefined);
  if (!parsed || !parsed.isPossible()) {
    throw new InvalidNumberError(
      trimmed,
      compact.startsWith('+') ? undefined : 'has no country code (write it as +<country><number>)',
    );
  }
  return parsed.number;
}
