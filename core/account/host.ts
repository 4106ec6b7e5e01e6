/**
 * AccountHost: what holds one account for SignalClient (core/client.ts, the facade over it): its
 * store, the server check on open, the client state, the connected session (core/account/
 * session.ts), its directory (core/directory/account-directory.ts), saving a new account, setting a
 * dead one aside, and the teardown. What a user does with the account is SignalClient's.
 */
import { EventEmitter } from 'node:events';
import * as api from '../api';
import type { Environment, EnvironmentOptions } from '../config';
import { AccountDirectory } from '../directory/account-directory';
import type { CdsiBackend } from '../directory';
import {
  ClientTooOldError,
  ClosedError,
  InvalidInputError,
  NotLinkedError,
  UnauthorizedError,
  type EnvironmentMismatchError,
  type SignalError,
} from '../errors';
import { redactingLogger, silentLogger, type Logger } from '../log';
import { KeyedLock } from '../messaging/lock';
import type { ChatState } from '../net/persistent';
import type { LinkState } from '../provisioning/linker';
import type { SignalStore } from '../store';
import type {
  AccountInfo,
  AttachmentOptions,
  ClientState,
  IdentityTrust,
  IncomingEvent,
} from '../types';
import { attachmentPolicy, type AttachmentPolicy } from '../messaging/attachments';
import path from 'node:path';
import { environmentMismatch } from './environment';
import { saveNewAccount, type NewAccountKeys, type NewAccountRecord } from './new-account';
import { withDefaults, type ClientPorts, type Ports } from './ports';
import type { GroupStatePort } from '../groups/types';
import { AccountSession, type ConnectionOptions } from './session';
import { setAsideAccountFile } from './set-aside';

export interface SignalClientOptions {
  /** The account's SQLite file: `<dataDir>/<config node id>.db`. Created only by a successful link. */
  dataFile: string;
  environment: EnvironmentOptions;
  deviceName?: string;
  identityTrust?: IdentityTrust;
  /** ISO 3166 country (e.g. `DE`) for numbers written without a country code. */
  defaultRegion?: string;
  logger?: Logger;
  /** Timing overrides for tests and fault injection. */
  connection?: ConnectionOptions;
  /** Prekey maintenance overrides (tests). */
  prekeys?: { threshold?: number; batchSize?: number };
  /** Contact discovery override (tests): `null` = contacts only. Default: libsignal's Net. */
  cdsi?: CdsiBackend | null;
  now?: () => number;
  /**
   * Factories for the parts the engine builds (store, chat sockets, receiver, the sender's REST
   * calls), for tests that hold or wrap them (core/account/ports.ts). Production leaves it unset.
   */
  ports?: ClientPorts;
  /**
   * Received attachments: saved to files (default, in `<dataFile's folder>/attachments/<file name>`),
   * as Buffers, or metadata only; see setAttachments().
   */
  attachments?: AttachmentOptions;
}

export interface SignalClientEvents {
  state: [state: ClientState, error?: SignalError];
  event: [event: IncomingEvent];
  'queue-empty': [];
  'link-state': [state: LinkState];
  'contacts-synced': [count: number];
}

export class AccountHost extends EventEmitter<SignalClientEvents> {
  readonly environment: Environment;
  readonly logger: Logger;
  protected store: SignalStore | null = null;
  protected session: AccountSession | null = null;
  protected directoryValue: AccountDirectory | null = null;
  private stateValue: ClientState = 'idle';
  protected closed = false;
  private readonly lock = new KeyedLock();
  private discarding: Promise<string> | null = null;
  /** Set when the account file belongs to another server than the configured one (see openStore). */
  private mismatch: EnvironmentMismatchError | null = null;
  protected readonly now: () => number;
  private readonly ports: Ports;
  private attachmentPolicy: AttachmentPolicy;

  protected constructor(
    readonly options: SignalClientOptions,
    environment: Environment,
  ) {
    super();
    this.environment = environment;
    this.logger = redactingLogger(options.logger ?? silentLogger);
    this.now = options.now ?? Date.now;
    this.ports = withDefaults(options.ports);
    this.attachmentPolicy = attachmentPolicy(options.attachments, this.defaultAttachmentDir());
  }

