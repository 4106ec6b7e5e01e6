/**
 * The group send token (core/groups/send-token.ts) built from endorsements the way the group server
 * issues them (zkgroup's server-side classes), and checked the way Signal-Server checks it
 * (GroupSendFullToken.verify for exactly the recipients); the combined access key's XOR.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Aci } from '@signalapp/libsignal-client';
import {
  ClientZkGroupCipher,
  GroupMasterKey,
  GroupSecretParams,
  GroupSendDerivedKeyPair,
  GroupSendEndorsementsResponse,
  GroupSendFullToken,
  ServerSecretParams,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import { combineAccessKeys } from '../../../core/crypto/access-key';
import { InvalidInputError } from '../../../core/errors';
import { groupSendToken, TOKEN_MARGIN_MS } from '../../../core/groups/send-token';
import type { GroupRecord } from '../../../core/groups/types';

const DAY = 86_400_000;

function world(memberCount: number) {
  const server = ServerSecretParams.generate();
  const masterKey = new Uint8Array(crypto.randomBytes(32));
  const secret = GroupSecretParams.deriveFromMasterKey(new GroupMasterKey(masterKey));
  const acis = Array.from({ length: memberCount }, () => crypto.randomUUID());
  const cipher = new ClientZkGroupCipher(secret);
  // As the group server does: today's key, expiring two days from the start of today (UTC).
  const startOfDay = Math.floor(Date.now() / DAY) * DAY;
  const expiration = new Date(startOfDay + 2 * DAY);
  const keyPair = GroupSendDerivedKeyPair.forExpiration(expiration, server);
  const response = GroupSendEndorsementsResponse.issue(
    acis.map((a) => cipher.encryptServiceId(Aci.parseFromServiceIdString(a))),
    keyPair,
  );
  const group: GroupRecord = {
    id: Buffer.from(secret.getPublicParams().getGroupIdentifier().serialize()).toString('base64'),
    masterKey,
    revision: 0,
    title: 'T',
    timerSeconds: 0,
    members: acis.map((aci) => ({ aci, role: 'member' as const })),
    pendingMembers: [],
    endorsements: { response: response.serialize(), expiration: expiration.getTime() },
    fetchedAt: Date.now(),
  };
  const serverPublicParams = server.getPublicParams().serialize();
  const verify = (token: Uint8Array, recipients: string[]) =>
    new GroupSendFullToken(new Uint8Array(token)).verify(
      recipients.map((r) => Aci.parseFromServiceIdString(r)),
      GroupSendDerivedKeyPair.forExpiration(expiration, server),
    );
  return { acis, group, serverPublicParams, verify, expiration };
}

describe('core/groups/send-token', () => {
  it('builds a full token the server verifies for exactly the recipients (all members but us)', () => {
    const w = world(4);
    const [self, ...others] = w.acis as [string, ...string[]];
    const token = groupSendToken({
      group: w.group,
      selfAci: self,
      recipients: others,
      serverPublicParams: w.serverPublicParams,
      now: Date.now(),
    });
    assert.ok(token, 'a token');
    assert.equal(
      new GroupSendFullToken(new Uint8Array(token)).getExpiration().getTime(),
      w.expiration.getTime(),
    );
    w.verify(token, others);
    // Not for another set: one recipient fewer, or with us included.
    assert.throws(() => w.verify(token, others.slice(1)));
    assert.throws(() => w.verify(token, [self, ...others]));
  });

  it('covers a subset, in any order the members are listed', () => {
    const w = world(5);
    const [self, a, b, c] = w.acis as [string, string, string, string];
    const shuffled = { ...w.group, members: [...w.group.members].reverse() };
    const token = groupSendToken({
      group: shuffled,
      selfAci: self,
      recipients: [c, a],
      serverPublicParams: w.serverPublicParams,
      now: Date.now(),
    });
    assert.ok(token);
    w.verify(token, [a, c]);
    assert.throws(() => w.verify(token, [a, b, c]));
  });

  it('gives none without endorsements, near their expiration, for a non-member, or from another server', () => {
    const w = world(3);
    const [self, a, b] = w.acis as [string, string, string];
    const base = {
      group: w.group,
      selfAci: self,
      recipients: [a, b],
      serverPublicParams: w.serverPublicParams,
    };
    const { endorsements: _dropped, ...without } = w.group;
    assert.equal(groupSendToken({ ...base, group: without, now: Date.now() }), null);
    assert.equal(
      groupSendToken({ ...base, now: w.expiration.getTime() - TOKEN_MARGIN_MS + 1 }),
      null,
    );
    assert.equal(
      groupSendToken({ ...base, recipients: [a, crypto.randomUUID()], now: Date.now() }),
      null,
    );
    const other = ServerSecretParams.generate().getPublicParams().serialize();
    assert.equal(groupSendToken({ ...base, serverPublicParams: other, now: Date.now() }), null);
  });
});

describe('core/crypto/access-key combineAccessKeys', () => {
  it("XORs the recipients' 16-byte keys (zero for none) and refuses other lengths", () => {
    const a = new Uint8Array(16).fill(0x0f);
    const b = new Uint8Array(16).map((_, i) => i);
    const c = new Uint8Array(crypto.randomBytes(16));
    const out = combineAccessKeys([a, b, c]);
    for (let i = 0; i < 16; i++) assert.equal(out[i], (0x0f ^ i ^ (c[i] ?? 0)) & 0xff);
    assert.deepEqual(combineAccessKeys([a, a]), new Uint8Array(16));
    assert.deepEqual(combineAccessKeys([]), new Uint8Array(16));
    assert.throws(() => combineAccessKeys([new Uint8Array(15)]), InvalidInputError);
  });
});
