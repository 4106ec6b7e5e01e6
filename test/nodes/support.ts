/**
 * What the node tests share: the test helper typed by hand (it ships no types), waiting for a node's
 * output, error or status, polling an admin route, and linking an account through the admin routes
 * the way the editor does, with a mock phone approving.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SignalClient } from '../../core/client';
import type { NodeMessage, NodeStatus } from '../../nodes/lib/red';
import { startSandbox, withTimeout, type PrimaryDevice, type Sandbox } from '../harness/sandbox';
import { openInspected } from '../integration/helpers';

/**
 * node-red-node-test-helper hands every node `RED._ = (key) => key`: no catalog, no substitution.
 * Node-RED itself binds each node file's `RED._` to that file's catalog (locales/<lang>/<file>.json
 * beside it, one namespace per node set: loader.js loadNodeLocales). So that tests see the texts a
 * user sees, every node module given to helper.load that has a catalog gets a `RED._` doing the same
 * with en-US; a key missing from its own file's catalog reads `MISSING <key>`, and fails any
 * assertion on the text.
 */
function translated(nodeModule: unknown): unknown {
  if (typeof nodeModule !== 'function') return nodeModule;
  const file = Object.values(require.cache).find((m) => m?.exports === nodeModule)?.filename;
  if (!file) return nodeModule;
  const catalog = path.join(
    path.dirname(file),
    'locales',
    'en-US',
    path.basename(file).replace(/\.js$/, '.json'),
  );
  if (!fs.existsSync(catalog)) return nodeModule;
  const messages = JSON.parse(fs.readFileSync(catalog, 'utf8')) as Record<string, unknown>;
  const _ = (key: string, subs: Record<string, unknown> = {}): string => {
    let v: unknown = messages;
    for (const part of key.split('.')) v = (v as Record<string, unknown> | undefined)?.[part];
    if (typeof v !== 'string') return `MISSING ${key}`;
    return v.replace(/__(\w+)__/g, (all, name: string) =>
      name in subs ? String(subs[name]) : all,
    );
  };
  return (RED: object) =>
    (nodeModule as (red: object) => void)(Object.create(RED, { _: { value: _ } }));
}
{
  const helper = require('node-red-node-test-helper') as {
    load(nodes: unknown, ...rest: unknown[]): Promise<void>;
  };
  const load = helper.load.bind(helper);
  helper.load = (nodes: unknown, ...rest: unknown[]) =>
    load(Array.isArray(nodes) ? nodes.map(translated) : translated(nodes), ...rest);
}

/** A sinon spy call, as far as the tests read it. */
export interface SpyCall {
  args: unknown[];
  thisValue: { id?: string; type?: string } | undefined;
}
interface Spy {
  getCalls(): SpyCall[];
}

export interface Helper {
  init(runtimePath: string): void;
  settings(s: Record<string, unknown>): void;
  load(nodes: unknown[], flow: unknown[]): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): unknown;
  request(): Agent;
  /** The spy on RED.log.log: every log line of the runtime and the nodes, whatever its level. */
  log(): Spy;
  /** Node.prototype, whose status/error/send... are spies while a flow is loaded. */
  _NodePrototype: { status: Spy; error: Spy };
}

/** What the admin routes answer (every field the tests read). */
export interface Body {
  state: string;
  url: string;
  qr: string;
  error?: { code: string; message: string };
  account: { aci: string; number?: string };
  linked: boolean;
  connected: boolean;
  number: string;
}
export interface Req extends Promise<{ body: Body; status: number }> {
  send(body: unknown): Req;
  set(header: string, value: string): Req;
  expect(status: number): Promise<{ body: Body }>;
}
export interface Agent {
  get(path: string): Req;
  post(path: string): Req;
  delete(path: string): Req;
}

export const helper = require('node-red-node-test-helper') as Helper;
helper.init(require.resolve('node-red'));

export interface TestNode {
  id: string;
  name?: string;
  receive(msg: NodeMessage): void;
  on(event: string, fn: (arg: never) => void): void;
  removeListener(event: string, fn: (arg: never) => void): void;
}

export interface AccountTestNode {
  client(): Promise<SignalClient>;
}

/** The next message a node receives (a helper node: the output of the node wired to it). */
export function nextInput(
  node: TestNode,
  match: (m: NodeMessage) => boolean = () => true,
  ms = 10_000,
): Promise<NodeMessage> {
  return withTimeout(
    new Promise((resolve) => {
      const on = (msg: NodeMessage) => {
        if (!match(msg)) return;
        node.removeListener('input', on as (arg: never) => void);
        resolve(msg);
      };
      node.on('input', on as (arg: never) => void);
    }),
    ms,
    'node output',
  );
}

