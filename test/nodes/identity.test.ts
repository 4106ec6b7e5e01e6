/**
 * Approving a changed safety number from Node-RED (account set to `block`): the admin routes that
 * list and approve pending identities, and signal-out's msg.approveIdentity, against the mock
 * server with a contact who reinstalls Signal.
 */
import assert from 'node:assert/strict';
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import inNode = require('../../nodes/signal-in');
import type { NodeMessage } from '../../nodes/lib/red';
import { withTimeout } from '../harness/sandbox';
import {
  accountConfig,
  helper,
  linkThroughAdminRoutes,
  nextError,
  nextInput,
  type TestNode,
  freshDataDirPerTest,
  phonesPerSuite,
} from './support';
import { reinstallPhone } from '../harness/mock-phone';

const nodes = [accountNode, outNode, inNode];

interface Pending {
  serviceId: string;
  number?: string;
  name?: string;
  changedAt: number;
}
interface Answer {
  status: number;
  body: {
    pending?: Pending[];
    approved?: boolean;
    serviceId?: string;
    error?: { code: string; message: string };
  };
}

const getIdentities = (id: string) =>
  helper.request().get(`/signal-account/${id}/identities`) as unknown as Promise<Answer>;
const approve = (id: string, body: unknown) =>
  helper
    .request()
    .post(`/signal-account/${id}/identities/approve`)
    .send(body) as unknown as Promise<Answer>;

