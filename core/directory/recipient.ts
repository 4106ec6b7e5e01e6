/**
 * Recipients as users write them: an ACI, `PNI:<uuid>`, or a phone number, and how each becomes a
 * service id (a number through the directory).
 */
import { InvalidInputError, NotOnSignalError } from '../errors';
import type { Directory, LookupOptions } from './directory';
import { normalizeNumber } from './number';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A recipient as the engine addresses it: an ACI, `PNI:<uuid>`, or (to be resolved) a number. */
export function classifyRecipient(to: string): { serviceId: string } | { number: string } {
  const t = to.trim();
  if (UUID.test(t)) return { serviceId: t.toLowerCase() };
  if (/^PNI:/i.test(t) && UUID.test(t.slice(4)))
    return { serviceId: `PNI:${t.slice(4).toLowerCase()}` };
  return { number: t };
}

/**
 * The group id of a `group:<id>` recipient (the base64 of the 32-byte group identifier, as
 * `signal-in` reports it), null for any other recipient. A malformed one is refused, naming it.
 */
export function groupTarget(to: string): string | null {
  const t = to.trim();
  if (!/^group:/i.test(t)) return null;
  const id = t.slice(6).trim();
  const bytes = Buffer.from(id, 'base64');
  if (bytes.length !== 32 || bytes.toString('base64') !== id)
    throw new InvalidInputError(
      `"${t}" is not a group: a group recipient is group:<base64 of its 32-byte id>`,
    );
  return id;
}

/** Receipts go to the messages' sender, never to a group: refused, naming what was wrong. */
export function noGroup(from: string, what: string): void {
  if (typeof from === 'string' && groupTarget(from) !== null)
    throw new InvalidInputError(
      `${what} go to the sender of the messages (their ACI), not to a group`,
    );
}

/**
 * A recipient as users write it → a service id: an ACI UUID (optionally `ACI:`-prefixed) → bare
 * lower-case ACI; `PNI:<uuid>` → `PNI:<lower-case uuid>`; anything else is a phone number:
 * normalized, looked up, ACI preferred over PNI. Unregistered → NOT_ON_SIGNAL naming the number.
 */
export async function resolveRecipient(
  directory: Pick<Directory, 'lookup'>,
  to: string,
  options: LookupOptions = {},
): Promise<string> {
  if (typeof to !== 'string' || to.trim() === '') throw new InvalidInputError('No recipient given');
  const t = to.trim();
  if (UUID.test(t)) return t.toLowerCase();
  if (/^ACI:/i.test(t) && UUID.test(t.slice(4))) return t.slice(4).toLowerCase();
  if (/^PNI:/i.test(t) && UUID.test(t.slice(4))) return `PNI:${t.slice(4).toLowerCase()}`;
  const number = normalizeNumber(t);
  const [result] = await directory.lookup([number], options);
  if (!result || !result.registered || !(result.aci ?? result.pni))
    throw new NotOnSignalError(number);
  return result.aci ?? `PNI:${result.pni}`;
}
