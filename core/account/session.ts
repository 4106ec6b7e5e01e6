/**
 * One open account at work: its chat sockets (authenticated, and unauthenticated for sealed
 * sends), the receiver, the sender, retry receipts, delivery receipts and prekey maintenance, wired
 * to the account's store. SignalClient makes one on connect() and closes it on close() or when an
 * unlinked account is set aside; everything that talks to Signal for the account lives under it.
 */
import {
  failAll,
  needsPreparing,
  prepareEvents,
  type AttachmentPolicy,
} from '../messaging/attachments';
import { AttachmentUploader } from '../messaging/attachment-upload';
import { IdentityKeyPair, PublicKey, type PrivateKey } from '@signalapp/libsignal-client';
// Not re-exported from the package's index (NEXT-WAVE §2.4): the file itself.
import { AccountEntropyPool } from '@signalapp/libsignal-client/dist/AccountKeys.js';
import * as api from '../api';
import type { IdentityKind, KeyUpload } from '../api';
import type { Environment } from '../config';
import type { SignalError } from '../errors';
import type { Logger } from '../log';
import { ProfileNames } from '../directory/profiles';
import { GroupDirectory } from '../groups/directory';
import { UnauthorizedError } from '../errors';
import { deliveryReceipt } from '../messaging/compose';
import { timerOf } from '../messaging/content';
import type { KeyedLock } from '../messaging/lock';
import { PreKeyMaintenance, storePreKeyPorts, type PreKeyPorts } from '../messaging/prekeys';
import type { Receiver, ReceiverStorePort } from '../messaging/receiver';
import { RetryReceipts } from '../messaging/retry-receipts';
import { Sender, type SenderApi } from '../messaging/sender';
import { GroupSender } from '../groups/group-sender';
import { DEFAULT_KEEPALIVE, type KeepaliveOptions } from '../net/connection';
import { storageRequester } from '../net/https';
import {
  DEFAULT_BACKOFF,
  type BackoffOptions,
  type ChatState,
  type PersistentChat,
} from '../net/persistent';
import type { AccountRecord, SignalStore } from '../store';
import type { Ports } from './ports';
import type { IncomingEvent } from '../types';
import type { signalservice } from '../../proto';

/** One-time prekeys uploaded per identity right after linking or registering. */
const ONE_TIME_KEYS = 100;

/** Timing of the account's chat sockets (tests and fault injection override the defaults). */
export interface ConnectionOptions {
  keepalive?: KeepaliveOptions;
  backoff?: BackoffOptions;
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
}

export interface AccountSessionOptions {
  store: SignalStore;
  environment: Environment;
  logger: Logger;
  /** One lock per peer, shared by sending and receiving. */
  lock: KeyedLock;
  /** Makes the sockets and the receiver, and wraps the sender's REST calls (core/account/ports.ts). */
  ports: Ports;
  now: () => number;
  connection?: ConnectionOptions;
  prekeys?: { threshold?: number; batchSize?: number };
  /** When the caller injected a clock, maintenance uses it too. */
  clockInjected?: boolean;
  emit: (event: IncomingEvent) => void;
  /** How received attachments are handled now (read at each message: the nodes may change it). */
  attachments: () => AttachmentPolicy;
  onQueueEmpty: () => void;
  onContactsBlob: (blob: signalservice.IAttachmentPointer) => void;
  /** The authenticated socket's state changes, for the client's own state. */
  onState: (state: ChatState, error?: SignalError) => void;
}

export class AccountSession {
  readonly receiver: Receiver;
  readonly sender: Sender;
  /** Sends to groups: sender keys and multi-recipient sealed sender, else 1:1 (core/groups). */
  readonly groupSender: GroupSender;
  /** Encrypts and uploads what a message sends (core/messaging/attachment-upload.ts). */
  readonly uploads: AttachmentUploader;
  readonly prekeys: PreKeyMaintenance;
  readonly chat: PersistentChat;
  /** Senders' profile names, fetched after their messages are emitted (core/directory/profiles.ts). */
  readonly profiles: ProfileNames;
  /**
   * The account's groups v2 (core/groups/directory.ts): the GroupStatePort the group sender uses,
   * refreshed by group messages and (linked device) the storage service.
   */
  readonly groups: GroupDirectory;
  private unauthChat: PersistentChat | null = null;
  private readonly retries: RetryReceipts;
  /** While a new account uploads its first one-time keys, maintenance must not upload a batch too. */
  private holdMaintenance = false;
  private closed = false;

