/**
 * SignalClient: the engine's facade for one linked (or registered) Signal account. Holding the
 * account (store, state, session, teardown) is AccountHost's (core/account/host.ts); each job is its
 * service's: linking (core/provisioning),
 * registering (core/registration), the new account's keys (core/account/new-account.ts), the
 * connected account at work (core/account/session.ts: sockets, receiver, sender, receipts,
 * prekeys), lookups and the contacts sync (core/directory). Owned by one `signal-account` node, or
 * used directly as the engine's API.
 *
 * Lifecycle: open() reads the account file if there is one (it never creates it, so a cancelled link
 * leaves nothing behind) → link() or connect() → 'event's → close().
 */
import fs from 'node:fs';
import { AccountHost, type SignalClientOptions } from './account/host';
import { resolveEnvironment } from './config';
import { normalizeNumber } from './directory/number';
import { classifyRecipient, groupTarget, noGroup } from './directory/recipient';
import { ClosedError, InvalidInputError, ProtocolError, SignalError } from './errors';
import { syncRequest } from './messaging/compose';
import { Challenges, type PendingChallenge } from './messaging/challenges';
import {
  checkOutgoing,
  checkReaction,
  checkTimestamp,
  checkTimestamps,
  type CheckedMessage,
} from './messaging/outgoing';
import { RichMessages, richStorePort } from './messaging/rich';
import { groupRichMessages } from './groups/group-conversation';
import * as api from './api';
import { ownProfileWrite } from './directory/profiles';
import { linkWithPhone } from './provisioning/complete-link';
import { accountRegistrar } from './registration/create-account';
import { RegistrationError } from './registration/errors';
import {
  Registrar,
  type RegistrationStatus,
  type StartRegistrationOptions,
} from './registration/registrar';
import { groupInfoOf, type GroupDirectory } from './groups/directory';
import type { GroupInfo } from './groups/types';
import type { PendingIdentity } from './store';
import { SyncMessage } from '../proto';
import type {
  AccountInfo,
  LookupResult,
  OutgoingMessage,
  OutgoingReaction,
  SendResult,
} from './types';

export type { SignalClientEvents, SignalClientOptions } from './account/host';
export type { ClientPorts } from './account/ports';
export { classifyRecipient, groupTarget };

export class SignalClient extends AccountHost {
  private registrarValue: Registrar | null = null;
  private linkAbort: AbortController | null = null;
  private readonly challenges = new Challenges({ logger: this.logger, now: this.now });

  static async open(options: SignalClientOptions): Promise<SignalClient> {
    if (!options.dataFile) throw new InvalidInputError('SignalClient needs a dataFile');
    const client = new SignalClient(options, resolveEnvironment(options.environment));
    if (fs.existsSync(options.dataFile)) client.openStore();
    return client;
  }

  // ---------------------------------------------------------------- linking and registering

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
    try {
      return await linkWithPhone({
        environment: this.environment,
        logger: this.logger,
        deviceName: this.options.deviceName ?? 'Node-RED',
        signal: abort.signal,
        onUrl: opts.onUrl,
        onState: (s) => this.emit('link-state', s),
        finish: async (linked) => {
          this.saveAccount(linked.record, linked.keys);
          this.logger.info(`linked as device ${linked.deviceId}`);
          return this.startNewAccount('linked', { askForContacts: true });
        },
      });
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
    return this.startNewAccount('registered');
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
    this.registrarValue ??= accountRegistrar({
      environment: this.environment,
      logger: this.logger,
      save: (record, keys) => this.saveAccount(record, keys),
    });
    return this.registrarValue;
  }

  /**
   * Connects a just-saved account and uploads its one-time prekeys before maintenance starts
   * checking counts (§3 step 6); after linking, also asks the phone for its contacts (§7), which let
   * sends and lookups resolve phone numbers. Failures of these steps are logged, not thrown.
   */
  private async startNewAccount(
    how: string,
    opts: { askForContacts?: boolean } = {},
  ): Promise<AccountInfo> {
    if (this.closed) throw new ClosedError();
    const account = this.account;
    if (!account) throw new ProtocolError(`The ${how} account was not saved`);
    try {
      await this.openSession().uploadFirstKeys(how, 30_000);
    } catch (e) {
      this.logger.warn(`${how} account: connecting failed`, e);
    }
    if (opts.askForContacts) {
      await this.requestSync().catch((e: unknown) =>
        this.logger.warn('could not request contacts', e),
      );
    }
    // A linked device lists its groups from the storage service (the phone keeps them there).
    if (how === 'linked') this.session?.groups.noteStorageChanged();
    return account;
  }

