/**
 * PUT /v1/messages/multi_recipient (PROTOCOL.md §5, issue 16): one sealed-sender v2 message for many
 * recipients, sent over the unauthenticated socket and authorized by a group send token or by the
 * XOR of the recipients' access keys (exactly one of the two, as Signal-Server's MessageController
 * requires). Its answers: 200 `{uuids404}`, 409 `[{uuid, devices:{missingDevices, extraDevices}}]`,
 * 410 `[{uuid, devices:{staleDevices}}]`, 401 (the token or key does not cover the recipients), 404
 * (a recipient is not on Signal; the server does not say which).
 */
import type { ChatRequester } from '../net/types';
import { challengeIn } from './challenges';
import {
  MultiRecipientMismatch,
  MultiRecipientStale,
  MultiRecipientUnknown,
  UnidentifiedAccessRejected,
} from './errors';
import { ajv, b64, call, check, fail, json } from './http';

export const MRM_CONTENT_TYPE = 'application/vnd.signal-messenger.mrm';

export type MultiRecipientAuth = { groupSendToken: Uint8Array } | { accessKey: Uint8Array };

export interface MultiRecipientOptions {
  timestamp: number;
  online: boolean;
  urgent: boolean;
  auth: MultiRecipientAuth;
}

const validateOk = ajv.compile<{ uuids404?: string[] | null }>({
  type: 'object',
  properties: { uuids404: { type: 'array', items: { type: 'string' }, nullable: true } },
});
const deviceList = { type: 'array', items: { type: 'integer' }, nullable: true } as const;
const validateMismatch = ajv.compile<
  Array<{ uuid: string; devices: { missingDevices?: number[]; extraDevices?: number[] } }>
>({
  type: 'array',
  items: {
    type: 'object',
    required: ['uuid', 'devices'],
    properties: {
      uuid: { type: 'string' },
      devices: {
        type: 'object',
        properties: { missingDevices: deviceList, extraDevices: deviceList },
      },
    },
  },
});
const validateStale = ajv.compile<Array<{ uuid: string; devices: { staleDevices?: number[] } }>>({
  type: 'array',
  items: {
    type: 'object',
    required: ['uuid', 'devices'],
    properties: {
      uuid: { type: 'string' },
      devices: { type: 'object', properties: { staleDevices: deviceList } },
    },
  },
});

/** The 409 body as the engine uses it (exported for its unit test). */
export function parseMismatch(body: unknown): MultiRecipientMismatch {
  const entries = check(body, validateMismatch, 'Sending to a group');
  return new MultiRecipientMismatch(
    entries.map((e) => ({
      serviceId: e.uuid,
      missingDevices: e.devices.missingDevices ?? [],
      extraDevices: e.devices.extraDevices ?? [],
    })),
  );
}

/** The 410 body as the engine uses it (exported for its unit test). */
export function parseStale(body: unknown): MultiRecipientStale {
  const entries = check(body, validateStale, 'Sending to a group');
  return new MultiRecipientStale(
    entries.map((e) => ({ serviceId: e.uuid, staleDevices: e.devices.staleDevices ?? [] })),
  );
}

/**
 * Sends a multi-recipient message (the bytes libsignal's sealedSenderMultiRecipientEncrypt made).
 * Resolves with the recipients the server did not find (`uuids404`); throws MultiRecipientMismatch
 * (409), MultiRecipientStale (410), UnidentifiedAccessRejected (401), MultiRecipientUnknown (404),
 * or the core errors every route may give.
 */
export async function sendMultiRecipient(
  requester: ChatRequester,
  payload: Uint8Array,
  opts: MultiRecipientOptions,
): Promise<{ uuids404: string[] }> {
  const headers: Record<string, string> = { 'Content-Type': MRM_CONTENT_TYPE };
  if ('groupSendToken' in opts.auth) headers['Group-Send-Token'] = b64(opts.auth.groupSendToken);
  else headers['Unidentified-Access-Key'] = b64(opts.auth.accessKey);
  const path =
    `/v1/messages/multi_recipient?ts=${opts.timestamp}&online=${opts.online}` +
    `&urgent=${opts.urgent}&story=false`;
  const res = await call(requester, 'PUT', path, payload, headers);
  switch (res.status) {
    case 200: {
      const body = res.body.length === 0 ? {} : json(res);
      return { uuids404: check(body ?? {}, validateOk, 'Sending to a group').uuids404 ?? [] };
    }
    case 401:
      throw new UnidentifiedAccessRejected();
    case 404:
      throw new MultiRecipientUnknown();
    case 409:
      throw parseMismatch(json(res));
    case 410:
      throw parseStale(json(res));
    case 428:
      throw challengeIn(res, 'Sending to a group');
    default:
      return fail(res, 'Sending to a group');
  }
}
