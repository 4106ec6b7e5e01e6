/**
 * Retry receipts both ways (PROTOCOL.md §6). We send one when a known sender's message cannot be
 * decrypted: the DecryptionErrorMessage as plaintext content (envelope type 8), not urgent. We
 * answer one from a peer by archiving the session it names and resending the original from the
 * sent log, or a null message when it is gone, so that a new session is made.
 */
import {
  ProtocolAddress,
  type DecryptionErrorMessage,
  type PlaintextContent,
} from '@signalapp/libsignal-client';
import * as api from '../api';
import type { Logger } from '../log';
import type { ChatRequester } from '../net/types';
import type { SentEntry, SignalStore } from '../store';
import { nullMessage } from './compose';
import { WireType, type Sender } from './sender';

export interface RetryReceiptsOptions {
  store: SignalStore;
  sender: Sender;
  /** The group's members (core/groups): a group message is resent only to a member of it. */
  groupMembers?: (groupId: string) => Promise<string[]>;
  /** The authenticated chat socket. */
  chat: () => ChatRequester;
  logger: Logger;
}

export class RetryReceipts {
  constructor(private readonly opts: RetryReceiptsOptions) {}

  /** Asks `to`.`device` to resend what we could not decrypt. */
  async request(to: string, device: number, plaintext: PlaintextContent): Promise<void> {
    const { store, sender, chat } = this.opts;
    const session = await store
      .protocol('aci')
      .sessions.getSession(ProtocolAddress.new(to, device));
    // The server checks the device's registration id (a mismatch is 410). Without a session we
    // learn it from the device's key bundle: a rare repair path, worth one of their prekeys.
    const registrationId =
      session?.remoteRegistrationId() ??
      (await api.getPreKeyBundles(chat(), to, device)).devices.find((d) => d.deviceId === device)
        ?.registrationId ??
      0;
    await api.sendMessages(chat(), to, {
      messages: [
        {
          type: WireType.PLAINTEXT,
          destinationDeviceId: device,
          destinationRegistrationId: registrationId,
          content: Buffer.from(plaintext.serialize()).toString('base64'),
        },
      ],
      timestamp: sender.nextTimestamp(),
      online: false,
      urgent: false,
    });
    this.opts.logger.info(`sent a retry request to ${to}.${device}`);
  }

  /** A peer could not decrypt something we sent: re-establish the session and resend it. */
  async answer(from: string, device: number, request: DecryptionErrorMessage): Promise<void> {
    const { store, sender, logger } = this.opts;
    // A retry request comes from the device's ACI; the original may have gone to its PNI (a send to
    // `PNI:<uuid>`), logged and with its session under that service id. Two indexed reads.
    const pni = store.contacts.findByServiceId(from)?.pni;
    const group = (): Promise<SentEntry | undefined> => this.groupOriginal(from, device, request);
    const original =
      store.sent.find(from, request.timestamp()) ??
      (pni ? store.sent.find(`PNI:${pni}`, request.timestamp()) : undefined) ??
      (await group());
    const to = original && !original.recipient.startsWith('group:') ? original.recipient : from;
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
      logger.info(`resent message ${original.timestamp} to ${to}.${device} after a retry request`);
    } else {
      await sender.sendContent(to, nullMessage(), sender.nextTimestamp(), {
        urgent: false,
        onlyDevice: device,
        ...sealed,
      });
      logger.info(`sent a null message to ${to}.${device} after a retry request`);
    }
  }

  /**
   * A group message of ours sent at the request's timestamp to a group `from` is a member of (a
   * sender-key message they could not decrypt: most often our sender key never reached that
   * device). It is resent to them 1:1 (its Content still carries the group context, so it shows in
   * the group), and the device is dropped from those holding our sender key, so the next group
   * message brings it the key again, as Signal-Desktop does.
   */
  private async groupOriginal(
    from: string,
    device: number,
    request: DecryptionErrorMessage,
  ): Promise<SentEntry | undefined> {
    const { store, groupMembers, logger } = this.opts;
    if (!groupMembers) return undefined;
    for (const entry of store.sent.findGroupSends(request.timestamp())) {
      const groupId = entry.recipient.slice('group:'.length);
      let members: string[];
      try {
        members = await groupMembers(groupId);
      } catch (e) {
        logger.info(`retry request: group ${groupId} unknown`, e);
        continue;
      }
      if (!members.includes(from)) continue;
      store.groupSends.dropDevices(groupId, [{ serviceId: from, deviceId: device }]);
      return entry;
    }
    return undefined;
  }
}
