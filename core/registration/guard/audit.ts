/**
 * The guard's audit log: every operation, allowed or refused, appended as one entry (the newest
 * `auditCap` kept, 1000 by default). An entry never holds a secret, a code or a captcha: entries
 * are rebuilt field by field, and reasons that come from callers are scrubbed.
 */
import { redactString } from '../../log';

export type AuditAction =
  | 'attempt'
  | 'code-request'
  | 'verify'
  | 'verified'
  | 'failed'
  | 'abandoned'
  | 'linked'
  | 'release';
export type AuditOutcome = 'allowed' | 'refused' | 'rate-limited' | 'done' | 'ignored';

export interface AuditEntry {
  at: number;
  number: string;
  action: AuditAction;
  outcome: AuditOutcome;
  /** Why (refusal reason, failure reason); never a secret, code or captcha. */
  reason?: string;
}

export const DEFAULT_AUDIT_CAP = 1000;

/** Appends a copy of `entry` holding only the known fields (no stray property reaches the file). */
export function pushAudit(log: AuditEntry[], entry: AuditEntry): void {
  const clean: AuditEntry = {
    at: entry.at,
    number: entry.number,
    action: entry.action,
    outcome: entry.outcome,
  };
  if (entry.reason) clean.reason = entry.reason;
  log.push(clean);
}

/** Drops the oldest entries beyond `cap`. */
export function trimAudit(log: AuditEntry[], cap: number): void {
  if (log.length > cap) log.splice(0, log.length - cap);
}

/** Failure reasons come from callers (often an error message): scrub and bound them. */
export function cleanReason(reason: string): string {
  return redactString(String(reason))
    .replace(/signalcaptcha:\/\/\S*/gi, 'signalcaptcha://[redacted]')
    .replace(/\s+/g, ' ')
    .slice(0, 200);
}
