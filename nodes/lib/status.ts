/**
 * Node status and the one error funnel every flow node uses: a failure sets a short status (never a
 * secret) and reaches Catch nodes through done(err).
 */
import type { ClientState } from '../../core/types';
import { SignalError } from '../../core/errors';
import type { Node, NodeMessage, NodeStatus } from './red';

export function statusFor(state: ClientState | 'error', detail?: string): NodeStatus {
  switch (state) {
    case 'connected':
      return { fill: 'green', shape: 'dot', text: 'connected' };
    case 'connecting':
      return { fill: 'yellow', shape: 'ring', text: 'connecting' };
    case 'disconnected':
      return { fill: 'yellow', shape: 'ring', text: 'reconnecting' };
    case 'linking':
      return { fill: 'yellow', shape: 'ring', text: 'linking' };
    case 'unlinked':
      return { fill: 'red', shape: 'ring', text: 'not linked' };
    case 'expired':
      // HTTP 499 (CLIENT_TOO_OLD): only an update of the package helps.
      return { fill: 'red', shape: 'ring', text: 'update needed' };
    case 'idle':
      return { fill: 'grey', shape: 'ring', text: 'not linked' };
    case 'closed':
      return {};
    default:
      // Codes read as words, as fail() shows them ("invalid input", not "INVALID_INPUT").
      return {
        fill: 'red',
        shape: 'ring',
        text: detail ? `error: ${detail.toLowerCase().replace(/_/g, ' ')}` : 'error',
      };
  }
}

/**
 * What a flow can act on, beside the code and the message: when to retry, the challenge token, the
 * recipient or number it concerns. Never a secret: these are the typed fields of the engine's
 * errors (core/errors.ts), copied by name.
 */
export interface ErrorFields {
  code: string;
  message: string;
  retryAfterSeconds?: number;
  token?: string;
  options?: string[];
  recipient?: string;
  serviceId?: string;
  number?: string;
}

export function errorFields(err: unknown): ErrorFields {
  const fields: ErrorFields = {
    code: codeOf(err),
    message: err instanceof Error ? err.message : String(err),
  };
  if (!(err instanceof SignalError)) return fields;
  const e = err as SignalError & Record<string, unknown>;
  if (typeof e.retryAfterSeconds === 'number') fields.retryAfterSeconds = e.retryAfterSeconds;
  if (typeof e.token === 'string') fields.token = e.token;
  if (Array.isArray(e.options)) fields.options = (e.options as unknown[]).map(String);
  if (typeof e.recipient === 'string') fields.recipient = e.recipient;
  if (typeof e.serviceId === 'string') fields.serviceId = e.serviceId;
  if (typeof e.number === 'string') fields.number = e.number;
  return fields;
}

/** The error's stable code, for msg.error and Catch nodes. */
export function codeOf(err: unknown): string {
  return err instanceof SignalError ? err.code : 'ERROR';
}

/** Sets the status and hands the failure to Node-RED (Catch nodes see it, with msg). */
export function fail(
  node: Node,
  err: unknown,
  msg: NodeMessage,
  done: (err?: Error) => void,
): void {
  const error = err instanceof Error ? err : new Error(String(err));
  node.status({ fill: 'red', shape: 'ring', text: codeOf(error).toLowerCase().replace(/_/g, ' ') });
  (error as Error & { code?: string }).code ??= codeOf(error);
  done(error);
}
