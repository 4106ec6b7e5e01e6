/**
 * The send path (PROTOCOL.md §5): pad, encrypt per device over sessions from ./sessions.ts, PUT
 * /v1/messages, recover from 409/410 (the device list reconciled there), sealed sender when the
 * recipient's profile key is known, a sync transcript to our other devices, and a sent-log entry
 * for retry receipts (§6).
 */
import {
  CiphertextMessageType,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  UnidentifiedSenderMessageContent,
  sealedSenderEncrypt,
  signalEncrypt,
  type CiphertextMessage,
} from '@signalapp/libsignal-client';
import {
  MismatchedDevices,
  StaleDevices,
  UnidentifiedAccessRejected,
  type BundleResponse,
  type OutgoingMessage,
  type OutgoingMessages,
} from '../api';
import { deriveAccessKey } from '../crypto/access-key';
import { padMessage } from '../crypto/padding';
import { NetworkError, ProtocolError, RateLimitedError } from '../errors';
import type { Logger } from '../log';
import type { SendResult } from '../types';
import type { signalservice } from '../../proto';
import { sentTranscript, serializeContent, textDataMessage } from './compose';
import type { ProtocolStores } from './decrypt';
import type { KeyedLock } from './lock';
import { DeviceSessions, mapEncryptError } from './sessions';

/** Envelope types on the wire (Signal's numbering, not libsignal's: §5). */
export const WireType = { CIPHERTEXT: 1, PREKEY: 3, UNIDENTIFIED: 6, PLAINTEXT: 8 } as const;

/** The network calls the sender makes, wired by the client to core/api over the right socket. */
export interface SenderApi {
  getPreKeyBundles(
    serviceId: string,
    device: number | '*',
    accessKey?: Uint8Array,
  ): Promise<BundleResponse>;
  /** Throws MismatchedDevices, StaleDevices, UnidentifiedAccessRejected or core errors. */
  sendMessages(serviceId: string, body: OutgoingMessages, accessKey?: Uint8Array): Promise<void>;
  getSenderCertificate(): Promise<Uint8Array>;
}

export interface SenderStorePort {
  protocol(kind: 'aci'): ProtocolStores;
  deviceIds(serviceId: string): number[];
  deleteSession(serviceId: string, deviceId: number): void;
  profileKeyOf(serviceId: string): Uint8Array | null;
  addSent(entry: {
    timestamp: number;
    recipient: string;
    devices: number[];
    content: Uint8Array;
  }): void;
}

export interface SenderOptions {
  store: SenderStorePort;
  api: SenderApi;
  self: { aci: string; deviceId: number; profileKey: Uint8Array | null };
  lock: KeyedLock;
  logger: Logger;
  /** How many times to retry after 409/410 before giving up. */
  maxDeviceRetries?: number;
  /** How many times to wait out a 413/429 before failing with RATE_LIMITED. */
  maxRateLimitRetries?: number;
  /**
   * A send whose connection dropped before the answer goes again, with the same ciphertexts, for as
   * long as this window lasts from its first attempt (default 60 s) and at most maxNetworkRetries
   * times (default 20). Each attempt first waits for the connection to be back.
   */
  networkRetryWindowMs?: number;
  maxNetworkRetries?: number;
  /** Longest Retry-After the sender waits by itself; longer waits fail at once with RATE_LIMITED. */
  maxRateLimitWaitSeconds?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/** How one Content goes out. */
export interface SendOptions {
  /** PUT /v1/messages `urgent`: false for what needs no push (receipts, typing, syncs). */
  urgent: boolean;
  /** false: authenticated even when the recipient's profile key is known. */
  sealed?: boolean;
  onlyDevice?: number;
  /**
   * PUT /v1/messages `online`: the server delivers it only to devices connected now and never
   * queues it (Signal's apps send typing indicators so).
   */
  online?: boolean;
  /** false: not kept in the sent log (ephemeral content a retry request would not bring back). */
  log?: boolean;
  /**
   * The recipient's profile key when the contacts do not know it (a group member's, from the group
   * state): it unlocks sealed sender as a contact's would.
   */
  profileKey?: Uint8Array;
}

/** Refresh the sender certificate when less than this is left of its validity. */
const CERTIFICATE_MARGIN_MS = 60 * 60 * 1000;

export class Sender {
  private lastTimestamp = 0;
  private certificate: { cert: SenderCertificate; expires: number } | null = null;
  private certificateFetch: Promise<SenderCertificate> | null = null;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Sessions with the recipient's devices: built from bundles, reconciled after a 409/410. */
  private readonly sessions: DeviceSessions;

