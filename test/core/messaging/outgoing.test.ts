import assert from 'node:assert/strict';
import { InvalidInputError } from '../../../core/errors';
import {
  MENTION_PLACEHOLDER,
  checkAci,
  checkOutgoing,
  checkReaction,
  checkTimestamps,
  outgoingText,
} from '../../../core/messaging/outgoing';
import type { OutgoingMessage, OutgoingReaction } from '../../../core/types';

const ACI = '9d0652a3-dcc3-4d11-975f-74d61598733f';
const OTHER = 'a1b2c3d4-0000-4000-8000-000000000001';

function refused(fn: () => unknown, field: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InvalidInputError, String(e));
    assert.match(e.message, field);
    return true;
  });
}

describe('core/messaging/outgoing: the message model checked before sending', () => {
  it('plain text passes as is; an unknown field is refused by name', () => {
    assert.deepEqual(checkOutgoing({ text: 'hi' }), {
      body: 'hi',
      bodyRanges: [],
      attachments: [],
    });
    assert.equal(outgoingText({ text: 'hi' }), 'hi');
    refused(
      () => checkOutgoing({ text: 'hi', sticker: {} } as unknown as OutgoingMessage),
      /"sticker"/,
    );
    refused(() => checkOutgoing({ text: '' }), /empty/);
    refused(() => checkOutgoing({ text: 3 } as unknown as OutgoingMessage), /string/);
    refused(() => checkOutgoing(null as unknown as OutgoingMessage), /object/);
  });

  it('long text: over 2,000 UTF-8 bytes, the body is cut at a code point and the whole goes as longText', () => {
    const short = checkOutgoing({ text: 'a'.repeat(2000) });
    assert.equal(short.longText, undefined);
    // 1999 ASCII bytes then a 4-byte emoji: the cut must fall before the emoji, not inside it.
    const text = 'a'.repeat(1999) + '😀' + 'tail';
    const long = checkOutgoing({
      text,
      styles: [
        { style: 'bold', start: 0, length: 5 },
        { style: 'italic', start: 1995, length: 8 },
      ],
    });
    assert.equal(long.body, 'a'.repeat(1999));
    assert.equal(Buffer.from(long.longText!).toString('utf8'), text);
    // Ranges keep the whole text's offsets (receivers apply them to the long text), past the cut too.
    assert.deepEqual(long.bodyRanges, [
      { start: 0, length: 5, style: 1 },
      { start: 1995, length: 8, style: 2 },
    ]);
    refused(() => checkOutgoing({ text: 'é'.repeat(32 * 1024 + 1) }), /^text: 65538 UTF-8 bytes/);
    assert.ok(checkOutgoing({ text: 'é'.repeat(32 * 1024) }).longText);
  });

  it('attachments: text optional, each entry checked by index', () => {
    const ok = checkOutgoing({
      attachments: [{ data: Buffer.from('x'), contentType: 'Image/PNG', width: 2, height: 3 }],
    });
    assert.equal(ok.body, '');
    assert.deepEqual(ok.attachments[0], {
      source: { data: Buffer.from('x') },
      size: 1,
      contentType: 'image/png',
      width: 2,
      height: 3,
    });
    assert.equal(
      checkOutgoing({ attachments: [{ data: Buffer.from('x') }] }).attachments[0]!.contentType,
      'application/octet-stream',
    );
    refused(
      () => checkOutgoing({ attachments: [{ data: Buffer.from('x'), contentType: 'png' }] }),
      /attachments\[0\]\.contentType/,
    );
    refused(
      () => checkOutgoing({ attachments: [{ data: Buffer.from('x'), width: -1 }] }),
      /attachments\[0\]\.width/,
    );
    refused(
      () => checkOutgoing({ attachments: [{ data: 'x' }] } as unknown as OutgoingMessage),
      /attachments\[0\]\.data must be a Buffer/,
    );
    refused(
      () =>
        checkOutgoing({
          attachments: [{ data: Buffer.from('x'), url: 'http://x' }],
        } as unknown as OutgoingMessage),
      /attachments\[0\] field "url"/,
    );
    refused(() => checkOutgoing({ attachments: [] }), /neither text nor attachments/);
  });

  it('a mention becomes one U+FFFC and the later ranges move with it (UTF-16 offsets)', () => {
    // "🙂" is two code units; the combining acute accent is one more after its "e".
    const text = '🙂 @Alice e\u0301!';
    const at = text.indexOf('@');
    const out = checkOutgoing({
      text,
      mentions: [{ aci: ACI.toUpperCase(), start: at, length: 6 }],
      styles: [
        { style: 'bold', start: at + 7, length: 2 },
        { style: 'spoiler', start: 0, length: text.length },
      ],
    });
    assert.equal(out.body, `🙂 ${MENTION_PLACEHOLDER} e\u0301!`);
    assert.deepEqual(out.bodyRanges, [
      { start: 3, length: 1, mentionAci: ACI },
      { start: 5, length: 2, style: 1 },
      { start: 0, length: out.body.length, style: 3 },
    ]);
  });

  it('a text already holding the placeholder keeps it (a mention of length 1)', () => {
    const out = checkOutgoing({
      text: `hi ${MENTION_PLACEHOLDER}`,
      mentions: [{ aci: ACI, start: 3, length: 1 }],
    });
    assert.equal(out.body, `hi ${MENTION_PLACEHOLDER}`);
    assert.deepEqual(out.bodyRanges, [{ start: 3, length: 1, mentionAci: ACI }]);
  });

  it('each style maps to its BodyRange.Style value', () => {
    const styles = ['bold', 'italic', 'spoiler', 'strikethrough', 'monospace'] as const;
    const out = checkOutgoing({
      text: 'abcde',
      styles: styles.map((style, i) => ({ style, start: i, length: 1 })),
    });
    assert.deepEqual(
      out.bodyRanges.map((r) => ('style' in r ? r.style : -1)),
      [1, 2, 3, 4, 5],
    );
  });

  it('refuses ranges outside the text, negative or fractional, empty, unknown styles, bad ACIs', () => {
    const m = (mentions: unknown) =>
      checkOutgoing({ text: 'hello', mentions } as unknown as OutgoingMessage);
    const s = (styles: unknown) =>
      checkOutgoing({ text: 'hello', styles } as unknown as OutgoingMessage);
    refused(() => m([{ aci: ACI, start: 6, length: 1 }]), /mentions\[0\]\.start .*outside/);
    refused(
      () =>
        m([
          { aci: ACI, start: 0, length: 1 },
          { aci: ACI, start: 3, length: 3 },
        ]),
      /mentions\[1\]\.length/,
    );
    refused(() => m([{ aci: ACI, start: -1, length: 1 }]), /mentions\[0\]\.start .*non-negative/);
    refused(() => m([{ aci: ACI, start: 0.5, length: 1 }]), /mentions\[0\]\.start/);
    refused(() => m([{ aci: ACI, start: 0, length: 0 }]), /mentions\[0\]\.length/);
    refused(() => m([{ aci: 'PNI:' + ACI, start: 0, length: 1 }]), /mentions\[0\]\.aci/);
    refused(() => m([{ aci: 'bob', start: 0, length: 1 }]), /mentions\[0\]\.aci/);
    refused(
      () =>
        m([
          { aci: ACI, start: 0, length: 2 },
          { aci: OTHER, start: 1, length: 2 },
        ]),
      /mentions\[1\] overlaps mentions\[0\]/,
    );
    refused(() => m({}), /mentions must be an array/);
    refused(() => m([{ aci: ACI, start: 0, length: 1, name: 'x' }]), /mentions\[0\] field "name"/);
    refused(() => s([{ style: 'underline', start: 0, length: 1 }]), /styles\[0\]\.style/);
    refused(() => s([{ style: 'bold', start: 2, length: 9 }]), /styles\[0\]\.length/);
    refused(() => s([{ style: 'bold', start: 0 }]), /styles\[0\]\.length/);
  });

  it('refuses a boundary inside a surrogate pair, and a style cutting through a mention', () => {
    refused(
      () => checkOutgoing({ text: '🙂x', styles: [{ style: 'bold', start: 1, length: 2 }] }),
      /styles\[0\]\.start falls inside a surrogate pair/,
    );
    refused(
      () =>
        checkOutgoing({
          text: 'hi @Bob',
          mentions: [{ aci: ACI, start: 3, length: 4 }],
          styles: [{ style: 'bold', start: 0, length: 5 }],
        }),
      /styles\[0\] cuts through mentions\[0\]/,
    );
  });

  it('checks the quote and the timer', () => {
    const out = checkOutgoing({
      text: 'reply',
      quote: { timestamp: 1700000000000, author: ACI, text: 'orig' },
      expiresInSeconds: 0,
    });
    assert.deepEqual(out.quote, { id: 1700000000000, authorAci: ACI, text: 'orig' });
    assert.equal(out.expiresInSeconds, 0);
    const q = (quote: unknown) => checkOutgoing({ text: 'x', quote } as unknown as OutgoingMessage);
    refused(() => q({ timestamp: 0, author: ACI }), /quote\.timestamp/);
    refused(() => q({ timestamp: 1.5, author: ACI }), /quote\.timestamp/);
    refused(() => q({ timestamp: 5 }), /quote\.author/);
    refused(() => q({ timestamp: 5, author: ACI, id: 3 }), /quote field "id"/);
    refused(() => checkOutgoing({ text: 'x', expiresInSeconds: -1 }), /expiresInSeconds/);
    refused(() => checkOutgoing({ text: 'x', expiresInSeconds: 1.5 }), /expiresInSeconds/);
    refused(() => checkOutgoing({ text: 'x', expiresInSeconds: 2 ** 32 }), /expiresInSeconds/);
  });

  it('a reaction needs one emoji grapheme and its target', () => {
    const base = { targetAuthor: ACI, targetTimestamp: 1234 };
    for (const emoji of ['👍', '👍🏽', '❤️', '❤', '🏳️‍🌈', '1️⃣', '🇫🇷'])
      assert.equal(checkReaction({ ...base, emoji }).emoji, emoji);
    assert.equal(checkReaction({ ...base, emoji: '👍' }).remove, false);
    const r = (reaction: unknown) => checkReaction(reaction as OutgoingReaction);
    refused(() => r({ ...base, emoji: '👍👍' }), /emoji/);
    refused(() => r({ ...base, emoji: 'a' }), /emoji/);
    refused(() => r({ ...base, emoji: '' }), /emoji/);
    refused(() => r({ emoji: '👍', targetAuthor: ACI }), /targetTimestamp/);
    refused(() => r({ emoji: '👍', targetTimestamp: 5 }), /targetAuthor/);
    refused(() => r({ ...base, emoji: '👍', targetAuthor: 'PNI:' + ACI }), /targetAuthor/);
    refused(() => r({ ...base, emoji: '👍', remove: 'yes' }), /remove/);
    refused(() => r({ ...base, emoji: '👍', extra: 1 }), /"extra"/);
  });

  it('timestamps and ACIs', () => {
    assert.deepEqual(checkTimestamps([1, 2], 'timestamps'), [1, 2]);
    refused(() => checkTimestamps([], 'timestamps'), /timestamps must be a non-empty/);
    refused(() => checkTimestamps([1, -2], 'timestamps'), /timestamps\[1\]/);
    assert.equal(checkAci(ACI.toUpperCase(), 'x'), ACI);
  });
});
