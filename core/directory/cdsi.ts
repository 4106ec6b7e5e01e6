/**
 * Contact discovery (CDSI) over libsignal's `Net` (PROTOCOL.md §8): one `Net` per Signal environment
 * for the whole process, a lookup bounded by the caller's AbortSignal and a timeout, the response in
 * the engine's shape (ACI and PNI as bare lower-case UUIDs), and libsignal's errors as SignalErrors.
 *
 * Only production and staging: `Net` cannot reach a custom server's CDSI (PROTOCOL.md §1).
 */
import {
  ErrorCode,
  LibSignalErrorBase,
  Net as LibsignalNet,
  type LibSignalError,
} from '@signalapp/libsignal-client';
import { stripPni } from '../api';
import { USER_AGENT } from '../config';
import {
  CancelledError,
  CdsiAttestationError,
  CdsiInvalidTokenError,
  NetworkError,
  ProtocolError,
  RateLimitedError,
  SignalError,
  TimeoutError,
} from '../errors';

export type CdsiEnvironment = 'production' | 'staging';

/** `GET /v2/directory/auth` answer: short-lived, fetched per lookup (PROTOCOL.md §8). */
export interface CdsiCredentials {
  username: string;
  password: string;
}

export interface CdsiAciAccessKey {
  /** Bare ACI UUID. */
  aci: string;
  /** Base64 unidentified-access key of that ACI (from its profile key). */
  accessKey: string;
}

export interface CdsiQuery {
  /** E.164 numbers, already normalized. */
  e164s: string[];
  /** ACIs whose access keys we hold: CDSI returns their ACI even when they hide their number. */
  acisAndAccessKeys?: CdsiAciAccessKey[];
  abortSignal?: AbortSignal;
  /** Bound on the whole lookup (connect, attestation, exchange). Default 30 s. */
  timeoutMs?: number;
}

/** One number's answer. Both null: not registered (or not discoverable). */
export interface CdsiEntry {
  /** Bare lower-case UUID. */
  aci: string | null;
  /** Bare lower-case UUID: libsignal's `PNI:` prefix removed, as in core/types.ts LookupResult. */
  pni: string | null;
}

export type CdsiEntries = Map<string, CdsiEntry>;

/** What the directory needs from contact discovery; the Net-based one is the default. */
export interface CdsiBackend {
  lookup(credentials: CdsiCredentials, query: CdsiQuery): Promise<CdsiEntries>;
}

export const DEFAULT_CDSI_TIMEOUT_MS = 30_000;

type NetInstance = LibsignalNet.Net;

// ---------------------------------------------------------------- the shared Net per environment

/*
 * A Net owns a tokio runtime and a connection manager (PROTOCOL.md §8): one per environment for the
 * process, shared by every account, made on first use. It holds no Node handle (the process exits
 * with it alive), and has no close(): dropping the last reference frees it.
 */
const sharedNets = new Map<CdsiEnvironment, NetInstance>();

export function sharedNet(environment: CdsiEnvironment): NetInstance {
  let net = sharedNets.get(environment);
  if (!net) {
    net = new LibsignalNet.Net({
      env:
        environment === 'production'
          ? LibsignalNet.Environment.Production
          : LibsignalNet.Environment.Staging,
      userAgent: USER_AGENT,
    });
    sharedNets.set(environment, net);
  }
  return net;
}

/** Drops the shared Nets (tests; a later lookup makes a fresh one). */
export function disposeSharedNets(): void {
  sharedNets.clear();
}

/** How many shared Nets exist (tests). */
export function sharedNetCount(): number {
  return sharedNets.size;
}

// ---------------------------------------------------------------- conversion

/** A PNI as the directory keeps it: untagged, lower-case; absent → null. */
export const directoryPni = (pni: string | null | undefined): string | null =>
  pni ? stripPni(pni).toLowerCase() : null;

/** libsignal's response → ours: ACI bare, PNI without its `PNI:` prefix, absent → null. */
export function convertCdsiResponse(response: {
  entries: ReadonlyMap<string, { aci?: string | undefined; pni?: string | undefined }>;
}): CdsiEntries {
  const out: CdsiEntries = new Map();
  for (const [e164, entry] of response.entries) {
    out.set(e164, {
      aci: entry.aci ? entry.aci.toLowerCase() : null,
      pni: directoryPni(entry.pni),
    });
  }
  return out;
}

// ---------------------------------------------------------------- errors

const WHAT = 'Contact discovery';

/**
 * libsignal's CDSI errors (PROTOCOL.md §8) → SignalErrors. `timedOut` tells a cancellation we caused
 * with our own timer (TIMEOUT) from one the caller asked for (CANCELLED).
 */