  get state(): ClientState {
    return this.stateValue;
  }

  protected setState(state: ClientState, error?: SignalError): void {
    if (this.stateValue === state && !error) return;
    this.stateValue = state;
    // A listener that throws must not abort the transition that emitted it (link, close, the
    // chat socket's reconnects): report it and go on.
    try {
      this.emit('state', state, error);
    } catch (e) {
      this.logger.error(`a 'state' listener failed on '${state}'`, e);
    }
  }

  get account(): AccountInfo | null {
    const a = this.store?.account.get();
    if (!a) return null;
    return {
      aci: a.aci,
      pni: a.pni,
      deviceId: a.deviceId,
      ...(a.number ? { number: a.number } : {}),
    };
  }

  protected openStore(): SignalStore {
    if (this.store) return this.store;
    this.store = this.ports.openStore(this.options.dataFile, {
      logger: this.logger,
      identityTrust: this.options.identityTrust ?? 'accept',
      onIdentityChange: (serviceId) => this.onIdentityChange(serviceId),
      ...(this.options.now ? { now: this.options.now } : {}),
    });
    this.mismatch = environmentMismatch(this.store, this.environment, this.logger);
    if (this.mismatch) this.setState('unlinked', this.mismatch);
    return this.store;
  }

  /** The reason this account cannot be used with the configured server, if there is one. */
  get environmentMismatch(): EnvironmentMismatchError | null {
    return this.mismatch;
  }

  /**
   * The store calls this once a changed identity is committed (never for a rolled-back decrypt). The
   * event goes out on the next turn, outside the decrypt or send that saved the key; a listener that
   * throws is logged, as the receiver does for its events, instead of becoming an uncaught exception.
   */
  private onIdentityChange(serviceId: string): void {
    const blocked = (this.options.identityTrust ?? 'accept') === 'block';
    this.logger.info(
      `identity of ${serviceId} changed${blocked ? '; sends blocked until approved' : ''}`,
    );
    setImmediate(() => {
      try {
        this.emit('event', { type: 'identity-change', serviceId, timestamp: this.now(), blocked });
      } catch (e) {
        this.logger.error('identity-change event listener threw', e);
      }
    });
  }

  protected assertOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  /**
   * Saves a new account: Signal now knows only its keys, so it is saved even if the client was
   * closed meanwhile, and that store handle is then closed.
   */
  protected saveAccount(record: NewAccountRecord, keys: NewAccountKeys): void {
    const store = this.openStore();
    saveNewAccount(store, record, keys);
    if (this.closed) {
      store.close();
      if (this.store === store) this.store = null;
    }
  }

  // ---------------------------------------------------------------- connection

  protected requireStore(): SignalStore {
    const account = this.store?.account.get();
    if (!this.store || !account) throw new NotLinkedError();
    return this.store;
  }

  /** Where group sends read a group's state (core/groups/types.ts). */
  protected get groupState(): GroupStatePort {
    return this.ports.groups ?? this.requireSession().groups;
  }

  protected requireSession(): AccountSession {
    if (!this.session) throw new NotLinkedError('Not connected: call connect() first');
    return this.session;
  }

  /** The account at work (made once, on the first connect). */
  /**
   * Changes how received attachments are handled from the next message on (signal-in's
   * *Attachments* option); unset fields take their defaults.
   */
  setAttachments(opts: AttachmentOptions): void {
    this.attachmentPolicy = attachmentPolicy(opts, this.defaultAttachmentDir());
  }

  private defaultAttachmentDir(): string {
    const file = this.options.dataFile;
    return path.join(path.dirname(file), 'attachments', path.basename(file, path.extname(file)));
  }

