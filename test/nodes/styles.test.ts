/**
 * signal-out's styled text (nodes/lib/styles.ts) on its own: markers to Signal body ranges, offsets
 * in UTF-16 code units of the stripped text (each range checked by slicing it back out with
 * String.prototype.slice, which counts the same units), and the msg checks of nodes/lib/rich.ts that
 * refuse a bad msg before any engine call.
 */
import assert from 'node:assert/strict';
import { actionOf } from '../../nodes/lib/rich';
import { parseStyled, stylesOf, type StyleRange } from '../../nodes/lib/styles';

/** Each range as [style, the text it covers]: what the recipient sees styled. */
function covered(text: string, styles: StyleRange[]): Array<[string, string]> {
  return styles.map((s) => [s.style, text.slice(s.start, s.start + s.length)]);
}

const ACI = '2bd3a1a0-9d6b-4bb4-9c5a-4a62d3e2c8f1';

describe('nodes/lib/styles: styled text', () => {
  it('each marker becomes its style over the text between, the markers stripped', () => {
    const { text, styles } = parseStyled('**bold** *italic* ~strike~ `mono` ||spoiler|| plain');
    assert.equal(text, 'bold italic strike mono spoiler plain');
    assert.deepEqual(covered(text, styles), [
      ['bold', 'bold'],
      ['italic', 'italic'],
      ['strikethrough', 'strike'],
      ['monospace', 'mono'],
      ['spoiler', 'spoiler'],
    ]);
    assert.deepEqual(styles[0], { style: 'bold', start: 0, length: 4 });
  });

  it('offsets count UTF-16 code units: an emoji (a surrogate pair) before a range moves it by 2', () => {
    const { text, styles } = parseStyled('👍 **ok** 😀*x*');
    assert.equal(text, '👍 ok 😀x');
    assert.deepEqual(styles, [
      { style: 'bold', start: 3, length: 2 },
      { style: 'italic', start: 8, length: 1 },
    ]);
    assert.deepEqual(covered(text, styles), [
      ['bold', 'ok'],
      ['italic', 'x'],
    ]);
  });

  it('a range over emoji and combining characters covers every code unit of them', () => {
    // "e" + COMBINING ACUTE ACCENT (2 units, 1 visible letter), a family emoji joined by ZWJs (8).
    const family = '👨\u200d👩\u200d👧';
    const { text, styles } = parseStyled(`*e\u0301* ||${family}|| **🇩🇪 ok**`);
    assert.equal(text, `e\u0301 ${family} 🇩🇪 ok`);
    assert.deepEqual(covered(text, styles), [
      ['italic', 'e\u0301'],
      ['spoiler', family],
      ['bold', '🇩🇪 ok'],
    ]);
    assert.deepEqual(styles[0], { style: 'italic', start: 0, length: 2 });
    assert.deepEqual(styles[1], { style: 'spoiler', start: 3, length: family.length });
    assert.equal(family.length, 8);
  });

  it('styles nest; ***x*** is bold and italic over the same text', () => {
    const nested = parseStyled('**bold *both* bold**');
    assert.equal(nested.text, 'bold both bold');
    assert.deepEqual(covered(nested.text, nested.styles), [
      ['bold', 'bold both bold'],
      ['italic', 'both'],
    ]);
    const both = parseStyled('***both***');
    assert.equal(both.text, 'both');
    assert.deepEqual(both.styles.map((s) => [s.style, s.start, s.length]).sort(), [
      ['bold', 0, 4],
      ['italic', 0, 4],
    ]);
    const mono = parseStyled('~gone `code` gone~');
    assert.deepEqual(covered(mono.text, mono.styles), [
      ['strikethrough', 'gone code gone'],
      ['monospace', 'code'],
    ]);
  });

  it('inside `mono` nothing else is markup', () => {
    const { text, styles } = parseStyled('`a *b* ||c||`');
    assert.equal(text, 'a *b* ||c||');
    assert.deepEqual(styles, [{ style: 'monospace', start: 0, length: text.length }]);
  });

  it('an unclosed marker is text, and so is an empty pair', () => {
    for (const s of ['unclosed **bold', 'a *b', '~x', '`x', '||x', '****', '~~', '``', '||||'])
      assert.deepEqual(parseStyled(s), { text: s, styles: [] }, s);
    // The unclosed one stays text while a later pair still styles.
    const { text, styles } = parseStyled('2 ~ 3 and *this*');
    assert.equal(text, '2 ~ 3 and this');
    assert.deepEqual(covered(text, styles), [['italic', 'this']]);
  });

  it('a marker next to a space on the wrong side is text: arithmetic stays as written', () => {
    for (const s of ['5 * 3 * 2', '** not bold **', 'a ~ b ~ c', 'x | y || z'])
      assert.deepEqual(parseStyled(s), { text: s, styles: [] }, s);
  });

  it('a marker closing an outer style leaves the styles opened inside it as text', () => {
    const { text, styles } = parseStyled('~a **b~ c');
    assert.equal(text, 'a **b c');
    assert.deepEqual(covered(text, styles), [['strikethrough', 'a **b']]);
  });

  it('a backslash makes a marker text and is removed; before anything else it stays', () => {
    const escaped = parseStyled('\\*not italic\\* \\~ \\` \\|\\| \\\\');
    assert.deepEqual(escaped, { text: '*not italic* ~ ` || \\', styles: [] });
    assert.deepEqual(parseStyled('C:\\temp\\new'), { text: 'C:\\temp\\new', styles: [] });
    // An escaped marker inside a span is its text; the span's offsets count it once.
    const inside = parseStyled('**2\\*3** x');
    assert.equal(inside.text, '2*3 x');
    assert.deepEqual(covered(inside.text, inside.styles), [['bold', '2*3']]);
    // An escaped backslash before a marker leaves the marker a marker.
    const doubled = parseStyled('\\\\*x*');
    assert.equal(doubled.text, '\\x');
    assert.deepEqual(covered(doubled.text, doubled.styles), [['italic', 'x']]);
  });

  it('plain text without markers comes back unchanged, with no ranges', () => {
    assert.deepEqual(parseStyled('hello, world 👋'), { text: 'hello, world 👋', styles: [] });
  });
});

