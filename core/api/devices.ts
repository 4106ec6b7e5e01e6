/** Linking this client as a secondary device (PROTOCOL.md §3 step 5). */
import type { JSONSchemaType } from 'ajv';
import { ServerError, UnauthorizedError } from '../errors';
import type { ChatRequester } from '../net/types';
import { ajv, basicAuth, call, fail, parse, stripPni } from './http';
import type { UploadSignedKey } from './keys';

export interface AccountAttributes {
  fetchesMessages: boolean;
  registrationId: number;
  pniRegistrationId: number;
  name?: string;
  capabilities: Record<string, boolean>;
  unidentifiedAccessKey?: string;
  unrestrictedUnidentifiedAccess?: boolean;
  discoverableByPhoneNumber?: boolean;
}

interface LinkResponse {
  deviceId: number;
  uuid: string;
  pni: string;
}
const linkSchema: JSONSchemaType<LinkResponse> = {
  type: 'object',
  properties: {
    deviceId: { type: 'integer', minimum: 1 },
    uuid: { type: 'string' },
    pni: { type: 'string' },
  },
  required: ['deviceId', 'uuid', 'pni'],
};
const validateLink = ajv.compile(linkSchema);

/** PUT /v1/devices/link on an UNauthenticated socket, authorized by the new credentials (§3 step 5). */
export async function linkDevice(
  requester: ChatRequester,
  args: {
    aci: string;
    password: string;
    verificationCode: string;
    accountAttributes: AccountAttributes;
    aciSignedPreKey: UploadSignedKey;
    pniSignedPreKey: UploadSignedKey;
    aciPqLastResortPreKey: UploadSignedKey;
    pniPqLastResortPreKey: UploadSignedKey;
  },
): Promise<{ deviceId: number; aci: string; pni: string }> {
  const { aci, password, ...body } = args;
  const res = await call(requester, 'PUT', '/v1/devices/link', body, {
    Authorization: basicAuth(aci, password),
  });
  if (res.status === 403)
    throw new UnauthorizedError('Linking refused: the code from the phone was not accepted');
  // Signal-Server's DeviceController answers 409 when the new device lacks a capability it requires
  // of new devices, or one every device of the account has (PROTOCOL.md §12): the fault is this
  // client's, not the phone's.
  if (res.status === 409)
    throw new ServerError(
      409,
      'Linking (Signal requires a device capability this client lacks: update @sigflow/node-red-signal)',
    );
  if (res.status === 411)
    throw new ServerError(411, 'Linking (the account already has the most linked devices)');
  if (res.status !== 200) fail(res, 'Linking');
  const r = parse(res, validateLink, 'Linking');
  return { deviceId: r.deviceId, aci: r.uuid, pni: stripPni(r.pni) };
}
