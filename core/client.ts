/**
 * SignalClient: one linked (or registered) Signal account = its store + its chat sockets + the
 * messaging, prekey-maintenance and directory services over them. Owned by one `signal-account` node,
 * or used directly as the engine's API.
 *
 * Lifecycle: open() reads the account file if there is one (it never creates it, so a cancelled link
 * leaves nothing behind) → link() or connect() → 'event's → close().
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import {
  IdentityKeyPair,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  type DecryptionErrorMessage,
  type PlaintextContent,
} from '@signalapp/libsignal-client';
import { AccountEntropyPool, SvrKey } from '@signalapp/libsignal-client/dist/AccountKeys.js';
import * as api from './api';
import type { IdentityKind, KeyUpload } from './api';
import { deviceCapabilities } from './account/capabilities';
import {
  environmentKey,
  resolveEnvironment,
  type Environment,
  type EnvironmentOptions,
} from './config';
import { decryptProvisionEnvelope } from './crypto/provisioning';
import { normalizeNumber } from './directory/number';
import { Directory, resolveRecipient, type CdsiBackend } from './directory';
import { encryptDeviceName } from './crypto/device-name';
import { deriveAccessKey } from './crypto/access-key';
import {
  generateKyberPreKey,
  generatePassword,
  generateProfileKey,
  generateRegistrationId,
  generateSignedPreKey,
} from './crypto/keys';
import {
  CancelledError,
  ChallengeRequiredError,
  ClientTooOldError,
  ClosedError,
  EnvironmentMismatchError,
  InvalidInputError,
  NotLinkedError,
  NotOnSignalError,
  ProtocolError,
  SignalError,
  UnauthorizedError,
} from './errors';
import { redactingLogger, silentLogger, type Logger } from './log';
import { KeyedLock } from './messaging/lock';
import { deliveryReceipt, nullMessage, syncRequest } from './messaging/content';
import { PreKeyMaintenance, storePreKeyPorts, type PreKeyPorts } from './messaging/prekeys';
import { Receiver, type ReceiverStorePort } from './messaging/receiver';
import { Sender, WireType, type SenderApi } from './messaging/sender';
import { ChatConnection, DEFAULT_KEEPALIVE, type KeepaliveOptions } from './net/connection';
import {
  PersistentChat,
  DEFAULT_BACKOFF,
  type BackoffOptions,
  type ChatState,
} from './net/persistent';
import { Linker, provisionedIdentifiers, type LinkState } from './provisioning/linker';
import { RegistrationError } from './registration/errors';
import { registerAccount } from './registration/register';
import {
  Registrar,
  type RegistrationStatus,
  type StartRegistrationOptions,
} from './registration/registrar';
import type { ChatRequester } from './net/types';
import { SignalStore, type PendingIdentity } from './store';
import { SyncMessage, type signalservice, type ProvisionMessage } from '../proto';
import { decryptAttachment } from './crypto/attachment';
import { parseContactsBlob, storeSyncedContacts } from './directory/contacts-sync';
import { httpsGet } from './net/https';
import type {
  AccountInfo,
  ClientState,
  IdentityTrust,
  IncomingEvent,
  LookupResult,
  OutgoingMessage,
  SendResult,
} from './types';

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
  connection?: {
    keepalive?: KeepaliveOptions;
    backoff?: BackoffOptions;
    requestTimeoutMs?: number;
    connectTimeoutMs?: number;
  };
  /** Prekey maintenance overrides (tests). */
  prekeys?: { threshold?: number; batchSize?: number };
  /** Contact discovery override (tests): `null` = contacts only. Default: libsignal's Net. */
  cdsi?: CdsiBackend | null;
  now?: () => number;
}

export interface SignalClientEvents {
  state: [state: ClientState, error?: SignalError];
  event: [event: IncomingEvent];
  'queue-empty': [];
  'link-state': [state: LinkState];
  'contacts-synced': [count: number];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ONE_TIME_KEYS = 100;
/** How long lookups right after linking wait for the phone's contacts before going on without. */
const CONTACTS_WAIT_MS = 10_000;

const OUTGOING_FIELDS = new Set<string>(['text']);

/**
 * Checks an OutgoingMessage before anything is resolved or sent: a field the engine does not send
 * yet (attachments, quote, …) is refused by name rather than dropped, so nothing goes out other
 * than what the caller asked for.
 */
export function outgoingText(message: OutgoingMessage): string {
  if (typeof message !== 'object' || message === null || Array.isArray(message))
    throw new InvalidInputError('The message must be an object such as {text: "…"}');
  for (const field of Object.keys(message)) {
    if (!OUTGOING_FIELDS.has(field))
      throw new InvalidInputError(`The message field "${field}" is not one this engine can send`);
  }
  const { text } = message;
  if (typeof text !== 'string') throw new InvalidInputError('The message text must be a string');
  if (text.length === 0) throw new InvalidInputError('The message text is empty');
  return text;
}

/** A recipient as the engine addresses it: an ACI, `PNI:<uuid>`, or (to be resolved) a number. */
export function classifyRecipient(to: string): { serviceId: string } | { number: string } {
  const t = to.trim();
  if (UUID.test(t)) return { serviceId: t.toLowerCase() };
  if (/^PNI:/i.test(t) && UUID.test(t.slice(4)))
    return { serviceId: `PNI:${t.slice(4).toLowerCase()}` };
  return { number: t };
}

export class SignalClient extends EventEmitter<SignalClientEvents> {
  readonly environment: Environment;
  readonly logger: Logger;
  private store: SignalStore | null = null;
  private stateValue: ClientState = 'idle';
  private closed = false;
  private chat: PersistentChat | null = null;
  private unauthChat: PersistentChat | null = null;
  private receiver: Receiver | null = null;
  private sender: Sender | null = null;
  private prekeys: PreKeyMaintenance | null = null;
  private readonly lock = new KeyedLock();
  private linkAbort: AbortController | null = null;
  private holdMaintenance = false;
  private directoryValue: Directory | null = null;
  private registrarValue: Registrar | null = null;
  /** From the contacts request after linking until the phone answers (bounded): see lookup(). */
  private contactsArrival: { done: Promise<void>; settle: () => void } | null = null;
  private discarding: Promise<string> | null = null;
  /** The last challenge a send met (see pendingChallenge). */
  private challenge: { token: string; options: string[]; since: number } | null = null;
  /** Set when the account file belongs to another server than the configured one (see openStore). */
  private mismatch: EnvironmentMismatchError | null = null;
  private readonly now: () => number;