describe('approving a changed safety number: admin routes and msg.approveIdentity', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  freshDataDirPerTest('sigflow-identity-');

  /** A block-policy account, linked, that has sent to Bob once (so it knows his identity). */
  async function blockingAccount(): Promise<{ out: TestNode; sink: TestNode }> {
    await helper.load(nodes, [
      { ...accountConfig(world.sandbox, 'acct1', 'Alice'), identityTrust: 'block' },
      { id: 'out1', type: 'signal-out', account: 'acct1', to: '', wires: [['sink']] },
      { id: 'sink', type: 'helper' },
    ]);
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    const out = helper.getNode('out1') as TestNode;
    const sink = helper.getNode('sink') as TestNode;
    await send(out, sink, 'before');
    assert.equal((await withTimeout(world.bob.waitForMessage(), 10_000, 'before')).body, 'before');
    return { out, sink };
  }

  /** Sends `text` to Bob through signal-out; resolves with the output msg. */
  function send(out: TestNode, sink: TestNode, text: string): Promise<NodeMessage> {
    const output = nextInput(sink, (m) => m.payload === text);
    out.receive({ payload: text, to: world.bob.device.aci });
    return output;
  }

  /** After Bob reinstalls, a send fails with IDENTITY_CHANGED (through done(err) and the results). */
  async function sendIsBlocked(out: TestNode, sink: TestNode): Promise<void> {
    const err = nextError(out);
    const msg = await send(out, sink, 'unapproved');
    assert.equal((await err).code, 'IDENTITY_CHANGED');
    const results = (msg.signal as { results: Array<{ status: string; error?: { code: string } }> })
      .results;
    assert.equal(results[0]?.status, 'failed');
    assert.equal(results[0]?.error?.code, 'IDENTITY_CHANGED');
  }

  it('Bob reinstalls: the send fails IDENTITY_CHANGED, GET identities lists him, POST approve lets the next send reach him', async () => {
    const { out, sink } = await blockingAccount();
    assert.deepEqual((await getIdentities('acct1')).body, { pending: [] });
    const before = Date.now();
    await reinstallPhone(world.bob);
    await sendIsBlocked(out, sink);

    const listed = await getIdentities('acct1');
    assert.equal(listed.status, 200);
    const pending = listed.body.pending ?? [];
    assert.equal(pending.length, 1, JSON.stringify(listed.body));
    const [p] = pending as [Pending];
    assert.equal(p.serviceId, world.bob.device.aci);
    assert.ok(p.changedAt >= before - 1000 && p.changedAt <= Date.now(), String(p.changedAt));
    // Bob is one of Alice's synced contacts: his number comes from the contacts table.
    assert.equal(p.number, world.bob.device.number);

    const approved = await approve('acct1', { serviceId: world.bob.device.aci.toUpperCase() });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.deepEqual(approved.body, { approved: true, serviceId: world.bob.device.aci });
    assert.deepEqual((await getIdentities('acct1')).body, { pending: [] });

    const msg = await send(out, sink, 'approved');
    assert.equal((msg.signal as { results: Array<{ status: string }> }).results[0]?.status, 'sent');
    assert.equal(
      (await withTimeout(world.bob.waitForMessage(), 10_000, 'approved')).body,
      'approved',
    );
  });

  it('POST approve with nothing pending is 404 saying there is nothing to approve; a malformed serviceId is 400; an undeployed account is 404', async () => {
    await blockingAccount();
    const nothing = await approve('acct1', { serviceId: world.bob.device.aci });
    assert.equal(nothing.status, 404);
    assert.equal(nothing.body.error?.code, 'INVALID_INPUT');
    assert.match(nothing.body.error?.message ?? '', /nothing to approve/);
    assert.ok(nothing.body.error?.message.includes(world.bob.device.aci));

    for (const serviceId of [
      undefined,
      '',
      42,
      String(world.bob.device.number),
      'PNI:not-a-uuid',
    ]) {
      const bad = await approve('acct1', { serviceId });
      assert.equal(bad.status, 400, `${JSON.stringify(serviceId)}: ${JSON.stringify(bad.body)}`);
      assert.equal(bad.body.error?.code, 'INVALID_INPUT');
      assert.match(bad.body.error?.message ?? '', /serviceId/);
    }

    for (const r of [
      await getIdentities('nope'),
      await approve('nope', { serviceId: world.bob.device.aci }),
    ]) {
      assert.equal(r.status, 404, JSON.stringify(r.body));
      assert.match(r.body.error?.message ?? '', /No Signal account nope is deployed/);
    }
  });

  it('a flow approves: signal-out given msg.approveIdentity approves instead of sending and reports msg.signal.approved; the next send reaches Bob', async () => {
    const { out, sink } = await blockingAccount();
    // Nothing waits yet: approved false, not an error, and nothing is sent.
    const idle = nextInput(sink);
    out.receive({ approveIdentity: world.bob.device.aci });
    assert.deepEqual((await idle).signal, { approved: false, serviceId: world.bob.device.aci });

    await reinstallPhone(world.bob);
    await sendIsBlocked(out, sink);
    const done = nextInput(sink, (m) => m.payload === 'ignored');
    // A payload and a recipient with it are not sent: the msg approves only.
    out.receive({
      approveIdentity: world.bob.device.aci,
      payload: 'ignored',
      to: world.bob.device.aci,
    });
    assert.deepEqual((await done).signal, { approved: true, serviceId: world.bob.device.aci });
    assert.deepEqual((await getIdentities('acct1')).body, { pending: [] });

    await send(out, sink, 'after flow approval');
    // The ignored payload never reached Bob: the next message he gets is the real send.
    assert.equal(
      (await withTimeout(world.bob.waitForMessage(), 10_000, 'after flow approval')).body,
      'after flow approval',
    );
  });

  it('msg.approveIdentity that is not a Signal id (a phone number, an object) is INVALID_INPUT naming msg.approveIdentity', async () => {
    const { out } = await blockingAccount();
    for (const approveIdentity of [
      String(world.bob.device.number),
      { aci: world.bob.device.aci },
    ]) {
      const err = nextError(out);
      out.receive({ approveIdentity } as NodeMessage);
      const e = await err;
      assert.equal(e.code, 'INVALID_INPUT');
      assert.match(e.message, /msg\.approveIdentity/);
    }
  });
});