/** The next error a node reports: done(err) and node.error both end in the spied node.error. */
export function nextError(node: TestNode, ms = 10_000): Promise<Error & { code?: string }> {
  return withTimeout(
    new Promise((resolve) => {
      const on = (call: { args: unknown[] }) => {
        node.removeListener('call:error', on as (arg: never) => void);
        resolve(call.args[0] as Error & { code?: string });
      };
      node.on('call:error', on as (arg: never) => void);
    }),
    ms,
    'node error',
  );
}

/** Every status a node has shown since the flow was loaded, oldest first. */
export function statusesOf(id: string): NodeStatus[] {
  return helper._NodePrototype.status
    .getCalls()
    .filter((c) => c.thisValue?.id === id)
    .map((c) => c.args[0] as NodeStatus);
}

export async function poll<T>(
  fn: () => Promise<T>,
  ok: (t: T) => boolean,
  ms: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`${what}: not reached within ${ms} ms (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A signal-account config node for the sandbox's mock server. */
export function accountConfig(sandbox: Sandbox, id: string, name = id): Record<string, unknown> {
  return {
    id,
    type: 'signal-account',
    name,
    server: 'custom',
    serviceUrl: sandbox.url,
    caCert: sandbox.caCert,
    trustRoots: sandbox.trustRoot,
    serverPublicParams: sandbox.environment.serverPublicParams,
    deviceName: 'Node-RED test',
    identityTrust: 'accept',
  };
}

/**
 * Links account `id` through the admin routes as the editor does: POST, poll until the QR code is
 * there, let `phone` approve the provisioning URL, poll until linked and connected. Returns the
 * provisioning URL (the secrets test searches the logs for it).
 */
export async function linkThroughAdminRoutes(
  sandbox: Sandbox,
  id: string,
  phone: PrimaryDevice,
): Promise<{ url: string }> {
  const provision = sandbox.server.waitForProvision();
  const started = await helper
    .request()
    .post(`/signal-account/${id}/link`)
    .send({
      server: 'custom',
      serviceUrl: sandbox.url,
      caCert: sandbox.caCert,
      trustRoots: sandbox.trustRoot,
      serverPublicParams: sandbox.environment.serverPublicParams,
    })
    .expect(202);
  assert.equal(started.body.state, 'waiting');
  const waiting = await poll(
    async () => (await helper.request().get(`/signal-account/${id}/link`).expect(200)).body,
    (b) => Boolean(b.url && b.qr),
    10_000,
    'QR code',
  );
  assert.match(waiting.qr, /^<svg/);
  assert.match(waiting.url, /^sgnl:\/\/linkdevice\?/);
  await (await provision).complete({ provisionURL: waiting.url, primaryDevice: phone });
  const linked = await poll(
    async () => (await helper.request().get(`/signal-account/${id}/link`).expect(200)).body,
    (b) => b.state === 'linked' || b.state === 'failed',
    20_000,
    'linked',
  );
  assert.equal(linked.state, 'linked', linked.error?.message);
  await poll(
    async () => (await helper.request().get(`/signal-account/${id}/status`).expect(200)).body,
    (b) => b.connected,
    10_000,
    'connected',
  );
  return { url: waiting.url };
}

/**
 * Per test: a fresh signal data folder for the test helper's Node-RED (signalAccountDataDir); after
 * the test, its flows are unloaded and the folder removed. Call inside a describe().
 */
export function freshDataDirPerTest(prefix: string): { readonly dir: string } {
  const state = { dir: '' };
  beforeEach(() => {
    state.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    helper.settings({ signalAccountDataDir: state.dir });
  });
  afterEach(async () => {
    await helper.unload();
    fs.rmSync(state.dir, { recursive: true, force: true });
  });
  return state;
}

/** What the node suites share: one sandbox with the phones Bob and Alice (Bob among her contacts). */
export interface Phones {
  sandbox: Sandbox;
  alice: PrimaryDevice;
  bob: PrimaryDevice;
}

/**
 * Per describe: starts the sandbox and its two phones before the suite and closes it after. The
 * fields are filled once the suite's before() hook has run. Call inside a describe().
 */
export function phonesPerSuite(): Phones {
  const world = {} as Phones;
  before(async () => {
    world.sandbox = await startSandbox();
    world.bob = await world.sandbox.createPrimary({ profileName: 'Bob' });
    world.alice = await world.sandbox.createPrimary({
      profileName: 'Alice',
      contacts: [world.bob],
    });
  });
  after(async () => {
    await world.sandbox?.close();
  });
  return world;
}

/**
 * For the suite it is called in: every client a signal-account node opens gets the test ports, so
 * that `inspect(await node.client())` (test/integration/helpers.ts) gives its store and sockets.
 * The node has no API for this: SignalClient.open is wrapped for the suite instead.
 */
export function inspectNodeClients(): void {
  const open = SignalClient.open.bind(SignalClient);
  before(() => {
    SignalClient.open = (options) => openInspected(options, open);
  });
  after(() => {
    SignalClient.open = open;
  });
}
