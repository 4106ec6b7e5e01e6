/**
 * The msg mapping of nodes/lib/msg.ts on its own: what msg.signal.lookup says when answers come from
 * several sources, and the shape of an identity-change msg (documented in signal-in's help).
 */
import assert from 'node:assert/strict';
import { lookupSummary, messageFor } from '../../nodes/lib/msg';

describe('nodes/lib/msg', () => {
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
