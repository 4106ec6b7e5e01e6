/**
 * The importable examples (examples/*.json) and the `npm start` sandbox that deploys them: each
 * example loads in the test helper against the mock server with a linked account, has a comment and
 * only known node types; "Alert from an HTTP endpoint" answers every request; "Echo bot" echoes; the
 * sandbox's "Look up numbers" tab answers; the sandbox phone approves any account's link request.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import inNode = require('../../nodes/signal-in');
import lookupNode = require('../../nodes/signal-lookup');
import type { NodeMessage } from '../../nodes/lib/red';
import { startSandbox, withTimeout, type PrimaryDevice, type Sandbox } from '../harness/sandbox';
import {
  ACCOUNT_ID,
  approveLinkRequests,
  LINK_REQUEST_MIDDLEWARE,
  sandboxFlows,
} from '../harness/start';
import {
  accountConfig,
  helper,
  linkThroughAdminRoutes,
  nextInput,
  poll,
  statusesOf,
  type AccountTestNode,
  type TestNode,
  freshDataDirPerTest,
} from './support';
import { coreNode, examplesDir, readExample, type FlowNode } from './examples-support';

const core = coreNode;
/** Node-RED's own nodes the examples use (the test helper loads only what it is given). */
const CORE_NODES: Record<string, unknown> = {
  inject: core('common/20-inject.js'),
  debug: core('common/21-debug.js'),
  comment: core('common/90-comment.js'),
  catch: core('common/25-catch.js'),
  function: core('function/10-function.js'),
  change: core('function/15-change.js'),
  'http in': core('network/21-httpin.js'),
  'http response': core('network/21-httpin.js'),
};
const SIGNAL_NODES = ['signal-account', 'signal-in', 'signal-out', 'signal-lookup'];
const FLOW_NODE_TYPES = ['signal-in', 'signal-out', 'signal-lookup'];

const exampleFiles = fs
  .readdirSync(examplesDir)
  .filter((f) => f.endsWith('.json'))
  .sort();
const example = readExample;