  // ---------------------------------------------------------------- messaging

  /**
   * Sends a message to an ACI, a `PNI:` service id, or a phone number: text with an optional quote,
   * mentions and styles (UTF-16 offsets in `text`), attachments (uploaded first; a long text goes as
   * one too), carrying the chat's disappearing-messages timer;
   * `expiresInSeconds` changes that timer first (its own timer-update message, as Signal's apps do).
   * Everything is checked before anything is sent (InvalidInputError naming the field).
   */
  async send(to: string, message: OutgoingMessage): Promise<SendResult> {
    this.assertOpen();
    const checked = checkOutgoing(message);
    return this.toRecipient(to, (rich, serviceId) => rich.send(serviceId, checked));
  }

  /** Reacts to a message (`remove: true` takes the reaction back): DataMessage.reaction. */
  async react(to: string, reaction: OutgoingReaction): Promise<SendResult> {
    this.assertOpen();
    const checked = checkReaction(reaction);
    return this.toRecipient(to, (rich, serviceId) => rich.react(serviceId, checked));
  }

  /**
   * Read receipts for messages `from` sent (their sent timestamps), and the read sync to our own
   * devices (SyncMessage.read) so the phone marks them read too.
   */
  async markRead(from: string, timestamps: number[]): Promise<SendResult> {
    this.assertOpen();
    const checked = checkTimestamps(timestamps, 'timestamps');
    noGroup(from, 'read receipts');
    return this.toRecipient(from, (rich, serviceId) => rich.markRead('read', serviceId, checked));
  }

  /** Viewed receipts (voice notes, videos, stories) and the viewed sync (SyncMessage.viewed). */
  async markViewed(from: string, timestamps: number[]): Promise<SendResult> {
    this.assertOpen();
    const checked = checkTimestamps(timestamps, 'timestamps');
    noGroup(from, 'viewed receipts');
    return this.toRecipient(from, (rich, serviceId) => rich.markRead('viewed', serviceId, checked));
  }

  /** A typing indicator (started or stopped), delivered only to devices online now. */
  async typing(to: string, started: boolean): Promise<SendResult> {
    this.assertOpen();
    if (typeof started !== 'boolean') throw new InvalidInputError('started must be true or false');
    return this.toRecipient(to, (rich, serviceId) => rich.typing(serviceId, started));
  }

  /**
   * Edits a message this account sent to `to` (its sent timestamp; the sent log keeps 14 days):
   * within 24 hours of the original and at most 10 times, as Signal's apps allow.
   */
  async edit(to: string, targetTimestamp: number, message: OutgoingMessage): Promise<SendResult> {
    this.assertOpen();
    const target = checkTimestamp(targetTimestamp, 'targetTimestamp');
    const checked: CheckedMessage = checkOutgoing(message);
    return this.toRecipient(to, (rich, serviceId) => rich.edit(serviceId, target, checked));
  }

  /** Deletes a message this account sent to `to` for everyone (within 24 hours of sending it). */
  async deleteForEveryone(to: string, targetTimestamp: number): Promise<SendResult> {
    this.assertOpen();
    const target = checkTimestamp(targetTimestamp, 'targetTimestamp');
    return this.toRecipient(to, (rich, serviceId) => rich.deleteForEveryone(serviceId, target));
  }

  /** Resolves `to` and runs one send to it, noting a failure for the directory and challenges. */
  private async toRecipient(
    to: string,
    send: (rich: RichMessages, serviceId: string) => Promise<SendResult>,
  ): Promise<SendResult> {
    if (typeof to !== 'string' || to.trim() === '')
      throw new InvalidInputError('No recipient given');
    const groupId = groupTarget(to);
    if (groupId !== null) return this.toGroup(groupId, send);
    const store = this.requireStore();
    const { sender, uploads } = this.requireSession();
    const directory = this.directory();
    const recipient = directory.recipientForm(to);
    const serviceId = await directory.resolve(recipient);
    const account = store.requireAccount();
    const rich = new RichMessages({
      sender,
      self: { aci: account.aci, profileKey: account.profileKey ?? null },
      uploader: uploads,
      now: this.now,
      store: richStorePort(store),
    });
    try {
      return await send(rich, serviceId);
    } catch (e) {
      if (e instanceof InvalidInputError) throw e;
      directory.noteFailure(recipient, serviceId, e);
      this.challenges.noteFailure(e);
      throw e;
    }
  }

