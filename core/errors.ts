/**
 * Every failure the engine reports is a SignalError with a stable `code` that flows, nodes and tests
 * can switch on, and the underlying `cause` when there is one. Messages name what was wrong and never
 * carry a secret (password, key, provisioning URL, message body).
 */
export type SignalErrorCode =
  | 'NOT_LINKED'
  | 'INVALID_INPUT'
  | 'INVALID_NUMBER'
  | 'NOT_ON_SIGNAL'
  | 'RATE_LIMITED'
  | 'CHALLENGE_REQUIRED'
  | 'IDENTITY_CHANGED'
  | 'UNAUTHORIZED'
  | 'CONNECTED_ELSEWHERE'
  | 'CDSI_UNAVAILABLE'
  | 'CDSI_INVALID_TOKEN'
  | 'CDSI_ATTESTATION'
  | 'TIMEOUT'
  | 'CANCELLED'
  | 'NETWORK'
  | 'SERVER'
  | 'PROTOCOL'
  | 'STORE'
  | 'REGISTRATION'
  | 'CLIENT_TOO_OLD'
  | 'ENVIRONMENT_MISMATCH'
  | 'GROUP_NOT_FOUND'
  | 'NOT_A_MEMBER'
  | 'CLOSED';

export class SignalError extends Error {
  readonly code: SignalErrorCode;
  override readonly cause?: unknown;

  constructor(code: SignalErrorCode, message: string, options?: { cause?: unknown }) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

/** No account is linked or registered in this store, or the server says the device is gone. */
export class NotLinkedError extends SignalError {
  constructor(message = 'This account is not linked to Signal yet', options?: { cause?: unknown }) {
    super('NOT_LINKED', message, options);
  }
}

/** Input from a flow or caller that cannot be used as given. */
export class InvalidInputError extends SignalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_INPUT', message, options);
  }
}

export class InvalidNumberError extends SignalError {
  readonly number: string;
  constructor(number: string, reason = 'is not a valid phone number') {
    super('INVALID_NUMBER', `"${number}" ${reason}`);
    this.number = number;
  }
}

export class NotOnSignalError extends SignalError {
  readonly recipient: string;
  constructor(recipient: string, options?: { cause?: unknown }) {
    super('NOT_ON_SIGNAL', `${recipient} is not registered on Signal`, options);
    this.recipient = recipient;
  }
}

export class RateLimitedError extends SignalError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number, what = 'Signal', options?: { cause?: unknown }) {
    super('RATE_LIMITED', `${what} rate limit reached: retry in ${retryAfterSeconds} s`, options);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** HTTP 428: the server wants a captcha or push challenge solved before more sends. */
export class ChallengeRequiredError extends SignalError {
  readonly token: string;
  readonly options: string[];
  constructor(token: string, options: string[], cause?: unknown, message?: string) {
    super(
      'CHALLENGE_REQUIRED',
      message ??
        `Signal requires a challenge (${options.join(', ') || 'captcha'}) before sending more messages: ` +
          `solve a captcha and answer it (the account's dialog, or msg.challenge on signal-out)`,
      { cause },
    );
    this.token = token;
    this.options = options;
  }
}

export class IdentityChangedError extends SignalError {
  readonly serviceId: string;
  constructor(serviceId: string) {
    super(
      'IDENTITY_CHANGED',
      `The safety number of ${serviceId} changed; approve the new identity before sending to it`,
    );
    this.serviceId = serviceId;
  }
}

export class UnauthorizedError extends SignalError {
  constructor(
    message = 'Signal rejected this device’s credentials (unlinked or deregistered)',
    options?: { cause?: unknown },
  ) {
    super('UNAUTHORIZED', message, options);
  }
}

/**
 * HTTP 499 (PROTOCOL.md §12): Signal-Server will not serve this client any more until it is updated
 * (its remote deprecation, or a capability it now requires). Retrying changes nothing: the client
 * stops connecting (state `expired`) and tries again at most once an hour, as the server's
 * configuration may change.
 */
export class ClientTooOldError extends SignalError {
  constructor(what = 'Signal', options?: { cause?: unknown }) {
    super(
      'CLIENT_TOO_OLD',
      `${what}: Signal's server refused this client as too old (HTTP 499); update @sigflow/node-red-signal`,
      options,
    );
  }
}

/**
 * The account was linked or registered on another server than the one configured now. Opening it
 * there would send its password to a host that never issued it, so it is refused before any
 * connection is made.
 */
export class EnvironmentMismatchError extends SignalError {
  readonly accountEnvironment: string;
  readonly configuredEnvironment: string;
  constructor(accountEnvironment: string, configuredEnvironment: string) {
    super(
      'ENVIRONMENT_MISMATCH',
      `This account belongs to the ${accountEnvironment} server, but ${configuredEnvironment} is ` +
        `configured: set the server back, or link or register this account anew`,
    );
    this.accountEnvironment = accountEnvironment;
    this.configuredEnvironment = configuredEnvironment;
  }
}

export class ConnectedElsewhereError extends SignalError {
  constructor() {
    super('CONNECTED_ELSEWHERE', 'Another connection for this device took over (close code 4409)');
  }
}

export class TimeoutError extends SignalError {
  constructor(what: string, ms: number) {
    super('TIMEOUT', `${what} timed out after ${ms} ms`);
  }
}

export class CancelledError extends SignalError {
  constructor(what = 'Operation') {
    super('CANCELLED', `${what} was cancelled`);
  }
}

export class NetworkError extends SignalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NETWORK', message, options);
  }
}

