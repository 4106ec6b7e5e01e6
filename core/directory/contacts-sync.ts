/**
 * The contacts blob a primary sends to its linked devices (PROTOCOL.md §7): a stream of
 * varint-length-prefixed ContactDetails, each optionally followed by an inline avatar of
 * `avatar.length` bytes (skipped: we keep no avatars).
 */
import { Aci } from '@signalapp/libsignal-client';
import { ContactDetails } from '../../proto';
import { ProtocolError } from '../errors';

export interface SyncedContact {
  number: string | null;
  aci: string | null;
  name: string | null;
}

function readVarint(buf: Uint8Array, pos: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  for (let i = pos; i < buf.length && shift < 35; i++) {
    const b = buf[i] ?? 0;
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return { value, next: i + 1 };
    shift += 7;
  }
  throw new ProtocolError('Contacts blob: truncated length prefix');
}

export function parseContactsBlob(blob: Uint8Array): SyncedContact[] {
  const out: SyncedContact[] = [];
  let pos = 0;
  while (pos < blob.length) {
    const { value: len, next } = readVarint(blob, pos);
    if (next + len > blob.length)
      throw new ProtocolError('Contacts blob: a record runs past the end');
    let details: ContactDetails;
    try {
      details = ContactDetails.decode(blob.subarray(next, next + len));
    } catch (e) {
      throw new ProtocolError('Contacts blob: malformed ContactDetails', { cause: e });
    }
    pos = next + len + (details.avatar?.length ?? 0);
    let aci: string | null = null;
    if (details.aciBinary && details.aciBinary.length === 16)
      aci = Aci.fromUuidBytes(details.aciBinary).getRawUuid();
    else if (details.aci) aci = details.aci.toLowerCase();
    out.push({ number: details.number || null, aci, name: details.name || null });
  }
  return out;
}
