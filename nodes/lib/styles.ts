/**
 * signal-out's "Text style: styled": light markup in the payload turned into Signal body ranges.
 * `**bold**`, `*italic*`, `~strike~`, `` `mono` ``, `||spoiler||`; the markers are stripped and each
 * styled span becomes {style, start, length} in UTF-16 code units of the stripped text, which is how
 * Signal counts BodyRange offsets (its apps are JavaScript, Java and Swift's NSString: UTF-16).
 *
 * The rules (the node's help says the same):
 * - A backslash before a marker character (`*`, `~`, `` ` ``, `|`) or before a backslash makes it
 *   literal and is removed; any other backslash stays as written.
 * - An opening marker must be followed by a character that is not white space, and a closing marker
 *   preceded by one, so that `5 * 3 * 2` stays arithmetic. A marker that can do neither is text.
 * - A marker closes the innermost open span of its style. When it matches an outer span instead, the
 *   spans opened inside that one are unclosed: their markers stay as text.
 * - An opening marker never closed, and an empty pair (`****`, `~~`), are text.
 * - In a run of asterisks, closing comes before opening and the innermost span closes first, so
 *   `***both***` is bold and italic over the same word.
 * - Inside `` `mono` `` nothing else is markup (code stays as written); mono may sit inside the others.
 * - `|` alone is text; only `||` marks a spoiler.
 */
import { InvalidInputError } from '../../core/errors';
import type { OutgoingMessage, TextStyle } from '../../core/types';

export const STYLES = ['bold', 'italic', 'strikethrough', 'monospace', 'spoiler'] as const;
export type Style = TextStyle & (typeof STYLES)[number];

/** A style range of the engine's outgoing-message model (core/types.ts). */
export type StyleRange = NonNullable<OutgoingMessage['styles']>[number];

/** One piece of the output: literal text, or a marker whose fate is decided once it is matched. */
interface Piece {
  text: string;
  /** Set on markers; a marker still unmatched at the end is literal text. */
  marker?: { matched: boolean };
}

interface Open {
  style: Style;
  /** Index of the opening marker's piece. */
  piece: number;
  /** Output length (in code units, markers counted as text) when it opened: detects empty pairs. */
  at: number;
}

const ESCAPABLE = new Set(['*', '~', '`', '|', '\\']);
const isSpace = (c: string | undefined): boolean => c === undefined || /\s/.test(c);

