/**
 * The guard registry of numbers claimed through this Node-RED instance: the same public API as the
 * former single guard.ts. Internals (the sealed file, the lock, secret hashing) stay unexported, so
 * `export *` from registration/index.ts does not widen the package's surface.
 */
export type { AuditAction, AuditEntry, AuditOutcome } from './audit';
export {
  type AttemptTicket,
  type CodeRequestGrant,
  DEFAULT_LIMITS,
  type GuardLimits,
  type GuardListEntry,
  type GuardState,
  PENDING_TTL_MS,
  UNPROTECTED_NOTICE,
} from './policy';
export { GuardRegistry, type GuardRegistryOptions } from './registry';
