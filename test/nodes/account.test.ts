/**
 * signal-account as its flow nodes see it: the status it pushes as the connection changes
 * (connected, reconnecting, not linked, error), listeners detached when flow nodes close, a quick
 * close, the default region, and what Link device answers once the phone removed this device
 * (and the status route's `state` meanwhile).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import inNode = require('../../nodes/signal-in');
import lookupNode = require('../../nodes/signal-lookup');
import type { NodeMessage, NodeStatus } from '../../nodes/lib/red';
import { SignalClient } from '../../core/client';
import {
  accountConfig,
  helper,
  linkThroughAdminRoutes,
  nextError,
  nextInput,
  poll,
  statusesOf,
  type AccountTestNode,
  type TestNode,
  freshDataDirPerTest,
  phonesPerSuite,
  inspectNodeClients,
} from './support';
import { inspect } from '../integration/helpers';

const nodes = [accountNode, outNode, inNode, lookupNode];
const setFlows = (
  helper as unknown as {
    setFlows(flow: unknown[], type: 'full' | 'nodes' | 'flows'): Promise<void>;
  }
).setFlows.bind(helper);

/**
 * Resolves once node `id` shows a status with this text (and this fill, when given) after its
 * `from` earlier statuses.
 */
function statusShown(
  id: string,
  text: string,
  from = 0,
  fill?: NodeStatus['fill'],
  ms = 15_000,
): Promise<NodeStatus> {
  const hit = (s: NodeStatus) => s.text === text && (fill === undefined || s.fill === fill);
  return poll(
    () => Promise.resolve(statusesOf(id).slice(from)),
    (list) => list.some(hit),
    ms,
    `${id} showing "${text}"`,
  ).then((list) => list.find(hit) as NodeStatus);
}

