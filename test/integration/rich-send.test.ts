import assert from 'node:assert/strict';
import { Aci } from '@signalapp/libsignal-client';
import type { SignalClient } from '../../core/client';
import { InvalidInputError } from '../../core/errors';
import {
  inspect,
  linkClient,
  startSandbox,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
} from './helpers';

/** The ACI string a mock entry's 16 raw UUID bytes stand for. */
function aciOf(bytes: Uint8Array | null | undefined): string | undefined {
  return bytes && bytes.length === 16 ? Aci.fromUuidBytes(bytes).getServiceIdString() : undefined;
}

interface TypingSeen {
  action: number;
  timestamp: number;
}

/**
 * The mock primary drops typing messages (NEXT-WAVE.md §1.3): wrap its TS-private `decrypt`, which
 * handleEnvelope calls, and record the typingMessage of each decrypted Content. Relies on
 * @signalapp/mock-server 27.0.0's internals (`decrypt` returns `{content: Proto.Content}` whose
 * oneof sits under `content.content`).
 */
function watchTyping(primary: PrimaryDevice): TypingSeen[] {
  const seen: TypingSeen[] = [];
  const counted = new WeakSet<object>();
  type Decrypted = {
    content?: { content?: { typingMessage?: { action?: number; timestamp?: unknown } } };
  };
  const target = primary as unknown as { decrypt: (...args: unknown[]) => Promise<Decrypted> };
  const original = target.decrypt.bind(primary);
  target.decrypt = async (...args: unknown[]) => {
    const result = await original(...args);
    const typing = result.content?.content?.typingMessage;
    if (typing && !counted.has(result)) {
      counted.add(result);
      seen.push({ action: typing.action ?? 0, timestamp: Number(typing.timestamp) });
    }
    return result;
  };
  return seen;
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('integration: rich 1:1 sends observed on the mock phones', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  let alice: PrimaryDevice;
  let bob: PrimaryDevice;
  let client: SignalClient;

  before(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    ({ client } = await linkClient(sandbox, alice));
  });
  after(async () => {
    await sandbox.close();
  });

  it('a quote, mentions and styles with UTF-16 offsets across emoji and combining characters', async () => {
    const original = await client.send(bob.device.aci, { text: 'the original' });
    await withTimeout(bob.waitForMessage(), 10_000, 'original');
    // "👋🏽 " is 5 code units (two surrogate pairs + space); "é" written e + U+0301 is 2.
    const text = '👋🏽 @Bob cafe\u0301 **now**';
    const at = text.indexOf('@Bob');
    const cafe = text.indexOf('cafe');
    const result = await client.send(bob.device.aci, {
      text,
      quote: { timestamp: original.timestamp, author: alice.device.aci, text: 'the original' },
      mentions: [{ aci: bob.device.aci, start: at, length: 4 }],
      styles: [
        { style: 'bold', start: cafe, length: 5 },
        { style: 'italic', start: 0, length: at + 4 },
        { style: 'strikethrough', start: text.indexOf('**'), length: 7 },
        { style: 'monospace', start: 0, length: 4 },
        { style: 'spoiler', start: text.length - 1, length: 1 },
      ],
    });
    const got = await withTimeout(bob.waitForMessage(), 10_000, 'rich message');
    const dm = got.dataMessage;
    assert.equal(Number(dm.timestamp), result.timestamp);
    // The mention's "@Bob" is one U+FFFC in the body; every later offset moves back by 3.
    assert.equal(got.body, '👋🏽 \uFFFC cafe\u0301 **now**');
    assert.equal(Number(dm.quote?.id), original.timestamp);
    assert.equal(aciOf(dm.quote?.authorAciBinary), alice.device.aci);
    assert.equal(dm.quote?.text, 'the original');
    const ranges = (dm.bodyRanges ?? []).map((r) => ({
      start: r.start,
      length: r.length,
      mention: aciOf(r.associatedValue?.mentionAciBinary),
      style: r.associatedValue?.style ?? undefined,
    }));
    assert.deepEqual(ranges, [
      { start: 5, length: 1, mention: bob.device.aci, style: undefined },
      { start: cafe - 3, length: 5, mention: undefined, style: 1 },
      { start: 0, length: 6, mention: undefined, style: 2 },
      { start: text.indexOf('**') - 3, length: 7, mention: undefined, style: 4 },
      { start: 0, length: 4, mention: undefined, style: 5 },
      { start: text.length - 4, length: 1, mention: undefined, style: 3 },
    ]);
  });

  it('carries the chat timer and changes it with its own EXPIRATION_TIMER_UPDATE, version bumped', async () => {
    const first = await client.send(bob.device.aci, { text: 'no timer yet' });
    assert.equal(first.expiresInSeconds, 0);
    const plain = await withTimeout(bob.waitForMessage(), 10_000, 'plain');
    assert.ok(!plain.dataMessage.expireTimer, 'no timer');
    assert.equal(plain.dataMessage.expireTimerVersion, 1);

    const timed = await client.send(bob.device.aci, {
      text: 'now it vanishes',
      expiresInSeconds: 3600,
    });
    assert.equal(timed.expiresInSeconds, 3600);
    const update = await withTimeout(bob.waitForMessage(), 10_000, 'timer update');
    assert.equal((update.dataMessage.flags ?? 0) & 2, 2, 'EXPIRATION_TIMER_UPDATE');
    assert.equal(update.dataMessage.expireTimer, 3600);
    assert.equal(update.dataMessage.expireTimerVersion, 2);
    assert.ok(!update.dataMessage.body);
    const text = await withTimeout(bob.waitForMessage(), 10_000, 'timed text');
    assert.equal(text.body, 'now it vanishes');
    assert.equal(text.dataMessage.expireTimer, 3600);
    assert.equal(text.dataMessage.expireTimerVersion, 2);
    assert.equal((text.dataMessage.flags ?? 0) & 2, 0);

    // Every later send carries it, reactions too; the same value again is no new update.
    await client.send(bob.device.aci, { text: 'still timed', expiresInSeconds: 3600 });
    const again = await withTimeout(bob.waitForMessage(), 10_000, 'still timed');
    assert.equal(again.body, 'still timed');
    assert.equal(again.dataMessage.expireTimer, 3600);

    // A timer change from the chat (the receive side calls noteTimer) wins when its version is newer.
    const store = inspect(client).store()!;
    assert.equal(store.conversations.noteTimer(bob.device.aci, 60, 1), false, 'older version');
    assert.equal(store.conversations.noteTimer(bob.device.aci, 60, 5), true);
    await client.send(bob.device.aci, { text: 'their timer' });
    const theirs = await withTimeout(bob.waitForMessage(), 10_000, 'their timer');
    assert.equal(theirs.dataMessage.expireTimer, 60);
    assert.equal(theirs.dataMessage.expireTimerVersion, 5);

    // Off again (0): a change to version 6, and later messages carry no timer.
    await client.send(bob.device.aci, { text: 'timer off', expiresInSeconds: 0 });
    const off = await withTimeout(bob.waitForMessage(), 10_000, 'off update');
    assert.equal((off.dataMessage.flags ?? 0) & 2, 2);
    assert.ok(!off.dataMessage.expireTimer);
    assert.equal(off.dataMessage.expireTimerVersion, 6);
    const afterOff = await withTimeout(bob.waitForMessage(), 10_000, 'after off');
    assert.ok(!afterOff.dataMessage.expireTimer);
  });

  it('reacts and removes the reaction', async () => {
    const target = await client.send(bob.device.aci, { text: 'react to me' });
    await withTimeout(bob.waitForMessage(), 10_000, 'target');
    await client.react(bob.device.aci, {
      emoji: '👍🏽',
      targetAuthor: alice.device.aci,
      targetTimestamp: target.timestamp,
    });
    const got = await withTimeout(bob.waitForMessage(), 10_000, 'reaction');
    assert.equal(got.body, '');
    assert.equal(got.dataMessage.reaction?.emoji, '👍🏽');
    assert.ok(!got.dataMessage.reaction?.remove);
    assert.equal(aciOf(got.dataMessage.reaction?.targetAuthorAciBinary), alice.device.aci);
    assert.equal(Number(got.dataMessage.reaction?.targetSentTimestamp), target.timestamp);
    await client.react(bob.device.aci, {
      emoji: '👍🏽',
      targetAuthor: alice.device.aci,
      targetTimestamp: target.timestamp,
      remove: true,
    });
    const removed = await withTimeout(bob.waitForMessage(), 10_000, 'removal');
    assert.equal(removed.dataMessage.reaction?.remove, true);
    assert.equal(Number(removed.dataMessage.reaction?.targetSentTimestamp), target.timestamp);
  });

  it('read and viewed receipts go to the sender, and the read sync to our own phone', async () => {
    const stamps = [Date.now() - 5000, Date.now() - 4000];
    await client.markRead(bob.device.aci, stamps);
    const read = await withTimeout(bob.waitForReceipt(), 10_000, 'read receipt');
    assert.equal(read.receiptMessage.type, 1);
    assert.deepEqual(read.receiptMessage.timestamp?.map(Number), stamps);
    const sync = await withTimeout(
      alice.waitForSyncMessage((e) => Boolean(e.syncMessage.read?.length)),
      10_000,
      'read sync',
    );
    assert.deepEqual(
      sync.syncMessage.read?.map((r) => [aciOf(r.senderAciBinary), Number(r.timestamp)]),
      stamps.map((t) => [bob.device.aci, t]),
    );

    await client.markViewed(bob.device.aci, [stamps[0]!]);
    const viewed = await withTimeout(bob.waitForReceipt(), 10_000, 'viewed receipt');
    assert.equal(viewed.receiptMessage.type, 2);
    assert.deepEqual(viewed.receiptMessage.timestamp?.map(Number), [stamps[0]]);
    const vsync = await withTimeout(
      alice.waitForSyncMessage((e) => Boolean(e.syncMessage.viewed?.length)),
      10_000,
      'viewed sync',
    );
    assert.equal(aciOf(vsync.syncMessage.viewed?.[0]?.senderAciBinary), bob.device.aci);
  });

  it('typing started and stopped reach the phone (seen through the decrypt wrapper)', async () => {
    const seen = watchTyping(bob);
    const started = await client.typing(bob.device.aci, true);
    await client.typing(bob.device.aci, false);
    await until(() => seen.length >= 2, 10_000, 'two typing messages');
    assert.deepEqual(
      seen.map((t) => t.action),
      [0, 1],
    );
    assert.equal(seen[0]!.timestamp, started.timestamp);
    assert.equal(bob.getMessageQueueSize(), 0, 'typing is no data message');
    assert.equal(
      inspect(client).store()!.sent.find(bob.device.aci, started.timestamp),
      undefined,
      'typing is not kept for retries',
    );
  });

  it('edits our own message (the edit targets the original) and deletes it for everyone', async () => {
    const sent = await client.send(bob.device.aci, { text: 'teh typo' });
    await withTimeout(bob.waitForMessage(), 10_000, 'to edit');
    const edited = await client.edit(bob.device.aci, sent.timestamp, {
      text: 'the fix',
      styles: [{ style: 'bold', start: 4, length: 3 }],
    });
    const edit = await withTimeout(bob.waitForEditMessage(), 10_000, 'edit');
    assert.equal(Number(edit.editMessage.targetSentTimestamp), sent.timestamp);
    assert.equal(edit.editMessage.dataMessage?.body, 'the fix');
    assert.equal(Number(edit.editMessage.dataMessage?.timestamp), edited.timestamp);
    assert.equal(edit.editMessage.dataMessage?.bodyRanges?.[0]?.associatedValue?.style, 1);
    const transcript = await withTimeout(
      alice.waitForSyncMessage((e) => Boolean(e.syncMessage.content?.sent?.editMessage)),
      10_000,
      'edit transcript',
    );
    assert.equal(
      Number(transcript.syncMessage.content?.sent?.editMessage?.targetSentTimestamp),
      sent.timestamp,
    );
    // An edit of the edit names the original again.
    await client.edit(bob.device.aci, edited.timestamp, { text: 'the fix, again' });
    const second = await withTimeout(bob.waitForEditMessage(), 10_000, 'second edit');
    assert.equal(Number(second.editMessage.targetSentTimestamp), sent.timestamp);

    await client.deleteForEveryone(bob.device.aci, sent.timestamp);
    const del = await withTimeout(bob.waitForMessage(), 10_000, 'delete');
    assert.equal(Number(del.dataMessage.delete?.targetSentTimestamp), sent.timestamp);
    await assert.rejects(
      client.edit(bob.device.aci, sent.timestamp, { text: 'too late' }),
      /deleted for everyone/,
    );
  });

  it('refuses bad input naming the field, and nothing reaches the phones', async () => {
    const queues = () => [
      bob.getMessageQueueSize(),
      bob.getReceiptQueueSize(),
      bob.getEditQueueSize(),
    ];
    assert.deepEqual(queues(), [0, 0, 0]);
    const refuses = async (p: Promise<unknown>, field: RegExp) =>
      assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof InvalidInputError, String(e));
        assert.match(e.message, field);
        return true;
      });
    await refuses(
      client.react(bob.device.aci, {
        emoji: '👍',
        targetAuthor: bob.device.aci,
      } as unknown as Parameters<SignalClient['react']>[1]),
      /targetTimestamp/,
    );
    await refuses(
      client.edit(bob.device.aci, Date.now() - 1000, { text: 'not mine' }),
      /targetTimestamp: .* not a message this account sent/,
    );
    const theirs = await client.send(bob.device.aci, { text: 'to bob only' });
    await withTimeout(bob.waitForMessage(), 10_000, 'to bob only');
    const carol = await sandbox.createPrimary({ profileName: 'Carol' });
    await refuses(
      client.deleteForEveryone(carol.device.aci, theirs.timestamp),
      /targetTimestamp: .* not a message this account sent/,
    );
    await refuses(
      client.send(bob.device.aci, {
        text: 'hi @Bob',
        mentions: [
          { aci: bob.device.aci, start: 3, length: 4 },
          { aci: bob.device.aci, start: 6, length: 4 },
        ],
      }),
      /mentions\[1\]\.length/,
    );
    await refuses(
      client.send(bob.device.aci, {
        text: 'hi',
        styles: [{ style: 'underline' as 'bold', start: 0, length: 2 }],
      }),
      /styles\[0\]\.style/,
    );
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(queues(), [0, 0, 0]);
    assert.equal(carol.getMessageQueueSize(), 0);
  });
});
