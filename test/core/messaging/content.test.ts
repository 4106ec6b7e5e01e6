import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  GroupMasterKey,
  GroupSecretParams,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import { contentEffects, parseContent, serviceIdFrom } from '../../../core/messaging/content';
import {
  deliveryReceipt,
  nullMessage,
  sentTranscript,
  serializeContent,
  textDataMessage,
} from '../../../core/messaging/compose';
import { ReceiptMessage, TypingMessage } from '../../../proto';
import { Aci, Pni } from '@signalapp/libsignal-client';

const from = { aci: randomUUID(), device: 2 };
const ctx = { from, timestamp: 1000, serverTimestamp: 2000, sealed: true };

describe('messaging/content', () => {
  it('round-trips a text message into a message event with quote, timer and profile key', () => {
    const profileKey = new Uint8Array(32).fill(7);
    const quoteAuthor = randomUUID();
    const bytes = serializeContent({
      dataMessage: {
        ...textDataMessage({ body: 'hello', timestamp: 1234, profileKey, expireTimer: 60 }),
        quote: {
          id: 99,
          authorAciBinary: Aci.fromUuid(quoteAuthor).getServiceIdBinary(),
          text: 'q',
        },
      },
    });
    const fx = contentEffects(parseContent(bytes), ctx);
    assert.deepEqual(new Uint8Array(fx.profileKey ?? []), profileKey);
    assert.equal(fx.events.length, 1);
    const ev = fx.events[0];
    assert.ok(ev && ev.type === 'message');
    assert.equal(ev.body, 'hello');
    assert.equal(ev.timestamp, 1234);
    assert.equal(ev.serverTimestamp, 2000);
    assert.equal(ev.sealed, true);
    assert.equal(ev.expiresInSeconds, 60);
    assert.deepEqual(ev.quote, { id: 99, authorAci: quoteAuthor, text: 'q' });
  });

  it('maps a reaction to a message event whose body is the emoji', () => {
    const target = randomUUID();
    const fx = contentEffects(
      parseContent(
        serializeContent({
          dataMessage: {
            timestamp: 5,
            reaction: { emoji: '👍', targetAuthorAci: target, targetSentTimestamp: 4 },
          },
        }),
      ),
      ctx,
    );
    const ev = fx.events[0];
    assert.ok(ev && ev.type === 'message');
    assert.equal(ev.body, '👍');
    assert.deepEqual(ev.reaction, {
      emoji: '👍',
      remove: false,
      targetTimestamp: 4,
      targetAuthorAci: target,
    });
  });

  it('derives the group id of a group message from its master key', () => {
    const masterKey = new Uint8Array(32).fill(3);
    const expected = Buffer.from(
      GroupSecretParams.deriveFromMasterKey(new GroupMasterKey(masterKey))
        .getPublicParams()
        .getGroupIdentifier()
        .serialize(),
    ).toString('base64');
    const fx = contentEffects(
      parseContent(
        serializeContent({ dataMessage: { body: 'g', timestamp: 1, groupV2: { masterKey } } }),
      ),
      ctx,
    );
    const ev = fx.events[0];
    assert.ok(ev && ev.type === 'message');
    assert.equal(ev.groupId, expected);
  });

  it('turns a sent transcript into a sync event naming the destination', () => {
    const dest = randomUUID();
    const content = sentTranscript({
      destinationServiceId: dest,
      timestamp: 77,
      message: textDataMessage({ body: 'to bob', timestamp: 77 }),
      unidentified: false,
    });
    const ev = contentEffects(parseContent(serializeContent(content)), ctx).events[0];
    assert.ok(ev && ev.type === 'sync');
    assert.equal(ev.destination, dest);
    assert.equal(ev.body, 'to bob');
    assert.equal(ev.timestamp, 77);
  });

  it("a transcript of the phone's message to a group: no destination, the group's id", () => {
    const masterKey = new Uint8Array(32).fill(5);
    const expected = Buffer.from(
      GroupSecretParams.deriveFromMasterKey(new GroupMasterKey(masterKey))
        .getPublicParams()
        .getGroupIdentifier()
        .serialize(),
    ).toString('base64');
    const content = sentTranscript({
      timestamp: 78,
      message: { ...textDataMessage({ body: 'to all', timestamp: 78 }), groupV2: { masterKey } },
      group: [{ serviceId: randomUUID(), unidentified: true }],
    });
    const ev = contentEffects(parseContent(serializeContent(content)), ctx).events[0];
    assert.ok(ev && ev.type === 'sync');
    assert.equal(ev.destination, undefined);
    assert.equal(ev.groupId, expected);
    assert.equal(ev.body, 'to all');
  });

  it('maps receipts and typing, and ignores a null message', () => {
    const receipt = contentEffects(parseContent(serializeContent(deliveryReceipt([1, 2]))), ctx)
      .events[0];
    assert.ok(receipt && receipt.type === 'receipt');
    assert.equal(receipt.receiptType, 'delivery');
    assert.deepEqual(receipt.timestamps, [1, 2]);
    const read = contentEffects(
      parseContent(
        serializeContent({ receiptMessage: { type: ReceiptMessage.Type.READ, timestamp: [3] } }),
      ),
      ctx,
    ).events[0];
    assert.ok(read && read.type === 'receipt' && read.receiptType === 'read');
    const typing = contentEffects(
      parseContent(
        serializeContent({ typingMessage: { timestamp: 9, action: TypingMessage.Action.STOPPED } }),
      ),
      ctx,
    ).events[0];
    assert.ok(typing && typing.type === 'typing' && typing.action === 'stopped');
    assert.deepEqual(contentEffects(parseContent(serializeContent(nullMessage())), ctx).events, []);
  });

  it('does not emit a message for a data message with neither text nor reaction', () => {
    const fx = contentEffects(
      parseContent(
        serializeContent({ dataMessage: { timestamp: 1, profileKey: new Uint8Array(32) } }),
      ),
      ctx,
    );
    assert.deepEqual(fx.events, []);
    assert.equal(fx.profileKey?.length, 32);
  });

  it('reads service ids from binary and string fields, PNIs with their prefix', () => {
    const uuid = randomUUID();
    assert.equal(serviceIdFrom(Pni.fromUuid(uuid).getServiceIdBinary(), undefined), `PNI:${uuid}`);
    assert.equal(serviceIdFrom(undefined, uuid), uuid);
    assert.equal(serviceIdFrom(new Uint8Array([1, 2, 3]), undefined), undefined);
    assert.equal(serviceIdFrom(undefined, 'not-a-uuid'), undefined);
  });
});

