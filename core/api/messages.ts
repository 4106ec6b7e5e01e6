/** PUT /v1/messages (PROTOCOL.md §5): one encrypted message per device of the recipient. */
import { NotOnSignalError } from '../errors';
import type { ChatRequester } from '../net/types';
import { challengeIn } from './challenges';
import { MismatchedDevices, StaleDevices, UnidentifiedAccessRejected } from './errors';
import { accessKeyHeaders, ajv, call, fail, parse } from './http';

/** One device's ciphertext; `type` is Signal's envelope numbering, `content` base64. */
export interface OutgoingMessage {
  type: number;
  destinationDeviceId: number;
  destinationRegistrationId: number;
  content: string;
}

export interface OutgoingMessages {
  messages: OutgoingMessage[];
  timestamp: number;
  online: boolean;
  urgent: boolean;
}

const validateMismatch = ajv.compile<{ missingDevices?: number[]; extraDevices?: number[] }>({
  type: 'object',
  properties: {
    missingDevices: { type: 'array', items: { type: 'integer' }, nullable: true },
    extraDevices: { type: 'array', items: { type: 'integer' }, nullable: true },
  },
});
const validateStale = ajv.compile<{ staleDevices?: number[] }>({
  type: 'object',
  properties: { staleDevices: { type: 'array', items: { type: 'integer' }, nullable: true } },
});

/** PUT /v1/messages/<serviceId> (§5), with the recoverable statuses as typed errors. */
export async function sendMessages(
  requester: ChatRequester,
  serviceId: string,
  body: OutgoingMessages,
  accessKey?: Uint8Array,
): Promise<void> {
  const headers = accessKeyHeaders(accessKey);
  const res = await call(requester, 'PUT', `/v1/messages/${serviceId}`, body, headers);
  switch (res.status) {
    case 200:
    case 204:
      return;
    case 404:
      throw new NotOnSignalError(serviceId);
    case 409: {
      const r = parse(res, validateMismatch, 'Sending');
      throw new MismatchedDevices(r.missingDevices ?? [], r.extraDevices ?? []);
    }
    case 410: {
      const r = parse(res, validateStale, 'Sending');
      throw new StaleDevices(r.staleDevices ?? []);
    }
    case 428:
      throw challengeIn(res, 'Sending');
    case 401:
      if (accessKey) throw new UnidentifiedAccessRejected();
      return fail(res, 'Sending');
    default:
      return fail(res, 'Sending');
  }
}