/** The payload with its markers stripped, and the style ranges they marked (sorted by start). */
export function parseStyled(input: string): { text: string; styles: StyleRange[] } {
  const pieces: Piece[] = [];
  const spans: Array<{ style: Style; open: number; close: number }> = [];
  const stack: Open[] = [];
  let length = 0; // code units emitted so far, unmatched markers included (decides "empty")
  let last: string | undefined; // the last character emitted, for the closing rule

  const literal = (s: string) => {
    pieces.push({ text: s });
    length += s.length;
    last = s[s.length - 1];
  };
  const top = (): Open | undefined => stack[stack.length - 1];
  const open = (style: Style, marker: string) => {
    stack.push({ style, piece: pieces.length, at: length });
    pieces.push({ text: marker, marker: { matched: false } });
    length += marker.length;
    last = marker[marker.length - 1];
  };
  /** Closes the span of `style` at `depth` of the stack; spans above it stay unclosed (literal). */
  const close = (depth: number, marker: string) => {
    const o = stack[depth] as Open;
    stack.length = depth;
    (pieces[o.piece] as Piece).marker = { matched: true };
    spans.push({ style: o.style, open: o.piece, close: pieces.length });
    pieces.push({ text: marker, marker: { matched: true } });
    length += marker.length;
    last = marker[marker.length - 1];
  };
  const depthOf = (style: Style): number => {
    for (let d = stack.length - 1; d >= 0; d--) if (stack[d]?.style === style) return d;
    return -1;
  };
  /**
   * One marker of `style` at `i` (`width` characters): closes, opens, or is text. Returns whether it
   * was used as a marker.
   */
  const marker = (style: Style, i: number, width: number, canOpen: boolean): boolean => {
    const mark = input.slice(i, i + width);
    const d = depthOf(style);
    if (d >= 0 && !isSpace(last)) {
      const o = stack[d] as Open;
      // Nothing between the pair: not a span. Its opener stays text, and so does this marker.
      if (d === stack.length - 1 && length === o.at + mark.length) {
        stack.length = d;
        literal(mark);
        return true;
      }
      close(d, mark);
      return true;
    }
    if (canOpen && !isSpace(input[i + width])) {
      open(style, mark);
      return true;
    }
    return false;
  };

  let i = 0;
  while (i < input.length) {
    const c = input[i] as string;
    const inMono = top()?.style === 'monospace';
    if (c === '\\' && ESCAPABLE.has(input[i + 1] ?? '')) {
      literal(input[i + 1] as string);
      i += 2;
      continue;
    }
    if (c === '`') {
      if (!marker('monospace', i, 1, true)) literal(c);
      i += 1;
      continue;
    }
    if (inMono) {
      literal(c);
      i += 1;
      continue;
    }
    if (c === '*') {
      let n = 0;
      while (input[i + n] === '*') n++;
      const end = i + n;
      // Closing first, innermost first; then closing an outer span; then opening, bold first.
      const attempts = (left: number): Array<[Style, number, boolean]> => {
        const t = top()?.style;
        const tries: Array<[Style, number, boolean]> = [];
        if (t === 'italic') tries.push(['italic', 1, false]);
        if (t === 'bold' && left >= 2) tries.push(['bold', 2, false]);
        if (left >= 2 && depthOf('bold') >= 0) tries.push(['bold', 2, false]);
        if (depthOf('italic') >= 0) tries.push(['italic', 1, false]);
        if (left >= 2 && depthOf('bold') < 0) tries.push(['bold', 2, true]);
        if (depthOf('italic') < 0) tries.push(['italic', 1, true]);
        return tries;
      };
      while (i < end) {
        const hit = attempts(end - i).find(([style, width, canOpen]) =>
          marker(style, i, width, canOpen),
        );
        if (hit) i += hit[1];
        else {
          literal('*');
          i += 1;
        }
      }
      continue;
    }
    if (c === '~') {
      if (!marker('strikethrough', i, 1, true)) literal(c);
      i += 1;
      continue;
    }
    if (c === '|' && input[i + 1] === '|') {
      if (!marker('spoiler', i, 2, true)) literal('||');
      i += 2;
      continue;
    }
    literal(c);
    i += 1;
  }

  // Offsets in the stripped text: matched markers take no room, everything else is text.
  const at: number[] = new Array<number>(pieces.length + 1);
  let text = '';
  pieces.forEach((p, k) => {
    at[k] = text.length;
    if (!p.marker?.matched) text += p.text;
  });
  at[pieces.length] = text.length;
  const styles = spans
    .map((s) => {
      const start = at[s.open + 1] as number;
      return { style: s.style, start, length: (at[s.close] as number) - start };
    })
    .sort((a, b) => a.start - b.start || b.length - a.length);
  return { text, styles };
}

/** Checks raw ranges a flow gives (msg.styles): a known style and whole-number offsets. */
export function stylesOf(value: unknown, what = 'msg.styles'): StyleRange[] {
  if (!Array.isArray(value))
    throw new InvalidInputError(`${what} must be an array of {style, start, length}`);
  return value.map((r: unknown, i) => {
    const name = `${what}[${i}]`;
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      throw new InvalidInputError(`${name} must be an object {style, start, length}`);
    const { style, start, length } = r as Record<string, unknown>;
    if (typeof style !== 'string' || !(STYLES as readonly string[]).includes(style)) {
      throw new InvalidInputError(
        `${name}.style ${JSON.stringify(style)} is not a Signal text style: use one of ${STYLES.join(', ')}`,
      );
    }
    if (!Number.isSafeInteger(start) || (start as number) < 0)
      throw new InvalidInputError(`${name}.start must be a whole number from 0`);
    if (!Number.isSafeInteger(length) || (length as number) < 1)
      throw new InvalidInputError(`${name}.length must be a whole number from 1`);
    return { style: style as Style, start: start as number, length: length as number };
  });
}
