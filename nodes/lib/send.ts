/**
 * signal-out's sending of one msg to its recipients (a message or another kind, lib/rich.ts): a few
 * at a time, each recipient's outcome in input order, and the one error that reaches Catch nodes
 * when any failed.
 */
import { SignalError } from '../../core/errors';
import type { SendResult } from '../../core/types';
import type { SendOutcome } from './msg';
import { errorFields } from './status';

/** Recipients of one msg sent at the same time. */
export const SEND_CONCURRENCY = 8;

/**
 * Calls `sendTo` (one engine call: a message, a reaction, a receipt…) for every recipient. Several
 * go out a few at a time: each send waits for the server's answer, so one after another 100
 * recipients would take 100 round trips. Never rejects: a failed
 * recipient is an outcome with its error's typed fields.
 */
export async function sendToAll(
  recipients: string[],
  sendTo: (to: string) => Promise<SendResult>,
): Promise<SendOutcome[]> {
  const results: SendOutcome[] = new Array<SendOutcome>(recipients.length);
  const sendOne = async (to: string): Promise<SendOutcome> => {
    try {
      const r = await sendTo(to);
      return {
        to,
        serviceId: r.serviceId,
        timestamp: r.timestamp,
        status: 'sent',
        ...(r.recipients ? { recipients: r.recipients } : {}),
      };
    } catch (e) {
      return { to, status: 'failed', error: errorFields(e) };
    }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(SEND_CONCURRENCY, recipients.length) }, async () => {
      while (next < recipients.length) {
        const i = next++;
        results[i] = await sendOne(recipients[i] as string);
      }
    }),
  );
  return results;
}

/**
 * What signal-out puts on msg.signal: every recipient's outcome, and the first successful send's
 * timestamp in input order (the id to quote when there is one recipient); undefined when none was
 * sent, so that mergeSignal drops a timestamp the msg came with.
 */
export function sendResult(results: SendOutcome[]): {
  timestamp: number | undefined;
  results: SendOutcome[];
} {
  return { timestamp: results.find((r) => r.status === 'sent')?.timestamp, results };
}

/**
 * The error for done(err) when any recipient failed, else null. Node-RED hands a Catch node the
 * error's code, stack and cause only: the typed fields of the first failure (retryAfterSeconds,
 * token, the recipient) ride on msg.error.cause, and every recipient's on msg.signal.results[i].error.
 */
export function sendFailure(results: SendOutcome[]): SignalError | null {
  const failed = results.filter((r) => r.status === 'failed');
  if (failed.length === 0) return null;
  const first = failed[0]?.error;
  return new SignalError(
    (first?.code as SignalError['code']) ?? 'SERVER',
    failed.length === 1
      ? `Sending to ${failed[0]?.to} failed: ${first?.message}`
      : `Sending failed for ${failed.length} of ${results.length} recipients (first: ${failed[0]?.to}: ${first?.message})`,
    { cause: { to: failed[0]?.to, ...first } },
  );
}