export function mapCdsiError(
  error: unknown,
  context: { timedOut?: boolean; timeoutMs?: number } = {},
): SignalError {
  if (error instanceof SignalError) return error;
  if (context.timedOut) return new TimeoutError(WHAT, context.timeoutMs ?? DEFAULT_CDSI_TIMEOUT_MS);
  if (!(error instanceof LibSignalErrorBase)) {
    return new SignalError(
      'CDSI_UNAVAILABLE',
      `${WHAT} failed: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const e = error as LibSignalError;
  switch (e.code) {
    case ErrorCode.RateLimitedError:
      // HTTP 429 on the upgrade or close code 4008.
      return new RateLimitedError(e.retryAfterSecs, WHAT, { cause: e });
    case ErrorCode.CdsiInvalidToken:
      return new CdsiInvalidTokenError(`${WHAT} rejected the request token: ${e.message}`, {
        cause: e,
      });
    case ErrorCode.Cancelled:
      return new CancelledError(WHAT);
    case ErrorCode.IoError:
      // Transport failures, enclave/CDSI protocol breaks and server errors (4013/4014).
      return new NetworkError(`${WHAT} failed: ${e.message}`, { cause: e });
    case ErrorCode.Generic:
      // Generic covers two cases: the server calling our request invalid (close 4003, libsignal's
      // "request was invalid: …"), which is our bug and not the enclave's, and everything about
      // attesting the enclave.
      if (/^request was invalid/i.test(e.message))
        return new ProtocolError(`${WHAT} refused the request: ${e.message}`, { cause: e });
      return new CdsiAttestationError(`${WHAT} could not attest Signal's enclave: ${e.message}`, {
        cause: e,
      });
    default:
      return new SignalError('CDSI_UNAVAILABLE', `${WHAT} failed: ${e.message}`, { cause: e });
  }
}

// ---------------------------------------------------------------- the lookup

/**
 * One CDSI lookup on `net`. The caller's signal and our timeout are bridged into one signal handed
 * to libsignal, and the returned promise settles as soon as either fires, even if the native side is
 * slow to notice (it is told to cancel; its late answer is dropped).
 */
export async function cdsiLookup(
  net: Pick<NetInstance, 'cdsiLookup'>,
  credentials: CdsiCredentials,
  query: CdsiQuery,
): Promise<CdsiEntries> {
  const acisAndAccessKeys = query.acisAndAccessKeys ?? [];
  if (query.e164s.length === 0 && acisAndAccessKeys.length === 0) return new Map();
  if (query.abortSignal?.aborted) throw new CancelledError(WHAT);
  const timeoutMs = query.timeoutMs ?? DEFAULT_CDSI_TIMEOUT_MS;

  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const onCallerAbort = (): void => controller.abort();
  query.abortSignal?.addEventListener('abort', onCallerAbort, { once: true });

  try {
    const response = await new Promise<Awaited<ReturnType<NetInstance['cdsiLookup']>>>(
      (resolve, reject) => {
        controller.signal.addEventListener('abort', () => reject(controller.signal.reason), {
          once: true,
        });
        net
          .cdsiLookup(
            { username: credentials.username, password: credentials.password },
            { e164s: query.e164s, acisAndAccessKeys, abortSignal: controller.signal },
          )
          .then(resolve, reject);
      },
    );
    return convertCdsiResponse(response);
  } catch (e) {
    if (controller.signal.aborted && !timedOut && !(e instanceof LibSignalErrorBase))
      throw new CancelledError(WHAT);
    throw mapCdsiError(e, { timedOut, timeoutMs });
  } finally {
    clearTimeout(timer);
    // libsignal never removes the listener it adds to the signal it is given: it gets this
    // per-request signal, never the caller's long-lived one.
    query.abortSignal?.removeEventListener('abort', onCallerAbort);
  }
}

/** The default backend: the process-wide Net of an environment, made on first lookup. */
export class NetCdsiBackend implements CdsiBackend {
  private readonly net: () => Pick<NetInstance, 'cdsiLookup'>;
  private readonly timeoutMs: number;

  /** `target` is an environment (shared Net) or a Net of its own (tests: `localTestServer`). */
  constructor(
    target: CdsiEnvironment | Pick<NetInstance, 'cdsiLookup'>,
    options: { timeoutMs?: number } = {},
  ) {
    this.net = typeof target === 'string' ? () => sharedNet(target) : () => target;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_CDSI_TIMEOUT_MS;
  }

  lookup(credentials: CdsiCredentials, query: CdsiQuery): Promise<CdsiEntries> {
    return cdsiLookup(this.net(), credentials, {
      ...query,
      timeoutMs: query.timeoutMs ?? this.timeoutMs,
    });
  }
}
