/**
 * The "Command bot" example end to end against the mock server: Bob sends "/status"; he gets a 👀
 * reaction on it, a read receipt for it, and a reply quoting it in styled text (bold and monospace
 * body ranges). It uses signal-out's msg.reaction, msg.receipt, msg.quote and its *Text style:
 * styled* option, built on the sending branches: until they are merged this test fails here.
 */
import assert from 'node:assert/strict';
import accountNode = require('../../nodes/signal-account');
import inNode = require('../../nodes/signal-in');
import outNode = require('../../nodes/signal-out');
import { introduce } from '../harness/mock-phone';
import { withTimeout } from '../harness/sandbox';
import {
  accountConfig,
  freshDataDirPerTest,
  helper,
  linkThroughAdminRoutes,
  phonesPerSuite,
} from './support';
import { coreNode, readExample, type FlowNode } from './examples-support';
import type { AccountTestNode } from './support';

const functionNode = coreNode('function/10-function.js');
const commentNode = coreNode('common/90-comment.js');

describe('examples: "Command bot" end to end (needs the sending branches merged)', function () {
  this.timeout(90_000);
  const world = phonesPerSuite();
  freshDataDirPerTest('sigflow-command-bot-');

  it('"/status" gets a 👀 reaction, a read receipt and a styled reply quoting it', async () => {
    const example = readExample('Command bot.json');
    const nodes: FlowNode[] = [
      { id: 'tab', type: 'tab', label: 'example' },
      ...example.map((n) =>
        n.type === 'signal-account'
          ? (accountConfig(world.sandbox, n.id, String(n.name)) as FlowNode)
          : { ...n, z: 'tab' },
      ),
    ];
    await helper.load([accountNode, inNode, outNode, functionNode, commentNode] as never, nodes);
    const account = nodes.find((n) => n.type === 'signal-account');
    assert.ok(account);
    await linkThroughAdminRoutes(world.sandbox, account.id, world.alice);
    const client = await (helper.getNode(account.id) as AccountTestNode).client();
    const device = await introduce(world.sandbox, client, world.bob);

    const sentAt = Date.now();
    await world.bob.sendText(device, '/status', { timestamp: sentAt, withProfileKey: true });

    const read = (async () => {
      for (;;) {
        const r = await world.bob.waitForReceipt();
        if (Number(r.receiptMessage.type) === 1) return r;
      }
    })();
    const reactions: Array<{ emoji: string; targetSentTimestamp: bigint }> = [];
    const replies: Array<{
      body: string;
      quote?: { id: bigint };
      bodyRanges?: Array<{ associatedValue?: unknown }>;
    }> = [];
    await withTimeout(
      (async () => {
        while (reactions.length === 0 || replies.length === 0) {
          const m = await world.bob.waitForMessage();
          const dm = m.dataMessage as unknown as Record<string, unknown>;
          if (dm.reaction) reactions.push(dm.reaction as (typeof reactions)[number]);
          else replies.push({ ...(dm as object), body: m.body } as (typeof replies)[number]);
        }
      })(),
      15_000,
      'the reaction and the reply',
    );
    const [r] = reactions;
    const [answer] = replies;
    assert.ok(r && answer);
    assert.equal(r.emoji, '👀');
    assert.equal(Number(r.targetSentTimestamp), sentAt);
    assert.match(answer.body, /^All systems go/, 'the markdown markers are gone');
    assert.equal(Number(answer.quote?.id), sentAt, 'the reply quotes the command');
    const styles = (answer.bodyRanges ?? []).map((b) => JSON.stringify(b.associatedValue));
    assert.ok(
      styles.some((s) => s.includes('"style":1')),
      'bold',
    );
    assert.ok(
      styles.some((s) => s.includes('"style":5')),
      'monospace',
    );
    const receipt = await withTimeout(read, 10_000, 'read receipt');
    assert.deepEqual(
      (receipt.receiptMessage.timestamp ?? []).map((t) => Number(t)),
      [sentAt],
    );
  });
});
