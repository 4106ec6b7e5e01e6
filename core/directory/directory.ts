/**
 * Phone-number lookup for one account: cache → CDSI (production, staging) → contacts.
 *
 * - Every number is normalized first; one invalid number fails the whole call with INVALID_NUMBER,
 *   naming it, before any network call.
 * - CDSI is authoritative where libsignal can reach it (PROTOCOL.md §8). Its answers are cached,
 *   registered numbers longer than unregistered ones (a number joins Signal more often than it
 *   leaves); a cached answer says `source: 'cache'`. Registered answers are also handed to the
 *   contacts table.
 * - Economy: CDSI spends a rate-limited quota per new number and seconds per attestation, so lookups
 *   issued together (same tick, within the batching window, or while a request is in flight) are
 *   merged: at most one CDSI request is in flight per directory, and the next one carries the union
 *   of every number asked for meanwhile. Each caller gets its own numbers in its own order; one
 *   caller's cancellation never cancels the request for the others.
 * - When CDSI fails (rate limit, network, attestation, timeout), numbers the contacts table knows as
 *   registered are answered from it (`source: 'contacts'`); if any number stays unknown the CDSI
 *   error is thrown. "Not registered" is only ever CDSI's answer, never a guess.
 * - Custom servers have no CDSI (PROTOCOL.md §1): contacts only, and a number not among them fails
 *   with CDSI_UNAVAILABLE naming it.
 *
 * Service ids follow core/types.ts: ACI and PNI are bare lower-case UUIDs in results.
 */
import type { Environment } from '../config';
import { deriveAccessKey } from '../crypto/access-key';
import {
  CancelledError,
  CdsiUnavailableError,
  ClosedError,
  InvalidInputError,
  SignalError,
  toSignalError,
} from '../errors';
import { silentLogger, type Logger } from '../log';
import type { LookupResult } from '../types';
import {
  DEFAULT_CDSI_TIMEOUT_MS,
  NetCdsiBackend,
  directoryPni,
  type CdsiAciAccessKey,
  type CdsiBackend,
  type CdsiCredentials,
  type CdsiEntries,
  type CdsiEntry,
} from './cdsi';
import { normalizeNumber } from './number';

/** What the directory needs from the account's contacts table. PNIs are bare UUIDs (a `PNI:` prefix is tolerated). */
export interface ContactsSource {
  /** Known contacts among `e164s`, keyed by E.164; numbers not known are absent. */
  findByNumbers(e164s: string[]): Map<string, { aci: string | null; pni: string | null }>;
  /** Registered numbers CDSI just answered (never unregistered ones), to keep in the contacts table. */
  recordLookup(results: Array<{ number: string; aci: string | null; pni: string | null }>): void;
  /** Contacts whose ACI and profile key we know: sent to CDSI with their access keys. */
  withProfileKeys?(): Array<{ aci: string; profileKey: Uint8Array }>;
}

/**
 * CDSI's `acisAndAccessKeys` from contacts with known profile keys (access key: PROTOCOL.md §5).
 * Proving we know someone's access key lets CDSI return their ACI even when their number is not
 * discoverable. A malformed key is skipped, not fatal.
 */
export function knownAccessKeys(
  contacts: Array<{ aci: string; profileKey: Uint8Array }>,
): CdsiAciAccessKey[] {
  const out: CdsiAciAccessKey[] = [];
  for (const c of contacts) {
    if (c.profileKey.length !== 32) continue;
    out.push({
      aci: c.aci.toLowerCase(),
      accessKey: Buffer.from(deriveAccessKey(c.profileKey)).toString('base64'),
    });
  }
  return out;
}

export interface CacheTtl {
  /** How long a registered answer is reused. Default 24 h. */
  positiveMs: number;
  /** How long an unregistered answer is reused. Default 1 h. */
  negativeMs: number;
}

export interface DirectoryOptions {
  environment: Pick<Environment, 'name' | 'cdsi'>;
  /** Fresh CDSI credentials (`GET /v2/directory/auth`), called once per CDSI request. */
  auth: () => Promise<CdsiCredentials>;
  contacts: ContactsSource;
  /**
   * Contact discovery. Default: libsignal's Net for `environment.cdsi` (none on a custom server).
   * `null`: no CDSI (contacts only). Tests inject a fake.
   */
  cdsi?: CdsiBackend | null;
  /**
   * ACIs with their access keys to send along, so CDSI returns ACIs hidden from number lookup.
   * Default: derived from `contacts.withProfileKeys()` for each request.
   */
  knownAccessKeys?: () => CdsiAciAccessKey[];
  cacheTtl?: Partial<CacheTtl>;
  /** Most cached numbers kept (least recently used dropped first). Default 10,000. */
  cacheSize?: number;
  /** How long a batch collects lookups before its request starts. Default 20 ms. */
  batchWindowMs?: number;
  /** Bound on one CDSI request. Default 30 s. */
  timeoutMs?: number;
  now?: () => number;
  logger?: Logger;
}