  constructor(private readonly opts: AccountSessionOptions) {
    const { store, logger, lock, now } = opts;
    const account = store.requireAccount();
    // One wrapped copy for the sender and the group sender: a test's spy sees both.
    const senderApi = opts.ports.senderApi(this.senderApi());
    this.sender = new Sender({
      store: {
        protocol: (kind) => store.protocol(kind),
        deviceIds: (sid) => store.deviceIds(sid),
        deleteSession: (sid, d) => store.deleteSession(sid, d),
        profileKeyOf: (sid) => store.contacts.findByServiceId(sid)?.profileKey ?? null,
        addSent: (entry) => store.sent.add(entry),
      },
      api: senderApi,
      self: { aci: account.aci, deviceId: account.deviceId, profileKey: account.profileKey },
      lock,
      logger,
      now,
    });
    this.groupSender = new GroupSender({
      sender: this.sender,
      store: {
        protocol: (kind) => store.protocol(kind),
        deviceIds: (sid) => store.deviceIds(sid),
        deleteSession: (sid, d) => store.deleteSession(sid, d),
        addSent: (entry) => store.sent.add(entry),
        groupSends: store.groupSends,
      },
      api: {
        getPreKeyBundles: (sid, device, accessKey) =>
          senderApi.getPreKeyBundles(sid, device, accessKey),
        sendMultiRecipient: (payload, o) =>
          api.sendMultiRecipient(this.unauthenticated(), payload, o),
      },
      self: { aci: account.aci, deviceId: account.deviceId },
      lock,
      logger,
      now,
      serverPublicParams: opts.environment.serverPublicParams
        ? new Uint8Array(Buffer.from(opts.environment.serverPublicParams, 'base64'))
        : null,
    });
    this.uploads = new AttachmentUploader({
      env: opts.environment,
      chat: () => this.chat,
      dir: () => opts.attachments().dir,
      logger,
      now,
    });
    this.profiles = new ProfileNames({
      store: {
        profileOf: (aci) => {
          const c = store.contacts.findByServiceId(aci);
          return c ? { profileKey: c.profileKey, fetchedAt: c.profileFetchedAt } : undefined;
        },
        saveProfileName: (aci, name, at) => void store.contacts.setProfileName(aci, name, at),
      },
      fetch: (aci, version, accessKey) => this.fetchProfile(aci, version, accessKey),
      selfAci: account.aci,
      logger,
      now,
    });
    const storage = storageRequester(opts.environment);
    this.groups = new GroupDirectory({
      store: {
        get: (id) => store.groups.get(id),
        summary: (id) => store.groups.summary(id),
        all: () => store.groups.all(),
        save: (g) => store.groups.save(g),
        delete: (id) => store.groups.delete(id),
        fillProfileKey: (aci, profileKey) => {
          if (store.contacts.findByServiceId(aci)?.profileKey) return;
          store.contacts.upsert({ aci, profileKey, source: 'message' });
        },
        setTimer: (conversation, seconds) =>
          void store.conversations.noteTimer(conversation, seconds, 0),
      },
      server: {
        credentials: (start, end) => api.getGroupCredentials(this.chat, start, end),
        getGroup: (id, auth) => api.getGroup(storage, id, auth),
        auth: () => api.getStorageAuth(this.chat),
        manifest: (auth) => api.getStorageManifest(storage, auth),
        read: (auth, keys) => api.readStorageItems(storage, auth, keys),
      },
      self: { aci: account.aci, pni: account.pni },
      serverPublicParams: opts.environment.serverPublicParams,
      // A registered number (device 1) has no storage records from a phone: its groups come from
      // the group messages it receives.
      accountMasterKey: () =>
        account.deviceId === 1 ? null : accountMasterKey(store.requireAccount()),
      emit: (ev) => this.opts.emit(ev),
      logger,
      now,
    });
    this.retries = new RetryReceipts({
      store,
      sender: this.sender,
      chat: () => this.chat,
      logger,
      groupMembers: async (id) =>
        (await (opts.ports.groups ?? this.groups).get(id)).members.map((m) => m.aci),
    });
    this.receiver = opts.ports.receiver({
      store: receiverPort(store),
      self: { aci: account.aci, pni: account.pni, deviceId: account.deviceId },
      trustRoots: opts.environment.trustRoots.map((r) =>
        PublicKey.deserialize(new Uint8Array(Buffer.from(r, 'base64'))),
      ),
      logger,
      lock,
      emit: (ev) => this.onEvent(ev),
      prepare: (events) => {
        if (!needsPreparing(events)) return null;
        return () =>
          prepareEvents(
            opts.environment,
            opts.attachments(),
            logger,
            events,
            () => this.closed,
          ).catch((e: unknown) => failAll(events, e));
      },
      sendRetryRequest: (to, device, plaintext) => this.retries.request(to, device, plaintext),
      onRetryRequest: (from, device, request) => this.retries.answer(from, device, request),
      onQueueEmpty: opts.onQueueEmpty,
      sendDeliveryReceipt: (to, timestamps) => this.sendDeliveryReceipt(to, timestamps),
      onContactsBlob: opts.onContactsBlob,
      onGroupContext: (note) => this.groups.noteContext(note),
      onStorageChanged: () => this.groups.noteStorageChanged(),
      now,
    });
    this.prekeys = new PreKeyMaintenance({
      ports: this.prekeyPorts(),
      logger,
      // Each check (after every connect, then every few hours) also prunes the logs and old keys:
      // the sent log holds message content and must not outlive its 14 days (§5).
      housekeeping: () => this.pruneStore(),
      ...(opts.clockInjected ? { now } : {}),
      ...opts.prekeys,
    });
    // Emit what an earlier run recorded but never emitted (a crash between ACK and emit).
    const replayed = this.receiver.replayPending();
    if (replayed) logger.info(`replayed ${replayed} recorded but unemitted message(s)`);
    // Also before the first connection succeeds: the process may start offline.
    this.pruneStore();
    const c = opts.connection;
    this.chat = opts.ports.chat({
      env: opts.environment,
      auth: { username: `${account.aci}.${account.deviceId}`, password: account.password },
      handler: this.receiver.handleRequest,
      logger,
      keepalive: c?.keepalive ?? DEFAULT_KEEPALIVE,
      backoff: c?.backoff ?? DEFAULT_BACKOFF,
      name: 'chat',
      ...(c?.requestTimeoutMs ? { requestTimeoutMs: c.requestTimeoutMs } : {}),
      ...(c?.connectTimeoutMs ? { connectTimeoutMs: c.connectTimeoutMs } : {}),
    });
    this.chat.on('state', (s, err) => this.onChatState(s, err));
    this.chat.start();
  }

