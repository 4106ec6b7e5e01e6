/**
 * Node status and the one error funnel every flow node uses: a failure sets a short status (never a
 * secret) and reaches Catch nodes through done(err).
 */
import type { ClientState } from '../../core/types';
import { SignalError } from '../../core/errors';
import type { Node, NodeMessage, NodeStatus } from './red';

/**
 * Node-RED's `RED._` of the calling node file: keys resolve in that file's catalog
 * (locales/<lang>/<file>.json, one namespace per node set), so each node type has its own.
 */
export type Translate = (key: string, subs?: Record<string, unknown>) => string;

/** A code as words, as a status shows it ("invalid input", not "INVALID_INPUT"). */
const words = (code: string): string => code.toLowerCase().replace(/_/g, ' ');

/**
 * The account's state as its flow nodes show it. Called by signal-account, so the texts are in
 * its catalog (signal-account.status.*) whichever flow node shows them.
 */
export function statusFor(_: Translate, state: ClientState | 'error', detail?: string): NodeStatus {
  const t = (key: string, subs?: Record<string, unknown>) =>
    _(`signal-account.status.${key}`, subs);
  switch (state) {
    case 'connected':
      return { fill: 'green', shape: 'dot', text: t('connected') };
    case 'connecting':
      return { fill: 'yellow', shape: 'ring', text: t('connecting') };
    case 'disconnected':
      return { fill: 'yellow', shape: 'ring', text: t('reconnecting') };
    case 'linking':
      return { fill: 'yellow', shape: 'ring', text: t('linking') };
    case 'unlinked':
      return { fill: 'red', shape: 'ring', text: t('notLinked') };
    case 'expired':
      // HTTP 499 (CLIENT_TOO_OLD): only an update of the package helps.
      return { fill: 'red', shape: 'ring', text: t('updateNeeded') };
    case 'idle':
      return { fill: 'grey', shape: 'ring', text: t('notLinked') };
    case 'closed':
      return {};
    default:
      return {
        fill: 'red',
        shape: 'ring',
        text: detail ? t('errorCode', { code: words(detail) }) : t('error'),
      };
  }
}

/** The status of a flow node with no account configured (`<type>.status.noAccount`). */
export function noAccountStatus(_: Translate, node: Node): NodeStatus {
  return { fill: 'red', shape: 'ring', text: _(`${node.type}.status.noAccount`) };
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

/**
 * Sets the status (`<type>.status.failed`, the code as words) and hands the failure to Node-RED
 * (Catch nodes see it, with msg).
 */
export function fail(
  _: Translate,
  node: Node,
  err: unknown,
  msg: NodeMessage,
  done: (err?: Error) => void,
): void {
  const error = err instanceof Error ? err : new Error(String(err));
  node.status({
    fill: 'red',
    shape: 'ring',
    text: _(`${node.type}.status.failed`, { code: words(codeOf(error)) }),
  });
  (error as Error & { code?: string }).code ??= codeOf(error);
  done(error);
}
