/**
 * The msg mapping of nodes/lib/msg.ts on its own: what msg.signal.lookup says when answers come from
 * several sources, the shape of an identity-change msg (documented in signal-in's help), group items
 * (msg.signal.group, msg.to the group, group-update's fields) and signal-in's Chats filter.
 */
import assert from 'node:assert/strict';
import { lookupSummary, messageFor, recipientsOf, wantsReadReceipt } from '../../nodes/lib/msg';
import { InvalidInputError } from '../../core/errors';
import { chatFilterOf, passesChats } from '../../nodes/lib/chats';

describe('nodes/lib/msg', () => {
  it('takes group:<id> recipients beside ACIs; a malformed group id is refused, naming it', () => {
    const id = Buffer.alloc(32, 7).toString('base64');
    const aci = '2bd3a1a0-9d6b-4bb4-9c5a-4a62d3e2c8f1';
    assert.deepEqual(recipientsOf(`group:${id}`, undefined), [`group:${id}`]);
    assert.deepEqual(recipientsOf([aci, `group:${id}`], undefined), [aci, `group:${id}`]);
    assert.throws(
      () => recipientsOf('group:not-a-group', undefined),
      (e: unknown) => e instanceof InvalidInputError && /group:not-a-group/.test(e.message),
    );
  });

  it('msg.signal.lookup.source stays one string: the shared source, else "mixed"; sources keeps input order', () => {
    assert.deepEqual(lookupSummary([{ source: 'contacts' }]), {
      source: 'contacts',
      sources: ['contacts'],
    });
    assert.deepEqual(lookupSummary([{ source: 'cache' }, { source: 'cache' }]), {
      source: 'cache',
      sources: ['cache', 'cache'],
    });
    const mixed = lookupSummary([{ source: 'cdsi' }, { source: 'cache' }, { source: 'cdsi' }]);
    assert.equal(mixed.source, 'mixed');
    assert.equal(typeof mixed.source, 'string');
    assert.deepEqual(mixed.sources, ['cdsi', 'cache', 'cdsi']);
  });

  it('an identity-change msg names the contact, when it was noticed and whether sends are blocked, and nothing the engine does not know', () => {
    const aci = '2bd3a1a0-9d6b-4bb4-9c5a-4a62d3e2c8f1';
    const { type, msg } = messageFor({
      type: 'identity-change',
      serviceId: aci,
      timestamp: 1234,
      blocked: true,
    });
    assert.equal(type, 'identity-change');
    assert.deepEqual(msg, {
      payload: aci,
      topic: aci,
      to: aci,
      signal: { type: 'identity-change', from: { aci }, timestamp: 1234, blocked: true },
    });
  });
});