export interface LookupOptions {
  signal?: AbortSignal;
}

export const DEFAULT_CACHE_TTL: Readonly<CacheTtl> = {
  positiveMs: 24 * 60 * 60 * 1000,
  negativeMs: 60 * 60 * 1000,
};

interface CacheEntry extends CdsiEntry {
  registered: boolean;
  expiresAt: number;
}

/** One CDSI request: collecting numbers, then in flight, then settled. */
interface Batch {
  numbers: Set<string>;
  /** Callers still waiting on it; at 0 it is dropped (collecting) or aborted (in flight). */
  waiters: number;
  controller: AbortController;
  promise: Promise<CdsiEntries>;
  resolve: (entries: CdsiEntries) => void;
  reject: (error: unknown) => void;
  settled: boolean;
}

const WHAT = 'Phone number lookup';

export class Directory {
  private readonly environment: Pick<Environment, 'name' | 'cdsi'>;
  private readonly auth: () => Promise<CdsiCredentials>;
  private readonly contacts: ContactsSource;
  private readonly cdsi: CdsiBackend | null;
  private readonly knownAccessKeys: () => CdsiAciAccessKey[];
  private readonly ttl: CacheTtl;
  private readonly cacheSize: number;
  private readonly batchWindowMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly logger: Logger;

  private readonly cache = new Map<string, CacheEntry>();
  private collecting: Batch | null = null;
  private inFlight: Batch | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(options: DirectoryOptions) {
    this.environment = options.environment;
    this.auth = options.auth;
    this.contacts = options.contacts;
    this.cdsi =
      options.cdsi !== undefined
        ? options.cdsi
        : options.environment.cdsi
          ? new NetCdsiBackend(options.environment.cdsi)
          : null;
    const contacts = options.contacts;
    this.knownAccessKeys =
      options.knownAccessKeys ??
      (() => (contacts.withProfileKeys ? knownAccessKeys(contacts.withProfileKeys()) : []));
    this.ttl = { ...DEFAULT_CACHE_TTL, ...options.cacheTtl };
    this.cacheSize = options.cacheSize ?? 10_000;
    this.batchWindowMs = options.batchWindowMs ?? 20;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_CDSI_TIMEOUT_MS;
    this.now = options.now ?? Date.now;
    this.logger = options.logger ?? silentLogger;
  }

  /** Whether lookups can reach contact discovery (false: contacts only). */
  get hasContactDiscovery(): boolean {
    return this.cdsi !== null;
  }

  /**
   * Looks `numbers` up; one result per input, in input order (duplicates allowed). Throws
   * INVALID_NUMBER (before any network call), CANCELLED, CLOSED, CDSI_UNAVAILABLE, or CDSI's mapped
   * error when neither CDSI nor the contacts table can answer.
   */
  async lookup(numbers: string[], options: LookupOptions = {}): Promise<LookupResult[]> {
    if (this.closed) throw new ClosedError('Directory');
    if (!Array.isArray(numbers))
      throw new InvalidInputError('lookup() takes an array of phone numbers');
    const normalized = numbers.map((n) => normalizeNumber(n));
    const { signal } = options;
    if (signal?.aborted) throw new CancelledError(WHAT);

    const answers = new Map<string, LookupResult>();
    const unknown: string[] = [];
    for (const number of new Set(normalized)) {
      const hit = this.cached(number);
      if (hit) answers.set(number, { number, ...hit, source: 'cache' });
      else unknown.push(number);
    }

    // Cache, then contacts, then CDSI (DESIGN.md, data flow): a number the phone synced, or that
    // wrote to us, needs no discovery request.
    const rest = unknown.length > 0 ? this.knownContacts(unknown, answers) : unknown;
    if (rest.length > 0) {
      const found =
        this.cdsi === null ? this.fromContacts(rest, null) : await this.fromCdsi(rest, signal);
      for (const r of found) answers.set(r.number, r);
    }
    return normalized.map((number) => ({ ...(answers.get(number) as LookupResult) }));
  }

