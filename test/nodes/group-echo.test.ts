/**
 * Groups in the nodes (issue 16) against the mock's phones. Alice's phone is in the groups "Alerts"
 * (Alice, Bob, Carol) and "Other" (Alice, Bob), both in its storage state before the account links.
 * The "Group echo bot" example answers a member's group message IN the group (both members decrypt
 * it with the group's context), not privately; signal-in's Chats option drops what it should; the
 * editor's GET /signal-account/:id/groups lists the groups without keys.
 */
import assert from 'node:assert/strict';
import { StorageState } from '@signalapp/mock-server';
import accountNode = require('../../nodes/signal-account');
import inNode = require('../../nodes/signal-in');
import outNode = require('../../nodes/signal-out');
import type { NodeMessage } from '../../nodes/lib/red';
import { introduce, type MockDevice } from '../harness/mock-phone';
import { startSandbox, withTimeout, type PrimaryDevice, type Sandbox } from '../harness/sandbox';
import {
  accountConfig,
  freshDataDirPerTest,
  helper,
  linkThroughAdminRoutes,
  poll,
  type AccountTestNode,
  type TestNode,
} from './support';
import { coreNode, readExample, type FlowNode } from './examples-support';

type MockGroup = Awaited<ReturnType<PrimaryDevice['createGroup']>>;
type Entry = Awaited<ReturnType<PrimaryDevice['waitForMessage']>>;

const functionNode = coreNode('function/10-function.js');
const commentNode = coreNode('common/90-comment.js');

/** Every msg a helper node receives, in order. */
function collect(id: string): NodeMessage[] {
  const out: NodeMessage[] = [];
  (helper.getNode(id) as TestNode).on('input', ((m: NodeMessage) => out.push(m)) as never);
  return out;
}

