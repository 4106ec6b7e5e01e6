/**
 * Decryption (PROTOCOL.md §6): an Envelope in, its plaintext Content's effects out, with the unit of
 * work that holds every protocol-store write it made (the ratchet step, a stored sender key, what it
 * taught us of the sender). Nothing here is committed: the inbox (./inbox.ts) commits the unit
 * together with the envelope's received-log row, in one transaction.
 */
import {
  CiphertextMessageType,
  DecryptionErrorMessage,
  ErrorCode,
  LibSignalErrorBase,
  PlaintextContent,
  PreKeySignalMessage,
  ProtocolAddress,
  PublicKey,
  SenderKeyDistributionMessage,
  SignalMessage,
  groupDecrypt,
  processSenderKeyDistributionMessage,
  sealedSenderDecryptToUsmc,
  signalDecrypt,
  signalDecryptPreKey,
} from '@signalapp/libsignal-client';
import type {
  IdentityKeyStore,
  KyberPreKeyStore,
  PreKeyStore,
  SenderKeyStore,
  SessionStore,
  SignedPreKeyStore,
} from '@signalapp/libsignal-client';
import { Envelope, type Content } from '../../proto';
import { unpadMessage } from '../crypto/padding';
import type { Logger } from '../log';
import type { Sender } from '../types';
import { contentEffects, parseContent, serviceIdFrom, type ContentEffects } from './content';

export interface ProtocolStores {
  sessions: SessionStore;
  identities: IdentityKeyStore;
  preKeys: PreKeyStore;
  signedPreKeys: SignedPreKeyStore;
  kyberPreKeys: KyberPreKeyStore;
  senderKeys: SenderKeyStore;
}

/** A batch of protocol-store writes applied atomically together with `extra`. */
export interface UnitOfWork extends ProtocolStores {
  commit(extra?: () => void): void;
  discard(): void;
}

/** Why an envelope was dropped (ACKed without an event); logged, and counted for tests and fuzzing. */
export type DropReason =
  | 'malformed-envelope'
  | 'unsupported-type'
  | 'missing-source'
  | 'bad-certificate'
  | 'self-send'
  | 'duplicate'
  | 'decrypt-failed'
  | 'malformed-content';

/** A follow-up to an envelope: run after its batch is ACKed and emitted, outside any peer lock. */
export type FollowUp = () => Promise<void>;

export class DropError extends Error {
  constructor(
    readonly reason: DropReason,
    message: string,
    /** A send owed for the dropped envelope (a retry request to its sender), run as a follow-up. */
    readonly followUp?: FollowUp,
  ) {
    super(message);
  }
}

/** Who sent an envelope and what is left to decrypt once its outer (sealed-sender) layer is open. */
export interface Identified {
  sender: Sender;
  sealed: boolean;
  msgType: number;
  bytes: Uint8Array;
  kind: 'aci' | 'pni';
}

/** A decrypted envelope: what its Content means, and the unit of work to commit with its log row. */
export type Decrypted =
  | { ok: true; effects: ContentEffects; unit: UnitOfWork; retry?: DecryptionErrorMessage }
  /** Decrypted (the session advanced) but the Content is unusable: commit the unit, emit nothing. */
  | { ok: false; unit: UnitOfWork; error: Error };

/** What decryption needs from the account's store (part of the receiver's port). */
export interface DecryptStorePort {
  unitOfWork(kind: 'aci' | 'pni'): UnitOfWork;
  /**
   * Records a sender's number and/or profile key in the contacts table (best effort). Called inside
   * the transaction of the message's log row; should write only when something changed.
   */
  recordContact(info: { aci: string; number?: string; profileKey?: Uint8Array }): void;
  /**
   * What the contacts table knows of a sender (a contact synced from the phone, a lookup): one
   * indexed read by ACI. Fills in the number and name the envelope does not carry.
   */
  contactOf?(aci: string): { number?: string; name?: string } | undefined;
}

