/**
 * Linking as a secondary device (PROTOCOL.md §3): linkWithPhone runs the provisioning state machine
 * (provisioning/linker.ts) over its socket; linkAsNewDevice is its second half (step 5), from the
 * phone's ProvisionMessage to a device Signal knows: it takes the identities the phone sent,
 * generates this device's keys and credentials, and answers `PUT /v1/devices/link` on an
 * unauthenticated socket. The caller saves what it returns (core/account/new-account.ts).
 */
import { IdentityKeyPair, PrivateKey, PublicKey } from '@signalapp/libsignal-client';
import * as api from '../api';
import { deviceCapabilities } from '../account/capabilities';
import {
  generateAccountKeys,
  signedKeyUploads,
  type NewAccountKeys,
  type NewAccountRecord,
} from '../account/new-account';
import { environmentKey, type Environment } from '../config';
import { encryptDeviceName } from '../crypto/device-name';
import { CancelledError, ProtocolError } from '../errors';
import type { Logger } from '../log';
import { ChatConnection } from '../net/connection';
import type { ProvisionMessage } from '../../proto';
import { decryptProvisionEnvelope } from '../crypto/provisioning';
import type { AccountInfo } from '../types';
import { Linker, provisionedIdentifiers, type LinkState } from './linker';

export interface CompleteLinkOptions {
  environment: Environment;
  logger: Logger;
  deviceName: string;
  /** Aborts until the PUT is sent; after it the phone lists this device, and linking finishes. */
  signal: AbortSignal;
}

export async function linkAsNewDevice(
  opts: CompleteLinkOptions,
  message: ProvisionMessage,
): Promise<{ record: NewAccountRecord; keys: NewAccountKeys; deviceId: number }> {
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
  const keys = generateAccountKeys(aciIdentity, pniIdentity);
  const { signal } = opts;

  // Until the PUT is sent nothing exists anywhere: a cancel (or close()) ends the link as
  // cancelled, as a CancelledError the linker reports as such, with no account file.
  const cancelled = () => new CancelledError('Linking');
  if (signal.aborted) throw cancelled();
  let unauth: ChatConnection;
  try {
    unauth = await ChatConnection.open({
      env: opts.environment,
      path: '/v1/websocket/',
      logger: opts.logger,
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
      password: keys.password,
      verificationCode: message.provisioningCode,
      accountAttributes: {
        fetchesMessages: true,
        registrationId: keys.registrationId,
        pniRegistrationId: keys.pniRegistrationId,
        name: encryptDeviceName(opts.deviceName, aciIdentity.publicKey),
        capabilities: deviceCapabilities(),
      },
      ...signedKeyUploads(keys),
    });
  } finally {
    unauth.close();
  }
  return {
    deviceId: linked.deviceId,
    keys,
    record: {
      aci: linked.aci,
      pni: linked.pni || pni,
      number: message.number || null,
      deviceId: linked.deviceId,
      aciIdentity,
      pniIdentity,
      profileKey: message.profileKey?.length ? new Uint8Array(message.profileKey) : null,
      masterKey: message.masterKey?.length ? new Uint8Array(message.masterKey) : null,
      accountEntropyPool: message.accountEntropyPool || null,
      environment: environmentKey(opts.environment),
      deviceName: opts.deviceName,
    },
  };
}

export interface LinkWithPhoneOptions extends CompleteLinkOptions {
  /** Each `sgnl://linkdevice` URL to show as a QR code (a secret: never log it). */
  onUrl: (url: string) => void;
  onState: (state: LinkState) => void;
  /** Saves the linked device's account and finishes it (connect, keys, contacts). */
  finish: (linked: Awaited<ReturnType<typeof linkAsNewDevice>>) => Promise<AccountInfo>;
}

/**
 * The whole link (§3): the provisioning socket and its QR code URL, the phone's ProvisionMessage,
 * this device made known to Signal, then `finish`. Resolves with the account once linked.
 */
export function linkWithPhone(opts: LinkWithPhoneOptions): Promise<AccountInfo> {
  const { environment, logger, signal } = opts;
  const linker = new Linker(
    {
      openProvisioningSocket: async (handler) => {
        const conn = await ChatConnection.open({
          env: environment,
          path: '/v1/websocket/provisioning/',
          handler,
          logger,
          keepalive: false,
          signal,
        });
        return { closed: conn.closed.then(() => undefined), close: () => conn.close() };
      },
      decrypt: (ephemeral, envelope) => decryptProvisionEnvelope(ephemeral, envelope),
      // From the PUT on the phone lists this device: finish even if cancelled (see linker.ts).
      complete: async (message) => opts.finish(await linkAsNewDevice(opts, message)),
    },
    { signal, logger },
  );
  linker.on('url', (url: string) => opts.onUrl(url));
  linker.on('state', (s: LinkState) => opts.onState(s));
  return linker.run();
}