/** The server answered with a status the caller has no specific mapping for. */
export class ServerError extends SignalError {
  readonly status: number;
  constructor(status: number, what: string, options?: { cause?: unknown }) {
    super('SERVER', `${what} failed: server answered ${status}`, options);
    this.status = status;
  }
}

export class ProtocolError extends SignalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PROTOCOL', message, options);
  }
}

export class ClosedError extends SignalError {
  constructor(what = 'Signal client') {
    super('CLOSED', `${what} is closed`);
  }
}

/**
 * Contact discovery cannot answer: on a custom server (libsignal's Net reaches only Signal's own
 * CDSI, PROTOCOL.md §1), or CDSI failed and the contacts table does not know the numbers either.
 * Never reported as "not registered": the answer is unknown, and says so.
 */
export class CdsiUnavailableError extends SignalError {
  readonly numbers: string[];
  constructor(numbers: string[], message: string, options?: { cause?: unknown }) {
    super('CDSI_UNAVAILABLE', message, options);
    this.numbers = numbers;
  }
}

/** CDSI rejected the request token (close code 4101, PROTOCOL.md §8). */
export class CdsiInvalidTokenError extends SignalError {
  constructor(
    message = 'Contact discovery rejected the request token',
    options?: { cause?: unknown },
  ) {
    super('CDSI_INVALID_TOKEN', message, options);
  }
}

/** The CDSI enclave could not be attested, or the handshake with it failed (PROTOCOL.md §8). */
export class CdsiAttestationError extends SignalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CDSI_ATTESTATION', message, options);
  }
}

export function isSignalError(e: unknown): e is SignalError {
  return e instanceof SignalError;
}

/** Wraps anything thrown into a SignalError, keeping a SignalError as it is. */
export function toSignalError(e: unknown, code: SignalErrorCode, message: string): SignalError {
  if (e instanceof SignalError) return e;
  return new SignalError(code, message, { cause: e });
}

/** The group server knows no group with this id (or the engine cannot fetch it: no master key). */
export class GroupNotFoundError extends SignalError {
  readonly groupId: string;
  constructor(
    groupId: string,
    reason = 'is not a group this account knows',
    options?: { cause?: unknown },
  ) {
    super('GROUP_NOT_FOUND', `Group ${groupId} ${reason}`, options);
    this.groupId = groupId;
  }
}

/** The group exists, but this account is not (or no longer) one of its members. */
export class NotAMemberError extends SignalError {
  readonly groupId: string;
  constructor(groupId: string, options?: { cause?: unknown }) {
    super('NOT_A_MEMBER', `This account is not a member of group ${groupId}`, options);
    this.groupId = groupId;
  }
}