export interface DecryptorOptions {
  store: DecryptStorePort;
  self: { aci: string; pni: string; deviceId: number };
  trustRoots: PublicKey[];
  logger: Logger;
  now: () => number;
  /** Sends a retry request (DecryptionErrorMessage as PlaintextContent) to one sender device. */
  sendRetryRequest: (to: string, device: number, plaintext: PlaintextContent) => Promise<void>;
}

/** The envelope's destination: our PNI when it names `PNI:<uuid>`, else our ACI. */
export function destinationKind(envelope: Envelope): 'aci' | 'pni' {
  const dest = serviceIdFrom(envelope.destinationServiceIdBinary, envelope.destinationServiceId);
  return dest && dest.startsWith('PNI:') ? 'pni' : 'aci';
}

/**
 * Plaintext content is not end-to-end authenticated: anyone who can put an envelope in our queue
 * could write it. Signal's clients accept exactly one thing in it, a retry request
 * (DecryptionErrorMessage), and reject a plaintext Content carrying anything else; so do we, or a
 * forged "message" from any sender would be emitted as if it had been decrypted.
 */
function onlyRetryRequest(content: Content): void {
  const fields = Object.keys(content.toJSON());
  const others = fields.filter((f) => f !== 'decryptionErrorMessage');
  if (!fields.includes('decryptionErrorMessage') || others.length > 0) {
    throw new Error(
      `plaintext content may carry only a retry request${others.length ? `, not ${others.join(', ')}` : ''}`,
    );
  }
}

export class Decryptor {
  constructor(private readonly opts: DecryptorOptions) {}

  /** Who sent it and what to decrypt; for sealed sender this opens the outer layer only. */
  async identify(envelope: Envelope, type: number, serverTimestamp: number): Promise<Identified> {
    const content = envelope.content ? new Uint8Array(envelope.content) : new Uint8Array(0);
    const kind = destinationKind(envelope);
    if (type === Envelope.Type.UNIDENTIFIED_SENDER) {
      const stores = this.opts.store.unitOfWork(kind);
      let usmc;
      try {
        // Reads only our identity key; nothing to commit.
        usmc = await sealedSenderDecryptToUsmc(content, stores.identities);
      } catch (e) {
        throw new DropError('decrypt-failed', `sealed sender: ${(e as Error).message}`);
      } finally {
        stores.discard();
      }
      const cert = usmc.senderCertificate();
      if (!cert.validateWithTrustRoots(this.opts.trustRoots, serverTimestamp || this.opts.now())) {
        throw new DropError(
          'bad-certificate',
          'sender certificate not signed by a trust root, or expired',
        );
      }
      const senderAci = cert.senderAci()?.getServiceIdString() ?? cert.senderUuid();
      const device = cert.senderDeviceId();
      if (senderAci === this.opts.self.aci && device === this.opts.self.deviceId) {
        throw new DropError('self-send', 'sealed message from our own device');
      }
      const number = cert.senderE164() ?? undefined;
      return {
        sender: { aci: senderAci, device, ...(number ? { number } : {}) },
        sealed: true,
        msgType: usmc.msgType(),
        bytes: new Uint8Array(usmc.contents()),
        kind,
      };
    }
    if (
      type === Envelope.Type.DOUBLE_RATCHET ||
      type === Envelope.Type.PREKEY_MESSAGE ||
      type === Envelope.Type.PLAINTEXT_CONTENT
    ) {
      const source = serviceIdFrom(envelope.sourceServiceIdBinary, envelope.sourceServiceId);
      const device = envelope.sourceDeviceId ?? 0;
      if (!source || !device)
        throw new DropError('missing-source', `type ${type} without source or device`);
      try {
        // libsignal's device ids are 1..127; a larger one would throw later, as a 500.
        ProtocolAddress.new(source, device);
      } catch (e) {
        throw new DropError(
          'malformed-envelope',
          `source ${source}.${device}: ${(e as Error).message}`,
        );
      }
      const msgType =
        type === Envelope.Type.DOUBLE_RATCHET
          ? CiphertextMessageType.Whisper
          : type === Envelope.Type.PREKEY_MESSAGE
            ? CiphertextMessageType.PreKey
            : CiphertextMessageType.Plaintext;
      return { sender: { aci: source, device }, sealed: false, msgType, bytes: content, kind };
    }
    throw new DropError('unsupported-type', `envelope type ${type}`);
  }

