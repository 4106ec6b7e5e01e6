/**
 * The msg mapping of nodes/lib/msg.ts on its own: what msg.signal.lookup says when answers come from
 * several sources, and the shape of an identity-change msg (documented in signal-in's help).
 */
import assert from 'node:assert/strict';
import { lookupSummary, messageFor, recipientsOf, wantsReadReceipt } from '../../nodes/lib/msg';
import { InvalidInputError } from '../../core/errors';

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
});
