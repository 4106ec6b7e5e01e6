/**
 * The strict sandbox's multi-recipient rules (test/harness/multi-recipient.ts, checked by
 * conformance.ts): each refuses the engine's own `PUT /v1/messages/multi_recipient` rewritten the
 * way the rule forbids, with Signal-Server's status and its name; the engine's request as it is
 * passes (test/integration/group-send.test.ts asserts no rule fires there).
 */
import assert from 'node:assert/strict';
import { ChatConnection } from '../../core/net/connection';
import type { ChatRequest } from '../../core/net/types';
import { withTimeout, type PrimaryDevice } from '../integration/helpers';
import { makeGroup, startGroupWorld, type GroupWorld } from '../integration/group-world';
import { groupSendToken } from '../../core/groups/send-token';
import type { RuleName } from './conformance';

const isMulti = (req: ChatRequest) =>
  req.verb === 'PUT' && req.path.startsWith('/v1/messages/multi_recipient');

/** Runs `fn` with the engine's multi-recipient requests' headers rewritten by `edit`. */
async function rewritingHeaders<T>(
  edit: (headers: Record<string, string>) => Record<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  const proto = ChatConnection.prototype;
  const original = proto.request;
  proto.request = function request(this: ChatConnection, req: ChatRequest) {
    if (!isMulti(req)) return original.call(this, req);
    return original.call(this, { ...req, headers: edit({ ...req.headers }) });
  };
  try {
    return await fn();
  } finally {
    proto.request = original;
  }
}

describe('harness: strict sandbox, multi-recipient rules (MessageController)', function () {
  this.timeout(120_000);
  let world: GroupWorld;
  const quietFired = () => world.sandbox.conformance.fired;

  beforeEach(async () => {
    world = await startGroupWorld(2);
  });
  afterEach(async () => {
    await world?.sandbox.close();
  });

  function assertFired(rule: RuleName, status: number): void {
    const last = quietFired().at(-1);
    assert.equal(last?.rule, rule);
    assert.equal(last?.status, status);
    assert.equal(last?.path, '/v1/messages/multi_recipient');
    // The route itself never saw the refused request.
    assert.equal(world.sandbox.multiRecipient.length, 0);
  }

  /** A refusal the engine recovers from by sending 1:1: every member still gets the message. */
  async function deliveredOneByOne(phones: PrimaryDevice[], text: string): Promise<void> {
    for (const phone of phones) {
      const entry = await withTimeout(phone.waitForMessage(), 15_000, text);
      assert.equal(entry.body, text);
      assert.notEqual(entry.envelopeType, 'SenderKey', 'sent 1:1 after the refusal');
    }
  }

  it('multi-recipient-content-type: a body not sent as application/vnd.signal-messenger.mrm → 415', async () => {
    const { to } = await makeGroup(world, world.phones);
    await assert.rejects(
      rewritingHeaders(
        (h) => ({ ...h, 'Content-Type': 'application/json' }),
        () => world.client.send(to, { text: 'wrong type' }),
      ),
      /415/,
    );
    assertFired('multi-recipient-content-type', 415);
  });

  it('multi-recipient-authorization: neither token nor key → 401 (the engine goes 1:1); both → 400', async () => {
    const { to } = await makeGroup(world, world.phones);
    await rewritingHeaders(
      ({ 'Group-Send-Token': _t, 'Unidentified-Access-Key': _k, ...rest }) => rest,
      () => world.client.send(to, { text: 'no auth' }),
    );
    assertFired('multi-recipient-authorization', 401);
    await deliveredOneByOne(world.phones, 'no auth');
    await assert.rejects(
      rewritingHeaders(
        (h) => ({ ...h, 'Unidentified-Access-Key': Buffer.alloc(16).toString('base64') }),
        () => world.client.send(to, { text: 'both' }),
      ),
      /400/,
    );
    assertFired('multi-recipient-authorization', 400);
  });

  it('multi-recipient-group-send-token: a valid token for other recipients, or a damaged one → 401', async () => {
    const { record, to } = await makeGroup(world, world.phones);
    const [bob] = world.phones as [PrimaryDevice];
    // A real token of this group's, but for Bob alone: Signal-Server verifies the exact set.
    const bobOnly = groupSendToken({
      group: record,
      selfAci: world.alice.device.aci,
      recipients: [bob.device.aci],
      serverPublicParams: new Uint8Array(
        Buffer.from(world.sandbox.environment.serverPublicParams ?? '', 'base64'),
      ),
      now: Date.now(),
    });
    assert.ok(bobOnly);
    await rewritingHeaders(
      (h) => {
        assert.ok(h['Group-Send-Token'], 'the engine sent a group send token');
        return { ...h, 'Group-Send-Token': Buffer.from(bobOnly).toString('base64') };
      },
      () => world.client.send(to, { text: 'token for bob' }),
    );
    assertFired('multi-recipient-group-send-token', 401);
    await deliveredOneByOne(world.phones, 'token for bob');
    await rewritingHeaders(
      (h) => {
        const token = Buffer.from(h['Group-Send-Token'] ?? '', 'base64');
        token[4] = (token[4] ?? 0) ^ 0xff;
        return { ...h, 'Group-Send-Token': token.toString('base64') };
      },
      () => world.client.send(to, { text: 'damaged token' }),
    );
    assertFired('multi-recipient-group-send-token', 401);
    await deliveredOneByOne(world.phones, 'damaged token');
  });

  it("multi-recipient-access-key: a key that is not the XOR of the recipients' keys → 401", async () => {
    const { to } = await makeGroup(world, world.phones, { endorsements: false });
    await rewritingHeaders(
      (h) => {
        assert.ok(h['Unidentified-Access-Key'], 'the engine sent the combined access key');
        return { ...h, 'Unidentified-Access-Key': Buffer.alloc(16, 1).toString('base64') };
      },
      () => world.client.send(to, { text: 'bad key' }),
    );
    assertFired('multi-recipient-access-key', 401);
    await deliveredOneByOne(world.phones, 'bad key');
  });
});
