/**
 * signal-out's rich messages against the sandbox: a quote, mentions, styled text and a timer reach
 * Bob's phone as Signal's DataMessage fields; a reaction, a read receipt, typing, an edit and a
 * delete each go out instead of a new message, with msg.signal and done(err) as for plain sends.
 * Then the bad-input table: each bad msg is INVALID_INPUT naming its property, nothing reaches Bob,
 * and the node still sends. The engine methods these call (SignalClient.react, markRead, edit…) come
 * with the engine's branch of the rich-messaging issue.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import type { NodeMessage } from '../../nodes/lib/red';
import { withTimeout } from '../harness/sandbox';
import {
  accountConfig,
  helper,
  linkThroughAdminRoutes,
  nextError,
  nextInput,
  phonesPerSuite,
  statusesOf,
  type AccountTestNode,
  type TestNode,
} from './support';

/** The signal.* a send leaves on the msg. */
interface Sent {
  timestamp?: number;
  results: Array<{ to: string; status: string; timestamp?: number; error?: { code: string } }>;
}

/** An ACI as the phone decoded it: the string field, or the 16-byte binary one newer clients send. */
function aciOf(text: string | null | undefined, binary: Uint8Array | null | undefined): string {
  if (text) return text.toLowerCase();
  assert.ok(binary && binary.length === 16, 'an ACI, as text or 16 bytes');
  const hex = Buffer.from(binary).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Signal's BodyRange.Style numbers (SignalService.proto). */
const STYLE = { bold: 1, italic: 2, spoiler: 3, strikethrough: 4, monospace: 5 } as const;

describe('nodes: signal-out rich messages (quote, mentions, styles, reactions, receipts, typing, edit, delete)', function () {
  this.timeout(60_000);
  const world = phonesPerSuite();
  // One account linked for the suite; its flow unloads (inner after) before the sandbox closes.
  describe('one linked account, a plain and a styled signal-out', () => {
    let ourAci = '';
    let good = 0;
    let sends = 0;
    let dataDir = '';
    const node = (id: string) => helper.getNode(id) as TestNode;

    before(async () => {
      const { sandbox } = world;
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-rich-out-'));
      helper.settings({ signalAccountDataDir: dataDir });
      await helper.load(
        [accountNode, outNode],
        [
          accountConfig(sandbox, 'acct1', 'Alice'),
          { id: 'plainOut', type: 'signal-out', account: 'acct1', to: '', wires: [['sink']] },
          {
            id: 'styledOut',
            type: 'signal-out',
            account: 'acct1',
            to: '',
            textStyle: 'styled',
            wires: [['sink']],
          },
          { id: 'sink', type: 'helper' },
        ],
      );
      await linkThroughAdminRoutes(sandbox, 'acct1', world.alice);
      const client = await (helper.getNode('acct1') as AccountTestNode).client();
      ourAci = String(client.account?.aci);
    });
    after(async () => {
      await helper.unload();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    /** msg into node `id`; its output msg.signal once sent (every recipient sent). */
    async function send(id: string, msg: NodeMessage): Promise<Sent> {
      // A topic of its own picks this msg's output out of the sink's.
      const topic = `rich ${++sends}`;
      const out = nextInput(node('sink'), (m) => m.topic === topic);
      node(id).receive({ ...msg, topic });
      const signal = (await out).signal as Sent;
      assert.deepEqual(
        signal.results.map((r) => r.status),
        ['sent'],
        JSON.stringify(signal.results),
      );
      return signal;
    }

    const bobMessage = () => withTimeout(world.bob.waitForMessage(), 10_000, 'bob message');

    /** A plain message to Bob; its timestamp (the id that quotes, reactions, edits name). */
    async function sendPlain(text: string): Promise<number> {
      const signal = await send('plainOut', { payload: text, to: world.bob.device.aci });
      assert.equal((await bobMessage()).body, text);
      assert.ok(signal.timestamp);
      return signal.timestamp;
    }

    async function expectInvalid(id: string, msg: NodeMessage, message: RegExp) {
      const err = nextError(node(id));
      node(id).receive(msg);
      const e = await err;
      assert.equal(e.code, 'INVALID_INPUT', e.message);
      assert.match(e.message, message);
      assert.deepEqual(statusesOf(id).at(-1), {
        fill: 'red',
        shape: 'ring',
        text: 'invalid input',
      });
    }

    /** The node sends again, and Bob's next message is that one: nothing of the bad msg came first. */
    async function expectSendWorks(id: string) {
      const text = `still works ${++good}`;
      await send(id, { payload: text, to: world.bob.device.aci });
      assert.equal((await bobMessage()).body, text);
      assert.deepEqual(statusesOf(id).at(-1), { fill: 'green', shape: 'dot', text: 'sent to 1' });
    }

    it('styled text, a mention, a quote and a timer arrive as body ranges, quote and expireTimer', async () => {
      const quoted = await sendPlain('the question');
      const bob = world.bob.device.aci;
      // "**Hi** Bob, see *this* 👍" is sent as "Hi Bob, see this 👍": Bob at 3, "this" at 12.
      await send('styledOut', {
        payload: '**Hi** Bob, see *this* 👍',
        to: bob,
        mentions: [{ aci: bob, start: 3, length: 3 }],
        quote: { timestamp: quoted, author: ourAci, text: 'the question' },
        expiresInSeconds: 3600,
      });
      // The timer changes first, as its own message (EXPIRATION_TIMER_UPDATE, no body).
      const timer = await bobMessage();
      assert.equal(timer.body, '');
      assert.equal((timer.dataMessage.flags ?? 0) & 2, 2);
      assert.equal(timer.dataMessage.expireTimer, 3600);
      // The mention's text ("Bob") is replaced in the body by one U+FFFC, as Signal sends
      // mentions; the ranges after it move with it ("this" from 12 to 10).
      const m = await bobMessage();
      assert.equal(m.body, 'Hi \uFFFC, see this 👍');
      const ranges = m.dataMessage.bodyRanges.map((r) => {
        const v = (r.associatedValue ?? {}) as {
          style?: number;
          mentionAci?: string;
          mentionAciBinary?: Uint8Array;
        };
        return {
          start: r.start,
          length: r.length,
          ...(v.style !== undefined ? { style: v.style } : {}),
          ...(v.mentionAci || v.mentionAciBinary
            ? { mention: aciOf(v.mentionAci, v.mentionAciBinary) }
            : {}),
        };
      });
      assert.deepEqual(
        ranges.sort((a, b) => (a.start ?? 0) - (b.start ?? 0)),
        [
          { start: 0, length: 2, style: STYLE.bold },
          { start: 3, length: 1, mention: bob },
          { start: 10, length: 4, style: STYLE.italic },
        ],
      );
      assert.equal(m.body.slice(10, 14), 'this');
      const q = m.dataMessage.quote;
      assert.ok(q);
      assert.equal(q.id, BigInt(quoted));
      assert.equal(aciOf(q.authorAci, q.authorAciBinary), ourAci);
      assert.equal(m.dataMessage.expireTimer, 3600);
    });

    it('a plain node sends the markers as written', async () => {
      await send('plainOut', { payload: '**not styled**', to: world.bob.device.aci });
      const m = await bobMessage();
      assert.equal(m.body, '**not styled**');
      assert.deepEqual(m.dataMessage.bodyRanges, []);
    });

    it('msg.reaction reacts to a message instead of sending one; remove: true takes it back', async () => {
      const target = await sendPlain('react to me');
      const reaction = { emoji: '👍', timestamp: target, author: ourAci };
      const signal = await send('plainOut', { reaction, to: world.bob.device.aci });
      assert.ok(signal.timestamp);
      assert.deepEqual(statusesOf('plainOut').at(-1), {
        fill: 'green',
        shape: 'dot',
        text: 'reaction sent to 1',
      });
      const m = await bobMessage();
      const r = m.dataMessage.reaction;
      assert.ok(r, 'a reaction, not a new message');
      assert.equal(m.body, '');
      assert.equal(r.emoji, '👍');
      assert.equal(r.targetSentTimestamp, BigInt(target));
      assert.equal(aciOf(r.targetAuthorAci, r.targetAuthorAciBinary), ourAci);
      assert.ok(!r.remove);
      await send('plainOut', { reaction: { ...reaction, remove: true }, to: world.bob.device.aci });
      assert.equal((await bobMessage()).dataMessage.reaction?.remove, true);
    });

    it('msg.receipt sends a read receipt for the given timestamps', async () => {
      const timestamps = [Date.now() - 5000, Date.now() - 4000];
      await send('plainOut', { receipt: { type: 'read', timestamps }, to: world.bob.device.aci });
      const r = await withTimeout(world.bob.waitForReceipt(), 10_000, 'bob receipt');
      assert.equal(r.receiptMessage.type, 1, 'READ');
      assert.deepEqual(r.receiptMessage.timestamp, timestamps.map(BigInt));
      assert.deepEqual(statusesOf('plainOut').at(-1), {
        fill: 'green',
        shape: 'dot',
        text: 'receipt sent to 1',
      });
    });

    it('msg.typing sends a typing indicator (started, then stopped), never a message', async () => {
      await send('plainOut', { typing: true, to: world.bob.device.aci });
      await send('plainOut', { typing: false, to: world.bob.device.aci });
      assert.deepEqual(statusesOf('plainOut').at(-1), {
        fill: 'green',
        shape: 'dot',
        text: 'typing sent to 1',
      });
      // The phone queues no typing indicator; it got no message from them either.
      await expectSendWorks('plainOut');
    });

    it('msg.edit replaces a sent message’s text with the payload (styled as the node says)', async () => {
      const target = await sendPlain('teh typo');
      await send('styledOut', { edit: target, payload: 'the *fix*', to: world.bob.device.aci });
      const e = await withTimeout(world.bob.waitForEditMessage(), 10_000, 'bob edit');
      assert.equal(e.editMessage.targetSentTimestamp, BigInt(target));
      assert.equal(e.editMessage.dataMessage?.body, 'the fix');
      assert.deepEqual(
        e.editMessage.dataMessage?.bodyRanges.map((r) => [r.start, r.length]),
        [[4, 3]],
      );
      assert.deepEqual(statusesOf('styledOut').at(-1), {
        fill: 'green',
        shape: 'dot',
        text: 'edit sent to 1',
      });
    });

    it('msg.delete deletes a sent message for everyone', async () => {
      const target = await sendPlain('regret');
      await send('plainOut', { delete: target, to: world.bob.device.aci });
      const m = await bobMessage();
      assert.equal(m.dataMessage.delete?.targetSentTimestamp, BigInt(target));
      assert.deepEqual(statusesOf('plainOut').at(-1), {
        fill: 'green',
        shape: 'dot',
        text: 'delete sent to 1',
      });
    });

    it('a mention outside the text: the engine’s INVALID_INPUT reaches done(err) and msg.signal, then the node still sends', async () => {
      const bob = world.bob.device.aci;
      const err = nextError(node('plainOut'));
      const out = nextInput(node('sink'), (m) => m.payload === 'short');
      node('plainOut').receive({
        payload: 'short',
        to: bob,
        mentions: [{ aci: bob, start: 3, length: 10 }],
      });
      const e = await err;
      assert.equal(e.code, 'INVALID_INPUT');
      assert.match(e.message, /mention/i);
      // The engine's own range check, not today's refusal of a field it cannot send.
      assert.doesNotMatch(e.message, /not one this engine can send/);
      const signal = (await out).signal as Sent;
      assert.equal(signal.results[0]?.error?.code, 'INVALID_INPUT');
      assert.ok(!('timestamp' in signal));
      await expectSendWorks('plainOut');
    });

    // Refused at the node boundary, before the engine: these hold with or without its new methods.
    const rows: Array<{ name: string; id?: string; msg: () => NodeMessage; message: RegExp }> = [
      {
        name: 'a reaction without a target timestamp',
        msg: () => ({ reaction: { emoji: '👍', author: ourAci }, to: world.bob.device.aci }),
        message: /msg\.reaction\.timestamp must be a message's timestamp/,
      },
      {
        name: 'a reaction without a target author',
        msg: () => ({ reaction: { emoji: '👍', timestamp: 1 }, to: world.bob.device.aci }),
        message: /msg\.reaction\.author must be a Signal ACI/,
      },
      {
        name: 'msg.edit not a number',
        msg: () => ({ edit: 'yesterday', payload: 'x', to: world.bob.device.aci }),
        message: /msg\.edit must be a message's timestamp .* but it is text/,
      },
      {
        name: 'two kinds in one msg',
        msg: () => ({ typing: true, delete: 1, to: world.bob.device.aci }),
        message: /msg\.typing and msg\.delete are both set/,
      },
      {
        name: 'an unknown style name in msg.styles',
        msg: () => ({
          payload: 'x',
          styles: [{ style: 'underline', start: 0, length: 1 }],
          to: world.bob.device.aci,
        }),
        message: /msg\.styles\[0\]\.style "underline" is not a Signal text style/,
      },
      {
        name: 'a receipt whose timestamps are not numbers',
        msg: () => ({ receipt: { type: 'read', timestamps: ['x'] }, to: world.bob.device.aci }),
        message: /msg\.receipt\.timestamps\[0\]/,
      },
      {
        name: 'a quote with a delete',
        msg: () => ({
          delete: 1,
          quote: { timestamp: 1, author: ourAci },
          to: world.bob.device.aci,
        }),
        message: /msg\.quote cannot go with msg\.delete/,
      },
      {
        name: 'a styled payload that is an object',
        id: 'styledOut',
        msg: () => ({ payload: { text: '*x*' }, to: world.bob.device.aci }),
        message: /msg\.payload must be text/,
      },
    ];
    for (const row of rows) {
      it(`${row.name}: INVALID_INPUT naming it, nothing sent, then the node still sends`, async () => {
        const id = row.id ?? 'plainOut';
        await expectInvalid(id, row.msg(), row.message);
        await expectSendWorks(id);
      });
    }
  });
});
