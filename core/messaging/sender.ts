/**
 * The send path (PROTOCOL.md §5): sessions from prekey bundles, pad, encrypt per device, PUT
 * /v1/messages, recover from 409/410, sealed sender when the recipient's profile key is known, a sync
 * transcript to our other devices, and a sent-log entry for retry receipts (§6).
 */
import {
  CiphertextMessageType,
  PreKeyBundle,
  ProtocolAddress,
  PublicKey,
  SenderCertificate,
  UnidentifiedSenderMessageContent,
  ErrorCode,
  LibSignalErrorBase,
  KEMPublicKey,
  processPreKeyBundle,
  sealedSenderEncrypt,
  signalEncrypt,
  type CiphertextMessage,
} from '@signalapp/libsignal-client';
import {
  MismatchedDevices,
  StaleDevices,
  UnidentifiedAccessRejected,
  type BundleResponse,
  type DeviceBundle,
  type OutgoingMessage,
  type OutgoingMessages,
} from '../api';
import { deriveAccessKey } from '../crypto/access-key';
import { padMessage } from '../crypto/padding';
import {
  IdentityChangedError,
  NetworkError,
  NotOnSignalError,
  ProtocolError,
  RateLimitedError,
} from '../errors';
import type { Logger } from '../log';
import type { SendResult } from '../types';
import type { signalservice } from '../../proto';
import { sentTranscript, serializeContent, textDataMessage } from './content';
import { KeyedLock } from './lock';
import type { ProtocolStores } from './decrypt';

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

/** Refresh the sender certificate when less than this is left of its validity. */
const CERTIFICATE_MARGIN_MS = 60 * 60 * 1000;