  /**
   * Decrypts the inner message in a fresh unit of work and reads its Content. The caller holds the
   * sender's lock from here to the unit's commit: a send to the same peer must not advance the
   * session in between (its write would be lost). Throws DropError when nothing was decrypted.
   */
  async decrypt(ident: Identified, timestamp: number, serverTimestamp: number): Promise<Decrypted> {
    const { sender, sealed } = ident;
    const uow = this.opts.store.unitOfWork(ident.kind);
    const plaintext = await this.decryptInner(ident, uow, timestamp);
    let effects: ContentEffects;
    let retry: DecryptionErrorMessage | undefined;
    let content: Content;
    try {
      content = parseContent(unpadMessage(plaintext));
      if (ident.msgType === CiphertextMessageType.Plaintext) onlyRetryRequest(content);
      const from = this.withContact(sender);
      effects = contentEffects(content, { from, timestamp, serverTimestamp, sealed });
      // Parsed now, so that a corrupt retry request is a logged drop, not a failed follow-up.
      if (effects.decryptionError)
        retry = DecryptionErrorMessage.deserialize(new Uint8Array(effects.decryptionError));
    } catch (e) {
      // The session advanced: it must commit with the log row so the ratchet stays in step.
      return { ok: false, unit: uow, error: e as Error };
    }
    // A sender key for a group this sender writes to (§6, sender keys): alone in its Content or
    // beside a message. Stored in this unit of work, so it commits with the session and the log row:
    // a redelivery of this envelope is a duplicate, and its key must not be lost with it.
    const skdm = content.senderKeyDistributionMessage;
    if (skdm && skdm.length > 0) await this.processSenderKey(sender, skdm, uow);
    const unit = this.learning(uow, sender, effects.profileKey);
    return retry ? { ok: true, effects, unit, retry } : { ok: true, effects, unit };
  }

  /**
   * What the message tells us about its sender is written in the same transaction as its log row
   * (not one more transaction per message); a failure there must not undo the message's commit.
   */
  private learning(uow: UnitOfWork, sender: Sender, profileKey?: Uint8Array): UnitOfWork {
    if (!profileKey && !sender.number) return uow;
    const learned = {
      aci: sender.aci,
      ...(sender.number ? { number: sender.number } : {}),
      ...(profileKey ? { profileKey } : {}),
    };
    return {
      sessions: uow.sessions,
      identities: uow.identities,
      preKeys: uow.preKeys,
      signedPreKeys: uow.signedPreKeys,
      kyberPreKeys: uow.kyberPreKeys,
      senderKeys: uow.senderKeys,
      discard: () => uow.discard(),
      commit: (extra) =>
        uow.commit(() => {
          extra?.();
          try {
            this.opts.store.recordContact(learned);
          } catch (e) {
            this.opts.logger.warn('receiver: could not record contact', e);
          }
        }),
    };
  }

  /**
   * Stores a sender's SenderKeyDistributionMessage. A malformed or unusable one is logged and
   * skipped: the rest of the Content (a message beside it) still counts, and the ratchet step that
   * carried it still commits. A later group message without the key asks for a resend (§6).
   */
  private async processSenderKey(
    sender: Sender,
    bytes: Uint8Array,
    uow: UnitOfWork,
  ): Promise<void> {
    try {
      const skdm = SenderKeyDistributionMessage.deserialize(new Uint8Array(bytes));
      await processSenderKeyDistributionMessage(
        ProtocolAddress.new(sender.aci, sender.device),
        skdm,
        uow.senderKeys,
      );
      this.opts.logger.debug(
        `receiver: stored a sender key of ${sender.aci}.${sender.device} (distribution ${skdm.distributionId()})`,
      );
    } catch (e) {
      this.opts.logger.warn(
        `receiver: ignored a sender key distribution message from ${sender.aci}.${sender.device}`,
        e,
      );
    }
  }

