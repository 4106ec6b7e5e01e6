/** The outgoing-message model (core/types.ts OutgoingMessage), checked before anything is sent. */
import { InvalidInputError } from '../errors';
import type { OutgoingMessage } from '../types';

const OUTGOING_FIELDS = new Set<string>(['text']);

/**
 * The text of an OutgoingMessage, checked before anything is resolved or sent: a field the engine
 * does not send yet (attachments, quote, …) is refused by name rather than dropped, so nothing goes
 * out other than what the caller asked for.
 */
export function outgoingText(message: OutgoingMessage): string {
  if (typeof message !== 'object' || message === null || Array.isArray(message))
    throw new InvalidInputError('The message must be an object such as {text: "…"}');
  for (const field of Object.keys(message)) {
    if (!OUTGOING_FIELDS.has(field))
      throw new InvalidInputError(`The message field "${field}" is not one this engine can send`);
  }
  const { text } = message;
  if (typeof text !== 'string') throw new InvalidInputError('The message text must be a string');
  if (text.length === 0) throw new InvalidInputError('The message text is empty');
  return text;
}
