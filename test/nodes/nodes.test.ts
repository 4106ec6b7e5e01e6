import assert from 'node:assert/strict';
// The helper ships no types: the few calls used here are typed by hand.
const helper = require('node-red-node-test-helper') as {
  init(runtimePath: string): void;
  settings(s: Record<string, unknown>): void;
  load(nodes: unknown[], flow: unknown[]): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): unknown;
  request(): Agent;
};
/** What the admin routes answer (every field the tests read). */
interface Body {
  state: string;
  url: string;
  qr: string;
  error: { code: string; message: string };
  account: { aci: string; number?: string };
  linked: boolean;
  connected: boolean;
  number: string;
}
interface Req extends Promise<{ body: Body }> {
  send(body: unknown): Req;
  expect(status: number): Promise<{ body: Body }>;
}
interface Agent {
  get(path: string): Req;
  post(path: string): Req;
  delete(path: string): Req;
}
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import inNode = require('../../nodes/signal-in');
import lookupNode = require('../../nodes/signal-lookup');
// Node-RED's own function node, for the echo flow wired in the flow itself.
const functionNode = require('@node-red/nodes/core/function/10-function.js') as unknown;
import { withTimeout } from '../harness/sandbox';
import type { NodeMessage } from '../../nodes/lib/red';
import { poll, freshDataDirPerTest, phonesPerSuite } from './support';

helper.init(require.resolve('node-red'));

interface TestNode {
  receive(msg: NodeMessage): void;
  on(event: string, fn: (arg: never) => void): void;
}

function nextInput(
  node: TestNode,
  match: (m: NodeMessage) => boolean = () => true,
  ms = 10_000,
): Promise<NodeMessage> {
  return withTimeout(
    new Promise((resolve) => node.on('input', (msg: NodeMessage) => match(msg) && resolve(msg))),
    ms,
    'node output',
  );
}

/** The error a node reported through done(err) (the helper spies on node.error). */
function nextError(node: TestNode, ms = 10_000): Promise<Error & { code?: string }> {
  return withTimeout(
    new Promise((resolve) =>
      node.on('call:error', (call: { args: unknown[] }) => resolve(call.args[0] as Error)),
    ),
    ms,
    'node error',
  );
}

