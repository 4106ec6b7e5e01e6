/**
 * Sending one Content to a group (issue 16; Signal-Desktop's sendToGroup): with our sender key as
 * one multi-recipient sealed-sender message to every member device that can take it, and 1:1
 * through the Sender to the others.
 *
 * The sender-key path, per send, under the group's lock:
 * 1. Our sender-key state for the group (./sender-key-state.ts): its distribution id, reset when a
 *    member who had the key left or the key is older than 90 days (Desktop's rule).
 * 2. Authorization: a group send token for exactly the recipients (./send-token.ts), else the XOR
 *    of their access keys (members whose profile key we lack then go 1:1). Fewer than 2 such
 *    recipients: everyone goes 1:1, as Desktop does.
 * 3. Sessions with every recipient device (from bundles where there is none), the SKDM 1:1 to the
 *    members with a device that lacks it, then groupEncrypt of the padded Content, the USMC (our
 *    certificate without our number, the content hint, the group id) and
 *    sealedSenderMultiRecipientEncrypt over the recipients' sessions.
 * 4. PUT /v1/messages/multi_recipient. 409: build the missing devices' sessions, drop the extra
 *    ones; 410: drop the stale sessions and their SKDM mark, so they get the key again; then again,
 *    at most `maxRetries` times. 401 (the token or key was refused), 404 (a recipient is not on
 *    Signal) or retries used up: everyone goes 1:1, where each member's own answer says what is
 *    wrong with them.
 */
import crypto from 'node:crypto';
import {
  ContentHint,
  ProtocolAddress,
  SenderKeyDistributionMessage,
  UnidentifiedSenderMessageContent,
  groupEncrypt,
  sealedSenderMultiRecipientEncrypt,
} from '@signalapp/libsignal-client';
import {
  MismatchedDevices,
  MultiRecipientMismatch,
  MultiRecipientStale,
  MultiRecipientUnknown,
  StaleDevices,
  UnidentifiedAccessRejected,
  type MultiRecipientAuth,
  type MultiRecipientOptions,
} from '../api';
import { combineAccessKeys, deriveAccessKey } from '../crypto/access-key';
import { padMessage } from '../crypto/padding';
import { SignalError } from '../errors';
import type { Logger } from '../log';
import type { GroupSendDevice, GroupSendState } from '../store';
import type { GroupRecipientResult } from '../types';
import type { signalservice } from '../../proto';
import { serializeContent } from '../messaging/compose';
import type { ProtocolStores } from '../messaging/decrypt';
import type { KeyedLock } from '../messaging/lock';
import type { Sender, SenderApi } from '../messaging/sender';
import { DeviceSessions } from '../messaging/sessions';
import { groupSendToken } from './send-token';
import type { GroupRecord } from './types';

/** Signal-Desktop's limit on a sender key's age (min of the remote config and 90 days). */
export const SENDER_KEY_MAX_AGE_MS = 90 * 24 * 60 * 60 * 1000;

export interface GroupSendStorePort {
  protocol(kind: 'aci'): ProtocolStores;
  deviceIds(serviceId: string): number[];
  deleteSession(serviceId: string, deviceId: number): void;
  addSent(entry: {
    timestamp: number;
    recipient: string;
    devices: number[];
    content: Uint8Array;
  }): void;
  groupSends: {
    getOrCreate(groupId: string, distributionId: string): GroupSendState;
    reset(groupId: string, ourAddress: string): GroupSendState;
    addDevices(groupId: string, devices: GroupSendDevice[]): void;
    dropDevices(groupId: string, devices: Array<{ serviceId: string; deviceId: number }>): void;
  };
}

export interface GroupSendApi {
  getPreKeyBundles: SenderApi['getPreKeyBundles'];
  sendMultiRecipient(
    payload: Uint8Array,
    opts: MultiRecipientOptions,
  ): Promise<{ uuids404: string[] }>;
}

export interface GroupSenderOptions {
  sender: Pick<Sender, 'sendContent' | 'senderCertificate' | 'nextTimestamp'>;
  store: GroupSendStorePort;
  api: GroupSendApi;
  self: { aci: string; deviceId: number };
  lock: KeyedLock;
  logger: Logger;
  /** The server's zkgroup public params, for group send tokens; null: access keys only. */
  serverPublicParams: Uint8Array | null;
  now?: () => number;
  /** Multi-recipient attempts after 409/410 before everyone goes 1:1 (default 5). */
  maxRetries?: number;
  senderKeyMaxAgeMs?: number;
}

