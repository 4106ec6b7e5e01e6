import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CiphertextMessageType,
  DecryptionErrorMessage,
  ProtocolAddress,
  signalEncrypt,
  type CiphertextMessage,
} from '@signalapp/libsignal-client';
import { SignalClient, type ClientPorts, type SignalClientOptions } from '../../core/client';
import type { KeyedLock } from '../../core/messaging/lock';
import { Receiver, type ReceiverOptions } from '../../core/messaging/receiver';
import type { SenderApi } from '../../core/messaging/sender';
import { PersistentChat } from '../../core/net/persistent';
import { SignalStore } from '../../core/store';
import { startSandbox, withTimeout, type PrimaryDevice, type Sandbox } from '../harness/sandbox';
import type { Logger } from '../../core/log';
import { introduce, type MockDevice } from '../harness/mock-phone';

export { withTimeout };

/** Collects log lines (for the no-secrets checks) and prints them with SIGFLOW_TEST_LOG=1. */
export function captureLogger(lines: string[] = []): Logger & { lines: string[] } {
  const log =
    (level: string) =>
    (msg: string, ...meta: unknown[]) => {
      const line = `${level} ${msg} ${meta.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).join(' ')}`;
      lines.push(line);
      if (process.env.SIGFLOW_TEST_LOG) console.log(line);
    };
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

export interface Linked {
  client: SignalClient;
  primary: PrimaryDevice;
  dataFile: string;
}

export function tempDataFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-it-'));
  return path.join(dir, 'account.db');
}

/** Where the current receiver sends from: replace one to fault or watch it from then on. */
export interface ReceiverCalls {
  sendRetryRequest: ReceiverOptions['sendRetryRequest'];
  sendDeliveryReceipt: NonNullable<ReceiverOptions['sendDeliveryReceipt']>;
}

/**
 * What a client built through its ports (core/account/ports.ts): each getter gives the current
 * part (the last one made), or null before it was made. Tests read and patch these instead of the
 * client's private fields.
 */
export interface ClientParts {
  /** The account's store while it is open; null before it is opened and once it is closed. */
  store(): SignalStore | null;
  /** Every store the client opened, in order, closed or not (close() must close them all). */
  readonly stores: SignalStore[];
  /** The authenticated chat socket (its connections, dropConnection(), REST calls over it). */
  chat(): PersistentChat | null;
  receiver(): Receiver | null;
  /** The per-peer lock the receiver shares with the sender. */
  lock(): KeyedLock | null;
  /** The receiver's outgoing calls (retry requests, delivery receipts), replaceable. */
  receiverCalls(): ReceiverCalls | null;
  /** The REST calls the sender makes: replace a method to spy on or fault them from then on. */
  senderApi(): SenderApi | null;
}

const inspected = new WeakMap<SignalClient, ClientParts>();

/** The parts of a client opened by openClient, linkClient or openInspected. */
export function inspect(client: SignalClient): ClientParts {
  const parts = inspected.get(client);
  assert.ok(parts, 'a client opened through openClient, linkClient or openInspected');
  return parts;
}

/** Ports that build the real parts and keep them for inspect(). */
function capturingPorts(): { ports: ClientPorts; parts: ClientParts } {
  const stores: SignalStore[] = [];
  let chat: PersistentChat | null = null;
  let receiver: { receiver: Receiver; lock: KeyedLock | null; calls: ReceiverCalls } | null = null;
  let senderApi: SenderApi | null = null;
  const ports: ClientPorts = {
    openStore: (file, options) => {
      const store = SignalStore.open(file, options);
      stores.push(store);
      return store;
    },
    chat: (options) => {
      const made = new PersistentChat(options);
      if (options.auth) chat = made;
      return made;
    },
    receiver: (options) => {
      const { sendRetryRequest, sendDeliveryReceipt } = options;
      // A session always sends receipts; a receiver without them would have nothing to replace.
      assert.ok(sendDeliveryReceipt, 'the session gives its receiver a receipt sender');
      const calls: ReceiverCalls = { sendRetryRequest, sendDeliveryReceipt };
      const made = new Receiver({
        ...options,
        sendRetryRequest: (to, device, plaintext) => calls.sendRetryRequest(to, device, plaintext),
        sendDeliveryReceipt: (to, timestamps) => calls.sendDeliveryReceipt(to, timestamps),
      });
      receiver = { receiver: made, lock: options.lock ?? null, calls };
      return made;
    },
    // A copy of its own that the sender calls through, for tests to replace methods on.
    senderApi: (api) => (senderApi = { ...api }),
  };
  const parts: ClientParts = {
    store: () => {
      const last = stores.at(-1);
      return last?.db.open ? last : null;
    },
    stores,
    chat: () => chat,
    receiver: () => receiver?.receiver ?? null,
    lock: () => receiver?.lock ?? null,
    receiverCalls: () => receiver?.calls ?? null,
    senderApi: () => senderApi,
  };
  return { ports, parts };
}