  constructor(private readonly opts: SenderOptions) {
    this.sessions = new DeviceSessions(opts);
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Strictly increasing: the timestamp is the message's id for receipts, quotes and retries. */
  nextTimestamp(): number {
    this.lastTimestamp = Math.max(this.now(), this.lastTimestamp + 1);
    return this.lastTimestamp;
  }

  async sendText(serviceId: string, text: string): Promise<SendResult> {
    const timestamp = this.nextTimestamp();
    const message = textDataMessage({
      body: text,
      timestamp,
      ...(this.opts.self.profileKey ? { profileKey: this.opts.self.profileKey } : {}),
    });
    return this.sendWithTranscript(serviceId, { dataMessage: message }, timestamp, {
      urgent: true,
    });
  }

  /**
   * Sends a data message (or an edit) to `serviceId`, then its transcript to our own account, so
   * the phone and other linked devices show what we sent (SyncMessage.sent; for an edit,
   * Sent.editMessage, as Signal-Desktop's sendSyncMessage does). A failed transcript is logged: the
   * message itself went out.
   */
  async sendWithTranscript(
    serviceId: string,
    content:
      { dataMessage: signalservice.IDataMessage } | { editMessage: signalservice.IEditMessage },
    timestamp: number,
    options: { urgent: boolean },
  ): Promise<SendResult> {
    const result = await this.sendContent(serviceId, content, timestamp, {
      urgent: options.urgent,
    });
    if (serviceId !== this.opts.self.aci) {
      try {
        await this.sendContent(
          this.opts.self.aci,
          sentTranscript({
            destinationServiceId: serviceId,
            timestamp,
            message: 'editMessage' in content ? content : content.dataMessage,
            unidentified: result.sealed,
          }),
          timestamp,
          { urgent: false, sealed: false },
        );
      } catch (e) {
        // The message itself went out; a missing transcript must not turn the send into a failure.
        this.opts.logger.warn('sender: sync transcript failed', e);
      }
    }
    return result;
  }

  /**
   * Encrypts `content` for every device of `serviceId` and sends it, recovering from device-list
   * changes. For our own ACI, our own device is left out (the server does too).
   */
  async sendContent(
    serviceId: string,
    content: signalservice.IContent,
    timestamp: number,
    options: SendOptions,
  ): Promise<SendResult> {
    return this.sendPlaintext(serviceId, padMessage(serializeContent(content)), timestamp, options);
  }

  /** Sends already padded Content bytes (a resend from the sent log uses the stored bytes). */
  async sendPlaintext(
    serviceId: string,
    plaintext: Uint8Array,
    timestamp: number,
    options: SendOptions,
  ): Promise<SendResult> {
    // Signal takes no sealed sender to a PNI (no access key is checked there): those go
    // authenticated, whatever the contact's profile key.
    const sealable = options.sealed !== false && !serviceId.startsWith('PNI:');
    const profileKey = sealable
      ? (this.opts.store.profileKeyOf(serviceId) ?? options.profileKey ?? null)
      : null;
    let accessKey: Uint8Array | undefined = profileKey ? deriveAccessKey(profileKey) : undefined;
    const maxDevice = this.opts.maxDeviceRetries ?? 3;
    const maxRate = this.opts.maxRateLimitRetries ?? 2;
    let deviceRetries = 0;
    let rateRetries = 0;
    // A 409/410 whose device list is still to be brought in line (kept until that succeeds, so a
    // rejected access key or a rate limit while fetching bundles repeats it, not the PUT).
    let reconcile: MismatchedDevices | StaleDevices | null = null;
    for (;;) {
      // Bundle fetches (sealed with the access key, like the PUT) answer 401 and 429 as the PUT does:
      // every step of an attempt is inside the one handler below.
      try {
        if (reconcile) {
          await this.sessions.reconcileDevices(serviceId, reconcile, accessKey);
          reconcile = null;
        }
        const { messages, devices } = await this.encryptForAll(
          serviceId,
          plaintext,
          accessKey,
          options.onlyDevice,
        );
        if (messages.length === 0) {
          // Nobody to send to (e.g. a sync transcript when we are the only device).
          return { timestamp, serviceId, devices: [], sealed: false };
        }
        const body = {
          messages,
          timestamp,
          online: options.online ?? false,
          urgent: options.urgent,
        };
        await this.putWithResend(serviceId, body, accessKey);
        if (options.log !== false)
          this.opts.store.addSent({ timestamp, recipient: serviceId, devices, content: plaintext });
        return { timestamp, serviceId, devices, sealed: accessKey !== undefined };
      } catch (e) {
        if (e instanceof UnidentifiedAccessRejected && accessKey) {
          this.opts.logger.info('sender: access key rejected, sending authenticated');
          accessKey = undefined;
          continue;
        }
        if (
          (e instanceof MismatchedDevices || e instanceof StaleDevices) &&
          deviceRetries < maxDevice
        ) {
          deviceRetries++;
          reconcile = e;
          continue;
        }
        if (e instanceof RateLimitedError && rateRetries < maxRate) {
          const limit = this.opts.maxRateLimitWaitSeconds ?? 30;
          if (e.retryAfterSeconds <= limit) {
            rateRetries++;
            await this.sleep(e.retryAfterSeconds * 1000);
            continue;
          }
        }
        if (e instanceof MismatchedDevices || e instanceof StaleDevices) {
          throw new ProtocolError(
            `Could not agree on ${serviceId}'s devices after ${maxDevice} retries`,
            {
              cause: e,
            },
          );
        }
        throw e;
      }
    }
  }

  /**
   * PUT /v1/messages; when the connection drops before the answer, the same ciphertexts go again
   * once it is back (bounded). Never re-encrypted: a PUT that did reach the server is then delivered
   * twice as the very same message, which the recipient's session recognises and drops, instead of
   * as a second message with new keys. Only a lost connection is retried; every answer is final.
   */
  private async putWithResend(
    serviceId: string,
    body: Parameters<SenderApi['sendMessages']>[1],
    accessKey: Uint8Array | undefined,
  ): Promise<void> {
    // Bounded by time rather than by a small count: on a flaky link several drops can come one after
    // another, and each retry is safe (the same ciphertexts; a repeat is dropped by the recipient).
    const max = this.opts.maxNetworkRetries ?? 20;
    const until = this.now() + (this.opts.networkRetryWindowMs ?? 60_000);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.opts.api.sendMessages(serviceId, body, accessKey);
        return;
      } catch (e) {
        if (!(e instanceof NetworkError) || attempt >= max || this.now() > until) throw e;
        this.opts.logger.info(`sender: connection lost during a send; sending it again`);
      }
    }
  }

