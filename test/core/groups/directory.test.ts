import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Aci, Pni } from '@signalapp/libsignal-client';
import {
  ClientZkGroupCipher,
  GroupMasterKey,
  GroupSecretParams,
  ServerSecretParams,
  ServerZkAuthOperations,
  AuthCredentialPresentation,
  GroupPublicParams,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import { GroupDirectory, type GroupServerPort } from '../../../core/groups/directory';
import { groupKeys } from '../../../core/groups/state';
import type { GroupRecord } from '../../../core/groups/types';
import { GroupNotFoundError, InvalidInputError, NotAMemberError } from '../../../core/errors';
import { GroupAttributeBlob, GroupResponse } from '../../../proto';
import type { GroupUpdateEvent } from '../../../core/types';

const secret = ServerSecretParams.generate();
const serverPublicParams = Buffer.from(secret.getPublicParams().serialize()).toString('base64');
const self = { aci: crypto.randomUUID(), pni: crypto.randomUUID() };
const other = crypto.randomUUID();
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** A group server holding one group at `revision`, members as given; counts and verifies calls. */
function fakeServer(masterKey: Uint8Array, state: { revision: number; members: string[] }) {
  const params = GroupSecretParams.deriveFromMasterKey(
    new GroupMasterKey(new Uint8Array(masterKey) as Uint8Array<ArrayBuffer>),
  );
  const cipher = new ClientZkGroupCipher(params);
  const auth = new ServerZkAuthOperations(secret);
  let gets = 0;
  const server: GroupServerPort = {
    credentials: async (start, end) => {
      const credentials = [];
      for (let t = start; t <= end; t += 86_400) {
        const r = auth.issueAuthCredentialWithPniZkc(
          Aci.fromUuid(self.aci),
          Pni.fromUuid(self.pni),
          t,
        );
        credentials.push({ credential: r.serialize(), redemptionTime: t });
      }
      return { credentials };
    },
    getGroup: async (_id, a) => {
      gets++;
      // As the group server does: the presentation must verify for these group params.
      auth.verifyAuthCredentialPresentation(
        new GroupPublicParams(new Uint8Array(a.publicParams)),
        new AuthCredentialPresentation(new Uint8Array(a.presentation)),
      );
      const title = GroupAttributeBlob.encode({ title: 'Ops' }).finish();
      return GroupResponse.create({
        group: {
          version: state.revision,
          title: cipher.encryptBlob(title as Uint8Array<ArrayBuffer>),
          members: state.members.map((m) => ({
            userId: cipher.encryptServiceId(Aci.fromUuid(m)).serialize(),
            role: 1,
          })),
        },
      });
    },
    auth: async () => ({ username: 'u', password: 'p' }),
    manifest: async () => null,
    read: async () => ({ items: [] }) as never,
  };
  return { server, gets: () => gets };
}

function directory(server: GroupServerPort, now: () => number, params = serverPublicParams) {
  const rows = new Map<string, GroupRecord>();
  const events: GroupUpdateEvent[] = [];
  const timers = new Map<string, number>();
  const dir = new GroupDirectory({
    store: {
      get: (id) => rows.get(id),
      summary: (id) => rows.get(id),
      all: () => [...rows.values()],
      save: (g) => void rows.set(g.id, g),
      delete: (id) => rows.delete(id),
      fillProfileKey: () => undefined,
      setTimer: (c, s) => void timers.set(c, s),
    },
    server,
    self,
    serverPublicParams: params,
    accountMasterKey: () => null,
    emit: (ev) => events.push(ev),
    logger: quiet,
    now,
  });
  return { dir, rows, events, timers };
}

const note = (masterKey: Uint8Array, revision: number, change = false) => ({
  masterKey,
  revision,
  change,
  from: { aci: other, device: 1 },
  timestamp: 1,
  serverTimestamp: 2,
  sealed: true,
});

describe('groups/directory: the GroupStatePort and the receive-side refetch', () => {
  it('get(): a bad id is InvalidInputError, an unknown one GroupNotFoundError; a stored one needs no fetch unless older than asked', async () => {
    const masterKey = new Uint8Array(crypto.randomBytes(32));
    const state = { revision: 2, members: [self.aci, other] };
    const fake = fakeServer(masterKey, state);
    const { dir } = directory(fake.server, Date.now);
    const id = groupKeys(masterKey).id;
    await assert.rejects(dir.get('nope'), InvalidInputError);
    await assert.rejects(dir.get(id, -1), InvalidInputError);
    await assert.rejects(dir.get(id), GroupNotFoundError);
    const fetched = await dir.fetch(masterKey);
    assert.equal(fetched.title, 'Ops');
    assert.equal((await dir.get(id)).revision, 2);
    assert.equal(fake.gets(), 1, 'from the store');
    state.revision = 3;
    assert.equal((await dir.get(id, 3)).revision, 3);
    assert.equal(fake.gets(), 2);
    await assert.rejects(dir.get(id, 9), /older than 9/);
  });

  it('a group we are not in is NotAMemberError and is forgotten', async () => {
    const masterKey = new Uint8Array(crypto.randomBytes(32));
    const state = { revision: 1, members: [self.aci, other] };
    const { dir, rows } = directory(fakeServer(masterKey, state).server, Date.now);
    await dir.fetch(masterKey);
    assert.equal(rows.size, 1);
    state.members = [other];
    await assert.rejects(dir.fetch(masterKey), NotAMemberError);
    assert.equal(rows.size, 0);
  });

  it('without server params nothing is fetched, and says why', async () => {
    const masterKey = new Uint8Array(crypto.randomBytes(32));
    const { dir } = directory(
      fakeServer(masterKey, { revision: 0, members: [self.aci] }).server,
      Date.now,
      null as never,
    );
    await assert.rejects(dir.fetch(masterKey), /no zkgroup public params/);
  });

  it('a newer revision refetches and emits group-update; a claim the server cannot match costs one fetch a minute', async () => {
    const masterKey = new Uint8Array(crypto.randomBytes(32));
    const state = { revision: 1, members: [self.aci, other] };
    const fake = fakeServer(masterKey, state);
    // Near the real time: the fake server verifies presentations against its clock, as Signal's does.
    let now = Date.now();
    const { dir, events, timers } = directory(fake.server, () => now);
    dir.noteContext(note(masterKey, 1));
    await dir.idle();
    assert.equal(fake.gets(), 1);
    assert.equal(events.length, 0, 'new to us without a change: no update');
    assert.equal(timers.get(`group:${groupKeys(masterKey).id}`), 0);
    dir.noteContext(note(masterKey, 1));
    await dir.idle();
    assert.equal(fake.gets(), 1, 'not newer than stored: no fetch');
    state.revision = 2;
    state.members = [self.aci];
    dir.noteContext(note(masterKey, 2, true));
    await dir.idle();
    assert.equal(events.length, 1);
    assert.deepEqual(events[0]?.membersRemoved, [other]);
    assert.equal(events[0]?.revision, 2);
    // A context claiming revision 9 the server does not have: fetched once, then not for a minute.
    for (let i = 0; i < 3; i++) dir.noteContext(note(masterKey, 9));
    await dir.idle();
    dir.noteContext(note(masterKey, 9));
    await dir.idle();
    assert.equal(fake.gets(), 3);
    now += 61_000;
    dir.noteContext(note(masterKey, 9));
    await dir.idle();
    assert.equal(fake.gets(), 4);
  });

  it('a repeated change emits no second group-update; a group we are not in costs one fetch a minute, whatever it claims', async () => {
    const masterKey = new Uint8Array(crypto.randomBytes(32));
    const state = { revision: 3, members: [self.aci, other] };
    const fake = fakeServer(masterKey, state);
    let now = Date.now();
    const { dir, events } = directory(fake.server, () => now);
    dir.noteContext(note(masterKey, 3, true));
    await dir.idle();
    assert.equal(events.length, 1, 'the change that brought the group');
    // The same change again (a redelivery, or our phone's transcript of it): nothing new.
    dir.noteContext(note(masterKey, 3, true));
    await dir.idle();
    assert.equal(events.length, 1);
    assert.equal(fake.gets(), 1);
    // We are removed: the fetch says so, the group is forgotten, and messages naming it (even with
    // ever newer revisions, as a forger would send) are not fetched again within the minute.
    state.revision = 4;
    state.members = [other];
    dir.noteContext(note(masterKey, 4, true));
    await dir.idle();
    assert.equal(fake.gets(), 2);
    for (let r = 5; r < 10; r++) dir.noteContext(note(masterKey, r, true));
    await dir.idle();
    assert.equal(fake.gets(), 2, 'no fetch per message');
    now += 61_000;
    dir.noteContext(note(masterKey, 10, true));
    await dir.idle();
    assert.equal(fake.gets(), 3);
  });
});
