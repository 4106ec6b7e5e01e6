import assert from 'node:assert/strict';
import {
  WebSocketMessage,
  Envelope,
  ProvisionMessage,
  toDecimalString,
  toNumber,
  Long,
} from '../proto';
import { provisionedIdentifiers } from '../core/provisioning/linker';

describe('proto', () => {
  it('round-trips a WebSocketMessage request with a 64-bit id exactly', () => {
    const id = Long.fromString('18446744073709551557', true);
    const bytes = WebSocketMessage.encode({
      type: WebSocketMessage.Type.REQUEST,
      request: { verb: 'PUT', path: '/api/v1/message', id, headers: ['x:y'] },
    }).finish();
    const decoded = WebSocketMessage.decode(bytes);
    assert.equal(decoded.type, WebSocketMessage.Type.REQUEST);
    assert.equal(decoded.request?.path, '/api/v1/message');
    assert.equal(toDecimalString(decoded.request?.id), '18446744073709551557');
  });

  it('decodes an Envelope clientTimestamp as a number', () => {
    const bytes = Envelope.encode({
      type: Envelope.Type.DOUBLE_RATCHET,
      clientTimestamp: 1_700_000_000_123,
    }).finish();
    assert.equal(toNumber(Envelope.decode(bytes).clientTimestamp), 1_700_000_000_123);
  });

  it('decodes the string aci/pni fields an older primary sends in a ProvisionMessage', () => {
    const aci = '0d2a3c1e-7a4b-4c5d-8e9f-0a1b2c3d4e5f';
    const pni = '9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a';
    const decoded = ProvisionMessage.decode(ProvisionMessage.encode({ aci, pni }).finish());
    assert.equal(decoded.aci, aci);
    assert.equal(decoded.pni, pni);
    assert.deepEqual(provisionedIdentifiers(decoded), { aci, pni });
  });
});
