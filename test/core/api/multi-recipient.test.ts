/**
 * PUT /v1/messages/multi_recipient (core/api/multi-recipient.ts): the request as Signal-Server's
 * MessageController takes it, and its answers (200 uuids404, 409/410 bodies, 401, 404) as typed
 * results and errors.
 */
import assert from 'node:assert/strict';
import {
  MultiRecipientMismatch,
  MultiRecipientStale,
  MultiRecipientUnknown,
  UnidentifiedAccessRejected,
  parseMismatch,
  parseStale,
  sendMultiRecipient,
} from '../../../core/api';
import { ProtocolError, RateLimitedError } from '../../../core/errors';
import type { ChatRequest, ChatResponse } from '../../../core/net/types';

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';

function answering(status: number, body: unknown, headers: Record<string, string> = {}) {
  const seen: ChatRequest[] = [];
  return {
    seen,
    requester: {
      request: async (req: ChatRequest): Promise<ChatResponse> => {
        seen.push(req);
        return {
          status,
          message: '',
          headers,
          body: new Uint8Array(Buffer.from(body === undefined ? '' : JSON.stringify(body), 'utf8')),
        };
      },
    },
  };
}

const payload = new Uint8Array([1, 2, 3]);
const opts = { timestamp: 1700000000123, online: false, urgent: true };

describe('core/api/multi-recipient', () => {
  it('PUTs the raw payload with the mrm content type, the query and exactly one authorization', async () => {
    const token = answering(200, { uuids404: [] });
    await sendMultiRecipient(token.requester, payload, {
      ...opts,
      auth: { groupSendToken: new Uint8Array([9, 9]) },
    });
    const [req] = token.seen;
    assert.ok(req);
    assert.equal(req.verb, 'PUT');
    assert.equal(
      req.path,
      '/v1/messages/multi_recipient?ts=1700000000123&online=false&urgent=true&story=false',
    );
    assert.deepEqual(req.body, payload);
    assert.deepEqual(req.headers, {
      'Content-Type': 'application/vnd.signal-messenger.mrm',
      'Group-Send-Token': Buffer.from([9, 9]).toString('base64'),
    });
    const key = answering(200, { uuids404: [B] });
    const r = await sendMultiRecipient(key.requester, payload, {
      ...opts,
      auth: { accessKey: new Uint8Array(16).fill(7) },
    });
    assert.deepEqual(r.uuids404, [B]);
    assert.equal(
      key.seen[0]?.headers?.['Unidentified-Access-Key'],
      Buffer.alloc(16, 7).toString('base64'),
    );
    assert.equal(key.seen[0]?.headers?.['Group-Send-Token'], undefined);
  });

  it('parses 409 and 410 bodies per recipient (absent lists are empty)', () => {
    const m = parseMismatch([
      { uuid: A, devices: { missingDevices: [2, 3], extraDevices: [4] } },
      { uuid: B, devices: { extraDevices: [5] } },
    ]);
    assert.ok(m instanceof MultiRecipientMismatch);
    assert.deepEqual(m.entries, [
      { serviceId: A, missingDevices: [2, 3], extraDevices: [4] },
      { serviceId: B, missingDevices: [], extraDevices: [5] },
    ]);
    const s = parseStale([{ uuid: A, devices: { staleDevices: [1] } }]);
    assert.ok(s instanceof MultiRecipientStale);
    assert.deepEqual(s.entries, [{ serviceId: A, staleDevices: [1] }]);
    assert.throws(() => parseMismatch({ uuid: A }), ProtocolError);
    assert.throws(() => parseStale([{ devices: {} }]), ProtocolError);
    assert.throws(
      () => parseMismatch([{ uuid: A, devices: { missingDevices: ['x'] } }]),
      ProtocolError,
    );
  });

  it('maps 409, 410, 401, 404 and 429 to typed errors', async () => {
    const auth = { accessKey: new Uint8Array(16) };
    const send = (status: number, body?: unknown, headers?: Record<string, string>) =>
      sendMultiRecipient(answering(status, body, headers).requester, payload, { ...opts, auth });
    await assert.rejects(
      send(409, [{ uuid: A, devices: { missingDevices: [2], extraDevices: [] } }]),
      (e: unknown) => e instanceof MultiRecipientMismatch && e.entries[0]?.missingDevices[0] === 2,
    );
    await assert.rejects(
      send(410, [{ uuid: B, devices: { staleDevices: [3] } }]),
      (e: unknown) => e instanceof MultiRecipientStale && e.entries[0]?.serviceId === B,
    );
    await assert.rejects(send(401), UnidentifiedAccessRejected);
    await assert.rejects(send(404), MultiRecipientUnknown);
    await assert.rejects(
      send(429, undefined, { 'retry-after': '7' }),
      (e: unknown) => e instanceof RateLimitedError && e.retryAfterSeconds === 7,
    );
  });
});