describe('signal-account and its flow nodes: status, close, region, relinking', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  inspectNodeClients();
  const data = freshDataDirPerTest('sigflow-account-');

  const flowNodes = (account: string) => [
    { id: 'out1', type: 'signal-out', account, to: '', wires: [['sink']] },
    { id: 'in1', type: 'signal-in', account, wires: [['sink']] },
    { id: 'lookup1', type: 'signal-lookup', account, wires: [['sink']] },
    { id: 'sink', type: 'helper' },
  ];

  it('flow nodes show the account status as it changes: connected (green dot), reconnecting (yellow ring), then connected again', async () => {
    await helper.load(nodes, [
      accountConfig(world.sandbox, 'acct1', 'Alice'),
      ...flowNodes('acct1'),
    ]);
    assert.deepEqual(statusesOf('out1').at(-1), {
      fill: 'grey',
      shape: 'ring',
      text: 'not linked',
    });
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    for (const id of ['out1', 'in1', 'lookup1'])
      assert.deepEqual(await statusShown(id, 'connected'), {
        fill: 'green',
        shape: 'dot',
        text: 'connected',
      });
    const before = statusesOf('in1').length;
    const client = await (helper.getNode('acct1') as AccountTestNode).client();
    inspect(client).chat()?.dropConnection();
    for (const id of ['out1', 'in1', 'lookup1']) {
      assert.deepEqual(await statusShown(id, 'reconnecting', statusesOf(id).length - 1), {
        fill: 'yellow',
        shape: 'ring',
        text: 'reconnecting',
      });
    }
    await statusShown('in1', 'connected', before + 1);
    const status = (await helper.request().get('/signal-account/acct1/status').expect(200)).body;
    assert.deepEqual([status.linked, status.connected, status.state], [true, true, 'connected']);
  });

  it('an account the phone removed shows "not linked" in red, and Link device links it again in place', async () => {
    await helper.load(nodes, [
      accountConfig(world.sandbox, 'acct1', 'Alice'),
      ...flowNodes('acct1'),
    ]);
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    // The server stops accepting the stored credentials, as after the phone removed this device
    // (the mock keeps a removed device's credentials working, so the stored password is changed
    // while Node-RED is stopped).
    await helper.unload();
    const offline = await SignalClient.open({
      dataFile: path.join(data.dir, 'acct1.db'),
      environment: world.sandbox.environment,
    });
    inspect(offline).store()?.account.update({ password: 'not-the-password' });
    await offline.close();
    await helper.load(nodes, [
      accountConfig(world.sandbox, 'acct1', 'Alice'),
      ...flowNodes('acct1'),
    ]);
    const client = await (helper.getNode('acct1') as AccountTestNode).client();
    assert.deepEqual(await statusShown('out1', 'not linked', 0, 'red'), {
      fill: 'red',
      shape: 'ring',
      text: 'not linked',
    });
    assert.equal(client.state, 'unlinked');
    // The status route still says linked (an account is stored) but its state says Signal refuses it.
    const status = (await helper.request().get('/signal-account/acct1/status').expect(200)).body;
    assert.equal(status.linked, true);
    assert.equal(status.connected, false);
    assert.equal(status.state, 'unlinked');
    // Link device works again: the dead account is set aside and the phone links a new one.
    const relinkedFrom = statusesOf('out1').length;
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    assert.deepEqual(await statusShown('out1', 'connected', relinkedFrom, 'green'), {
      fill: 'green',
      shape: 'dot',
      text: 'connected',
    });
    assert.ok(
      fs.readdirSync(data.dir).some((f) => /^acct1\.db\.unlinked-/.test(f)),
      fs.readdirSync(data.dir).join(', '),
    );
    const sent = nextInput(helper.getNode('sink') as TestNode, (m) => m.payload === 'relinked');
    (helper.getNode('out1') as TestNode).receive({ payload: 'relinked', to: world.bob.device.aci });
    await sent;
    assert.equal((await world.bob.waitForMessage()).body, 'relinked');
  });

  it('an account with unusable settings shows an error in red on its flow nodes and logs why', async () => {
    await helper.load(nodes, [
      { ...accountConfig(world.sandbox, 'acct1', 'Alice'), region: 'XX' },
      ...flowNodes('acct1'),
    ]);
    const shown = await statusShown('out1', 'error: invalid input');
    assert.deepEqual(shown, { fill: 'red', shape: 'ring', text: 'error: invalid input' });
    const logged = helper
      .log()
      .getCalls()
      .map((c) => JSON.stringify(c.args[0]));
    assert.ok(
      logged.some((l) => l.includes('Default region \\"XX\\" is not a two-letter country code')),
      logged.join('\n'),
    );
  });

  it('with region "US", a lookup and a send of a national-format number resolve', async () => {
    await helper.load(nodes, [
      { ...accountConfig(world.sandbox, 'acct1', 'Alice'), region: 'us' },
      ...flowNodes('acct1'),
    ]);
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    const e164 = String(world.bob.device.number); // +1415 49x xxxx
    const national = `(${e164.slice(2, 5)}) ${e164.slice(5, 8)}-${e164.slice(8)}`;
    const sink = helper.getNode('sink') as TestNode;
    const looked = nextInput(sink);
    (helper.getNode('lookup1') as TestNode).receive({ payload: national });
    assert.deepEqual((await looked).payload, {
      number: e164,
      aci: world.bob.device.aci,
      pni: null,
      registered: true,
    });
    const sent = nextInput(sink, (m) => m.payload === 'national');
    (helper.getNode('out1') as TestNode).receive({ payload: 'national', to: national });
    const results = ((await sent).signal as { results: Array<{ status: string }> }).results;
    assert.equal(results[0]?.status, 'sent');
    assert.equal((await world.bob.waitForMessage()).body, 'national');
  });

  it('without a region, a national-format number is INVALID_NUMBER naming it', async () => {
    await helper.load(nodes, [
      accountConfig(world.sandbox, 'acct1', 'Alice'),
      ...flowNodes('acct1'),
    ]);
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    const err = nextError(helper.getNode('lookup1') as TestNode);
    (helper.getNode('lookup1') as TestNode).receive({ payload: '(415) 491-2345' } as NodeMessage);
    const e = await err;
    assert.equal(e.code, 'INVALID_NUMBER');
    assert.match(e.message, /\(415\) 491-2345/);
  });

  it('closing flow nodes detaches their listeners (counts back to before they were deployed) and a full close ends well within 15 s', async () => {
    const account = accountConfig(world.sandbox, 'acct1', 'Alice');
    await helper.load(nodes, [account]);
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    const node = helper.getNode('acct1') as AccountTestNode & {
      events: { listenerCount(e: string): number };
    };
    const client = await node.client();
    const counts = () => ({
      accountEvents: node.events.listenerCount('event'),
      clientState: client.listenerCount('state'),
      clientEvents: client.listenerCount('event'),
    });
    const before = counts();

    // Deploy only the changed nodes: the account (unchanged) keeps running, the flow nodes start.
    await setFlows([account, ...flowNodes('acct1')], 'nodes');
    assert.equal(helper.getNode('acct1'), node, 'the account node was not restarted');
    assert.equal(counts().accountEvents, before.accountEvents + 1, 'signal-in listens');
    await statusShown('in1', 'connected');

    const started = Date.now();
    await setFlows([account], 'nodes');
    assert.ok(Date.now() - started < 5000, `flow nodes closed in ${Date.now() - started} ms`);
    assert.equal(helper.getNode('in1'), null);
    assert.deepEqual(counts(), before);

    // The removed nodes get no more status pushes from the account.
    const pushes = statusesOf('in1').length;
    inspect(client).chat()?.dropConnection();
    await poll(
      () => Promise.resolve(client.state),
      (s) => s === 'connected',
      15_000,
      'reconnected',
    );
    assert.equal(statusesOf('in1').length, pushes);

    const closing = Date.now();
    await helper.unload();
    assert.ok(Date.now() - closing < 10_000, `closed in ${Date.now() - closing} ms`);
    assert.equal(client.state, 'closed');
  });
});