export interface GroupSendRequest {
  group: GroupRecord;
  /** The Content as every member gets it (its DataMessage already carries `groupV2`). */
  content: signalservice.IContent;
  timestamp: number;
  urgent: boolean;
  online?: boolean;
  /** ContentHint: Resendable for data messages, Implicit for typing (Desktop's choices). */
  hint?: ContentHint;
  /** false: not kept in the sent log (typing). */
  log?: boolean;
}

/** One recipient's failure, kept with the error itself for the caller to rethrow. */
export interface GroupSendOutcome {
  results: GroupRecipientResult[];
  errors: unknown[];
}

interface Target {
  aci: string;
  accessKey: Uint8Array | undefined;
  profileKey: Uint8Array | undefined;
  devices: Array<{ deviceId: number; registrationId: number }>;
}

const key = (sid: string, device: number, reg: number) => `${sid}.${device}.${reg}`;

function errorOf(e: unknown): { code: string; message: string } {
  if (e instanceof SignalError) return { code: e.code, message: e.message };
  return { code: 'ERROR', message: e instanceof Error ? e.message : String(e) };
}

export class GroupSender {
  private readonly sessions: DeviceSessions;
  private readonly now: () => number;

  constructor(private readonly opts: GroupSenderOptions) {
    this.sessions = new DeviceSessions(opts);
    this.now = opts.now ?? Date.now;
  }

  /** Sends `req.content` to every member but us; one result per member, failures included. */
  async send(req: GroupSendRequest): Promise<GroupSendOutcome> {
    const self = this.opts.self.aci;
    const recipients = [...new Set(req.group.members.map((m) => m.aci))].filter((a) => a !== self);
    const padded = padMessage(serializeContent(req.content));
    return this.opts.lock.run(`group:${req.group.id}`, async () => {
      const results: GroupRecipientResult[] = [];
      const errors: unknown[] = [];
      let direct = recipients;
      if (recipients.length >= 2) {
        const keyed = await this.senderKeySend(req, recipients, padded);
        results.push(...keyed.results);
        errors.push(...keyed.errors);
        direct = keyed.direct;
      }
      for (const aci of direct) {
        const profileKey = req.group.members.find((m) => m.aci === aci)?.profileKey;
        try {
          const r = await this.opts.sender.sendContent(aci, req.content, req.timestamp, {
            urgent: req.urgent,
            ...(req.online ? { online: true } : {}),
            ...(profileKey ? { profileKey } : {}),
            log: false,
          });
          results.push({ serviceId: aci, devices: r.devices, sealed: r.sealed, via: 'direct' });
        } catch (e) {
          errors.push(e);
          results.push({
            serviceId: aci,
            devices: [],
            sealed: false,
            via: 'direct',
            error: errorOf(e),
          });
        }
      }
      if (req.log !== false && recipients.length > 0)
        this.opts.store.addSent({
          timestamp: req.timestamp,
          recipient: `group:${req.group.id}`,
          devices: [],
          content: padded,
        });
      return { results, errors };
    });
  }

  /** The sender-key state, reset when a member who had our key left, or the key is too old. */
  private stateFor(group: GroupRecord, recipients: readonly string[]): GroupSendState {
    const store = this.opts.store.groupSends;
    const state = store.getOrCreate(group.id, crypto.randomUUID());
    const members = new Set(recipients);
    const left = state.devices.some((d) => !members.has(d.serviceId));
    const old =
      this.now() - state.createdAt > (this.opts.senderKeyMaxAgeMs ?? SENDER_KEY_MAX_AGE_MS);
    if (!left && !old) return state;
    this.opts.logger.info(
      `group send: new sender key for a group (${left ? 'a member left' : 'the key expired'})`,
    );
    return store.reset(group.id, `${this.opts.self.aci}.${this.opts.self.deviceId}`);
  }

