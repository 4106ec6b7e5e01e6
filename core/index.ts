/**
 * Public API of the sigflow engine: what `require('@sigflow/node-red-signal')` gives a script that
 * uses the engine without Node-RED (package.json `main`). Everything else under core/ is internal.
 */
export { SignalClient, classifyRecipient } from './client';
export type { ClientPorts, SignalClientOptions, SignalClientEvents } from './client';

export * from './errors';
export {
  RegistrationError,
  GuardRefusedError,
  GuardRegistryError,
  CaptchaRequiredError,
  VerificationCodeError,
  CodeAttemptsExhaustedError,
  NotOwnerError,
  RegistrationLockedError,
  REGISTRATION_CAPTCHA_URL,
  GuardRegistry,
  DEFAULT_LIMITS,
  UNPROTECTED_NOTICE,
} from './registration';
export type {
  RegistrationFailure,
  RegistrationStatus,
  RegistrationStep,
  StartRegistrationOptions,
  VerificationTransport,
  GuardRegistryOptions,
  GuardLimits,
  GuardListEntry,
  GuardState,
  AuditEntry,
  AuditAction,
  AuditOutcome,
} from './registration';

export { resolveEnvironment, parseTrustRoots, signalRootCa, USER_AGENT } from './config';
export type { Environment, EnvironmentOptions, ServerName, TransportKind } from './config';

export * from './types';

export { consoleLogger, silentLogger } from './log';
export type { Logger } from './log';

export type { LinkState } from './provisioning/linker';
export type { BackoffOptions } from './net/persistent';
export type { KeepaliveOptions } from './net/connection';
export type { CdsiBackend } from './directory';
export type { GroupInfo, GroupMember, GroupRecord, GroupStatePort } from './groups/types';
export type { GroupDirectory } from './groups/directory';