/**
 * SignalClient.open (or `open`, another opener such as the original of a wrapped one) with ports
 * that keep the parts for inspect(client).
 */
export async function openInspected(
  options: SignalClientOptions,
  open: (options: SignalClientOptions) => Promise<SignalClient> = (o) => SignalClient.open(o),
): Promise<SignalClient> {
  const { ports, parts } = capturingPorts();
  // Ports the caller gave that capturing does not build (group state) are kept.
  const client = await open({ ...options, ports: { ...options.ports, ...ports } });
  inspected.set(client, parts);
  return client;
}

export async function openClient(
  sandbox: Sandbox,
  dataFile: string,
  extra: Partial<SignalClientOptions> = {},
): Promise<SignalClient> {
  const client = await openInspected({
    dataFile,
    environment: sandbox.environment,
    deviceName: 'Node-RED test',
    ...(process.env.SIGFLOW_TEST_LOG ? { logger: captureLogger() } : {}),
    ...extra,
  });
  sandbox.track(client);
  return client;
}

/** Links a new client to `primary` the way a user scanning the QR code would. */
export async function linkClient(
  sandbox: Sandbox,
  primary: PrimaryDevice,
  extra: Partial<SignalClientOptions> = {},
): Promise<Linked> {
  const dataFile = tempDataFile();
  const client = await openClient(sandbox, dataFile, extra);
  const provision = sandbox.server.waitForProvision();
  let firstUrl!: (url: string) => void;
  const url = new Promise<string>((resolve) => (firstUrl = resolve));
  const linking = client.link({ onUrl: (u) => firstUrl(u) });
  // The phone's side is part of the result: the mock's provision.complete() resolving (with the
  // device it made) is what says it accepted the link; a hang or rejection there fails the test.
  const completing = Promise.all([provision, url]).then(([p, provisionURL]) =>
    p.complete({ provisionURL, primaryDevice: primary }),
  );
  const [, device] = await withTimeout(Promise.all([linking, completing]), 20_000, 'linking');
  if (!device) throw new Error('linking: provision.complete() resolved without a device');
  return { client, primary, dataFile };
}

export { startSandbox };
export type { Sandbox, PrimaryDevice };

/** A fresh sandbox per test: Alice linked to a new client, Bob (her contact) able to write to it. */
export interface LinkedWithBob {
  sandbox: Sandbox;
  alice: PrimaryDevice;
  bob: PrimaryDevice;
  client: SignalClient;
  /** Our device as the mock knows it: the target of Bob's sends. */
  device: MockDevice;
}

/** Sets up LinkedWithBob before each test and closes its sandbox after. Call inside a describe(). */
export function linkedWithBobPerTest(): LinkedWithBob {
  const world = {} as LinkedWithBob;
  beforeEach(async () => {
    world.sandbox = await startSandbox();
    world.bob = await world.sandbox.createPrimary({ profileName: 'Bob' });
    world.alice = await world.sandbox.createPrimary({
      profileName: 'Alice',
      contacts: [world.bob],
    });
    world.client = (await linkClient(world.sandbox, world.alice)).client;
    world.device = await introduce(world.sandbox, world.client, world.bob);
  });
  afterEach(async () => {
    await world.sandbox?.close();
  });
  return world;
}

/**
 * Our session's next ciphertext to `to`.1, from the client's own store: well-formed, on our current
 * ratchet, and undecryptable by anyone but `to` (so, handed in as if from `to`, by us too).
 */
export async function ourNextCiphertext(
  client: SignalClient,
  to: string,
): Promise<CiphertextMessage> {
  const store = inspect(client).store();
  const account = client.account;
  assert.ok(store && account);
  const p = store.protocol('aci');
  return signalEncrypt(
    new Uint8Array([1]),
    ProtocolAddress.new(to, 1),
    ProtocolAddress.new(account.aci, account.deviceId),
    p.sessions,
    p.identities,
  );
}

/** A DecryptionErrorMessage for our message `timestamp`, naming the ratchet of our session `to`.1. */
export async function retryRequestFor(
  client: SignalClient,
  to: string,
  timestamp: number,
): Promise<DecryptionErrorMessage> {
  const probe = await ourNextCiphertext(client, to);
  return DecryptionErrorMessage.forOriginal(
    probe.serialize(),
    probe.type() as CiphertextMessageType,
    timestamp,
    client.account?.deviceId ?? 0,
  );
}