  /**
   * The sender with what the contacts table adds: the number when the envelope does not carry it
   * (only a sealed envelope whose sender shares it does), and the contact's name. DESIGN.md promises
   * the number on every message from a known contact.
   */
  private withContact(sender: Sender): Sender {
    if (!this.opts.store.contactOf) return sender;
    let contact: { number?: string; name?: string } | undefined;
    try {
      contact = this.opts.store.contactOf(sender.aci);
    } catch (e) {
      // Only a nicety: a failed read must not fail the message.
      this.opts.logger.warn('receiver: could not read the contact of a sender', e);
      return sender;
    }
    if (!contact) return sender;
    const number = sender.number ?? contact.number;
    const name = sender.name ?? contact.name;
    if (number === sender.number && name === sender.name) return sender;
    return { ...sender, ...(number ? { number } : {}), ...(name ? { name } : {}) };
  }

  private localAddress(kind: 'aci' | 'pni'): ProtocolAddress {
    const { aci, pni, deviceId } = this.opts.self;
    return ProtocolAddress.new(kind === 'aci' ? aci : `PNI:${pni}`, deviceId);
  }

  private async decryptInner(
    ident: Identified,
    stores: UnitOfWork,
    timestamp: number,
  ): Promise<Uint8Array> {
    const { msgType, sender } = ident;
    const address = ProtocolAddress.new(sender.aci, sender.device);
    const local = this.localAddress(ident.kind);
    const data = new Uint8Array(ident.bytes);
    try {
      switch (msgType) {
        case CiphertextMessageType.Whisper:
          return await signalDecrypt(
            SignalMessage.deserialize(data),
            address,
            local,
            stores.sessions,
            stores.identities,
          );
        case CiphertextMessageType.PreKey:
          return await signalDecryptPreKey(
            PreKeySignalMessage.deserialize(data),
            address,
            local,
            stores.sessions,
            stores.identities,
            stores.preKeys,
            stores.signedPreKeys,
            stores.kyberPreKeys,
          );
        case CiphertextMessageType.SenderKey:
          return await groupDecrypt(address, stores.senderKeys, data);
        case CiphertextMessageType.Plaintext:
          // Plaintext content is a marker byte then an (unencrypted, padded) Content: retry requests.
          return PlaintextContent.deserialize(data).body();
        default:
          throw new DropError('unsupported-type', `inner message type ${msgType}`);
      }
    } catch (e) {
      stores.discard();
      if (e instanceof DropError) throw e;
      if (e instanceof LibSignalErrorBase && e.is(ErrorCode.DuplicatedMessage)) {
        throw new DropError('duplicate', `duplicated message from ${sender.aci}.${sender.device}`);
      }
      // A message we cannot decrypt: ask the sender's device to resend it on a fresh session (§6).
      // A send to that peer: a follow-up, after the lock this runs under is released.
      const retry =
        msgType !== CiphertextMessageType.Plaintext
          ? () => this.requestRetry(msgType, data, sender, timestamp)
          : undefined;
      throw new DropError(
        'decrypt-failed',
        `from ${sender.aci}.${sender.device}: ${(e as Error).message}`,
        retry,
      );
    }
  }

  private async requestRetry(
    msgType: number,
    data: Uint8Array<ArrayBuffer>,
    sender: Sender,
    timestamp: number,
  ): Promise<void> {
    try {
      const request = DecryptionErrorMessage.forOriginal(data, msgType, timestamp, sender.device);
      await this.opts.sendRetryRequest(sender.aci, sender.device, PlaintextContent.from(request));
    } catch (e) {
      this.opts.logger.warn(
        `receiver: could not send a retry request to ${sender.aci}.${sender.device}`,
        e,
      );
    }
  }
}