  /**
   * One send to a group (`group:<id>`): to every member but us, with sender keys where it can, 1:1
   * otherwise (core/groups/group-sender.ts); the result lists each member's outcome.
   */
  private async toGroup(
    groupId: string,
    send: (rich: RichMessages, target: string) => Promise<SendResult>,
  ): Promise<SendResult> {
    const store = this.requireStore();
    const session = this.requireSession();
    const group = await this.groupState.get(groupId);
    const account = store.requireAccount();
    const { rich, target } = groupRichMessages({
      group,
      session,
      store,
      self: { aci: account.aci, profileKey: account.profileKey ?? null },
      now: this.now,
      logger: this.logger,
    });
    try {
      return await send(rich, target);
    } catch (e) {
      if (!(e instanceof InvalidInputError)) this.challenges.noteFailure(e);
      throw e;
    }
  }

  /** The challenge Signal last asked for (HTTP 428 on a send), until it is answered. */
  get pendingChallenge(): PendingChallenge | null {
    return this.challenges.pending;
  }

  /**
   * Answers a 428 challenge with a solved captcha (`signalcaptcha://…`, PROTOCOL.md §12) and the
   * challenge's token (default: the pending one); then the refused sends can be retried.
   */
  async submitChallenge(args: { captcha: string; token?: string }): Promise<void> {
    this.assertOpen();
    await this.challenges.answer(() => {
      this.requireStore();
      return this.requireSession().chat;
    }, args);
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
    return this.directory().lookup(normalized, opts);
  }

  /** Asks our primary device for contacts (and other sync data) (§7). */
  async requestSync(
    types: SyncMessage.Request.Type[] = [SyncMessage.Request.Type.CONTACTS],
  ): Promise<void> {
    const store = this.requireStore();
    const { sender } = this.requireSession();
    const self = store.requireAccount().aci;
    if (types.includes(SyncMessage.Request.Type.CONTACTS)) this.directory().expectContacts();
    for (const type of types) {
      await sender.sendContent(self, syncRequest(type), sender.nextTimestamp(), {
        urgent: false,
        sealed: false,
      });
    }
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

  /**
   * Sets this account's Signal profile name (what people see who have our profile key): a number
   * registered here only. A linked device leaves the profile to the phone, whose app owns it (and
   * would overwrite it). `PUT /v1/profile`, the name padded and encrypted with our profile key.
   */
  async setProfileName(given: string, family?: string): Promise<void> {
    this.assertOpen();
    const account = this.requireStore().requireAccount();
    if (account.deviceId !== 1) {
      throw new InvalidInputError(
        "A linked device uses the phone's profile name: change the name in Signal on the phone",
      );
    }
    if (typeof given !== 'string' || given.trim() === '')
      throw new InvalidInputError('A profile name needs a given name');
    if (family !== undefined && typeof family !== 'string')
      throw new InvalidInputError('The family name must be text');
    if (!account.profileKey) throw new ProtocolError('This account has no profile key');
    const body = ownProfileWrite(account.aci, account.profileKey, {
      given,
      ...(family && family.trim() ? { family } : {}),
    });
    await api.setProfile(this.requireSession().chat, body);
    this.logger.info('profile name set');
  }

  /**
   * The account's groups as stored (no keys), by title. `refresh: true` first reads the storage
   * service (a linked device) and refetches every group from the group server.
   */
  async groups(opts: { refresh?: boolean } = {}): Promise<GroupInfo[]> {
    this.assertOpen();
    const store = this.requireStore();
    if (opts.refresh) return this.requireSession().groups.refresh();
    return store.groups.all().map(groupInfoOf);
  }

  /** The group directory (core/groups/directory.ts): the GroupStatePort the group sender uses. */
  groupDirectory(): GroupDirectory {
    this.requireStore();
    return this.requireSession().groups;
  }

  /** Links and registrations in progress end before the account is torn down. */
  protected override async beforeTeardown(): Promise<void> {
    this.linkAbort?.abort();
    await this.registrarValue?.close();
  }
}
