/**
 * Approving a contact's changed safety number (the account's `block` identity policy): the checks
 * shared by the signal-account admin routes and signal-out's `msg.approveIdentity`.
 */
import { classifyRecipient } from '../../core/client';
import { InvalidInputError } from '../../core/errors';

/**
 * The service id to approve, as the engine keys identities: an ACI (bare UUID) or `PNI:<uuid>`,
 * lower-cased. A phone number is refused rather than looked up: the safety number belongs to the
 * Signal id the identity-change item named, and a lookup could name another one.
 */
export function serviceIdOf(value: unknown, what = 'serviceId'): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new InvalidInputError(
      `${what} must be the contact's Signal id (an ACI UUID or PNI:<uuid>, as in msg.payload of an identity-change item), not ${
        typeof value === 'string' ? 'empty text' : typeof value
      }`,
    );
  }
  const c = classifyRecipient(value);
  if (!('serviceId' in c)) {
    throw new InvalidInputError(
      `${what} "${value.trim().slice(0, 64)}" is not a Signal id: give the contact's ACI UUID or PNI:<uuid> (msg.payload of an identity-change item), not a phone number`,
    );
  }
  return c.serviceId;
}
