/**
 * Phone numbers to E.164. Users write numbers with spaces, dashes, brackets, dots or a 00 prefix;
 * Signal addresses them as E.164. A number that cannot be a phone number fails here, naming it,
 * before any network call.
 *
 * "Possible" (a length the country's numbering plan allows, checked against libphonenumber's full
 * `max` metadata) rather than "valid" (inside a range known to be assigned): ranges change faster
 * than the library's metadata, and numbers in the fictional +1 555 area (used by this project's
 * tests, sandbox and examples) are possible but not valid, so a "valid" rule would refuse them. The
 * numbers `@signalapp/mock-server` hands out (`+141549` and five random digits) are both.
 */
import {
  isSupportedCountry,
  parsePhoneNumberFromString,
  type CountryCode,
} from 'libphonenumber-js/max';
import { InvalidInputError, InvalidNumberError } from '../errors';

/** Separators people type inside numbers: whitespace, ASCII and Unicode dashes, brackets, dots, slashes. */
const SEPARATORS = /[\s\-\u2010-\u2015\u2212().[\]/]/g;

/**
 * Returns the E.164 form (`+14155550123`) of `input`, or throws INVALID_NUMBER naming it.
 * `defaultRegion` (ISO 3166 alpha-2, e.g. `DE`) lets national numbers without a country code through.
 */
export function normalizeNumber(input: string, defaultRegion?: string): string {
  if (typeof input !== 'string')
    throw new InvalidNumberError(String(input), 'is not a phone number');
  let region: CountryCode | undefined;
  if (defaultRegion !== undefined && defaultRegion !== '') {
    const upper = defaultRegion.toUpperCase();
    if (!isSupportedCountry(upper))
      throw new InvalidInputError(`"${defaultRegion}" is not a supported country code`);
    region = upper;
  }
  const trimmed = input.trim();
  const compact = trimmed.replace(SEPARATORS, '').replace(/^00/, '+');
  if (!/^\+?\d{4,17}$/.test(compact)) throw new InvalidNumberError(trimmed);
  const parsed = parsePhoneNumberFromString(compact, region);
  if (!parsed || !parsed.isPossible()) {
    throw new InvalidNumberError(
      trimmed,
      compact.startsWith('+') || region
        ? undefined
        : 'has no country code (write it as +<country><number>)',
    );
  }
  return parsed.number;
}