  /** Forgets cached answers (all, or for these E.164 numbers): e.g. after a send found a number gone. */
  forget(numbers?: string[]): void {
    if (!numbers) this.cache.clear();
    else for (const n of numbers) this.cache.delete(n);
  }

  /** Fails pending lookups with CLOSED, aborts the CDSI request in flight, clears timers. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    for (const batch of [this.collecting, this.inFlight]) {
      if (!batch) continue;
      batch.controller.abort();
      this.settle(batch, new ClosedError('Directory'));
    }
    this.collecting = null;
    this.inFlight = null;
    this.cache.clear();
  }

  // ------------------------------------------------------------------------------------ cache

  private cached(number: string): Omit<LookupResult, 'number' | 'source'> | null {
    const entry = this.cache.get(number);
    if (!entry) return null;
    if (entry.expiresAt <= this.now()) {
      this.cache.delete(number);
      return null;
    }
    // Least recently used goes first: re-insert on use.
    this.cache.delete(number);
    this.cache.set(number, entry);
    return { aci: entry.aci, pni: entry.pni, registered: entry.registered };
  }

  private remember(number: string, entry: CdsiEntry): void {
    const registered = entry.aci !== null || entry.pni !== null;
    this.cache.delete(number);
    this.cache.set(number, {
      ...entry,
      registered,
      expiresAt: this.now() + (registered ? this.ttl.positiveMs : this.ttl.negativeMs),
    });
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  // ------------------------------------------------------------------------------------ contacts

  /** Puts contacts-table hits into `answers`; returns the numbers still unknown. */
  private knownContacts(numbers: string[], answers: Map<string, LookupResult>): string[] {
    let known: Map<string, { aci: string | null; pni: string | null }>;
    try {
      known = this.contacts.findByNumbers(numbers);
    } catch (e) {
      this.logger.warn('reading contacts failed; asking contact discovery', e);
      return numbers;
    }
    const rest: string[] = [];
    for (const number of numbers) {
      const c = known.get(number);
      const aci = c?.aci ? c.aci.toLowerCase() : null;
      const pni = directoryPni(c?.pni);
      if (aci || pni)
        answers.set(number, { number, aci, pni, registered: true, source: 'contacts' });
      else rest.push(number);
    }
    return rest;
  }

  /**
   * Answers from the contacts table, registered hits only. Throws when a number is not there:
   * `cause` is the CDSI failure that sent us here, or null on a server without CDSI.
   */
  private fromContacts(numbers: string[], cause: SignalError | null): LookupResult[] {
    let known: Map<string, { aci: string | null; pni: string | null }>;
    try {
      known = this.contacts.findByNumbers(numbers);
    } catch (e) {
      if (cause) throw cause;
      throw toSignalError(e, 'STORE', 'Reading contacts failed');
    }
    const out: LookupResult[] = [];
    const missing: string[] = [];
    for (const number of numbers) {
      const c = known.get(number);
      const aci = c?.aci ? c.aci.toLowerCase() : null;
      const pni = directoryPni(c?.pni);
      if (aci || pni) out.push({ number, aci, pni, registered: true, source: 'contacts' });
      else missing.push(number);
    }
    if (missing.length > 0) {
      if (cause) throw cause;
      const where = this.environment.name === 'custom' ? 'on a custom server' : 'here';
      throw new CdsiUnavailableError(
        missing,
        `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not among this account's contacts: contact discovery is not available ${where}; only contacts synced from the phone can be looked up`,
      );
    }
    return out;
  }

  // ------------------------------------------------------------------------------------ CDSI

  private async fromCdsi(numbers: string[], signal?: AbortSignal): Promise<LookupResult[]> {
    // Join the request in flight for numbers it already carries; everything else rides the next one.
    const byBatch = new Map<Batch, string[]>();
    for (const number of numbers) {
      const joinable =
        this.inFlight !== null &&
        !this.inFlight.controller.signal.aborted &&
        this.inFlight.numbers.has(number);
      const batch = joinable ? (this.inFlight as Batch) : this.collectingBatch();
      batch.numbers.add(number);
      const list = byBatch.get(batch);
      if (list) list.push(number);
      else byBatch.set(batch, [number]);
    }
    const batches = [...byBatch.keys()];
    for (const b of batches) b.waiters++;
    this.scheduleFlush();

    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      for (const b of batches) this.leave(b);
    };