export class Sender {
  private lastTimestamp = 0;
  private certificate: { cert: SenderCertificate; expires: number } | null = null;
  private certificateFetch: Promise<SenderCertificate> | null = null;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly opts: SenderOptions) {
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
    const result = await this.sendContent(serviceId, { dataMessage: message }, timestamp, {
      urgent: true,
    });
    // The phone and other linked devices show what we sent: a transcript to our own account.
    if (serviceId !== this.opts.self.aci) {
      try {
        await this.sendContent(
          this.opts.self.aci,
          sentTranscript({
            destinationServiceId: serviceId,
            timestamp,
            message,
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
    options: { urgent: boolean; sealed?: boolean; onlyDevice?: number },
  ): Promise<SendResult> {
    return this.sendPlaintext(serviceId, padMessage(serializeContent(content)), timestamp, options);
  }

  /** Sends already padded Content bytes (a resend from the sent log uses the stored bytes). */
  async sendPlaintext(
    serviceId: string,
    plaintext: Uint8Array,
    timestamp: number,
    options: { urgent: boolean; sealed?: boolean; onlyDevice?: number },
  ): Promise<SendResult> {
    // Signal takes no sealed sender to a PNI (no access key is checked there): those go
    // authenticated, whatever the contact's profile key.
    const sealable = options.sealed !== false && !serviceId.startsWith('PNI:');
    const profileKey = sealable ? this.opts.store.profileKeyOf(serviceId) : null;
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
          await this.reconcileDevices(serviceId, reconcile, accessKey);
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
        const body = { messages, timestamp, online: false, urgent: options.urgent };
        await this.putWithResend(serviceId, body, accessKey);
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

  private async reconcileDevices(
    serviceId: string,
    e: MismatchedDevices | StaleDevices,
    accessKey: Uint8Array | undefined,
  ): Promise<void> {
    await this.opts.lock.run(serviceId, async () => {
      if (e instanceof StaleDevices) {
        for (const d of e.staleDevices) this.opts.store.deleteSession(serviceId, d);
        for (const d of e.staleDevices) await this.establishIfPresent(serviceId, d, accessKey);
        return;
      }
      for (const d of e.extraDevices) this.opts.store.deleteSession(serviceId, d);
      for (const d of e.missingDevices) await this.establishIfPresent(serviceId, d, accessKey);
    });
  }

  /**
   * One device's bundle during 409/410 recovery. A 404 here means that device is gone by now (it was
   * unlinked after the server listed it), not that the account is: it is left out, and the next PUT's
   * 409/410 (or its 404, if the whole account went) settles the list, within the same retry bound.
   */
  private async establishIfPresent(
    serviceId: string,
    deviceId: number,
    accessKey: Uint8Array | undefined,
  ): Promise<void> {
    try {
      await this.establish(serviceId, deviceId, accessKey);
    } catch (err) {
      if (!(err instanceof NotOnSignalError)) throw err;
      this.opts.logger.info(`sender: device ${deviceId} of ${serviceId} is gone; skipping it`);
    }
  }

  /** Fetches bundles (one device or all) and builds sessions from them. Caller holds the lock. */
  private async establish(
    serviceId: string,
    device: number | '*',
    accessKey?: Uint8Array,
  ): Promise<number[]> {
    const response = await this.opts.api.getPreKeyBundles(serviceId, device, accessKey);
    const identityKey = PublicKey.deserialize(new Uint8Array(response.identityKey));
    const stores = this.opts.store.protocol('aci');
    const local = ProtocolAddress.new(this.opts.self.aci, this.opts.self.deviceId);
    await this.recordIdentity(serviceId, identityKey, response.devices);
    const built: number[] = [];
    for (const d of response.devices) {
      if (serviceId === this.opts.self.aci && d.deviceId === this.opts.self.deviceId) continue;
      const bundle = PreKeyBundle.new(
        d.registrationId,
        d.deviceId,
        d.preKey ? d.preKey.keyId : null,
        d.preKey ? PublicKey.deserialize(new Uint8Array(d.preKey.publicKey)) : null,
        d.signedPreKey.keyId,
        PublicKey.deserialize(new Uint8Array(d.signedPreKey.publicKey)),
        new Uint8Array(d.signedPreKey.signature),
        identityKey,
        d.pqPreKey.keyId,
        KEMPublicKey.deserialize(new Uint8Array(d.pqPreKey.publicKey)),
        new Uint8Array(d.pqPreKey.signature),
      );
      try {
        await processPreKeyBundle(
          bundle,
          ProtocolAddress.new(serviceId, d.deviceId),
          local,
          stores.sessions,
          stores.identities,
        );
      } catch (err) {
        throw mapEncryptError(err, serviceId);
      }
      built.push(d.deviceId);
    }
    return built;
  }

  /**
   * Saves the identity key a fetched bundle names before libsignal sees the bundle. libsignal checks
   * trust first and saves only keys it trusts, so under the `block` policy a changed key would be
   * refused without a trace: no identity-change event, nothing for approveIdentity() to approve, and
   * IDENTITY_CHANGED forever. Saved here, a changed key is recorded as untrusted and reported once
   * (the store's saveIdentity), and processPreKeyBundle then refuses it with IDENTITY_CHANGED until
   * it is approved. Only a key that signed the bundle's signed prekey is recorded. Unchanged keys
   * cost one indexed read.
   */
  private async recordIdentity(
    serviceId: string,
    identityKey: PublicKey,
    devices: DeviceBundle[],
  ): Promise<void> {
    const first = devices[0];
    if (!first) return;
    const signed = identityKey.verify(
      new Uint8Array(first.signedPreKey.publicKey),
      new Uint8Array(first.signedPreKey.signature),
    );
    if (!signed) return; // processPreKeyBundle rejects the bundle with its own error
    const identities = this.opts.store.protocol('aci').identities;
    await identities.saveIdentity(ProtocolAddress.new(serviceId, first.deviceId), identityKey);
  }

  private async senderCertificate(): Promise<SenderCertificate> {
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

  /**
   * A device whose session was archived (a retry request named our current ratchet, §6) still has a
   * session row but no open session: encrypting to it fails. Build a fresh session from a new prekey
   * bundle, as Signal's clients do for any device without an open session. `strict`: a failure to
   * build one is the send's failure (a resend to that one device); otherwise the device is left out
   * and the server's 409 names it if it still exists.
   */
  private async withOpenSessions(
    serviceId: string,
    devices: number[],
    accessKey: Uint8Array | undefined,
    strict: boolean,
  ): Promise<Array<{ deviceId: number; registrationId: number }>> {
    const sessions = this.opts.store.protocol('aci').sessions;
    const usable: Array<{ deviceId: number; registrationId: number }> = [];
    // The remote registration id is read here, once per device: encrypting does not change it, and
    // a second session load per device and message would be pure overhead on the send path.
    const open = async (deviceId: number): Promise<boolean> => {
      const record = await sessions.getSession(ProtocolAddress.new(serviceId, deviceId));
      if (!record?.hasCurrentState()) return false;
      usable.push({ deviceId, registrationId: record.remoteRegistrationId() });
      return true;
    };
    for (const deviceId of devices) {
      if (await open(deviceId)) continue;
      try {
        for (const built of await this.establish(serviceId, deviceId, accessKey)) await open(built);
      } catch (err) {
        if (strict) throw err;
      }
    }
    return usable;
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
        if (devices.length === 0) devices = await this.establish(serviceId, onlyDevice, accessKey);
      } else if (devices.length === 0) {
        // For our own account, '*' would also return (and spend a one-time key of) this very device:
        // start from the primary and let a 409 name any other linked devices.
        const self = serviceId === this.opts.self.aci && this.opts.self.deviceId !== 1;
        devices = await this.establish(serviceId, self ? 1 : '*', accessKey);
      }
      const stores = this.opts.store.protocol('aci');
      const targets = await this.withOpenSessions(
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

/** libsignal's refusal to use a changed identity (block policy) becomes IDENTITY_CHANGED. */
export function mapEncryptError(err: unknown, serviceId: string): unknown {
  if (err instanceof LibSignalErrorBase && err.is(ErrorCode.UntrustedIdentity)) {
    return new IdentityChangedError(serviceId);
  }
  return err;
}