  /** Archives our session with one device (after a peer's retry request, §6). */
  async archiveSession(
    serviceId: string,
    deviceId: number,
    ratchetKey: PublicKey | undefined,
  ): Promise<boolean> {
    return this.opts.lock.run(serviceId, async () => {
      const sessions = this.opts.store.protocol('aci').sessions;
      const address = ProtocolAddress.new(serviceId, deviceId);
      const record = await sessions.getSession(address);
      if (!record) return false;
      // With a ratchet key, archive only if it names our current session; a request about an old
      // session must not break a healthy new one. Without one (a PreKey message failed), archive.
      if (ratchetKey && !record.currentRatchetKeyMatches(ratchetKey)) return false;
      record.archiveCurrentState();
      await sessions.saveSession(address, record);
      return true;
    });
  }

  /** Our sender certificate (without our number), cached until an hour before it expires. */
  async senderCertificate(): Promise<SenderCertificate> {
    const cached = this.certificate;
    if (cached && cached.expires - CERTIFICATE_MARGIN_MS > this.now()) return cached.cert;
    this.certificateFetch ??= (async () => {
      try {
        const cert = SenderCertificate.deserialize(
          new Uint8Array(await this.opts.api.getSenderCertificate()),
        );
        this.certificate = { cert, expires: cert.expiration() };
        return cert;
      } finally {
        this.certificateFetch = null;
      }
    })();
    return this.certificateFetch;
  }

  private async encryptForAll(
    serviceId: string,
    plaintext: Uint8Array,
    accessKey: Uint8Array | undefined,
    onlyDevice: number | undefined,
  ): Promise<{ messages: OutgoingMessage[]; devices: number[] }> {
    const certificate = accessKey ? await this.senderCertificate() : null;
    return this.opts.lock.run(serviceId, async () => {
      let devices = this.opts.store
        .deviceIds(serviceId)
        .filter((d) => !(serviceId === this.opts.self.aci && d === this.opts.self.deviceId));
      if (onlyDevice !== undefined) {
        devices = devices.filter((d) => d === onlyDevice);
        if (devices.length === 0)
          devices = await this.sessions.establish(serviceId, onlyDevice, accessKey);
      } else if (devices.length === 0) {
        // For our own account, '*' would also return (and spend a one-time key of) this very device:
        // start from the primary and let a 409 name any other linked devices.
        const self = serviceId === this.opts.self.aci && this.opts.self.deviceId !== 1;
        devices = await this.sessions.establish(serviceId, self ? 1 : '*', accessKey);
      }
      const stores = this.opts.store.protocol('aci');
      const targets = await this.sessions.withOpenSessions(
        serviceId,
        devices,
        accessKey,
        onlyDevice !== undefined,
      );
      const local = ProtocolAddress.new(this.opts.self.aci, this.opts.self.deviceId);
      const messages: OutgoingMessage[] = [];
      for (const { deviceId, registrationId } of targets) {
        const address = ProtocolAddress.new(serviceId, deviceId);
        let ciphertext: CiphertextMessage;
        try {
          ciphertext = await signalEncrypt(
            new Uint8Array(plaintext),
            address,
            local,
            stores.sessions,
            stores.identities,
          );
        } catch (err) {
          throw mapEncryptError(err, serviceId);
        }
        if (certificate) {
          const usmc = UnidentifiedSenderMessageContent.new(ciphertext, certificate, 0, null);
          const sealed = await sealedSenderEncrypt(usmc, address, stores.identities);
          messages.push({
            type: WireType.UNIDENTIFIED,
            destinationDeviceId: deviceId,
            destinationRegistrationId: registrationId,
            content: Buffer.from(sealed).toString('base64'),
          });
        } else {
          messages.push({
            type:
              ciphertext.type() === CiphertextMessageType.PreKey
                ? WireType.PREKEY
                : WireType.CIPHERTEXT,
            destinationDeviceId: deviceId,
            destinationRegistrationId: registrationId,
            content: Buffer.from(ciphertext.serialize()).toString('base64'),
          });
        }
      }
      return { messages, devices: targets.map((t) => t.deviceId) };
    });
  }
}