describe('nodes (Node-RED test helper, Signal mock server)', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  freshDataDirPerTest('sigflow-nodes-');

  const account = () => ({
    id: 'acct1',
    type: 'signal-account',
    name: 'test',
    server: 'custom',
    serviceUrl: world.sandbox.url,
    caCert: world.sandbox.caCert,
    trustRoots: world.sandbox.trustRoot,
    deviceName: 'Node-RED test',
    identityTrust: 'accept',
  });

  const flow = () => [
    account(),
    { id: 'out1', type: 'signal-out', account: 'acct1', to: '', wires: [['outSink']] },
    {
      id: 'in1',
      type: 'signal-in',
      account: 'acct1',
      types: 'message',
      wires: [['inSink', 'echoFn']],
    },
    // The echo bot, wired: signal-in → function → signal-out, no recipient configured.
    {
      id: 'echoFn',
      type: 'function',
      func: "msg.payload = 'echo: ' + msg.payload;\nreturn msg;",
      outputs: 1,
      wires: [['echoOut']],
    },
    { id: 'echoOut', type: 'signal-out', account: 'acct1', to: '', wires: [['echoSink']] },
    { id: 'echoSink', type: 'helper' },
    { id: 'lookup1', type: 'signal-lookup', account: 'acct1', wires: [['lookupSink']] },
    { id: 'outSink', type: 'helper' },
    { id: 'inSink', type: 'helper' },
    { id: 'lookupSink', type: 'helper' },
  ];

  async function linkThroughAdminRoutes(): Promise<void> {
    const provision = world.sandbox.server.waitForProvision();
    const started = await helper
      .request()
      .post('/signal-account/acct1/link')
      .send({
        server: 'custom',
        serviceUrl: world.sandbox.url,
        caCert: world.sandbox.caCert,
        trustRoots: world.sandbox.trustRoot,
      })
      .expect(202);
    assert.equal(started.body.state, 'waiting');
    const waiting = await poll(
      async () => (await helper.request().get('/signal-account/acct1/link').expect(200)).body,
      (b) => Boolean(b.url && b.qr),
      10_000,
      'QR code',
    );
    assert.match(waiting.qr, /^<svg/);
    assert.match(waiting.url, /^sgnl:\/\/linkdevice\?/);
    await (await provision).complete({ provisionURL: waiting.url, primaryDevice: world.alice });
    const linked = await poll(
      async () => (await helper.request().get('/signal-account/acct1/link').expect(200)).body,
      (b) => b.state === 'linked' || b.state === 'failed',
      20_000,
      'linked',
    );
    assert.equal(linked.state, 'linked', linked.error?.message);
    assert.equal(linked.account.aci, world.alice.device.aci);
    const status = await poll(
      async () => (await helper.request().get('/signal-account/acct1/status').expect(200)).body,
      (b) => b.connected,
      10_000,
      'connected',
    );
    assert.equal(status.linked, true);
    assert.equal(status.number, world.alice.device.number);
  }

  it('Link device again right after a cancel waits for a new scan (not failed) and links', async () => {
    await helper.load([accountNode, outNode, inNode, lookupNode, functionNode], flow());
    const body = {
      server: 'custom',
      serviceUrl: world.sandbox.url,
      caCert: world.sandbox.caCert,
      trustRoots: world.sandbox.trustRoot,
    };
    await helper.request().post('/signal-account/acct1/link').send(body).expect(202);
    await helper.request().delete('/signal-account/acct1/link').expect(200);
    // At once, before the cancelled attempt has wound down inside the deployed node's client.
    const again = await helper.request().post('/signal-account/acct1/link').send(body).expect(202);
    assert.equal(again.body.state, 'waiting');
    await helper.request().delete('/signal-account/acct1/link').expect(200);
    await linkThroughAdminRoutes();
  });

  it('two Link device clicks at once: the later one wins, waiting for a scan, and links', async () => {
    await helper.load([accountNode, outNode, inNode, lookupNode, functionNode], flow());
    const body = {
      server: 'custom',
      serviceUrl: world.sandbox.url,
      caCert: world.sandbox.caCert,
      trustRoots: world.sandbox.trustRoot,
    };
    const [a, b] = await Promise.all([
      helper.request().post('/signal-account/acct1/link').send(body).expect(202),
      helper.request().post('/signal-account/acct1/link').send(body).expect(202),
    ]);
    assert.deepEqual([a.body.state, b.body.state], ['waiting', 'waiting']);
    const now = await helper.request().get('/signal-account/acct1/link').expect(200);
    assert.equal(now.body.state, 'waiting', now.body.error?.message);
    await linkThroughAdminRoutes();
  });

  it('links through the admin routes, then sends, receives, echoes and looks up', async () => {
    await helper.load([accountNode, outNode, inNode, lookupNode, functionNode], flow());
    await linkThroughAdminRoutes();
    const out = helper.getNode('out1') as TestNode;
    const outSink = helper.getNode('outSink') as TestNode;
    const inSink = helper.getNode('inSink') as TestNode;
    const lookupSink = helper.getNode('lookupSink') as TestNode;
    const echoSink = helper.getNode('echoSink') as TestNode;

    // signal-out → Bob
    const sent = nextInput(outSink, (m) => m.payload === 'hello from a flow');
    out.receive({ payload: 'hello from a flow', to: world.bob.device.aci });
    const outMsg = await sent;
    const signal = outMsg.signal as {
      timestamp: number;
      results: Array<{ status: string; serviceId: string; timestamp: number }>;
    };
    assert.equal(signal.results[0]?.status, 'sent');
    assert.equal(signal.results[0]?.serviceId, world.bob.device.aci);
    assert.equal(typeof signal.results[0]?.timestamp, 'number');
    assert.equal(signal.timestamp, signal.results[0]?.timestamp);
    assert.equal(
      (await withTimeout(world.bob.waitForMessage(), 10_000, 'bob')).body,
      'hello from a flow',
    );

    // Bob → signal-in, sealed so his certificate tells us his number
    const acct = await (
      helper.getNode('acct1') as unknown as {
        client(): Promise<import('../../core/client').SignalClient>;
      }
    ).client();
    const a = acct.account;
    assert.ok(a);
    const device = await world.sandbox.server.getDeviceByServiceId(
      a.aci as never,
      a.deviceId as never,
    );
    assert.ok(device);
    await world.bob.addSingleUseKey(device, await device.popSingleUseKey());
    const received = nextInput(inSink);
    const echoed = nextInput(echoSink, (m) => m.payload === 'echo: ping');
    const sentAt = Date.now();
    await world.bob.sendText(device, 'ping', {
      sealed: true,
      withProfileKey: true,
      timestamp: sentAt,
    });
    const inMsg = await received;
    assert.equal(inMsg.payload, 'ping');
    assert.equal(inMsg.to, world.bob.device.aci);
    assert.equal(inMsg.topic, world.bob.device.number);
    // The whole documented msg.signal (DESIGN.md "Node contracts"), nothing more.
    const s = inMsg.signal as Record<string, unknown> & { from: Record<string, unknown> };
    const { name, ...from } = s.from;
    assert.deepEqual(from, {
      aci: world.bob.device.aci,
      number: world.bob.device.number,
      device: world.bob.device.deviceId,
    });
    if (name !== undefined) assert.equal(name, 'Bob');
    const { serverTimestamp, ...rest } = s;
    assert.deepEqual(rest, { type: 'message', from: s.from, timestamp: sentAt, sealed: true });
    assert.equal(typeof serverTimestamp, 'number');
    assert.ok(
      Math.abs((serverTimestamp as number) - sentAt) < 60_000,
      `serverTimestamp ${String(serverTimestamp)} is when the server took the message`,
    );

    // echo: the wired signal-in → function → signal-out answers Bob with no configuration
    const echoMsg = await echoed;
    assert.equal(
      (echoMsg.signal as { results: Array<{ serviceId: string }> }).results[0]?.serviceId,
      world.bob.device.aci,
    );
    assert.equal(
      (await withTimeout(world.bob.waitForMessage(), 10_000, 'echo')).body,
      'echo: ping',
    );

    // signal-lookup resolves Bob's number from what the account learned
    const looked = nextInput(lookupSink);
    (helper.getNode('lookup1') as TestNode).receive({ payload: [world.bob.device.number] });
    const lookupMsg = await looked;
    assert.deepEqual(lookupMsg.payload, [
      { number: world.bob.device.number, aci: world.bob.device.aci, pni: null, registered: true },
    ]);
    assert.deepEqual((lookupMsg.signal as { lookup: unknown }).lookup, {
      source: 'contacts',
      sources: ['contacts'],
    });
    const lookedOne = nextInput(lookupSink);
    (helper.getNode('lookup1') as TestNode).receive({ payload: world.bob.device.number });
    const oneMsg = await lookedOne;
    assert.equal((oneMsg.payload as { number: string }).number, world.bob.device.number);
    assert.deepEqual((oneMsg.signal as { lookup: unknown }).lookup, {
      source: 'contacts',
      sources: ['contacts'],
    });

    // A number the mock server cannot resolve fails the whole lookup (the engine's choice); the
    // error names it and says the other number was not answered either.
    const unknownNumber = '+15550009999';
    const lookupErr = nextError(helper.getNode('lookup1') as TestNode);
    (helper.getNode('lookup1') as TestNode).receive({
      payload: [world.bob.device.number, unknownNumber],
    });
    const le = await lookupErr;
    assert.equal(le.code, 'CDSI_UNAVAILABLE');
    assert.ok(le.message.includes(unknownNumber), le.message);
    assert.ok(!le.message.includes(String(world.bob.device.number)), le.message);
    assert.match(le.message, /the other 1 up without it/);

    // every documented bad input: a clear error through done(err), and the node keeps working
    const cases: Array<[NodeMessage, string, RegExp]> = [
      [{ payload: '', to: world.bob.device.aci }, 'INVALID_INPUT', /empty/],
      [{ payload: { a: 1 }, to: world.bob.device.aci }, 'INVALID_INPUT', /must be text.*object/],
      [{ payload: 'x', to: '+12' }, 'INVALID_NUMBER', /"\+12"/],
      [{ payload: 'x' }, 'INVALID_INPUT', /No recipient/],
    ];
    for (const [msg, code, re] of cases) {
      const err = nextError(out);
      out.receive(msg);
      const e = await err;
      assert.equal(e.code, code, `${JSON.stringify(msg)} → ${e.message}`);
      assert.match(e.message, re);
    }
    const dave = await world.sandbox.createPrimary({ profileName: 'Dave' });
    world.sandbox.server.unregister(dave);
    const unknown = nextError(out);
    out.receive({ payload: 'x', to: dave.device.aci });
    assert.equal((await unknown).code, 'NOT_ON_SIGNAL');
    const still = nextInput(outSink, (m) => m.payload === 'still working');
    out.receive({ payload: 'still working', to: [world.bob.device.aci] });
    assert.equal(
      ((await still).signal as { results: Array<{ status: string }> }).results[0]?.status,
      'sent',
    );
    assert.equal(
      (await withTimeout(world.bob.waitForMessage(), 10_000, 'after errors')).body,
      'still working',
    );
  });

  it('reports NOT_LINKED for an account that was never linked, and 404/400 on bad admin requests', async () => {
    await helper.load([accountNode, outNode, inNode, lookupNode, functionNode], flow());
    const out = helper.getNode('out1') as TestNode;
    const err = nextError(out);
    out.receive({ payload: 'hi', to: world.bob.device.aci });
    const e = await err;
    assert.equal(e.code, 'NOT_LINKED');
    const none = await helper.request().delete('/signal-account/acct1/link').expect(404);
    assert.deepEqual(none.body.error, { code: 'NOT_FOUND', message: 'No link in progress' });
    const bad = await helper
      .request()
      .post('/signal-account/acct1/link')
      .send({ server: 'moon' })
      .expect(400);
    assert.equal(bad.body.error.code, 'INVALID_INPUT');
    assert.match(bad.body.error.message, /Unknown server "moon"/);
    const badCustom = await helper
      .request()
      .post('/signal-account/other/link')
      .send({ server: 'custom', serviceUrl: 'http://x' })
      .expect(400);
    assert.match(badCustom.body.error.message, /https/);
    const status = await helper.request().get('/signal-account/acct1/status').expect(200);
    assert.deepEqual(status.body, { linked: false, connected: false, state: 'idle' });
  });
});