describe('nodes: groups (Group echo bot, Chats filter, groups route)', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  let alice: PrimaryDevice;
  let bob: PrimaryDevice;
  let carol: PrimaryDevice;
  let alerts: MockGroup;
  let other: MockGroup;

  before(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    carol = await sandbox.createPrimary({ profileName: 'Carol' });
    alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob, carol] });
    alerts = await alice.createGroup({ title: 'Alerts', members: [alice, bob, carol] });
    other = await alice.createGroup({ title: 'Other', members: [alice, bob] });
    await alice.setStorageState(
      StorageState.getEmpty()
        .addGroup(alerts, { whitelisted: true })
        .addGroup(other, { whitelisted: true }),
    );
  });
  after(async () => {
    await sandbox?.close();
  });
  freshDataDirPerTest('sigflow-group-echo-');

  /** Loads `nodes`, links account `id` with Alice's phone, waits for both groups to be listed. */
  async function linked(id: string, nodes: unknown[]): Promise<MockDevice> {
    await helper.load([accountNode, inNode, outNode, functionNode, commentNode] as never, nodes);
    await linkThroughAdminRoutes(sandbox, id, alice);
    const client = await (helper.getNode(id) as AccountTestNode).client();
    await poll(
      () => client.groups(),
      (g) => g.length === 2,
      20_000,
      'both groups listed from the storage service',
    );
    return introduce(sandbox, client, bob);
  }

  it('"Group echo bot" answers a group message in the group: both members get it with the group context', async () => {
    const example = readExample('Group echo bot.json');
    const nodes: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'example' },
      ...example.map((n) =>
        n.type === 'signal-account'
          ? (accountConfig(sandbox, n.id, String(n.name)) as FlowNode)
          : { ...n, z: 'tab' },
      ),
    ];
    const account = nodes.find((n) => n.type === 'signal-account');
    assert.ok(account);
    const device = await linked(account.id, nodes);

    // A direct message is ignored (Chats: groups only), then the group message is answered.
    await bob.sendText(device, 'just to you');
    await bob.sendText(device, 'hello all', { group: alerts });
    const echoes: Record<string, Entry> = {};
    for (const [name, phone] of [
      ['bob', bob],
      ['carol', carol],
    ] as const) {
      echoes[name] = await withTimeout(phone.waitForMessage(), 20_000, `the echo at ${name}`);
    }
    for (const [name, entry] of Object.entries(echoes)) {
      assert.equal(entry.body, 'echo: hello all', `${name}: the echo of the group message only`);
      const key = entry.dataMessage.groupV2?.masterKey;
      assert.ok(key, `${name}: the echo carries the group context (not a private message)`);
      assert.ok(Buffer.from(key).equals(Buffer.from(alerts.masterKey)), `${name}: in "Alerts"`);
      assert.equal(entry.source.aci, alice.device.aci, `${name}: from Alice's account`);
    }
  });

  it('Chats: direct only drops group items, groups only drops 1:1 ones, chosen groups only theirs', async () => {
    const sink = (id: string) => ({ id, type: 'helper' });
    const input = (id: string, chats: string, groups = '') => ({
      id,
      type: 'signal-in',
      account: 'acct1',
      types: 'message',
      chats,
      groups,
      wires: [[`${id}Sink`]],
    });
    const nodes = [
      accountConfig(sandbox, 'acct1', 'Alice'),
      input('inAll', 'all'),
      input('inDirect', 'direct'),
      input('inGroups', 'groups'),
      // Written as signal-out's "To" writes it: group:<id> is taken too.
      input('inChosen', 'chosen', `group:${alerts.id}`),
      ...['inAll', 'inDirect', 'inGroups', 'inChosen'].map((id) => sink(`${id}Sink`)),
    ];
    const device = await linked('acct1', nodes);
    const got = Object.fromEntries(
      ['inAll', 'inDirect', 'inGroups', 'inChosen'].map((id) => [
        id.slice(2).toLowerCase(),
        collect(`${id}Sink`),
      ]),
    );
    // In this order, so that each node's outputs show what it dropped between them.
    const sent: Array<[string, MockGroup | undefined]> = [
      ['d1', undefined],
      ['g1', alerts],
      ['h1', other],
      ['d2', undefined],
      ['g2', alerts],
    ];
    for (const [text, group] of sent) await bob.sendText(device, text, group ? { group } : {});
    const texts = (id: string) => (got[id] ?? []).map((m) => m.payload);
    await poll(
      () => Promise.resolve(texts('all').length),
      (n) => n >= sent.length,
      20_000,
      'every item at the "all" node',
    );
    await poll(
      () => Promise.resolve([texts('direct'), texts('groups'), texts('chosen')]),
      ([d, g, c]) => (d?.length ?? 0) >= 2 && (g?.length ?? 0) >= 3 && (c?.length ?? 0) >= 2,
      10_000,
      'the filtered nodes',
    );
    assert.deepEqual(texts('all'), ['d1', 'g1', 'h1', 'd2', 'g2']);
    assert.deepEqual(texts('direct'), ['d1', 'd2']);
    assert.deepEqual(texts('groups'), ['g1', 'h1', 'g2']);
    assert.deepEqual(texts('chosen'), ['g1', 'g2']);

    // The group item: the group on msg.signal, msg.to the group, msg.topic the sender.
    const [g1] = got.groups ?? [];
    assert.ok(g1);
    assert.equal(g1.to, `group:${alerts.id}`);
    assert.equal(g1.topic, bob.device.number);
    const signal = g1.signal as { group?: unknown; from: { aci: string } };
    assert.deepEqual(signal.group, { id: alerts.id, title: 'Alerts' });
    assert.equal(signal.from.aci, bob.device.aci);
    const [d1] = got.direct ?? [];
    assert.ok(d1);
    assert.equal(d1.to, bob.device.aci);
    assert.equal((d1.signal as { group?: unknown }).group, undefined);
  });

  it('GET /signal-account/:id/groups lists the groups (no keys), 404 for an unknown account', async () => {
    await linked('acct1', [
      accountConfig(sandbox, 'acct1', 'Alice'),
      { id: 'in1', type: 'signal-in', account: 'acct1', wires: [] },
    ]);
    for (const query of ['', '?refresh=1']) {
      const res = await helper.request().get(`/signal-account/acct1/groups${query}`).expect(200);
      const body = res.body as unknown as Array<Record<string, unknown>>;
      assert.deepEqual(
        [...body].sort((a, b) => String(a.title).localeCompare(String(b.title))),
        [
          { id: alerts.id, title: 'Alerts', members: 3, revision: 0 },
          { id: other.id, title: 'Other', members: 2, revision: 0 },
        ],
        query,
      );
      const text = JSON.stringify(body);
      for (const g of [alerts, other])
        assert.ok(!text.includes(Buffer.from(g.masterKey).toString('base64')), 'no master key');
    }
    const unknown = await helper.request().get('/signal-account/nosuchaccount/groups').expect(404);
    assert.equal(unknown.body.error?.code, 'NOT_FOUND');
    assert.match(String(unknown.body.error?.message), /No Signal account nosuchaccount/);
  });

  it('a chosen group that is not a group id is a clear error, and the node emits nothing', async () => {
    await helper.load([accountNode, inNode] as never, [
      accountConfig(sandbox, 'acct1', 'Alice'),
      {
        id: 'in1',
        type: 'signal-in',
        account: 'acct1',
        chats: 'chosen',
        groups: 'not-a-group',
        wires: [],
      },
    ]);
    const errors = helper._NodePrototype.error
      .getCalls()
      .filter((c) => c.thisValue?.id === 'in1')
      .map((c) => String(c.args[0]));
    assert.equal(errors.length, 1, errors.join('; '));
    assert.match(errors[0] ?? '', /"not-a-group" is not a group id/);
  });
});