  /**
   * The multi-recipient send; what it could not deliver comes back in `direct` (to go 1:1), and a
   * failure it cannot leave to the 1:1 sends (rate limits, a lost connection) is thrown.
   */
  private async senderKeySend(
    req: GroupSendRequest,
    recipients: string[],
    padded: Uint8Array,
  ): Promise<GroupSendOutcome & { direct: string[] }> {
    const { group } = req;
    const profileKeys = new Map<string, Uint8Array>();
    for (const m of group.members) if (m.profileKey) profileKeys.set(m.aci, m.profileKey);
    const useToken = this.tokenFor(group, recipients) !== null;
    const direct = new Set<string>(useToken ? [] : recipients.filter((a) => !profileKeys.has(a)));
    let targets: Target[] = recipients
      .filter((a) => !direct.has(a))
      .map((aci) => {
        const profileKey = profileKeys.get(aci);
        return {
          aci,
          profileKey,
          accessKey: profileKey ? deriveAccessKey(profileKey) : undefined,
          devices: [],
        };
      });
    const all = () => ({ results: [], errors: [], direct: recipients });
    if (targets.length < 2) return all();
    let state = this.stateFor(group, recipients);
    const groups = this.opts.store.groupSends;
    const maxRetries = this.opts.maxRetries ?? 5;
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      targets = await this.withDevices(targets, direct);
      if (targets.length < 2) return all();
      targets = await this.distribute(group.id, state, targets, direct);
      if (targets.length < 2) return all();
      const auth = this.authFor(group, targets);
      if (!auth) return all();
      const payload = await this.encrypt(group, state.distributionId, targets, padded, req.hint);
      try {
        const { uuids404 } = await this.opts.api.sendMultiRecipient(payload, {
          timestamp: req.timestamp,
          online: req.online ?? false,
          urgent: req.urgent,
          auth,
        });
        const gone = new Set(uuids404.map((u) => u.toLowerCase()));
        const results: GroupRecipientResult[] = targets.map((t) =>
          gone.has(t.aci)
            ? {
                serviceId: t.aci,
                devices: [],
                sealed: true,
                via: 'sender-key',
                error: { code: 'NOT_ON_SIGNAL', message: `${t.aci} is not registered on Signal` },
              }
            : {
                serviceId: t.aci,
                devices: t.devices.map((d) => d.deviceId),
                sealed: true,
                via: 'sender-key',
              },
        );
        return { results, errors: [], direct: [...direct] };
      } catch (e) {
        if (e instanceof MultiRecipientMismatch) {
          for (const entry of e.entries) {
            const t = targets.find((x) => x.aci === entry.serviceId.toLowerCase());
            await this.sessions.reconcileDevices(
              entry.serviceId,
              new MismatchedDevices(entry.missingDevices, entry.extraDevices),
              t?.accessKey,
            );
            groups.dropDevices(
              group.id,
              entry.extraDevices.map((deviceId) => ({ serviceId: entry.serviceId, deviceId })),
            );
          }
        } else if (e instanceof MultiRecipientStale) {
          for (const entry of e.entries) {
            const t = targets.find((x) => x.aci === entry.serviceId.toLowerCase());
            await this.sessions.reconcileDevices(
              entry.serviceId,
              new StaleDevices(entry.staleDevices),
              t?.accessKey,
            );
            groups.dropDevices(
              group.id,
              entry.staleDevices.map((deviceId) => ({ serviceId: entry.serviceId, deviceId })),
            );
          }
        } else if (e instanceof UnidentifiedAccessRejected || e instanceof MultiRecipientUnknown) {
          this.opts.logger.info(`group send: multi-recipient refused (${e.message}); sending 1:1`);
          return all();
        } else {
          throw e;
        }
        state = groups.getOrCreate(group.id, state.distributionId);
      }
    }
    this.opts.logger.warn(
      `group send: device lists did not settle after ${maxRetries} retries; 1:1`,
    );
    return all();
  }

  private tokenFor(group: GroupRecord, recipients: readonly string[]): Uint8Array | null {
    const params = this.opts.serverPublicParams;
    if (!params) return null;
    return groupSendToken({
      group,
      selfAci: this.opts.self.aci,
      recipients,
      serverPublicParams: params,
      now: this.now(),
    });
  }

  /** The token for exactly these recipients, else their combined access key, else null. */
  private authFor(group: GroupRecord, targets: Target[]): MultiRecipientAuth | null {
    const token = this.tokenFor(
      group,
      targets.map((t) => t.aci),
    );
    if (token) return { groupSendToken: token };
    const keys = targets.map((t) => t.accessKey);
    if (keys.some((k) => k === undefined)) return null;
    return { accessKey: combineAccessKeys(keys as Uint8Array[]) };
  }

  /**
   * Each target with its devices that have an open session (built from bundles when there is
   * none). A member we cannot reach so (no account, a changed identity) goes 1:1, where the
   * error is reported as theirs.
   */
  private async withDevices(targets: Target[], direct: Set<string>): Promise<Target[]> {
    const out: Target[] = [];
    for (const t of targets) {
      try {
        const devices = await this.opts.lock.run(t.aci, async () => {
          let ids = this.opts.store.deviceIds(t.aci);
          if (ids.length === 0) ids = await this.sessions.establish(t.aci, '*', t.accessKey);
          return this.sessions.withOpenSessions(t.aci, ids, t.accessKey, false);
        });
        if (devices.length === 0) direct.add(t.aci);
        else out.push({ ...t, devices });
      } catch (e) {
        this.opts.logger.info(`group send: no sessions with a member (${errorOf(e).code}); 1:1`);
        direct.add(t.aci);
      }
    }
    return out;
  }

  /**
   * The SKDM, 1:1 (sealed when we have their profile key), to every member with a device that
   * lacks the current key; their devices are then marked as having it. A member it fails for goes
   * 1:1 for this message.
   */
  private async distribute(
    groupId: string,
    state: GroupSendState,
    targets: Target[],
    direct: Set<string>,
  ): Promise<Target[]> {
    const have = new Set(state.devices.map((d) => key(d.serviceId, d.deviceId, d.registrationId)));
    const needing = targets.filter((t) =>
      t.devices.some((d) => !have.has(key(t.aci, d.deviceId, d.registrationId))),
    );
    if (needing.length === 0) return targets;
    const stores = this.opts.store.protocol('aci');
    const local = ProtocolAddress.new(this.opts.self.aci, this.opts.self.deviceId);
    const skdm = await SenderKeyDistributionMessage.create(
      local,
      state.distributionId,
      stores.senderKeys,
    );
    const content = { senderKeyDistributionMessage: skdm.serialize() };
    const failed = new Set<string>();
    for (const t of needing) {
      try {
        // The SKDM's own 409/410 recovery may change the member's devices: they are read again.
        await this.opts.sender.sendContent(t.aci, content, this.opts.sender.nextTimestamp(), {
          urgent: false,
          ...(t.profileKey ? { profileKey: t.profileKey } : {}),
          log: false,
        });
      } catch (e) {
        this.opts.logger.info(`group send: sender key not delivered (${errorOf(e).code}); 1:1`);
        failed.add(t.aci);
        direct.add(t.aci);
      }
    }
    const refreshed = await this.withDevices(
      targets.filter((t) => !failed.has(t.aci)),
      direct,
    );
    this.opts.store.groupSends.addDevices(
      groupId,
      refreshed
        .filter((t) => needing.some((n) => n.aci === t.aci))
        .flatMap((t) =>
          t.devices.map((d) => ({
            serviceId: t.aci,
            deviceId: d.deviceId,
            registrationId: d.registrationId,
          })),
        ),
    );
    return refreshed;
  }

  private async encrypt(
    group: GroupRecord,
    distributionId: string,
    targets: Target[],
    padded: Uint8Array,
    hint: ContentHint | undefined,
  ): Promise<Uint8Array> {
    const stores = this.opts.store.protocol('aci');
    const local = ProtocolAddress.new(this.opts.self.aci, this.opts.self.deviceId);
    const certificate = await this.opts.sender.senderCertificate();
    const ciphertext = await groupEncrypt(
      local,
      distributionId,
      stores.senderKeys,
      new Uint8Array(padded),
    );
    const groupId = new Uint8Array(Buffer.from(group.id, 'base64'));
    const usmc = UnidentifiedSenderMessageContent.new(
      ciphertext,
      certificate,
      hint ?? ContentHint.Resendable,
      groupId,
    );
    const addresses = [...targets]
      .sort((a, b) => (a.aci < b.aci ? -1 : a.aci > b.aci ? 1 : 0))
      .flatMap((t) => t.devices.map((d) => ProtocolAddress.new(t.aci, d.deviceId)));
    return sealedSenderMultiRecipientEncrypt({
      content: usmc,
      recipients: addresses,
      identityStore: stores.identities,
      sessionStore: stores.sessions,
    });
  }
}
