/**
 * Message padding (PROTOCOL.md §5): Content is padded with 0x80 then zeros to a multiple of 160
 * bytes before encryption, so ciphertext sizes leak little. Peers strip it; Signal's own clients fail
 * on unpadded content.
 */
import { ProtocolError } from '../errors';

const BLOCK = 160;

export function padMessage(content: Uint8Array): Uint8Array<ArrayBuffer> {
  const size = Math.ceil((content.length + 1) / BLOCK) * BLOCK;
  const out = new Uint8Array(size);
  out.set(content, 0);
  out[content.length] = 0x80;
  return out;
}

export function unpadMessage(padded: Uint8Array): Uint8Array {
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) throw new ProtocolError('Malformed message padding');
  return padded.subarray(0, i);
}
