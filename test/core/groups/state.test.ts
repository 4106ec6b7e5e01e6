import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Aci, Pni } from '@signalapp/libsignal-client';
import {
  ClientZkGroupCipher,
  GroupMasterKey,
  GroupSecretParams,
  ProfileKey,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import { updateEvent } from '../../../core/groups/directory';
import { decryptGroup, groupKeys, isGroupId } from '../../../core/groups/state';
import type { GroupRecord } from '../../../core/groups/types';
import { contentEffects, parseContent } from '../../../core/messaging/content';
import { serializeContent } from '../../../core/messaging/compose';
import { openDatabase } from '../../../core/store';
import { GroupsTable } from '../../../core/store/groups';
import { GroupAttributeBlob, GroupMemberRole, SyncMessage } from '../../../proto';
import { InvalidInputError } from '../../../core/errors';
import path from 'node:path';
import { tempDir } from '../store/helpers';

const masterKey = new Uint8Array(crypto.randomBytes(32));
const alice = crypto.randomUUID();
const bob = crypto.randomUUID();
const carol = crypto.randomUUID();

/** A group's state as the group server holds it: encrypted with the group's secret params. */
function encryptedGroup(title: string, timer: number) {
  const params = GroupSecretParams.deriveFromMasterKey(new GroupMasterKey(masterKey));
  const cipher = new ClientZkGroupCipher(params);
  const bobKey = new ProfileKey(new Uint8Array(crypto.randomBytes(32)));
  const blob = (b: Parameters<typeof GroupAttributeBlob.encode>[0]) =>
    cipher.encryptBlob(GroupAttributeBlob.encode(b).finish() as Uint8Array<ArrayBuffer>);
  return {
    bobKey,
    group: {
      publicKey: params.getPublicParams().serialize(),
      version: 4,
      title: blob({ title }),
      disappearingMessagesTimer: blob({ disappearingMessagesDuration: timer }),
      members: [
        {
          userId: cipher.encryptServiceId(Aci.fromUuid(alice)).serialize(),
          role: GroupMemberRole.ADMINISTRATOR,
        },
        {
          userId: cipher.encryptServiceId(Aci.fromUuid(bob)).serialize(),
          role: GroupMemberRole.DEFAULT,
          profileKey: cipher.encryptProfileKey(bobKey, Aci.fromUuid(bob)).serialize(),
        },
        { userId: new Uint8Array([1, 2, 3]), role: GroupMemberRole.DEFAULT },
      ],
      membersPendingProfileKey: [
        { member: { userId: cipher.encryptServiceId(Pni.fromUuid(carol)).serialize() } },
      ],
    },
  };
}

describe('groups/state: decrypting and storing group state', () => {
  it('derives the id and checks group ids', () => {
    const keys = groupKeys(masterKey);
    assert.ok(isGroupId(keys.id));
    assert.equal(isGroupId('abc'), false);
    assert.equal(isGroupId(Buffer.alloc(31).toString('base64')), false);
    assert.throws(() => groupKeys(new Uint8Array(5)), InvalidInputError);
  });

  it('decrypts title, timer, members with roles and profile keys, pending members; leaves out what does not decrypt', () => {
    const { group, bobKey } = encryptedGroup('Alerts', 3600);
    const g = decryptGroup(groupKeys(masterKey), group);
    assert.equal(g.title, 'Alerts');
    assert.equal(g.timerSeconds, 3600);
    assert.equal(g.revision, 4);
    assert.deepEqual(
      g.members.map((m) => [m.aci, m.role]),
      [
        [alice, 'administrator'],
        [bob, 'member'],
      ],
    );
    assert.equal(g.members[0]?.profileKey, undefined);
    assert.deepEqual(Buffer.from(g.members[1]?.profileKey ?? []), Buffer.from(bobKey.serialize()));
    assert.deepEqual(g.pendingMembers, [`PNI:${carol}`]);
    assert.equal(g.undecryptable, 1);
    // Another group's keys decrypt none of it.
    const other = decryptGroup(groupKeys(new Uint8Array(crypto.randomBytes(32))), group);
    assert.equal(other.members.length, 0);
    assert.equal(other.title, '');
  });

  it('stores and reads back a group (GroupsTable, migration v8)', () => {
    const db = openDatabase(path.join(tempDir(), 'groups.db'));
    try {
      const table = new GroupsTable(db);
      const record: GroupRecord = {
        id: groupKeys(masterKey).id,
        masterKey,
        revision: 2,
        title: 'Zoo',
        timerSeconds: 60,
        members: [
          { aci: alice, role: 'administrator' },
          { aci: bob, role: 'member', profileKey: new Uint8Array(32).fill(9) },
        ],
        pendingMembers: [`PNI:${carol}`],
        endorsements: { response: new Uint8Array([1, 2, 3]), expiration: 1234 },
        fetchedAt: 99,
      };
      table.save(record);
      assert.deepEqual(table.get(record.id), record);
      table.save({ ...record, revision: 3, title: 'Aardvarks', endorsements: undefined } as never);
      const [only] = table.all();
      assert.equal(only?.revision, 3);
      assert.equal(only?.endorsements, undefined);
      assert.equal(table.delete(record.id), true);
      assert.equal(table.get(record.id), undefined);
    } finally {
      db.close();
    }
  });

  it('a group-update names what changed between two states', () => {
    const base: GroupRecord = {
      id: 'g',
      masterKey,
      revision: 1,
      title: 'A',
      timerSeconds: 0,
      members: [
        { aci: alice, role: 'administrator' },
        { aci: bob, role: 'member' },
      ],
      pendingMembers: [`PNI:${carol}`],
      fetchedAt: 0,
    };
    const after: GroupRecord = {
      ...base,
      revision: 3,
      title: 'B',
      timerSeconds: 60,
      members: [
        { aci: alice, role: 'administrator' },
        { aci: carol, role: 'member' },
      ],
      pendingMembers: [],
    };
    const note = {
      from: { aci: alice, device: 1 },
      timestamp: 5,
      serverTimestamp: 6,
      sealed: true,
    };
    const ev = updateEvent(base, after, note);
    assert.deepEqual(ev, {
      type: 'group-update',
      ...note,
      group: { id: 'g', title: 'B' },
      groupId: 'g',
      revision: 3,
      previousRevision: 1,
      title: 'B',
      timerSeconds: 60,
      membersAdded: [carol],
      membersRemoved: [bob],
      pendingRemoved: [`PNI:${carol}`],
    });
    const first = updateEvent(undefined, after, note);
    assert.equal(first.previousRevision, undefined);
    assert.equal(first.membersAdded, undefined, 'a group new to us: no diff to tell');
  });

  it("content: a group message's context and our phone's fetchLatest are effects for the group directory", () => {
    const withChange = contentEffects(
      parseContent(
        serializeContent({
          dataMessage: {
            timestamp: 7,
            groupV2: { masterKey, revision: 5, groupChange: new Uint8Array([1]) },
          },
        }),
      ),
      { from: { aci: alice, device: 1 }, timestamp: 7, serverTimestamp: 8, sealed: false },
    );
    assert.deepEqual(withChange.events, [], 'a change without text is no message');
    assert.deepEqual(withChange.groupContext, { masterKey, revision: 5, change: true });
    const fetch = contentEffects(
      parseContent(
        serializeContent({
          syncMessage: { fetchLatest: { type: SyncMessage.FetchLatest.Type.STORAGE_MANIFEST } },
        }),
      ),
      { from: { aci: alice, device: 1 }, timestamp: 7, serverTimestamp: 8, sealed: false },
    );
    assert.equal(fetch.fetchStorage, true);
    assert.equal(fetch.groupContext, undefined);
    const shortKey = contentEffects(
      parseContent(
        serializeContent({ dataMessage: { body: 'x', groupV2: { masterKey: new Uint8Array(3) } } }),
      ),
      { from: { aci: alice, device: 1 }, timestamp: 7, serverTimestamp: 8, sealed: false },
    );
    assert.equal(shortKey.groupContext, undefined);
  });
});