describe('messaging/content: edits, deletes, ranges, timers, view-once', () => {
  const effectsOf = (content: Parameters<typeof serializeContent>[0]) =>
    contentEffects(parseContent(serializeContent(content)), ctx).events;

  it('an EditMessage is an edit event for its target, with the new body and ranges, never a message', () => {
    const events = effectsOf({
      editMessage: {
        targetSentTimestamp: 500,
        dataMessage: {
          body: 'fixed',
          timestamp: 600,
          bodyRanges: [{ start: 0, length: 5, style: 2 }],
        },
      },
    });
    assert.deepEqual(events, [
      {
        type: 'edit',
        from,
        timestamp: 600,
        serverTimestamp: 2000,
        sealed: true,
        targetTimestamp: 500,
        body: 'fixed',
        styles: [{ style: 'italic', start: 0, length: 5 }],
      },
    ]);
  });

  it('DataMessage.delete is a delete event', () => {
    const events = effectsOf({ dataMessage: { timestamp: 7, delete: { targetSentTimestamp: 6 } } });
    assert.equal(events.length, 1);
    assert.ok(events[0]?.type === 'delete');
    assert.equal(events[0].targetTimestamp, 6);
  });

  it('mentions (binary or string ACI) and styles keep their UTF-16 offsets; NONE is left out', () => {
    const a = randomUUID();
    const b = randomUUID();
    const events = effectsOf({
      dataMessage: {
        body: '😀 \uFFFC \uFFFC hi',
        timestamp: 8,
        bodyRanges: [
          { start: 3, length: 1, mentionAciBinary: Aci.fromUuid(a).getServiceIdBinary() },
          { start: 5, length: 1, mentionAci: b },
          { start: 7, length: 2, style: 4 },
          { start: 0, length: 1, style: 0 },
        ],
      },
    });
    const ev = events[0];
    assert.ok(ev?.type === 'message');
    assert.deepEqual(ev.mentions, [
      { aci: a, start: 3, length: 1 },
      { aci: b, start: 5, length: 1 },
    ]);
    assert.deepEqual(ev.styles, [{ style: 'strikethrough', start: 7, length: 2 }]);
  });

  it('a timer update without text is a timer event; with text, the message reports the change', () => {
    const only = effectsOf({
      dataMessage: { timestamp: 9, flags: 2, expireTimer: 0, expireTimerVersion: 3 },
    });
    assert.ok(only[0]?.type === 'timer');
    assert.equal(only[0].expiresInSeconds, 0);
    assert.equal(only[0].version, 3);
    const withText = effectsOf({
      dataMessage: { body: 'timer on', timestamp: 10, flags: 2, expireTimer: 60 },
    });
    assert.ok(withText[0]?.type === 'message');
    assert.deepEqual(withText[0].timerChange, { expiresInSeconds: 60 });
    assert.equal(withText[0].expiresInSeconds, 60);
  });

  it('view-once is flagged; a profile-key-only data message is still no event', () => {
    const once = effectsOf({ dataMessage: { timestamp: 11, isViewOnce: true } });
    assert.ok(once[0]?.type === 'message');
    assert.equal(once[0].viewOnce, true);
    assert.deepEqual(
      effectsOf({ dataMessage: { timestamp: 12, profileKey: new Uint8Array(32) } }),
      [],
    );
  });
});
