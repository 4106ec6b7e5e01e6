import assert from 'node:assert/strict';
import { WebSocketMessage, Envelope, toDecimalString, toNumber, Long } from '../proto';

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
});
