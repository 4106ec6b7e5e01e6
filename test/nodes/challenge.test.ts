/**
 * Rate-limit challenges (HTTP 428, PROTOCOL.md §12) in Node-RED: a send the server refuses reaches a
 * Catch node with its typed fields (msg.error.code, msg.error.cause.token/options/to) and the
 * per-recipient result carries them too; the challenge is answered from the account's dialog (admin
 * route) or from a flow (msg.challenge on signal-out), and the refused send then goes through.
 */
import assert from 'node:assert/strict';
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import type { NodeMessage } from '../../nodes/lib/red';
import { withTimeout } from '../harness/sandbox';
import {
  accountConfig,
  freshDataDirPerTest,
  helper,
  linkThroughAdminRoutes,
  nextInput,
  type TestNode,
  phonesPerSuite,
} from './support';

const catchNode = require('@node-red/nodes/core/common/25-catch.js') as unknown;
const nodes = [accountNode, outNode, catchNode];

/** The challenge routes' answers (support's Body types the link routes). */
interface ChallengeBody {
  pending?: { token: string; options: string[]; since: number } | null;
  state?: string;
  error?: { code: string; message: string };
}
const challengeBody = (r: { body: unknown }) => r.body as ChallengeBody;

interface ErrorMsg extends NodeMessage {
  error: {
    message: string;
    code?: string;
    cause?: { to?: string; code?: string; token?: string; options?: string[] };
    source?: { id: string };
  };
}

describe('nodes: rate-limit challenges through signal-out, a Catch node and the account dialog', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  freshDataDirPerTest('sigflow-challenge-');

  async function flow(): Promise<{ out: TestNode; sink: TestNode; caught: TestNode }> {
    await helper.load(nodes, [
      { id: 'tab1', type: 'tab', label: 'Flow 1' },
      { ...accountConfig(world.sandbox, 'acct1', 'Alice'), z: 'tab1' },
      { id: 'out1', type: 'signal-out', z: 'tab1', account: 'acct1', to: '', wires: [['sink']] },
      { id: 'sink', type: 'helper', z: 'tab1' },
      { id: 'catch1', type: 'catch', z: 'tab1', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab1' },
    ]);
    await linkThroughAdminRoutes(world.sandbox, 'acct1', world.alice);
    return {
      out: helper.getNode('out1') as TestNode,
      sink: helper.getNode('sink') as TestNode,
      caught: helper.getNode('caught') as TestNode,
    };
  }

  const results = (m: NodeMessage) =>
    (
      m.signal as {
        results: Array<{ status: string; error?: { code: string; token?: string } }>;
      }
    ).results;

  it('a 428 reaches the Catch node with code, token and recipient; msg.challenge answers it; the retry is delivered', async () => {
    const { out, sink, caught } = await flow();
    world.sandbox.server.rateLimit({
      source: world.alice.device.aci,
      target: world.bob.device.aci,
    });

    const refused = nextInput(sink, (m) => m.payload === 'refused');
    const error = nextInput(caught, () => true) as Promise<ErrorMsg>;
    out.receive({ payload: 'refused', to: world.bob.device.aci });
    const result = results(await refused)[0];
    assert.equal(result?.status, 'failed');
    assert.equal(result?.error?.code, 'CHALLENGE_REQUIRED');
    assert.equal(result?.error?.token, 'token');
    const e = (await error).error;
    assert.equal(e.code, 'CHALLENGE_REQUIRED');
    assert.equal(e.source?.id, 'out1');
    assert.equal(e.cause?.code, 'CHALLENGE_REQUIRED');
    assert.equal(e.cause?.token, 'token');
    assert.deepEqual(e.cause?.options, ['captcha']);
    assert.equal(e.cause?.to, world.bob.device.aci);

    // The dialog sees what is pending.
    const pending = await helper.request().get('/signal-account/acct1/challenge').expect(200);
    assert.equal(challengeBody(pending).pending?.token, 'token');

    // Signal-Server lifts the limit once the captcha passes; the mock does not, so the test does.
    const answered = nextInput(sink, (m) => m.challenge !== undefined);
    out.receive({ challenge: { captcha: 'signalcaptcha://solved.captcha.token' } });
    assert.deepEqual((await answered).signal, { challenge: 'accepted' });
    const after = await helper.request().get('/signal-account/acct1/challenge').expect(200);
    assert.equal(challengeBody(after).pending, null);
    world.sandbox.server.stopRateLimiting({
      source: world.alice.device.aci,
      target: world.bob.device.aci,
    });

    const sent = nextInput(sink, (m) => m.payload === 'retried');
    out.receive({ payload: 'retried', to: world.bob.device.aci });
    assert.equal(results(await sent)[0]?.status, 'sent');
    assert.equal(
      (await withTimeout(world.bob.waitForMessage(), 10_000, 'retried')).body,
      'retried',
    );
  });

  it('the dialog answers a challenge; a captcha that does not pass, and bad msg.challenge shapes, are clear errors', async () => {
    const { out, sink, caught } = await flow();
    // Nothing pending and no token given: nothing to answer.
    const none = await helper
      .request()
      .post('/signal-account/acct1/challenge')
      .send({ captcha: 'signalcaptcha://x' });
    assert.equal(none.status, 400);
    assert.match(String(challengeBody(none).error?.message), /No challenge is pending/);
    const empty = await helper.request().post('/signal-account/acct1/challenge').send({});
    assert.equal(empty.status, 400);
    assert.match(String(challengeBody(empty).error?.message), /solved captcha/);
    assert.equal(
      (
        await helper
          .request()
          .post('/signal-account/nosuch/challenge')
          .send({ captcha: 'signalcaptcha://x' })
      ).status,
      404,
    );

    // With the token from a failed send, the dialog's answer goes through.
    const ok = await helper
      .request()
      .post('/signal-account/acct1/challenge')
      .send({ captcha: 'signalcaptcha://x', token: 'token' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(ok.body, { state: 'accepted' });

    // The server says the captcha did not pass (428 on PUT /v1/challenge).
    world.sandbox.server.respondToChallengesWith(428);
    try {
      const failed = nextInput(caught, () => true) as Promise<ErrorMsg>;
      out.receive({ challenge: { captcha: 'signalcaptcha://wrong', token: 'token' } });
      const e = (await failed).error;
      assert.equal(e.code, 'CHALLENGE_REQUIRED');
      assert.match(e.message, /did not pass/);
    } finally {
      world.sandbox.server.stopRespondingToChallenges();
    }

    for (const [challenge, pattern] of [
      ['signalcaptcha://x', /msg.challenge must be an object/],
      [{ token: 'token' }, /msg.challenge.captcha must be/],
      [{ captcha: 'signalcaptcha://x', token: 7 }, /msg.challenge.token must be text/],
    ] as const) {
      const bad = nextInput(caught, () => true) as Promise<ErrorMsg>;
      out.receive({ challenge });
      const e = (await bad).error;
      assert.equal(e.code, 'INVALID_INPUT');
      assert.match(e.message, pattern);
    }
    // The node still works.
    const sent = nextInput(sink, (m) => m.payload === 'still working');
    out.receive({ payload: 'still working', to: world.bob.device.aci });
    assert.equal(results(await sent)[0]?.status, 'sent');
  });
});
