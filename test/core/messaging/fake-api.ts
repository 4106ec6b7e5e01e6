/**
 * The send path over real libsignal sessions with a fake network: Alice's Sender talks to a
 * SenderApi that serves real prekey bundles from Bob's store (test/core/store/helpers) and answers
 * PUTs from a script. Bob decrypts what was sent with his own store, so a "success" is a real one.
 */
import path from 'node:path';
import {
  IdentityKeyPair,
  PreKeySignalMessage,
  PrivateKey,
  ProtocolAddress,
  SenderCertificate,
  ServerCertificate,
  SignalMessage,
  signalDecrypt,
  signalDecryptPreKey,
} from '@signalapp/libsignal-client';
import { unpadMessage } from '../../../core/crypto/padding';
import { KeyedLock } from '../../../core/messaging/lock';
import type { BundleResponse, DeviceBundle, OutgoingMessage } from '../../../core/api';
import {
  Sender,
  WireType,
  type SenderApi,
  type SenderOptions,
} from '../../../core/messaging/sender';
import type { SignalStore, SignalStoreOptions } from '../../../core/store';
import { Content } from '../../../proto';
import { captureLogger } from '../../integration/helpers';
import { makeAccount, publishKeys } from '../store/helpers';

export interface GetCall {
  serviceId: string;
  device: number | '*';
  sealed: boolean;
}

export interface PutCall {
  serviceId: string;
  messages: OutgoingMessage[];
  timestamp: number;
  sealed: boolean;
}

/** Answers for the next calls, in order; `null` lets the call through. */
type Script = Array<Error | null>;

export class FakeApi implements SenderApi {
  readonly gets: GetCall[] = [];
  readonly puts: PutCall[] = [];
  certificateFetches = 0;
  /** Scripted failures of the next getPreKeyBundles calls (after it is recorded). */
  getScript: Script = [];
  /** Scripted answers of the next sendMessages calls. */
  putScript: Script = [];
  /** Per device: a function throwing for that device's single-device fetch (e.g. 404: gone). */
  deviceFailure = new Map<number, () => Error>();
  certificateExpiresIn = 24 * 3600 * 1000;

  constructor(
    /** Bob's devices: each a store of its own (same ACI and identity key, its own prekeys). */
    readonly devices: () => SignalStore[],
    private readonly certificate: (expires: number) => Uint8Array,
    private readonly now: () => number,
    /** Alice's own account: she is its only device, so sync transcripts go nowhere. */
    private readonly self: { aci: string; identityKey: Uint8Array },
  ) {}

  async getPreKeyBundles(
    serviceId: string,
    device: number | '*',
    accessKey?: Uint8Array,
  ): Promise<BundleResponse> {
    if (serviceId === this.self.aci) return { identityKey: this.self.identityKey, devices: [] };
    this.gets.push({ serviceId, device, sealed: accessKey !== undefined });
    const scripted = this.getScript.shift();
    if (scripted) throw scripted;
    if (device !== '*') {
      const fail = this.deviceFailure.get(device);
      if (fail) throw fail();
    }
    const stores = this.devices().filter(
      (s) => device === '*' || s.requireAccount().deviceId === device,
    );
    const bundles = stores.map((s) => publishKeys(s).bundle);
    const first = bundles[0];
    if (!first) throw new Error(`no device ${device}`);
    return {
      identityKey: first.identityKey().serialize(),
      devices: bundles.map((b): DeviceBundle => ({
        deviceId: b.deviceId(),
        registrationId: b.registrationId(),
        preKey: (() => {
          const id = b.preKeyId();
          const key = b.preKeyPublic();
          return id !== null && key ? { keyId: id, publicKey: key.serialize() } : null;
        })(),
        signedPreKey: {
          keyId: b.signedPreKeyId(),
          publicKey: b.signedPreKeyPublic().serialize(),
          signature: b.signedPreKeySignature(),
        },
        pqPreKey: {
          keyId: b.kyberPreKeyId(),
          publicKey: b.kyberPreKeyPublic().serialize(),
          signature: b.kyberPreKeySignature(),
        },
      })),
    };
  }

  async sendMessages(
    serviceId: string,
    body: { messages: OutgoingMessage[]; timestamp: number },
    accessKey?: Uint8Array,
  ): Promise<void> {
    this.puts.push({
      serviceId,
      messages: body.messages,
      timestamp: body.timestamp,
      sealed: accessKey !== undefined,
    });
    const scripted = this.putScript.shift();
    if (scripted) throw scripted;
  }

  async getSenderCertificate(): Promise<Uint8Array> {
    this.certificateFetches++;
    return this.certificate(this.now() + this.certificateExpiresIn);
  }
}

