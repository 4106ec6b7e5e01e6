/** What tests do to the mock server's simulated phones that the mock has no call for. */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { PrivateKey, PublicKey } from '@signalapp/libsignal-client';
import type { SignalClient } from '../../core/client';
import { encryptAttachment } from '../../core/crypto/attachment';
import type { PrimaryDevice, Sandbox } from './sandbox';

/** The mock server's record of a device (ours, as it sees it). */
export type MockDevice = NonNullable<
  Awaited<ReturnType<Sandbox['server']['getDeviceByServiceId']>>
>;

/** Our linked device as the mock server knows it. */
export async function ourDevice(sandbox: Sandbox, client: SignalClient): Promise<MockDevice> {
  const account = client.account;
  assert.ok(account);
  const device = await sandbox.server.getDeviceByServiceId(
    account.aci as never,
    account.deviceId as never,
  );
  assert.ok(device, 'the mock knows our linked device');
  return device;
}

/**
 * A mock phone can write to us only after building a session from one of our one-time keys: it
 * fetches one (the key leaves the server, as a real first contact's fetch does).
 */
export async function introduce(
  sandbox: Sandbox,
  client: SignalClient,
  from: PrimaryDevice,
): Promise<MockDevice> {
  const device = await ourDevice(sandbox, client);
  await from.addSingleUseKey(device, await device.popSingleUseKey());
  return device;
}

/**
 * The phone reinstalls Signal: same ACI, a new identity key and registration id, new prekeys on the
 * server, no sessions. The mock can only change a PNI identity, so its phone's fields are set
 * directly (pinned to mock-server 27.0.0, as test/harness/sandbox.ts is).
 */
export async function reinstallPhone(phone: PrimaryDevice): Promise<void> {
  type IdentityStore = {
    updateIdentityKey(key: PrivateKey): Promise<void>;
    updateLocalRegistrationId(id: number): Promise<void>;
  };
  const internals = phone as unknown as {
    privateKey: PrivateKey;
    publicKey: PublicKey;
    identity: Map<string, IdentityStore>;
    sessions: { sessions: Map<string, unknown> };
  };
  const device = phone.device as unknown as { registrationId: number };
  // The mock carries its own copy of libsignal: keys must come from that copy's classes.
  const key = (internals.privateKey.constructor as typeof PrivateKey).generate();
  internals.privateKey = key;
  internals.publicKey = key.getPublicKey();
  const identity = internals.identity.get('ACI');
  assert.ok(identity, 'the mock phone keeps its ACI identity store under "ACI"');
  await identity.updateIdentityKey(key);
  device.registrationId = (device.registrationId % 16000) + 1;
  await identity.updateLocalRegistrationId(device.registrationId);
  internals.sessions.sessions.clear();
  await phone.device.setKeys(
    'ACI' as never,
    await phone.generateKeys(phone.device, 'ACI' as never),
  );
}

/**
 * The phone sends a file as Signal's apps do (PROTOCOL.md §7): encrypted and padded, stored on the
 * mock's CDN 3 (`storeAttachmentOnCdn`), its AttachmentPointer in a data message to `target`.
 * `pointer` adds to or overrides the pointer's fields, `dataMessage` the message's (e.g. `body`).
 * Returns the CDN key.
 */
export async function sendAttachmentFrom(
  sandbox: Sandbox,
  phone: PrimaryDevice,
  target: MockDevice,
  plain: Uint8Array,
  opts: { pointer?: Record<string, unknown>; dataMessage?: Record<string, unknown> } = {},
): Promise<string> {
  // Loaded here, not at the top: this module is imported by suites that must not load the mock's
  // index early (see test/integration/receive-attachments.test.ts's name).
  const { EMPTY_DATA_MESSAGE } =
    require('@signalapp/mock-server') as typeof import('@signalapp/mock-server');
  const enc = encryptAttachment(plain, crypto.randomBytes(64), { pad: true });
  const cdnKey = `k${crypto.randomBytes(8).toString('hex')}`;
  await sandbox.server.storeAttachmentOnCdn(3, cdnKey, Buffer.from(enc.file));
  await phone.sendRaw(
    target,
    {
      content: {
        dataMessage: {
          ...EMPTY_DATA_MESSAGE,
          timestamp: BigInt(Date.now()),
          attachments: [
            {
              attachmentIdentifier: { cdnKey },
              cdnNumber: 3,
              key: enc.keys,
              digest: enc.digest,
              size: enc.size,
              contentType: 'application/octet-stream',
              ...opts.pointer,
            },
          ],
          ...opts.dataMessage,
        },
      },
      pniSignatureMessage: null,
      senderKeyDistributionMessage: null,
    } as never,
    {} as never,
  );
  return cdnKey;
}
