/**
 * The contacts blob a primary sends to its linked devices (PROTOCOL.md §7): a stream of
 * varint-length-prefixed ContactDetails, each optionally followed by an inline avatar of
 * `avatar.length` bytes (skipped: we keep no avatars).
 *
 * A profile key (field 6) lets us send to that contact with sealed sender before they ever write to
 * us. Signal's current protos have retired the field (it is `reserved` in ours, and profile keys now
 * travel through the storage service), but primaries that still write it are read.
 */
import { Aci } from '@signalapp/libsignal-client';
import { ContactDetails, type signalservice } from '../../proto';
import type { Environment } from '../config';
import { decryptAttachment } from '../crypto/attachment';
import { ProtocolError } from '../errors';
import type { Logger } from '../log';
import { httpsGet } from '../net/https';

export interface SyncedContact {
  number: string | null;
  aci: string | null;
  name: string | null;
  /** 32 bytes, when the primary included one. */
  profileKey: Uint8Array | null;
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

/** ContactDetails field 6, a length-delimited value. */
const PROFILE_KEY_FIELD = 6;

/**
 * The retired profileKey field, read from a record's top-level fields (our decoder, like Signal's
 * current protos, has no field 6 and discards unknown fields). Anything it cannot walk costs only
 * the key; the record itself was already decoded.
 */
function legacyProfileKey(record: Uint8Array): Uint8Array | null {
  let key: Uint8Array | null = null;
  try {
    let pos = 0;
    while (pos < record.length) {
      const tag = readVarint(record, pos);
      pos = tag.next;
      const field = Math.floor(tag.value / 8);
      const wire = tag.value % 8;
      if (wire === 0) pos = readVarint(record, pos).next;
      else if (wire === 1) pos += 8;
      else if (wire === 5) pos += 4;
      else if (wire === 2) {
        const len = readVarint(record, pos);
        const end = len.next + len.value;
        if (end > record.length) return null;
        // A profile key is 32 bytes; anything else is not one (and would break the access key).
        if (field === PROFILE_KEY_FIELD && len.value === 32)
          key = new Uint8Array(record.subarray(len.next, end));
        pos = end;
      } else return key; // groups: long obsolete, and never before field 6 in practice
    }
  } catch {
    return null;
  }
  return key;
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
    out.push({
      number: details.number || null,
      aci,
      name: details.name || null,
      profileKey: legacyProfileKey(blob.subarray(next, next + len)),
    });
  }
  return out;
}

/** What applying a contacts blob needs from the contacts table. */
export interface SyncedContactsSink {
  transaction<T>(fn: () => T): T;
  upsert(update: {
    e164?: string;
    aci?: string;
    name?: string;
    profileKey?: Uint8Array;
    source: 'sync';
  }): boolean;
}

/** Stores synced contacts in one transaction (those with neither number nor ACI are skipped). */
export function storeSyncedContacts(sink: SyncedContactsSink, contacts: SyncedContact[]): number {
  let stored = 0;
  sink.transaction(() => {
    for (const c of contacts) {
      if (!c.number && !c.aci) continue;
      sink.upsert({
        ...(c.number ? { e164: c.number } : {}),
        ...(c.aci ? { aci: c.aci } : {}),
        ...(c.name ? { name: c.name } : {}),
        ...(c.profileKey ? { profileKey: c.profileKey } : {}),
        source: 'sync',
      });
      stored++;
    }
  });
  return stored;
}

/** How long lookups right after linking wait for the phone's contacts before going on without. */
export const CONTACTS_WAIT_MS = 10_000;

export interface ContactsSyncOptions {
  environment: Environment;
  sink: SyncedContactsSink;
  logger: Logger;
  /** Told the number of contacts each time a blob was stored. */
  onSynced: (count: number) => void;
  waitMs?: number;
}

/**
 * The contacts blob a primary sends after our sync request (§7), and the gate that holds lookups
 * until it came: numbers sent to or looked up right after linking would otherwise race the phone's
 * contacts (a second or so on the mock; on a custom server they are the only way to resolve a
 * number). The gate opens when the blob was stored, after `waitMs`, or on close().
 */
export class ContactsSync {
  private gate: { done: Promise<void>; open: () => void } | null = null;
  private closed = false;

  constructor(private readonly opts: ContactsSyncOptions) {}

  /** Resolves once the contacts asked for have come (at once when none are awaited). */
  get arrival(): Promise<void> | undefined {
    return this.gate?.done;
  }

  /** Called as the contacts are requested: lookups wait for them from now on (bounded). */
  expect(): void {
    if (this.gate || this.closed) return;
    let settle!: () => void;
    const done = new Promise<void>((resolve) => (settle = resolve));
    const timer = setTimeout(() => open(), this.opts.waitMs ?? CONTACTS_WAIT_MS).unref();
    const open = () => {
      clearTimeout(timer);
      if (this.gate?.done === done) this.gate = null;
      settle();
    };
    this.gate = { done, open };
  }

  /** Downloads, verifies and stores a contacts blob our primary sent. Returns how many. */
  async apply(blob: signalservice.IAttachmentPointer): Promise<number> {
    const { environment } = this.opts;
    const id = blob.cdnKey || (blob.cdnId ? String(blob.cdnId) : '');
    const base = environment.cdnUrls[blob.cdnNumber ?? 0] ?? environment.cdnUrls[0];
    if (!id || !base || !blob.key)
      throw new ProtocolError('The contacts sync names no downloadable blob');
    const file = await httpsGet(environment, `${base}/attachments/${encodeURIComponent(id)}`);
    const plain = decryptAttachment(
      file,
      new Uint8Array(blob.key),
      blob.digest ? new Uint8Array(blob.digest) : null,
      blob.size,
    );
    const contacts = parseContactsBlob(plain);
    if (this.closed) return 0;
    // With their profile keys, when the primary sends them: sealed sender from the first send.
    storeSyncedContacts(this.opts.sink, contacts);
    this.opts.logger.info(`contacts synced: ${contacts.length}`);
    this.gate?.open();
    this.opts.onSynced(contacts.length);
    return contacts.length;
  }

  close(): void {
    this.closed = true;
    this.gate?.open();
  }
}