/** RED.httpNode of the loaded runtime: the test helper serves http-in routes there, not on admin. */
let httpNode: unknown;
const captureHttpNode = (RED: { httpNode: unknown }) => {
  httpNode = RED.httpNode;
};
/** POSTs JSON to the runtime's http-in routes, served on a free port; fails instead of hanging. */
async function postJson(path: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const server = http.createServer(httpNode as http.RequestListener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

const nodeModules = [
  accountNode,
  outNode,
  inNode,
  lookupNode,
  ...new Set(Object.values(CORE_NODES)),
  captureHttpNode,
];

describe('examples (each examples/*.json in the test helper, against the mock server)', function () {
  this.timeout(90_000);
  let sandbox: Sandbox;
  let phone: PrimaryDevice;
  let bob: PrimaryDevice;
  let carol: PrimaryDevice;
  let dave: PrimaryDevice;

  before(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    carol = await sandbox.createPrimary({ profileName: 'Carol' });
    dave = await sandbox.createPrimary({ profileName: 'Dave' });
    sandbox.server.unregister(dave);
    phone = await sandbox.createPrimary({ profileName: 'My phone', contacts: [bob, carol] });
  });
  after(async () => {
    await sandbox.close();
  });
  freshDataDirPerTest('sigflow-examples-');

  /**
   * An example as the editor imports it: on a tab (Node-RED drops placed nodes that sit on none),
   * with its account pointed at the mock server (the example's own says production).
   */
  const forSandbox = (nodes: FlowNode[]): FlowNode[] => [
    { id: 'exampleTab', type: 'tab', label: 'example' },
    ...nodes.map((n) =>
      n.type === 'signal-account'
        ? (accountConfig(sandbox, n.id, String(n.name)) as FlowNode)
        : { ...n, z: 'exampleTab' },
    ),
  ];

  it('every example has a comment, only known node types, one account, and together they use every flow node type', () => {
    assert.ok(exampleFiles.length >= 4, exampleFiles.join(', '));
    const used = new Set<string>();
    for (const file of exampleFiles) {
      const nodes = example(file);
      const comments = nodes.filter((n) => n.type === 'comment');
      assert.ok(comments.length >= 1, `${file} has a comment node`);
      assert.ok(String(comments[0]?.info ?? '').length > 0, `${file}: the comment says what to do`);
      for (const n of nodes) {
        assert.ok(
          n.type in CORE_NODES || SIGNAL_NODES.includes(n.type),
          `${file}: unknown node type "${n.type}"`,
        );
        used.add(n.type);
      }
      const accounts = nodes.filter((n) => n.type === 'signal-account');
      assert.equal(accounts.length, 1, `${file} carries its one account node`);
      for (const n of nodes.filter((n) => FLOW_NODE_TYPES.includes(n.type)))
        assert.equal(n.account, accounts[0]?.id, `${file}: ${n.id} uses the example's account`);
    }
    for (const t of FLOW_NODE_TYPES) assert.ok(used.has(t), `some example uses ${t}`);
  });

  for (const file of exampleFiles) {
    it(`"${path.basename(file, '.json')}" deploys against a linked account`, async () => {
      const nodes = forSandbox(example(file));
      await helper.load(nodeModules, nodes);
      const account = nodes.find((n) => n.type === 'signal-account');
      assert.ok(account);
      await linkThroughAdminRoutes(sandbox, account.id, phone);
      for (const n of nodes.filter((n) => n.type !== 'tab'))
        assert.ok(helper.getNode(n.id), `${file}: ${n.id} (${n.type}) runs`);
      // Every Signal node of the example shows the linked account as connected.
      for (const n of nodes.filter((n) => FLOW_NODE_TYPES.includes(n.type))) {
        const shown = await poll(
          () => Promise.resolve(statusesOf(n.id).at(-1)),
          (st) => st?.text === 'connected',
          10_000,
          `${file}: ${n.id} status`,
        );
        assert.deepEqual(shown, { fill: 'green', shape: 'dot', text: 'connected' });
      }
    });
  }

  it('"Alert from an HTTP endpoint" answers every request: 200 and sent, 400 for bad input, 502 when every recipient failed', async () => {
    const nodes = forSandbox(example('Alert from an HTTP endpoint.json'));
    await helper.load(nodeModules, nodes);
    await linkThroughAdminRoutes(sandbox, ACCOUNT_ID, phone);
    const post = (body: unknown) => postJson('/signal-alert', body);

    const ok = await post({ to: bob.device.number, text: 'disk almost full' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const signal = ok.body as { timestamp: number; results: Array<Record<string, unknown>> };
    assert.equal(signal.results.length, 1);
    assert.equal(signal.results[0]?.status, 'sent');
    assert.equal(signal.results[0]?.serviceId, bob.device.aci);
    assert.equal(signal.timestamp, signal.results[0]?.timestamp);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, 'disk almost full');

    const noText = await post({ to: bob.device.number });
    assert.equal(noText.status, 400);
    const e1 = (noText.body as { error: { code: string; message: string } }).error;
    assert.equal(e1.code, 'INVALID_INPUT');
    assert.match(e1.message, /^msg\.payload must be text/);
    const noTo = await post({ text: 'to nobody' });
    assert.equal(noTo.status, 400);
    assert.match((noTo.body as { error: { message: string } }).error.message, /No recipient/);
    const badNumber = await post({ to: '+12', text: 'x' });
    assert.equal(badNumber.status, 400);
    assert.equal((badNumber.body as { error: { code: string } }).error.code, 'INVALID_NUMBER');

    const gone = await post({ to: dave.device.aci, text: 'to a number that left Signal' });
    assert.equal(gone.status, 502, JSON.stringify(gone.body));
    const failed = (gone.body as { results: Array<{ status: string; error: { code: string } }> })
      .results;
    assert.equal(failed[0]?.status, 'failed');
    assert.equal(failed[0]?.error.code, 'NOT_ON_SIGNAL');

    const some = await post({ to: [carol.device.aci, dave.device.aci], text: 'half' });
    assert.equal(some.status, 207, JSON.stringify(some.body));
    assert.deepEqual(
      (some.body as { results: Array<{ status: string }> }).results.map((r) => r.status),
      ['sent', 'failed'],
    );
    assert.equal((await withTimeout(carol.waitForMessage(), 10_000, 'carol')).body, 'half');
  });

  it('"Echo bot" answers a contact with "echo: <text>" through its wired signal-in → function → signal-out', async () => {
    const nodes = forSandbox(example('Echo bot.json'));
    await helper.load(nodeModules, nodes);
    await linkThroughAdminRoutes(sandbox, ACCOUNT_ID, phone);
    const client = await (helper.getNode(ACCOUNT_ID) as AccountTestNode).client();
    const a = client.account;
    assert.ok(a);
    const device = await sandbox.server.getDeviceByServiceId(a.aci as never, a.deviceId as never);
    assert.ok(device);
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    await bob.sendText(device, 'are you there?');
    assert.equal(
      (await withTimeout(bob.waitForMessage(), 15_000, 'echo')).body,
      'echo: are you there?',
    );
  });

  it('the sandbox\'s "Look up numbers" tab shows its contacts as on Signal (no CDSI_UNAVAILABLE)', async () => {
    const flows = sandboxFlows(sandbox, [bob, carol]) as FlowNode[];
    const lookup = flows.find((n) => n.type === 'signal-lookup');
    assert.ok(lookup);
    const inject = flows.find(
      (n) => n.type === 'inject' && (n.wires as string[][])[0]?.includes(lookup.id),
    );
    assert.ok(inject);
    lookup.wires = [[...((lookup.wires as string[][])[0] ?? []), 'lookupSink']];
    flows.push({ id: 'lookupSink', type: 'helper', z: lookup.z });
    await helper.load(nodeModules, flows);
    await linkThroughAdminRoutes(sandbox, ACCOUNT_ID, phone);
    const looked = nextInput(helper.getNode('lookupSink') as TestNode);
    (helper.getNode(inject.id) as TestNode).receive({} as NodeMessage);
    const msg = await looked;
    assert.deepEqual(msg.payload, [
      { number: bob.device.number, aci: bob.device.aci, pni: null, registered: true },
      { number: carol.device.number, aci: carol.device.aci, pni: null, registered: true },
    ]);
  });

  it("the sandbox's settings middleware reports the node id of each link request, and nothing else", () => {
    const seen: unknown[] = [];
    const factory = new Function(`return (${LINK_REQUEST_MIDDLEWARE});`)() as (
      send: (m: unknown) => void,
    ) => (req: { method: string; path: string }, res: unknown, next: () => void) => void;
    const middleware = factory((m) => seen.push(m));
    let nexts = 0;
    const next = () => void nexts++;
    middleware({ method: 'POST', path: '/signal-account/f00d0000cafe0001/link' }, {}, next);
    middleware({ method: 'GET', path: '/signal-account/f00d0000cafe0001/link' }, {}, next);
    middleware({ method: 'POST', path: '/signal-account/f00d0000cafe0001/register' }, {}, next);
    middleware({ method: 'POST', path: '/flows' }, {}, next);
    assert.deepEqual(seen, [{ linkRequested: 'f00d0000cafe0001' }]);
    assert.equal(nexts, 4);
  });

  // Last: the approver keeps waiting for provisioning sockets until the sandbox closes.
  it('the sandbox phone approves a link request of a new account, not only the preset one', async () => {
    const id = 'f00d0000cafe0002';
    await helper.load(nodeModules, [accountConfig(sandbox, id, 'New account')]);
    const approver = approveLinkRequests({
      sandbox,
      phone,
      pollMs: 50,
      linkState: async (which) =>
        (await helper.request().get(`/signal-account/${which}/link`)).body as {
          state?: string;
          url?: string;
        },
    });
    try {
      await helper
        .request()
        .post(`/signal-account/${id}/link`)
        .send({
          server: 'custom',
          serviceUrl: sandbox.url,
          caCert: sandbox.caCert,
          trustRoots: sandbox.trustRoot,
        })
        .expect(202);
      approver.requested(id);
      const linked = await poll(
        async () => (await helper.request().get(`/signal-account/${id}/link`).expect(200)).body,
        (b) => b.state === 'linked' || b.state === 'failed',
        20_000,
        'linked by the sandbox phone',
      );
      assert.equal(linked.state, 'linked', linked.error?.message);
      assert.equal(linked.account.aci, phone.device.aci);
    } finally {
      approver.stop();
    }
  });
});