export interface Pair {
  alice: SignalStore;
  bob: SignalStore;
  /** Bob's further devices (device ids 2, 3, ...), sharing his ACI and identity. */
  bobDevices: SignalStore[];
  aliceAci: string;
  bobAci: string;
  api: FakeApi;
  sender: Sender;
  sleeps: number[];
  lines: string[];
  clock: { now: number };
  /** Bob's device `deviceId` decrypts an unsealed message and returns the Content. */
  decrypt(message: OutgoingMessage, recipient?: string): Promise<Content>;
  /** Bob reinstalls: same ACI, a new identity key and registration id, no sessions. */
  reinstallBob(): void;
  /** Gives Bob a further linked device (same ACI and identity). */
  addBobDevice(deviceId: number): SignalStore;
  close(): void;
}

export function makePair(
  dir: string,
  opts: {
    alice?: SignalStoreOptions;
    sender?: Partial<
      Pick<SenderOptions, 'maxRateLimitRetries' | 'maxRateLimitWaitSeconds' | 'maxDeviceRetries'>
    >;
  } = {},
): Pair {
  const alice = makeAccount(path.join(dir, 'alice.db'), opts.alice);
  const bob = makeAccount(path.join(dir, 'bob.db'));
  const bobDevices: SignalStore[] = [];
  const aliceAci = alice.requireAccount().aci;
  const bobAci = bob.requireAccount().aci;
  const clock = { now: 1_700_000_000_000 };
  const trustRoot = PrivateKey.generate();
  const serverKey = PrivateKey.generate();
  const serverCert = ServerCertificate.new(1, serverKey.getPublicKey(), trustRoot);
  const aliceIdentity = IdentityKeyPair.deserialize(
    new Uint8Array(alice.requireAccount().aciIdentityKeyPair),
  );
  const api = new FakeApi(
    () => [bob, ...bobDevices],
    (expires) =>
      SenderCertificate.new(
        aliceAci,
        null,
        1,
        aliceIdentity.publicKey,
        expires,
        serverCert,
        serverKey,
      ).serialize(),
    () => clock.now,
    { aci: aliceAci, identityKey: aliceIdentity.publicKey.serialize() },
  );
  const sleeps: number[] = [];
  const lines: string[] = [];
  const sender = new Sender({
    store: {
      protocol: (kind) => alice.protocol(kind),
      deviceIds: (sid) => alice.deviceIds(sid),
      deleteSession: (sid, d) => alice.deleteSession(sid, d),
      profileKeyOf: (sid) => alice.contacts.findByServiceId(sid)?.profileKey ?? null,
      addSent: (entry) => alice.sent.add(entry),
    },
    api,
    self: { aci: aliceAci, deviceId: 1, profileKey: null },
    lock: new KeyedLock(),
    logger: captureLogger(lines),
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    now: () => clock.now,
    ...opts.sender,
  });
  const deviceStore = (deviceId: number): SignalStore =>
    deviceId === 1
      ? bob
      : (bobDevices.find((s) => s.requireAccount().deviceId === deviceId) ?? bob);
  return {
    alice,
    bob,
    bobDevices,
    aliceAci,
    bobAci,
    api,
    sender,
    sleeps,
    lines,
    clock,
    async decrypt(message, recipient = bobAci) {
      const store = deviceStore(message.destinationDeviceId);
      const p = store.protocol('aci');
      const from = ProtocolAddress.new(aliceAci, 1);
      const bytes = new Uint8Array(Buffer.from(message.content, 'base64'));
      const local = ProtocolAddress.new(recipient, message.destinationDeviceId);
      let plain: Uint8Array;
      if (message.type === WireType.PREKEY) {
        plain = await signalDecryptPreKey(
          PreKeySignalMessage.deserialize(bytes),
          from,
          local,
          p.sessions,
          p.identities,
          p.preKeys,
          p.signedPreKeys,
          p.kyberPreKeys,
        );
      } else if (message.type === WireType.CIPHERTEXT) {
        plain = await signalDecrypt(
          SignalMessage.deserialize(bytes),
          from,
          local,
          p.sessions,
          p.identities,
        );
      } else {
        throw new Error(`cannot decrypt wire type ${message.type} here`);
      }
      return Content.decode(unpadMessage(plain));
    },
    reinstallBob() {
      bob.account.update({
        aciIdentityKeyPair: IdentityKeyPair.generate().serialize(),
        aciRegistrationId: (bob.requireAccount().aciRegistrationId % 16000) + 1,
      });
      bob.accountChanged();
      bob.deleteSession(aliceAci, 1);
      for (const d of bobDevices.splice(0)) d.close();
    },
    addBobDevice(deviceId) {
      const store = makeAccount(path.join(dir, `bob-${deviceId}.db`));
      const account = bob.requireAccount();
      store.account.update({
        aci: account.aci,
        deviceId,
        aciIdentityKeyPair: account.aciIdentityKeyPair,
      });
      store.accountChanged();
      bobDevices.push(store);
      return store;
    },
    close() {
      for (const s of [alice, bob, ...bobDevices]) s.close();
    },
  };
}