describe('nodes/lib/styles and rich: msg checks before anything is sent', () => {
  it('msg.styles: an unknown style name is refused, naming it and the known ones', () => {
    assert.throws(
      () => stylesOf([{ style: 'underline', start: 0, length: 1 }]),
      (e: Error & { code?: string }) =>
        e.code === 'INVALID_INPUT' &&
        /msg\.styles\[0\]\.style "underline" is not a Signal text style: use one of bold, italic, strikethrough, monospace, spoiler/.test(
          e.message,
        ),
    );
    assert.throws(() => stylesOf([{ style: 'bold', start: -1, length: 1 }]), /\.start/);
    assert.throws(() => stylesOf('bold'), /msg\.styles must be an array/);
  });

  const rows: Array<{ name: string; msg: Record<string, unknown>; message: RegExp }> = [
    {
      name: 'a reaction without its target timestamp',
      msg: { reaction: { emoji: '👍', author: ACI } },
      message: /msg\.reaction\.timestamp must be a message's timestamp .* but it is missing/,
    },
    {
      name: 'a reaction without its author',
      msg: { reaction: { emoji: '👍', timestamp: 1 } },
      message: /msg\.reaction\.author must be a Signal ACI/,
    },
    {
      name: 'a reaction without an emoji',
      msg: { reaction: { timestamp: 1, author: ACI } },
      message: /msg\.reaction\.emoji/,
    },
    {
      name: 'msg.edit text, not a number',
      msg: { edit: '1700000000000', payload: 'x' },
      message: /msg\.edit must be a message's timestamp .* but it is text/,
    },
    {
      name: 'msg.delete a fraction',
      msg: { delete: 1.5 },
      message: /msg\.delete must be a message's timestamp .*\(1\.5\)/,
    },
    {
      name: 'two kinds in one msg',
      msg: { reaction: { emoji: '👍', timestamp: 1, author: ACI }, delete: 1 },
      message: /msg\.reaction and msg\.delete are both set/,
    },
    {
      name: 'msg.typing not a boolean',
      msg: { typing: 'yes' },
      message: /msg\.typing must be true .* or false/,
    },
    {
      name: 'a receipt of an unknown type',
      msg: { receipt: { type: 'delivered', timestamps: [1] } },
      message: /msg\.receipt\.type must be "read" or "viewed"/,
    },
    {
      name: 'a receipt with no timestamps',
      msg: { receipt: { type: 'read', timestamps: [] } },
      message: /msg\.receipt\.timestamps must be a non-empty array/,
    },
    {
      name: 'a quote whose author is a phone number',
      msg: { payload: 'x', quote: { timestamp: 1, author: '+15551234567' } },
      message: /msg\.quote\.author must be a Signal ACI/,
    },
    {
      name: 'a mention with a negative start',
      msg: { payload: 'x', mentions: [{ aci: ACI, start: -1, length: 1 }] },
      message: /msg\.mentions\[0\]\.start must be a whole number from 0/,
    },
    {
      name: 'msg.expiresInSeconds text',
      msg: { payload: 'x', expiresInSeconds: '60' },
      message: /msg\.expiresInSeconds must be a whole number/,
    },
    {
      name: 'a quote with a reaction (it would be dropped)',
      msg: {
        reaction: { emoji: '👍', timestamp: 1, author: ACI },
        quote: { timestamp: 1, author: ACI },
      },
      message: /msg\.quote cannot go with msg\.reaction/,
    },
  ];
  for (const row of rows) {
    it(`${row.name}: INVALID_INPUT naming the property`, () => {
      assert.throws(
        () => actionOf(row.msg, false),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'INVALID_INPUT');
          assert.match(e.message, row.message);
          return true;
        },
      );
    });
  }

  it('a styled payload and msg.mentions: the mentions pass unchanged, counting in the stripped text', () => {
    const action = actionOf(
      { payload: '**Hi** Bob', mentions: [{ aci: ACI.toUpperCase(), start: 3, length: 3 }] },
      true,
    );
    assert.equal(action.kind, 'message');
    if (action.kind !== 'message') return;
    assert.equal(action.message.text, 'Hi Bob');
    assert.deepEqual(action.message.mentions, [{ aci: ACI, start: 3, length: 3 }]);
    assert.equal(action.message.text.slice(3, 6), 'Bob');
    assert.deepEqual(action.message.styles, [{ style: 'bold', start: 0, length: 2 }]);
  });

  it('plain text keeps its markers; an edit carries the new text and its target', () => {
    assert.deepEqual(actionOf({ payload: '**x**' }, false), {
      kind: 'message',
      message: { text: '**x**' },
      attachments: [],
    });
    assert.deepEqual(actionOf({ payload: '*new*', edit: 17 }, true), {
      kind: 'edit',
      targetTimestamp: 17,
      message: { text: 'new', styles: [{ style: 'italic', start: 0, length: 3 }] },
    });
    assert.deepEqual(actionOf({ typing: false }, false), { kind: 'typing', started: false });
  });
});