    let onAbort: (() => void) | undefined;
    const cancelled = new Promise<never>((_, reject) => {
      onAbort = () => reject(new CancelledError(WHAT));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    cancelled.catch(() => {});

    try {
      const settled = await Promise.race([
        Promise.allSettled(batches.map((b) => b.promise)),
        cancelled,
      ]);
      const out: LookupResult[] = [];
      const failed: string[] = [];
      let firstError: SignalError | null = null;
      settled.forEach((s, i) => {
        const batch = batches[i] as Batch;
        const mine = byBatch.get(batch) ?? [];
        if (s.status === 'fulfilled') {
          for (const number of mine) {
            const e = s.value.get(number) ?? { aci: null, pni: null };
            out.push({
              number,
              aci: e.aci,
              pni: e.pni,
              registered: e.aci !== null || e.pni !== null,
              source: 'cdsi',
            });
          }
        } else {
          failed.push(...mine);
          firstError ??= toSignalError(s.reason, 'CDSI_UNAVAILABLE', 'Contact discovery failed');
        }
      });
      if (failed.length > 0 && firstError) {
        const error: SignalError = firstError;
        if (error.code === 'CLOSED' || error.code === 'CANCELLED') throw error;
        const fallback = this.fromContacts(failed, error);
        this.logger.warn(
          `contact discovery failed (${error.code}); answered ${fallback.length} number(s) from contacts`,
        );
        out.push(...fallback);
      }
      return out;
    } finally {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      release();
    }
  }

  private collectingBatch(): Batch {
    if (this.collecting) return this.collecting;
    let resolve!: (entries: CdsiEntries) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<CdsiEntries>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A batch everyone left may reject with no one listening.
    promise.catch(() => {});
    const batch: Batch = {
      numbers: new Set(),
      waiters: 0,
      controller: new AbortController(),
      promise,
      resolve,
      reject,
      settled: false,
    };
    this.collecting = batch;
    return batch;
  }

  private scheduleFlush(): void {
    if (this.flushTimer || this.inFlight || !this.collecting) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = null;
      this.startNext();
    }, this.batchWindowMs);
  }

  /** A caller no longer waits on `batch`. */
  private leave(batch: Batch): void {
    batch.waiters--;
    if (batch.waiters > 0 || batch.settled) return;
    if (batch === this.collecting) {
      // Nobody wants it any more: it never goes out.
      this.collecting = null;
      if (this.flushTimer) clearTimeout(this.flushTimer);
      this.flushTimer = null;
      this.settle(batch, new CancelledError(WHAT));
    } else if (batch === this.inFlight) {
      // Every caller gave up: stop spending quota on it.
      batch.controller.abort();
    }
  }

  private settle(batch: Batch, result: CdsiEntries | Error): void {
    if (batch.settled) return;
    batch.settled = true;
    if (result instanceof Error) batch.reject(result);
    else batch.resolve(result);
  }

  private startNext(): void {
    if (this.inFlight || this.closed) return;
    const batch = this.collecting;
    this.collecting = null;
    if (!batch || batch.settled) return;
    this.inFlight = batch;
    void this.run(batch).finally(() => {
      if (this.inFlight === batch) this.inFlight = null;
      // Lookups that arrived while this request was in flight go out now, as one request.
      if (this.collecting && !this.closed) this.startNext();
    });
  }

  private async run(batch: Batch): Promise<void> {
    const cdsi = this.cdsi as CdsiBackend;
    const e164s = [...batch.numbers];
    try {
      const credentials = await this.auth();
      if (batch.controller.signal.aborted) throw new CancelledError('Contact discovery');
      this.logger.debug(`contact discovery: ${e164s.length} number(s)`);
      const entries = await cdsi.lookup(credentials, {
        e164s,
        acisAndAccessKeys: this.knownAccessKeys(),
        abortSignal: batch.controller.signal,
        timeoutMs: this.timeoutMs,
      });
      if (this.closed) throw new ClosedError('Directory');
      const answers: CdsiEntries = new Map();
      const registered: Array<{ number: string; aci: string | null; pni: string | null }> = [];
      for (const number of e164s) {
        const e = entries.get(number);
        const entry = { aci: e?.aci ?? null, pni: directoryPni(e?.pni) };
        answers.set(number, entry);
        this.remember(number, entry);
        if (entry.aci || entry.pni) registered.push({ number, ...entry });
      }
      if (registered.length > 0) {
        try {
          this.contacts.recordLookup(registered);
        } catch (e) {
          this.logger.warn('could not record lookup results in contacts', e);
        }
      }
      this.settle(batch, answers);
    } catch (e) {
      this.settle(batch, toSignalError(e, 'CDSI_UNAVAILABLE', 'Contact discovery failed'));
    }
  }
}