  protected openSession(): AccountSession {
    this.assertOpen();
    if (this.mismatch) throw this.mismatch;
    const store = this.requireStore();
    this.session ??= new AccountSession({
      store,
      environment: this.environment,
      logger: this.logger,
      lock: this.lock,
      ports: this.ports,
      now: this.now,
      clockInjected: Boolean(this.options.now),
      ...(this.options.connection ? { connection: this.options.connection } : {}),
      ...(this.options.prekeys ? { prekeys: this.options.prekeys } : {}),
      emit: (ev) => this.emit('event', ev),
      attachments: () => this.attachmentPolicy,
      onQueueEmpty: () => this.emit('queue-empty'),
      onContactsBlob: (blob) => this.directory().applyContacts(blob),
      onState: (s, err) => this.onChatState(s, err),
    });
    return this.session;
  }

  /**
   * Connects the authenticated socket and starts receiving. Resolves once connected; rejects with
   * UnauthorizedError if the server says the device is gone (state `unlinked`).
   */
  async connect(timeoutMs = 30_000): Promise<void> {
    await this.openSession().chat.waitConnected(timeoutMs);
  }

  private onChatState(s: ChatState, err?: SignalError): void {
    if (this.closed) return;
    switch (s) {
      case 'connecting':
      case 'connected':
        return this.setState(s);
      case 'disconnected':
        return this.setState('disconnected', err);
      case 'unlinked':
        return this.setState('unlinked', err ?? new UnauthorizedError());
      case 'expired':
        return this.setState('expired', err ?? new ClientTooOldError());
      default:
        return;
    }
  }

  /** Checks the server's prekey counts now and refills or rotates as needed (also runs periodically). */
  async refreshPreKeys(): Promise<void> {
    this.requireStore();
    await this.requireSession().prekeys.check();
  }

  /** Resolves when every envelope received so far has been processed. */
  async idle(): Promise<void> {
    await this.session?.receiver.idle();
  }

  protected directory(): AccountDirectory {
    this.directoryValue ??= new AccountDirectory(this.requireStore(), {
      environment: this.environment,
      auth: () => api.getDirectoryAuth(this.requireSession().chat),
      ...(this.options.cdsi !== undefined ? { cdsi: this.options.cdsi } : {}),
      ...(this.options.defaultRegion ? { defaultRegion: this.options.defaultRegion } : {}),
      logger: this.logger,
      now: this.now,
      onContactsSynced: (count) => this.emit('contacts-synced', count),
    });
    return this.directoryValue;
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Sets aside an account Signal no longer accepts (state `unlinked`: the phone removed this device,
   * or the number was registered again elsewhere) so that this client can link or register afresh.
   * Nothing of it can be used again: its credentials are dead. The file is kept, renamed to
   * `<dataFile>.unlinked-<time>` (still 0600), for its contacts and logs; the caller may delete it.
   * Refused in every other state, where the account still works. Resolves with the new file name.
   */
  async discardUnlinkedAccount(): Promise<string> {
    this.discarding ??= this.discard().finally(() => (this.discarding = null));
    return this.discarding;
  }

  private async discard(): Promise<string> {
    this.assertOpen();
    if (this.stateValue !== 'unlinked' || !this.store) {
      throw new InvalidInputError(
        'Only an account Signal no longer accepts (state unlinked), or one of another server, can be discarded',
      );
    }
    this.mismatch = null;
    await this.teardownAccount();
    // close() may have come meanwhile: the store is closed either way, and the file stays.
    this.assertOpen();
    const aside = setAsideAccountFile(this.options.dataFile, this.now(), this.logger);
    this.setState('idle');
    return aside;
  }

  /**
   * Stops everything that works for the open account (lookups, the contacts gate, the session) and
   * closes its store: for close(), and for discarding an unlinked account, after which this client
   * starts afresh.
   */
  private async teardownAccount(): Promise<void> {
    this.directoryValue?.close();
    await this.session?.close();
    this.store?.close();
    this.store = null;
    this.session = null;
    this.directoryValue = null;
  }

  /**
   * Closes for good: sockets, timers and the store close; nothing reconnects afterwards.
   * Idempotent. `beforeTeardown` ends what the subclass has in progress (links, registrations).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.beforeTeardown();
    await this.teardownAccount();
    this.setState('closed');
    this.removeAllListeners();
  }

  protected async beforeTeardown(): Promise<void> {}
}