  private constructor(
    readonly options: SignalClientOptions,
    environment: Environment,
  ) {
    super();
    this.environment = environment;
    this.logger = redactingLogger(options.logger ?? silentLogger);
    this.now = options.now ?? Date.now;
  }

  static async open(options: SignalClientOptions): Promise<SignalClient> {
    if (!options.dataFile) throw new InvalidInputError('SignalClient needs a dataFile');
    const client = new SignalClient(options, resolveEnvironment(options.environment));
    if (fs.existsSync(options.dataFile)) client.openStore();
    return client;
  }

  get state(): ClientState {
    return this.stateValue;
  }

  private setState(state: ClientState, error?: SignalError): void {
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

  /** The open store (tests, benchmarks and the nodes' status route use it read-only). */
  get storeForTesting(): SignalStore | null {
    return this.store;
  }

  private openStore(): SignalStore {
    if (this.store) return this.store;
    this.store = SignalStore.open(this.options.dataFile, {
      logger: this.logger,
      identityTrust: this.options.identityTrust ?? 'accept',
      onIdentityChange: (serviceId) => this.onIdentityChange(serviceId),
      ...(this.options.now ? { now: this.options.now } : {}),
    });
    this.checkEnvironment(this.store);
    return this.store;
  }

  /**
   * An account speaks only to the server that issued its credentials: against any other, connect()
   * and every request refuse with ENVIRONMENT_MISMATCH before a socket opens, so changing the
   * config node's server never sends the password (Basic auth) to another host. Files written by
   * sigflow 0.1 recorded a custom server without its URL: the URL configured at the first open
   * after the update is taken as the account's, once.
   */
  private checkEnvironment(store: SignalStore): void {
    const account = store.account.get();
    const configured = environmentKey(this.environment);
    this.mismatch = null;
    if (!account || account.environment === configured) return;
    if (account.environment === 'custom' && this.environment.name === 'custom') {
      store.account.update({ environment: configured });
      this.logger.info(`account's server recorded as ${configured}`);
      return;
    }
    this.mismatch = new EnvironmentMismatchError(account.environment, configured);
    this.logger.warn(this.mismatch.message);
    this.setState('unlinked', this.mismatch);
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

  private assertOpen(): void {
    if (this.closed) throw new ClosedError();
  }

  // ---------------------------------------------------------------- linking

  /**
   * Links this client to a phone as a secondary device. `onUrl` receives each `sgnl://linkdevice` URL
   * to show as a QR code (a secret: never log it). Resolves when linked: the account is saved, then
   * connected with its one-time keys uploaded; a failure of that last step is logged, not thrown
   * (the account exists and the socket keeps reconnecting, as after registering).
   */
  async link(opts: { signal?: AbortSignal; onUrl: (url: string) => void }): Promise<AccountInfo> {
    this.assertOpen();
    if (this.account) throw new InvalidInputError('This account is already linked');
    if (this.linkAbort) throw new InvalidInputError('Linking is already in progress');
    const abort = new AbortController();
    this.linkAbort = abort;
    const onAbort = () => abort.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted) abort.abort();
    this.setState('linking');
    const linker = new Linker(
      {
        openProvisioningSocket: async (handler) => {
          const conn = await ChatConnection.open({
            env: this.environment,
            path: '/v1/websocket/provisioning/',
            handler,
            logger: this.logger,
            keepalive: false,
            signal: abort.signal,
          });
          return { closed: conn.closed.then(() => undefined), close: () => conn.close() };
        },
        decrypt: (ephemeral, envelope) => decryptProvisionEnvelope(ephemeral, envelope),
        complete: (message) => this.completeLink(message, abort.signal),
      },
      { signal: abort.signal, logger: this.logger },
    );
    linker.on('url', (url: string) => opts.onUrl(url));
    linker.on('state', (s: LinkState) => this.emit('link-state', s));
    try {
      const account = await linker.run();
      return account;
    } catch (e) {
      if (!this.closed && !this.account)
        this.setState('idle', e instanceof SignalError ? e : undefined);
      throw e;
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      this.linkAbort = null;
    }
  }

  /** Cancels a link in progress (no-op otherwise). */
  cancelLink(): void {
    this.linkAbort?.abort();
  }

  private async completeLink(message: ProvisionMessage, signal: AbortSignal): Promise<AccountInfo> {
    const { aci, pni } = provisionedIdentifiers(message);
    const need = (b: Uint8Array | null | undefined, what: string): Uint8Array<ArrayBuffer> => {
      if (!b || b.length === 0) throw new ProtocolError(`The phone sent no ${what}`);
      return new Uint8Array(b);
    };
    const aciIdentity = new IdentityKeyPair(
      PublicKey.deserialize(need(message.aciIdentityKeyPublic, 'ACI identity key')),
      PrivateKey.deserialize(need(message.aciIdentityKeyPrivate, 'ACI identity key')),
    );
    const pniIdentity = new IdentityKeyPair(
      PublicKey.deserialize(need(message.pniIdentityKeyPublic, 'PNI identity key')),
      PrivateKey.deserialize(need(message.pniIdentityKeyPrivate, 'PNI identity key')),
    );
    if (!message.provisioningCode) throw new ProtocolError('The phone sent no provisioning code');
    const password = generatePassword();
    const registrationId = generateRegistrationId();
    const pniRegistrationId = generateRegistrationId();
    const aciSigned = generateSignedPreKey(aciIdentity.privateKey, 1);
    const pniSigned = generateSignedPreKey(pniIdentity.privateKey, 1);
    const aciLastResort = generateKyberPreKey(aciIdentity.privateKey, 1);
    const pniLastResort = generateKyberPreKey(pniIdentity.privateKey, 1);
    const deviceName = this.options.deviceName ?? 'Node-RED';

    // Until the PUT is sent nothing exists anywhere: a cancel (or close()) ends the link as
    // cancelled, as a CancelledError the linker reports as such, with no account file.
    const cancelled = () => new CancelledError('Linking');
    if (signal.aborted) throw cancelled();
    let unauth: ChatConnection;
    try {
      unauth = await ChatConnection.open({
        env: this.environment,
        path: '/v1/websocket/',
        logger: this.logger,
        keepalive: false,
        signal,
      });
    } catch (e) {
      throw signal.aborted ? cancelled() : e;
    }
    let linked: { deviceId: number; aci: string; pni: string };
    try {
      if (signal.aborted) throw cancelled();
      linked = await api.linkDevice(unauth, {
        aci,
        password,
        verificationCode: message.provisioningCode,
        accountAttributes: {
          fetchesMessages: true,
          registrationId,
          pniRegistrationId,
          name: encryptDeviceName(deviceName, aciIdentity.publicKey),
          capabilities: deviceCapabilities(),
        },
        aciSignedPreKey: aciSigned.upload,
        pniSignedPreKey: pniSigned.upload,
        aciPqLastResortPreKey: aciLastResort.upload,
        pniPqLastResortPreKey: pniLastResort.upload,
      });
    } finally {
      unauth.close();
    }
    // From here the phone lists this device: finish even if cancelled (see provisioning/linker.ts),
    // and save the account even if the client was closed meanwhile, so that device has one.
    const store = this.openStore();
    store.transaction(() => {
      store.account.save({
        aci: linked.aci,
        pni: linked.pni || pni,
        number: message.number || null,
        deviceId: linked.deviceId,
        password,
        aciRegistrationId: registrationId,
        pniRegistrationId,
        aciIdentityKeyPair: aciIdentity.serialize(),
        pniIdentityKeyPair: pniIdentity.serialize(),
        profileKey: message.profileKey?.length ? new Uint8Array(message.profileKey) : null,
        masterKey: message.masterKey?.length ? new Uint8Array(message.masterKey) : null,
        accountEntropyPool: message.accountEntropyPool || null,
        environment: environmentKey(this.environment),
        deviceName,
      });
      store.saveSignedPreKey('aci', aciSigned.record);
      store.saveSignedPreKey('pni', pniSigned.record);
      store.saveKyberPreKeys('aci', [aciLastResort.record], true);
      store.saveKyberPreKeys('pni', [pniLastResort.record], true);
    });
    store.accountChanged();
    this.logger.info(`linked as device ${linked.deviceId}`);
    if (this.closed) {
      // close() ran during the PUT and may be done already: this handle is ours to close.
      store.close();
      if (this.store === store) this.store = null;
      throw new ClosedError();
    }
    // Connect and upload one-time keys for both identities (§3 step 6), as for a registered account.
    await this.startNewAccount('linked');
    // Ask the phone for its contacts: they let sends and lookups resolve phone numbers (§7).
    await this.requestSync().catch((e: unknown) =>
      this.logger.warn('could not request contacts', e),
    );
    const account = this.account;
    if (!account) throw new ProtocolError('The account was not saved');
    return account;
  }

  // ---------------------------------------------------------------- registration

  /**
   * Registers a number of its own for this client as a primary device (PROTOCOL.md §9), step one:
   * claims the number in `guard` (if given), creates the verification session, submits the captcha
   * and has Signal send the code. Typed errors say what to do next: CaptchaRequiredError,
   * RateLimitedError (retryAfterSeconds), GuardRefusedError, RegistrationError. The account file is
   * created only once verifyRegistration() succeeds.
   */
  async startRegistration(opts: StartRegistrationOptions): Promise<RegistrationStatus> {
    this.assertOpen();
    this.assertNoAccount();
    return this.registrar().start(opts);
  }

  /**
   * Step two: submits the code from the SMS or call; once Signal verifies it, registers the account
   * (identity keys, signed and Kyber last-resort prekeys for ACI and PNI), saves it in one
   * transaction, connects, and uploads one-time prekeys. Wrong code: VerificationCodeError, and the
   * registration waits for another try (CodeAttemptsExhaustedError after the last allowed one). When
   * the number was registered elsewhere without a registration lock, `registration.reregistration`
   * is true afterwards: that install has just been signed out. A registration started with an
   * ownership secret takes the code only with that `secret` (NotOwnerError otherwise).
   */
  async verifyRegistration(code: string, secret?: string): Promise<AccountInfo> {
    this.assertOpen();
    this.assertNoAccount();
    await this.registrar().verify(code, secret);
    this.assertOpen();
    const account = this.account;
    if (!account) throw new ProtocolError('The registered account was not saved');
    await this.startNewAccount('registered');
    return account;
  }

  /** Abandons a registration in progress (the ownership secret is needed when it was given). */
  async cancelRegistration(secret?: string): Promise<RegistrationStatus> {
    return this.registrar().cancel(secret);
  }

  /** Where the registration of this client stands (no secrets). */
  get registration(): RegistrationStatus {
    return this.registrarValue?.status ?? { state: 'idle' };
  }

  private assertNoAccount(): void {
    const a = this.account;
    if (a) {
      throw new RegistrationError(
        'ACCOUNT_EXISTS',
        `This Signal account already holds ${a.number ?? a.aci} (device ${a.deviceId}): use ` +
          'another account configuration to register a new number.',
      );
    }
  }

  private registrar(): Registrar {
    this.registrarValue ??= new Registrar({
      logger: this.logger,
      openRequester: () =>
        ChatConnection.open({
          env: this.environment,
          path: '/v1/websocket/',
          logger: this.logger,
          keepalive: false,
        }),
      createAccount: (requester, args) => this.createRegisteredAccount(requester, args),
    });
    return this.registrarValue;
  }

  /** Generates the account's keys, registers it, and saves it in one transaction. */
  private async createRegisteredAccount(
    requester: ChatRequester,
    args: { number: string; sessionId: string },
  ): Promise<{
    aci: string;
    pni: string;
    number: string;
    deviceId: number;
    reregistration?: boolean;
  }> {
    const aciIdentity = IdentityKeyPair.generate();
    const pniIdentity = IdentityKeyPair.generate();
    const password = generatePassword();
    const registrationId = generateRegistrationId();
    const pniRegistrationId = generateRegistrationId();
    const aciSigned = generateSignedPreKey(aciIdentity.privateKey, 1);
    const pniSigned = generateSignedPreKey(pniIdentity.privateKey, 1);
    const aciLastResort = generateKyberPreKey(aciIdentity.privateKey, 1);
    const pniLastResort = generateKyberPreKey(pniIdentity.privateKey, 1);
    const profileKey = generateProfileKey();
    // The primary holds the account's root secret; the recovery password Signal's apps register
    // with is derived from it (libsignal's SvrKey), so a later re-registration could use it.
    const accountEntropyPool = AccountEntropyPool.generate();
    const masterKey = AccountEntropyPool.deriveSvrKey(accountEntropyPool);
    const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
    const registered = await registerAccount(requester, {
      number: args.number,
      password,
      sessionId: args.sessionId,
      accountAttributes: {
        fetchesMessages: true,
        registrationId,
        pniRegistrationId,
        capabilities: deviceCapabilities(),
        unidentifiedAccessKey: Array.from(deriveAccessKey(profileKey)),
        unrestrictedUnidentifiedAccess: false,
        discoverableByPhoneNumber: true,
        recoveryPassword: b64(new SvrKey(masterKey).deriveRegistrationRecoveryPassword()),
      },
      aciIdentityKey: b64(aciIdentity.publicKey.serialize()),
      pniIdentityKey: b64(pniIdentity.publicKey.serialize()),
      aciSignedPreKey: aciSigned.upload,
      pniSignedPreKey: pniSigned.upload,
      aciPqLastResortPreKey: aciLastResort.upload,
      pniPqLastResortPreKey: pniLastResort.upload,
    });
    // Another install of the number without a registration lock was just signed out: the registrar
    // reports it (RegistrationStatus.reregistration) so the editor can tell the user.
    if (registered.reregistration)
      this.logger.warn(`${registered.number} was registered elsewhere; that registration ended`);
    // Signal now knows only these keys: save them even if the client was closed meanwhile.
    const store = this.openStore();
    store.transaction(() => {
      store.account.save({
        aci: registered.aci,
        pni: registered.pni,
        number: registered.number,
        deviceId: 1,
        password,
        aciRegistrationId: registrationId,
        pniRegistrationId,
        aciIdentityKeyPair: aciIdentity.serialize(),
        pniIdentityKeyPair: pniIdentity.serialize(),
        profileKey,
        masterKey,
        accountEntropyPool,
        environment: environmentKey(this.environment),
        deviceName: null,
      });
      store.saveSignedPreKey('aci', aciSigned.record);
      store.saveSignedPreKey('pni', pniSigned.record);
      store.saveKyberPreKeys('aci', [aciLastResort.record], true);
      store.saveKyberPreKeys('pni', [pniLastResort.record], true);
    });
    store.accountChanged();
    if (this.closed) {
      this.store?.close();
      this.store = null;
    }
    return {
      aci: registered.aci,
      pni: registered.pni,
      number: registered.number,
      deviceId: 1,
      ...(registered.reregistration ? { reregistration: true } : {}),
    };
  }

  /**
   * Connects a just-saved account and uploads its one-time prekeys before maintenance starts
   * checking counts (or both would upload a batch). A failure here is logged, not thrown: the
   * account exists, the socket keeps reconnecting, and maintenance refills the keys once connected.
   */
  private async startNewAccount(how: string): Promise<void> {
    if (this.closed) return;
    this.holdMaintenance = true;
    try {
      await this.connect();
      for (const kind of ['aci', 'pni'] as const) {
        await api.uploadKeys(this.requireChat(), kind, this.generateOneTime(kind, ONE_TIME_KEYS));
      }
    } catch (e) {
      this.logger.warn(`${how} account: connecting or uploading one-time prekeys failed`, e);
    } finally {
      this.holdMaintenance = false;
    }
    if (this.chat?.state === 'connected') this.prekeys?.start();
  }

  // ---------------------------------------------------------------- connection

  private requireStore(): SignalStore {
    const account = this.store?.account.get();
    if (!this.store || !account) throw new NotLinkedError();
    return this.store;
  }

  private requireChat(): PersistentChat {
    if (!this.chat) throw new NotLinkedError('Not connected: call connect() first');
    return this.chat;
  }

  private unauthenticated(): PersistentChat {
    if (!this.unauthChat) {
      this.unauthChat = new PersistentChat({
        env: this.environment,
        logger: this.logger,
        keepalive: this.options.connection?.keepalive ?? DEFAULT_KEEPALIVE,
        backoff: this.options.connection?.backoff ?? DEFAULT_BACKOFF,
        name: 'unauthenticated chat',
        ...(this.options.connection?.requestTimeoutMs
          ? { requestTimeoutMs: this.options.connection.requestTimeoutMs }
          : {}),
      });
      this.unauthChat.start();
    }
    return this.unauthChat;
  }

  /**
   * Connects the authenticated socket and starts receiving. Resolves once connected; rejects with
   * UnauthorizedError if the server says the device is gone (state `unlinked`).
   */
  async connect(timeoutMs = 30_000): Promise<void> {
    this.assertOpen();
    if (this.mismatch) throw this.mismatch;
    const store = this.requireStore();
    const account = store.requireAccount();
    if (!this.chat) {
      const self = { aci: account.aci, pni: account.pni, deviceId: account.deviceId };
      this.receiver = new Receiver({
        store: this.receiverPort(store),
        self,
        trustRoots: this.environment.trustRoots.map((r) =>
          PublicKey.deserialize(new Uint8Array(Buffer.from(r, 'base64'))),
        ),
        logger: this.logger,
        lock: this.lock,
        emit: (ev) => this.emit('event', ev),
        sendRetryRequest: (to, device, plaintext) => this.sendRetryRequest(to, device, plaintext),
        onRetryRequest: (from, device, request) => this.onRetryRequest(from, device, request),
        onQueueEmpty: () => this.emit('queue-empty'),
        sendDeliveryReceipt: (to, timestamps) => this.sendDeliveryReceipt(to, timestamps),
        onContactsBlob: (blob) => {
          void this.applyContactsBlob(blob).catch((e: unknown) =>
            this.logger.warn('contacts sync failed', e),
          );
        },
        now: this.now,
      });
      this.sender = new Sender({
        store: {
          protocol: (kind) => store.protocol(kind),
          deviceIds: (sid) => store.deviceIds(sid),
          deleteSession: (sid, d) => store.deleteSession(sid, d),
          profileKeyOf: (sid) => store.contacts.findByServiceId(sid)?.profileKey ?? null,
          addSent: (entry) => store.sent.add(entry),
        },
        api: this.senderApi(),
        self: { aci: account.aci, deviceId: account.deviceId, profileKey: account.profileKey },
        lock: this.lock,
        logger: this.logger,
        now: this.now,
      });
      this.prekeys = new PreKeyMaintenance({
        ports: this.prekeyPorts(store),
        logger: this.logger,
        // Each check (after every connect, then every few hours) also prunes the logs and old keys:
        // the sent log holds message content and must not outlive its 14 days (§5).
        housekeeping: () => this.pruneStore(store),
        ...(this.options.now ? { now: this.options.now } : {}),
        ...this.options.prekeys,
      });
      // Emit what an earlier run recorded but never emitted (a crash between ACK and emit).
      const replayed = this.receiver.replayPending();
      if (replayed) this.logger.info(`replayed ${replayed} recorded but unemitted message(s)`);
      // Also before the first connection succeeds: the process may start offline.
      this.pruneStore(store);
      const chat = new PersistentChat({
        env: this.environment,
        auth: { username: `${account.aci}.${account.deviceId}`, password: account.password },
        handler: this.receiver.handleRequest,
        logger: this.logger,
        keepalive: this.options.connection?.keepalive ?? DEFAULT_KEEPALIVE,
        backoff: this.options.connection?.backoff ?? DEFAULT_BACKOFF,
        name: 'chat',
        ...(this.options.connection?.requestTimeoutMs
          ? { requestTimeoutMs: this.options.connection.requestTimeoutMs }
          : {}),
        ...(this.options.connection?.connectTimeoutMs
          ? { connectTimeoutMs: this.options.connection.connectTimeoutMs }
          : {}),
      });
      chat.on('state', (s: ChatState, err?: SignalError) => this.onChatState(s, err));
      this.chat = chat;
      chat.start();
    }
    await this.chat.waitConnected(timeoutMs);
  }

  private onChatState(s: ChatState, err?: SignalError): void {
    if (this.closed) return;
    switch (s) {
      case 'connecting':
        return this.setState('connecting');
      case 'connected':
        this.setState('connected');
        if (!this.holdMaintenance) this.prekeys?.start();
        return;
      case 'disconnected':
        return this.setState('disconnected', err);
      case 'unlinked':
        this.prekeys?.stop();
        return this.setState('unlinked', err ?? new UnauthorizedError());
      case 'expired':
        this.prekeys?.stop();
        return this.setState('expired', err ?? new ClientTooOldError());
      default:
        return;
    }
  }

  /** Checks the server's prekey counts now and refills or rotates as needed (also runs periodically). */
  async refreshPreKeys(): Promise<void> {
    this.requireStore();
    if (!this.prekeys) throw new NotLinkedError('Not connected: call connect() first');
    await this.prekeys.check();
  }

  /** Drops the chat socket so it reconnects (fault injection for tests and benchmarks). */
  dropConnectionForTesting(): void {
    this.chat?.dropConnection();
  }

  get chatForTesting(): PersistentChat | null {
    return this.chat;
  }

  /** Resolves when every envelope received so far has been processed. */
  async idle(): Promise<void> {
    await this.receiver?.idle();
  }

  private receiverPort(store: SignalStore): ReceiverStorePort {
    return {
      unitOfWork: (kind) => store.unitOfWork(kind),
      receivedState: (key) => store.received.state(key),
      insertReceived: (key, events, guid) => void store.received.insertPending(key, events, guid),
      sync: () => store.sync(),
      pendingEvents: (key) => store.received.pendingEvents(key),
      markEmitted: (key) => store.received.markEmitted(key),
      listPending: () => store.received.listPending(),
      recordContact: ({ aci, number, profileKey }) =>
        store.contacts.upsert({
          aci,
          ...(number ? { e164: number } : {}),
          ...(profileKey ? { profileKey } : {}),
          source: number ? 'certificate' : 'message',
        }),
      contactOf: (aci) => {
        const c = store.contacts.findByServiceId(aci);
        return c
          ? { ...(c.e164 ? { number: c.e164 } : {}), ...(c.name ? { name: c.name } : {}) }
          : undefined;
      },
    };
  }

  /**
   * One batched delivery receipt (§6, receipts): as the engine sends other content, sealed when the
   * sender's profile key is known, not urgent (Signal's apps send receipts without a push).
   */
  private async sendDeliveryReceipt(to: string, timestamps: number[]): Promise<void> {
    const sender = this.sender;
    if (!sender || this.closed) return;
    await sender.sendContent(to, deliveryReceipt(timestamps), sender.nextTimestamp(), {
      urgent: false,
    });
  }

  private senderApi(): SenderApi {
    return {
      getPreKeyBundles: (sid, device, accessKey) =>
        api.getPreKeyBundles(
          accessKey ? this.unauthenticated() : this.requireChat(),
          sid,
          device,
          accessKey,
        ),
      sendMessages: (sid, body, accessKey) =>
        api.sendMessages(
          accessKey ? this.unauthenticated() : this.requireChat(),
          sid,
          body,
          accessKey,
        ),
      getSenderCertificate: () => api.getSenderCertificate(this.requireChat()),
    };
  }

  private generateOneTime(
    kind: IdentityKind,
    count: number,
  ): Pick<KeyUpload, 'preKeys' | 'pqPreKeys'> {
    return this.prekeyPorts(this.requireStore()).generateOneTime(kind, count);
  }

  /** Store upkeep: logs and keys past retention (never throws: a failure is logged, retried later). */
  private pruneStore(store: SignalStore): void {
    try {
      const pruned = store.prune();
      if (pruned.sent || pruned.received || pruned.keys)
        this.logger.debug(
          `store upkeep: pruned ${pruned.sent} sent, ${pruned.received} received, ${pruned.keys} key rows`,
        );
    } catch (e) {
      this.logger.warn('store upkeep failed; will retry', e);
    }
  }

  private identityKey(kind: IdentityKind): PrivateKey {
    const account = this.requireStore().requireAccount();
    return IdentityKeyPair.deserialize(
      new Uint8Array(kind === 'aci' ? account.aciIdentityKeyPair : account.pniIdentityKeyPair),
    ).privateKey;
  }

  private prekeyPorts(store: SignalStore): PreKeyPorts {
    return storePreKeyPorts({
      store,
      identityKey: (kind) => this.identityKey(kind),
      counts: (kind) => api.getKeyCounts(this.requireChat(), kind),
      put: (kind, keys) => api.uploadKeys(this.requireChat(), kind, keys),
      now: this.now,
    });
  }

  private async sendRetryRequest(
    to: string,
    device: number,
    plaintext: PlaintextContent,
  ): Promise<void> {
    const store = this.requireStore();
    const session = await store
      .protocol('aci')
      .sessions.getSession(ProtocolAddress.new(to, device));
    // The server checks the device's registration id (a mismatch is 410). Without a session we
    // learn it from the device's key bundle: a rare repair path, worth one of their prekeys.
    const registrationId =
      session?.remoteRegistrationId() ??
      (await api.getPreKeyBundles(this.requireChat(), to, device)).devices.find(
        (d) => d.deviceId === device,
      )?.registrationId ??
      0;
    await api.sendMessages(this.requireChat(), to, {
      messages: [
        {
          type: WireType.PLAINTEXT,
          destinationDeviceId: device,
          destinationRegistrationId: registrationId,
          content: Buffer.from(plaintext.serialize()).toString('base64'),
        },
      ],
      timestamp: this.sender?.nextTimestamp() ?? this.now(),
      online: false,
      urgent: false,
    });
    this.logger.info(`sent a retry request to ${to}.${device}`);
  }

  /** A peer could not decrypt something we sent: re-establish the session and resend it (§6). */
  private async onRetryRequest(
    from: string,
    device: number,
    request: DecryptionErrorMessage,
  ): Promise<void> {
    const sender = this.sender;
    const store = this.store;
    if (!sender || !store) return;
    // A retry request comes from the device's ACI; the original may have gone to its PNI (a send to
    // `PNI:<uuid>`), logged and with its session under that service id. Two indexed reads.
    const pni = store.contacts.findByServiceId(from)?.pni;
    const original =
      store.sent.find(from, request.timestamp()) ??
      (pni ? store.sent.find(`PNI:${pni}`, request.timestamp()) : undefined);
    const to = original?.recipient ?? from;
    await sender.archiveSession(to, device, request.ratchetKey());
    // Sealed when we know the recipient's profile key, as the original was (the sender decides);
    // to our own devices (sync transcripts, requests) never, as those went.
    const sealed = to === store.account.get()?.aci ? { sealed: false } : {};
    if (original) {
      await sender.sendPlaintext(to, original.content, original.timestamp, {
        urgent: true,
        onlyDevice: device,
        ...sealed,
      });
      this.logger.info(
        `resent message ${original.timestamp} to ${to}.${device} after a retry request`,
      );
    } else {
      await sender.sendContent(to, nullMessage(), sender.nextTimestamp(), {
        urgent: false,
        onlyDevice: device,
        ...sealed,
      });
      this.logger.info(`sent a null message to ${to}.${device} after a retry request`);
    }
  }

  // ---------------------------------------------------------------- messaging

  /** Sends a text to an ACI, a `PNI:` service id, or a phone number. */
  async send(to: string, message: OutgoingMessage): Promise<SendResult> {
    this.assertOpen();
    const text = outgoingText(message);
    if (typeof to !== 'string' || to.trim() === '')
      throw new InvalidInputError('No recipient given');
    this.requireStore();
    if (!this.sender) throw new NotLinkedError('Not connected: call connect() first');
    const recipient = this.recipientForm(to);
    if (recipient.startsWith('+')) await this.contactsArrival?.done;
    const serviceId = await resolveRecipient(this.directory(), recipient);
    try {
      return await this.sender.sendText(serviceId, text);
    } catch (e) {
      // A number whose account is gone must not keep resolving from the cache.
      if (e instanceof NotOnSignalError && recipient !== serviceId)
        this.directoryValue?.forget([recipient]);
      if (e instanceof ChallengeRequiredError)
        this.challenge = { token: e.token, options: e.options, since: this.now() };
      throw e;
    }
  }

  /**
   * The challenge Signal last asked for (HTTP 428 on a send), until it is answered: what the
   * account's dialog shows. The token is not a secret of the account (it only names the challenge).
   */
  get pendingChallenge(): { token: string; options: string[]; since: number } | null {
    return this.challenge;
  }

  /**
   * Answers a 428 challenge with a solved captcha (PROTOCOL.md §12, `PUT /v1/challenge`): the
   * captcha is the `signalcaptcha://…` link from Signal's captcha page (the prefix may be left off);
   * the token is the challenge's, from the failed send's error, or else the pending one. Afterwards
   * the refused sends can be retried. A captcha that did not pass fails CHALLENGE_REQUIRED.
   */
  async submitChallenge(args: { captcha: string; token?: string }): Promise<void> {
    this.assertOpen();
    const captcha =
      typeof args?.captcha === 'string'
        ? args.captcha.trim().replace(/^signalcaptcha:\/\//, '')
        : '';
    if (!captcha) throw new InvalidInputError('Give the solved captcha (signalcaptcha://…)');
    if (args.token !== undefined && (typeof args.token !== 'string' || !args.token.trim()))
      throw new InvalidInputError('The challenge token must be non-empty text');
    const token = args.token?.trim() ?? this.challenge?.token;
    if (!token) {
      throw new InvalidInputError(
        'No challenge is pending: give the token from the failed send (error.token)',
      );
    }
    this.requireStore();
    await api.submitCaptchaChallenge(this.requireChat(), { token, captcha });
    if (this.challenge?.token === token) this.challenge = null;
    this.logger.info('challenge answered; refused sends can be retried');
  }

  /**
   * Looks phone numbers up; results in input order. Every number is normalized first: an invalid one
   * fails with INVALID_NUMBER naming it, before any network call. Answers come from the cache, from
   * contact discovery (CDSI, production and staging) or, when CDSI cannot answer (a custom server),
   * from the contacts table; a number found nowhere is CDSI_UNAVAILABLE, never a guessed "not
   * registered".
   */
  async lookup(numbers: string[], opts: { signal?: AbortSignal } = {}): Promise<LookupResult[]> {
    this.assertOpen();
    if (!Array.isArray(numbers))
      throw new InvalidInputError('lookup() takes an array of phone numbers');
    const normalized = numbers.map((n) => normalizeNumber(n, this.options.defaultRegion));
    this.requireStore();
    await this.contactsArrival?.done;
    return this.directory().lookup(normalized, opts);
  }

  /** A recipient with the default region applied to national numbers; service ids unchanged. */
  private recipientForm(to: string): string {
    const target = classifyRecipient(to);
    return 'serviceId' in target
      ? target.serviceId
      : normalizeNumber(target.number, this.options.defaultRegion);
  }

  private directory(): Directory {
    if (this.directoryValue) return this.directoryValue;
    const store = this.requireStore();
    this.directoryValue = new Directory({
      environment: this.environment,
      auth: () => api.getDirectoryAuth(this.requireChat()),
      contacts: {
        findByNumbers: (e164s) => store.contacts.findByNumbers(e164s),
        // With a contact's access key CDSI also answers for an ACI that hides its number (§8).
        withProfileKeys: () => store.contacts.withProfileKeys(),
        recordLookup: (results) =>
          store.transaction(() => {
            for (const r of results)
              store.contacts.upsert({
                e164: r.number,
                ...(r.aci ? { aci: r.aci } : {}),
                ...(r.pni ? { pni: r.pni } : {}),
                source: 'cdsi',
              });
          }),
      },
      ...(this.options.cdsi !== undefined ? { cdsi: this.options.cdsi } : {}),
      logger: this.logger,
      now: this.now,
    });
    return this.directoryValue;
  }

  /** Asks our primary device for contacts (and other sync data) (§7). */
  async requestSync(
    types: SyncMessage.Request.Type[] = [SyncMessage.Request.Type.CONTACTS],
  ): Promise<void> {
    const store = this.requireStore();
    if (!this.sender) throw new NotLinkedError('Not connected: call connect() first');
    const self = store.requireAccount().aci;
    if (types.includes(SyncMessage.Request.Type.CONTACTS)) this.awaitContacts();
    for (const type of types) {
      await this.sender.sendContent(self, syncRequest(type), this.sender.nextTimestamp(), {
        urgent: false,
        sealed: false,
      });
    }
  }

  /**
   * Numbers sent to or looked up right after linking would otherwise race the phone's contacts
   * (a second or so on the mock; on a custom server they are the only way to resolve a number):
   * until they arrive, or CONTACTS_WAIT_MS pass, or the client closes, lookups wait for them.
   */
  private awaitContacts(): void {
    if (this.contactsArrival) return;
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const timer = setTimeout(() => finish(), CONTACTS_WAIT_MS).unref();
    const finish = () => {
      clearTimeout(timer);
      this.off('contacts-synced', finish);
      if (this.contactsArrival?.done === done) this.contactsArrival = null;
      settle();
    };
    this.once('contacts-synced', finish);
    this.contactsArrival = { done, settle: finish };
  }

  /** Downloads, verifies and stores a contacts blob our primary sent (§7). Returns how many. */
  private async applyContactsBlob(blob: signalservice.IAttachmentPointer): Promise<number> {
    const store = this.requireStore();
    const id = blob.cdnKey || (blob.cdnId ? String(blob.cdnId) : '');
    const base = this.environment.cdnUrls[blob.cdnNumber ?? 0] ?? this.environment.cdnUrls[0];
    if (!id || !base || !blob.key)
      throw new ProtocolError('The contacts sync names no downloadable blob');
    const file = await httpsGet(this.environment, `${base}/attachments/${encodeURIComponent(id)}`);
    const plain = decryptAttachment(
      file,
      new Uint8Array(blob.key),
      blob.digest ? new Uint8Array(blob.digest) : null,
      blob.size,
    );
    const contacts = parseContactsBlob(plain);
    if (this.closed) return 0;
    // With their profile keys, when the primary sends them: sealed sender from the first send.
    storeSyncedContacts(
      { transaction: (fn) => store.transaction(fn), upsert: (u) => store.contacts.upsert(u) },
      contacts,
    );
    this.logger.info(`contacts synced: ${contacts.length}`);
    this.emit('contacts-synced', contacts.length);
    return contacts.length;
  }

  /**
   * With the `block` identity policy: accept `serviceId`'s new safety number so sends resume. True
   * when a changed identity was waiting for approval; false when there was none (nothing changes).
   */
  approveIdentity(serviceId: string): boolean {
    const store = this.requireStore();
    if (store.identityTrustOf(serviceId) !== 'untrusted-changed') return false;
    return store.approveIdentity(serviceId);
  }

  /**
   * The changed identities waiting for approveIdentity (block policy), with the contact's number and
   * name where known, oldest change first. Reads only; empty under `accept`, where none waits.
   */
  pendingIdentities(): PendingIdentity[] {
    return this.requireStore().pendingIdentities();
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
    const file = this.options.dataFile;
    const aside = `${file}.unlinked-${new Date(this.now()).toISOString().replace(/[:.]/g, '-')}`;
    // Closing checkpointed the WAL into the file; any leftover side file goes along with it.
    fs.renameSync(file, aside);
    for (const side of ['-wal', '-shm'])
      if (fs.existsSync(file + side)) fs.renameSync(file + side, aside + side);
    this.logger.info(`account set aside as ${path.basename(aside)}; ready to link or register`);
    this.setState('idle');
    return aside;
  }

  /**
   * Stops everything that works for the open account (maintenance, lookups, sockets, the receiver)
   * and closes its store: for close(), and for discarding an unlinked account, after which this
   * client starts afresh. The old sockets' last state changes must not reach the client.
   */
  private async teardownAccount(): Promise<void> {
    this.contactsArrival?.settle();
    this.prekeys?.stop();
    this.directoryValue?.close();
    this.chat?.removeAllListeners('state');
    this.unauthChat?.removeAllListeners('state');
    await Promise.all([this.chat?.close(), this.unauthChat?.close()]);
    await Promise.race([this.receiver?.idle(), new Promise((r) => setTimeout(r, 2000).unref())]);
    // Let emits already scheduled for ACKed envelopes run, then stop: later ones replay next start.
    await new Promise((r) => setImmediate(r));
    this.receiver?.stop();
    this.store?.close();
    this.store = null;
    this.chat = this.unauthChat = null;
    this.receiver = null;
    this.sender = null;
    this.prekeys = null;
    this.directoryValue = null;
  }

  /**
   * Closes for good: links and registrations in progress end, sockets, timers and the store close;
   * nothing reconnects afterwards. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.linkAbort?.abort();
    await this.registrarValue?.close();
    await this.teardownAccount();
    this.setState('closed');
    this.removeAllListeners();
  }
}
