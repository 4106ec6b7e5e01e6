/**
 * Sessions with a recipient's devices, for the send path (PROTOCOL.md §5): built from prekey bundles
 * (their identity key recorded first), opened again for a device whose session a retry request
 * archived (§6), and the device list brought in line with the server's after a 409 (missing or extra
 * devices) or a 410 (stale sessions).
 */
import {
  ErrorCode,
  KEMPublicKey,
  LibSignalErrorBase,
  PreKeyBundle,
  ProtocolAddress,
  PublicKey,
  processPreKeyBundle,
} from '@signalapp/libsignal-client';
import type { BundleResponse, DeviceBundle, MismatchedDevices } from '../api';
import { StaleDevices } from '../api';
import { IdentityChangedError, NotOnSignalError } from '../errors';
import type { Logger } from '../log';
import type { ProtocolStores } from './decrypt';
import type { KeyedLock } from './lock';

export interface SessionsOptions {
  store: {
    protocol(kind: 'aci'): ProtocolStores;
    deleteSession(serviceId: string, deviceId: number): void;
  };
  api: {
    getPreKeyBundles(
      serviceId: string,
      device: number | '*',
      accessKey?: Uint8Array,
    ): Promise<BundleResponse>;
  };
  self: { aci: string; deviceId: number };
  lock: KeyedLock;
  logger: Logger;
}

/** libsignal's refusal to use a changed identity (block policy) becomes IDENTITY_CHANGED. */
export function mapEncryptError(err: unknown, serviceId: string): unknown {
  if (err instanceof LibSignalErrorBase && err.is(ErrorCode.UntrustedIdentity)) {
    return new IdentityChangedError(serviceId);
  }
  return err;
}

export class DeviceSessions {
  constructor(private readonly opts: SessionsOptions) {}

  /** After a 409/410 (§5): drops the sessions the server named and builds the missing ones. */
  async reconcileDevices(
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
  async establish(
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

  /**
   * A device whose session was archived (a retry request named our current ratchet, §6) still has a
   * session row but no open session: encrypting to it fails. Build a fresh session from a new prekey
   * bundle, as Signal's clients do for any device without an open session. `strict`: a failure to
   * build one is the send's failure (a resend to that one device); otherwise the device is left out
   * and the server's 409 names it if it still exists.
   */
  async withOpenSessions(
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
}