  /** After the ACK, in order: what the engine learns from an event, then the user's emit. */
  private onEvent(ev: IncomingEvent): void {
    const timer = timerOf(ev);
    if (timer) {
      // The chat's timer as the peer set it, so that our next send carries it (a newer version
      // wins; an older change is ignored by the store). A store failure costs the timer, not the event.
      try {
        this.opts.store.conversations.noteTimer(
          timer.conversation,
          timer.expiresInSeconds,
          // Version 0: a client that does not version timers (the store keeps the version it has).
          timer.version ?? 0,
        );
      } catch (e) {
        this.opts.logger.warn('could not record the chat timer', e);
      }
    }
    // The group as stored now (its title once fetched); a newer revision is fetched after the emit.
    if ('groupId' in ev && ev.groupId && ev.type !== 'group-update') {
      try {
        ev.group = this.groups.describe(ev.groupId);
      } catch (e) {
        this.opts.logger.warn('could not read the stored group', e);
      }
    }
    this.opts.emit(ev);
    if (ev.type !== 'identity-change' && ev.type !== 'receipt') this.profiles.note(ev.from.aci);
  }

  /**
   * A contact's profile as Signal's apps fetch it: unauthenticated with their access key; if the
   * server refuses the key (they changed their profile key since), over our authenticated socket.
   */
  private async fetchProfile(aci: string, version: string, accessKey: Uint8Array) {
    try {
      return await api.getVersionedProfile(this.unauthenticated(), aci, version, accessKey);
    } catch (e) {
      if (!(e instanceof UnauthorizedError) || this.closed) throw e;
      return api.getVersionedProfile(this.chat, aci, version);
    }
  }

  private onChatState(s: ChatState, err?: SignalError): void {
    if (this.closed) return;
    if (s === 'connected' && !this.holdMaintenance) this.prekeys.start();
    if (s === 'unlinked' || s === 'expired') this.prekeys.stop();
    this.opts.onState(s, err);
  }

  /** The unauthenticated socket sealed-sender sends and bundle fetches go over, made on first use. */
  private unauthenticated(): PersistentChat {
    if (!this.unauthChat) {
      const c = this.opts.connection;
      this.unauthChat = this.opts.ports.chat({
        env: this.opts.environment,
        logger: this.opts.logger,
        keepalive: c?.keepalive ?? DEFAULT_KEEPALIVE,
        backoff: c?.backoff ?? DEFAULT_BACKOFF,
        name: 'unauthenticated chat',
        ...(c?.requestTimeoutMs ? { requestTimeoutMs: c.requestTimeoutMs } : {}),
      });
      this.unauthChat.start();
    }
    return this.unauthChat;
  }