describe('nodes/lib/msg: edits, deletes, timers and rich messages', () => {
  const from = { aci: '2bd3a1a0-9d6b-4bb4-9c5a-4a62d3e2c8f1', device: 1, number: '+15551230001' };
  const base = { from, timestamp: 20, serverTimestamp: 21, sealed: true };

  it('an edit is msg.signal.type "edit" with the new text as payload and targetTimestamp', () => {
    const { type, msg } = messageFor({
      type: 'edit',
      ...base,
      targetTimestamp: 10,
      body: 'fixed',
      styles: [{ style: 'bold', start: 0, length: 5 }],
    });
    assert.equal(type, 'edit');
    assert.equal(msg.payload, 'fixed');
    assert.equal(msg.topic, from.number);
    assert.equal(msg.to, from.aci);
    const signal = msg.signal as Record<string, unknown>;
    assert.equal(signal.type, 'edit');
    assert.equal(signal.targetTimestamp, 10);
    assert.deepEqual(signal.styles, [{ style: 'bold', start: 0, length: 5 }]);
  });

  it('a delete has the deleted timestamp as payload; a timer change the seconds', () => {
    const del = messageFor({ type: 'delete', ...base, targetTimestamp: 10 });
    assert.equal(del.type, 'delete');
    assert.equal(del.msg.payload, 10);
    assert.equal((del.msg.signal as Record<string, unknown>).targetTimestamp, 10);
    const timer = messageFor({ type: 'timer', ...base, expiresInSeconds: 3600, version: 2 });
    assert.equal(timer.type, 'timer');
    assert.equal(timer.msg.payload, 3600);
    assert.deepEqual(
      [
        (timer.msg.signal as Record<string, unknown>).expiresInSeconds,
        (timer.msg.signal as Record<string, unknown>).timerVersion,
      ],
      [3600, 2],
    );
  });

  it('a message carries mentions, styles, viewOnce, its timer and a timer change; from.name when known', () => {
    const { type, msg } = messageFor({
      type: 'message',
      ...base,
      from: { ...from, name: 'Carol' },
      body: '\uFFFC hi',
      mentions: [{ aci: from.aci, start: 0, length: 1 }],
      styles: [{ style: 'italic', start: 2, length: 2 }],
      viewOnce: true,
      expiresInSeconds: 60,
      timerChange: { expiresInSeconds: 60, version: 1 },
    });
    assert.equal(type, 'message');
    const signal = msg.signal as Record<string, unknown>;
    assert.deepEqual(signal.mentions, [{ aci: from.aci, start: 0, length: 1 }]);
    assert.deepEqual(signal.styles, [{ style: 'italic', start: 2, length: 2 }]);
    assert.equal(signal.viewOnce, true);
    assert.equal(signal.expiresInSeconds, 60);
    assert.deepEqual(signal.timerChange, { expiresInSeconds: 60, version: 1 });
    assert.equal((signal.from as Record<string, unknown>).name, 'Carol');
  });

  it('read receipts go to messages from others only: not reactions, not our own', () => {
    const msg = { type: 'message' as const, ...base, body: 'x' };
    assert.equal(wantsReadReceipt(msg, 'self'), true);
    assert.equal(wantsReadReceipt(msg, from.aci), false);
    assert.equal(
      wantsReadReceipt(
        { ...msg, reaction: { emoji: '👍', remove: false, targetTimestamp: 1 } },
        'self',
      ),
      false,
    );
    assert.equal(wantsReadReceipt({ type: 'delete', ...base, targetTimestamp: 1 }, 'self'), false);
  });
  const gid = Buffer.alloc(32, 9).toString('base64');

  it("a group's items: msg.signal.group {id, title?}, msg.to group:<id>, msg.topic the sender", () => {
    for (const ev of [
      {
        type: 'message' as const,
        ...base,
        body: 'hi',
        groupId: gid,
        group: { id: gid, title: 'T' },
      },
      { type: 'typing' as const, ...base, action: 'started' as const, groupId: gid },
      { type: 'delete' as const, ...base, targetTimestamp: 1, group: { id: gid, title: 'T' } },
      {
        type: 'sync' as const,
        ...base,
        body: 'mine',
        groupId: gid,
        group: { id: gid, title: 'T' },
      },
    ]) {
      const { msg } = messageFor(ev);
      assert.equal(msg.to, `group:${gid}`, ev.type);
      assert.equal(msg.topic, from.number, ev.type);
      const signal = msg.signal as Record<string, unknown>;
      assert.deepEqual(signal.group, ev.type === 'typing' ? { id: gid } : { id: gid, title: 'T' });
      assert.equal(signal.groupId, gid);
    }
    const direct = messageFor({ type: 'message', ...base, body: 'hi' }).msg;
    assert.equal(direct.to, from.aci);
    assert.equal((direct.signal as Record<string, unknown>).group, undefined);
  });

  it('a group-update carries the revision as payload and only what changed under msg.signal', () => {
    const { type, msg } = messageFor({
      type: 'group-update',
      ...base,
      group: { id: gid, title: 'New' },
      groupId: gid,
      revision: 3,
      previousRevision: 2,
      title: 'New',
      membersAdded: [from.aci],
    });
    assert.equal(type, 'group-update');
    assert.equal(msg.payload, 3);
    assert.equal(msg.to, `group:${gid}`);
    const signal = msg.signal as Record<string, unknown>;
    assert.deepEqual(signal.group, { id: gid, title: 'New' });
    assert.equal(signal.revision, 3);
    assert.equal(signal.previousRevision, 2);
    assert.equal(signal.title, 'New');
    assert.deepEqual(signal.membersAdded, [from.aci]);
    assert.ok(!('timerSeconds' in signal) && !('membersRemoved' in signal));
  });

  it('Chats: receipts, identity changes and 1:1 items are direct; chosen groups only theirs; bad settings named', () => {
    const inGroup = { type: 'message' as const, ...base, body: 'g', groupId: gid };
    const other = { ...inGroup, groupId: Buffer.alloc(32, 1).toString('base64') };
    const dm = { type: 'message' as const, ...base, body: 'd' };
    const receipt = {
      type: 'receipt' as const,
      ...base,
      receiptType: 'read' as const,
      timestamps: [1],
    };
    const identity = {
      type: 'identity-change' as const,
      serviceId: from.aci,
      timestamp: 1,
      blocked: false,
    };
    const pass = (f: ReturnType<typeof chatFilterOf>) =>
      [inGroup, other, dm, receipt, identity].map((e) => passesChats(f, e));
    assert.deepEqual(pass(chatFilterOf(undefined, undefined)), [true, true, true, true, true]);
    assert.deepEqual(pass(chatFilterOf('direct', '')), [false, false, true, true, true]);
    assert.deepEqual(pass(chatFilterOf('groups', '')), [true, true, false, false, false]);
    assert.deepEqual(pass(chatFilterOf('chosen', ` group:${gid} ,`)), [
      true,
      false,
      false,
      false,
      false,
    ]);
    const refused = (chats: unknown, groups: unknown, what: RegExp) =>
      assert.throws(
        () => chatFilterOf(chats, groups),
        (e: unknown) => e instanceof InvalidInputError && what.test(e.message),
      );
    refused('some', '', /Chats must be one of all, direct, groups, chosen/);
    refused('chosen', '', /no group is chosen/);
    refused('chosen', `${gid}, nope`, /"nope" is not a group id/);
    refused('chosen', 42, /must be text/);
  });
});
