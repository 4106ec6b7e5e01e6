import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Aci } from '@signalapp/libsignal-client';
import { parseContactsBlob, storeSyncedContacts } from '../../../core/directory/contacts-sync';
import { SignalStore } from '../../../core/store';
import { ContactDetails } from '../../../proto';

const ACI = '9d0652a3-dcc3-4d11-975f-74d61598733f';

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** One ContactDetails the way a primary that still sends profile keys writes it (field 6, bytes). */
function record(fields: { number?: string; name?: string; profileKey?: Uint8Array }): Buffer {
  const base = Buffer.from(
    ContactDetails.encode({
      ...(fields.number ? { number: fields.number } : {}),
      ...(fields.name ? { name: fields.name } : {}),
      aciBinary: Aci.fromUuid(ACI).getRawUuidBytes(),
    }).finish(),
  );
  const key = fields.profileKey
    ? Buffer.from([(6 << 3) | 2, ...varint(fields.profileKey.length), ...fields.profileKey])
    : Buffer.alloc(0);
  const body = Buffer.concat([base, key]);
  return Buffer.concat([Buffer.from(varint(body.length)), body]);
}

describe('directory: contacts sync', () => {
  it("keeps each contact's profile key from the blob and stores it, so sends to them can be sealed", () => {
    const profileKey = new Uint8Array(32).map((_, i) => i + 1);
    const blob = new Uint8Array(
      Buffer.concat([
        record({ number: '+15551230010', name: 'Bob', profileKey }),
        record({ number: '+15551230011', profileKey: new Uint8Array(5) }), // not a profile key
      ]),
    );
    const contacts = parseContactsBlob(blob);
    assert.deepEqual(contacts[0]?.profileKey, profileKey);
    assert.equal(contacts[0]?.aci, ACI);
    assert.equal(contacts[1]?.profileKey, null);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-sync-'));
    const store = SignalStore.open(path.join(dir, 'a.db'));
    try {
      storeSyncedContacts(
        { transaction: (fn) => store.transaction(fn), upsert: (u) => store.contacts.upsert(u) },
        contacts.slice(0, 1),
      );
      const c = store.contacts.findByServiceId(ACI);
      // The sender seals a message when the recipient's profile key is known (profileKeyOf).
      assert.deepEqual(c?.profileKey, profileKey);
      assert.equal(c?.source, 'sync');
      assert.equal(c?.name, 'Bob');
    } finally {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a blob without profile keys (what current primaries and the mock send) as before', () => {
    const contacts = parseContactsBlob(new Uint8Array(record({ number: '+15551230012' })));
    assert.deepEqual(contacts, [
      { number: '+15551230012', aci: ACI, name: null, profileKey: null },
    ]);
  });
});