  /**
   * For a just-saved account: waits for the connection and uploads its one-time prekeys before
   * maintenance starts checking counts (or both would upload a batch). A failure is logged, not
   * thrown: the account exists, the socket keeps reconnecting, maintenance refills once connected.
   */
  async uploadFirstKeys(how: string, timeoutMs: number): Promise<void> {
    this.holdMaintenance = true;
    try {
      await this.chat.waitConnected(timeoutMs);
      const ports = this.prekeyPorts();
      for (const kind of ['aci', 'pni'] as const)
        await api.uploadKeys(this.chat, kind, ports.generateOneTime(kind, ONE_TIME_KEYS));
    } catch (e) {
      this.opts.logger.warn(`${how} account: connecting or uploading one-time prekeys failed`, e);
    } finally {
      this.holdMaintenance = false;
    }
    if (!this.closed && this.chat.state === 'connected') this.prekeys.start();
  }

  /**
   * One batched delivery receipt (§6, receipts): as the engine sends other content, sealed when the
   * sender's profile key is known, not urgent (Signal's apps send receipts without a push).
   */
  private async sendDeliveryReceipt(to: string, timestamps: number[]): Promise<void> {
    if (this.closed) return;
    await this.sender.sendContent(to, deliveryReceipt(timestamps), this.sender.nextTimestamp(), {
      urgent: false,
    });
  }

  private senderApi(): SenderApi {
    const over = (accessKey?: Uint8Array | null) =>
      accessKey ? this.unauthenticated() : this.chat;
    return {
      getPreKeyBundles: (sid, device, accessKey) =>
        api.getPreKeyBundles(over(accessKey), sid, device, accessKey),
      sendMessages: (sid, body, accessKey) =>
        api.sendMessages(over(accessKey), sid, body, accessKey),
      getSenderCertificate: () => api.getSenderCertificate(this.chat),
    };
  }

  private identityKey(kind: IdentityKind): PrivateKey {
    const account = this.opts.store.requireAccount();
    return IdentityKeyPair.deserialize(
      new Uint8Array(kind === 'aci' ? account.aciIdentityKeyPair : account.pniIdentityKeyPair),
    ).privateKey;
  }

  private prekeyPorts(): PreKeyPorts {
    return storePreKeyPorts({
      store: this.opts.store,
      identityKey: (kind) => this.identityKey(kind),
      counts: (kind) => api.getKeyCounts(this.chat, kind),
      put: (kind, keys: KeyUpload) => api.uploadKeys(this.chat, kind, keys),
      now: this.opts.now,
    });
  }

  /** Store upkeep: logs and keys past retention (never throws: a failure is logged, retried later). */
  private pruneStore(): void {
    try {
      const pruned = this.opts.store.prune();
      if (pruned.sent || pruned.received || pruned.keys)
        this.opts.logger.debug(
          `store upkeep: pruned ${pruned.sent} sent, ${pruned.received} received, ${pruned.keys} key rows`,
        );
    } catch (e) {
      this.opts.logger.warn('store upkeep failed; will retry', e);
    }
  }

  /**
   * Stops everything that works for the account: maintenance, sockets, the receiver (after the
   * emits already scheduled for ACKed envelopes ran; later ones replay at the next start). The
   * sockets' last state changes do not reach the client. The store stays open: it is the client's.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.profiles.close();
    this.groups.close();
    this.uploads.close();
    this.prekeys.stop();
    this.chat.removeAllListeners('state');
    this.unauthChat?.removeAllListeners('state');
    // Group fetches in flight end first (their HTTPS connections would hold the server open).
    await Promise.race([this.groups.idle(), new Promise((r) => setTimeout(r, 2000).unref())]);
    await Promise.all([this.chat.close(), this.unauthChat?.close()]);
    await Promise.race([this.receiver.idle(), new Promise((r) => setTimeout(r, 2000).unref())]);
    await new Promise((r) => setImmediate(r));
    this.receiver.stop();
  }
}

/**
 * The key the account's storage service records are encrypted under: from the account entropy pool
 * when the phone sent one (current apps), else the master key it sent; null for neither.
 */
function accountMasterKey(account: AccountRecord): Uint8Array | null {
  if (account.accountEntropyPool) {
    try {
      return AccountEntropyPool.deriveSvrKey(account.accountEntropyPool);
    } catch {
      // fall back to the master key the phone sent beside it
    }
  }
  return account.masterKey;
}

/** The receiver's view of the store: the received log, contacts, units of work. */
function receiverPort(store: SignalStore): ReceiverStorePort {
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
        ? {
            ...(c.e164 ? { number: c.e164 } : {}),
            // The synced name first (what the phone's user calls them), else their profile's.
            ...((c.name ?? c.profileName) ? { name: (c.name ?? c.profileName) as string } : {}),
          }
        : undefined;
    },
  };
}
