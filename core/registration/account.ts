/**
 * POST /v1/registration: creating the account on a verified session (PROTOCOL.md §9), the last step
 * after register.ts's verification steps. Key generation lives in core/crypto: this module takes the
 * prepared upload objects.
 */
import Ajv from 'ajv';
import { InvalidInputError, ProtocolError } from '../errors';
import { normalizeNumber } from '../directory/number';
import type { ChatRequester } from '../net/types';
import { fail, json, sessionNotFound } from './answers';
import { RegistrationError, RegistrationLockedError } from './errors';

export interface SignedKeyUpload {
  keyId: number;
  /** base64 */
  publicKey: string;
  /** base64 */
  signature: string;
}

/**
 * The account attributes POST /v1/registration takes. Field types follow what both Signal-Server
 * (Jackson: a byte[] accepts an array of numbers) and the mock server (zod: only an array) accept.
 */
export interface RegistrationAccountAttributes {
  fetchesMessages: boolean;
  registrationId: number;
  pniRegistrationId: number;
  name?: string;
  capabilities: Record<string, boolean>;
  /** The 16-byte unidentified access key derived from the profile key, as an array of bytes. */
  unidentifiedAccessKey: number[];
  unrestrictedUnidentifiedAccess: boolean;
  discoverableByPhoneNumber: boolean;
  /** Registration recovery password (base64); the mock requires it. */
  recoveryPassword: string;
  registrationLock?: string;
  [extra: string]: unknown;
}

export interface RegisterAccountArgs {
  /** E.164 of the verified session; the username of the Basic credentials. */
  number: string;
  /** The new account's password (primary device 1); never logged. */
  password: string;
  sessionId: string;
  accountAttributes: RegistrationAccountAttributes;
  /** base64 serialized identity public keys */
  aciIdentityKey: string;
  pniIdentityKey: string;
  aciSignedPreKey: SignedKeyUpload;
  pniSignedPreKey: SignedKeyUpload;
  aciPqLastResortPreKey: SignedKeyUpload;
  pniPqLastResortPreKey: SignedKeyUpload;
}

export interface RegisteredAccount {
  aci: string;
  /** Untagged PNI UUID. */
  pni: string;
  number: string;
  /** The server says an account already existed for this number and was replaced. */
  reregistration?: boolean;
}

const ajv = new Ajv({ allErrors: false, coerceTypes: false });

const validateRegistered = ajv.compile<{
  uuid: string;
  pni: string;
  number: string;
  reregistration?: boolean;
}>({
  type: 'object',
  properties: {
    uuid: { type: 'string', minLength: 1 },
    pni: { type: 'string', minLength: 1 },
    number: { type: 'string' },
    reregistration: { type: 'boolean' },
  },
  required: ['uuid', 'pni', 'number'],
});

/**
 * POST /v1/registration with `Authorization: Basic base64("<number>:<password>")` on a verified
 * session. Creates the account (or replaces the one registered for the number): the caller then
 * connects as `<aci>.1` with the same password and uploads one-time keys.
 */
export async function registerAccount(
  requester: ChatRequester,
  args: RegisterAccountArgs,
): Promise<RegisteredAccount> {
  const e164 = normalizeNumber(args.number);
  if (!args.password) throw new InvalidInputError('A password for the new account is required');
  const what = `Registering ${e164}`;
  const res = await requester.request({
    verb: 'POST',
    path: '/v1/registration',
    headers: {
      Authorization: `Basic ${Buffer.from(`${e164}:${args.password}`).toString('base64')}`,
    },
    body: {
      sessionId: args.sessionId,
      accountAttributes: args.accountAttributes,
      skipDeviceTransfer: true,
      aciIdentityKey: args.aciIdentityKey,
      pniIdentityKey: args.pniIdentityKey,
      aciSignedPreKey: args.aciSignedPreKey,
      pniSignedPreKey: args.pniSignedPreKey,
      aciPqLastResortPreKey: args.aciPqLastResortPreKey,
      pniPqLastResortPreKey: args.pniPqLastResortPreKey,
    },
  });
  if (res.status === 200) {
    const data = json(res);
    if (!validateRegistered(data)) {
      throw new ProtocolError(
        `${what}: unexpected answer from the server (${ajv.errorsText(validateRegistered.errors)})`,
      );
    }
    return {
      aci: data.uuid,
      pni: data.pni.replace(/^PNI:/i, ''),
      number: data.number || e164,
      ...(data.reregistration !== undefined ? { reregistration: data.reregistration } : {}),
    };
  }
  const notVerified = () =>
    new RegistrationError(
      'SESSION_NOT_VERIFIED',
      `Signal did not accept the verification of ${e164} (the session is not verified, or was ` +
        'already used): verify the number again.',
    );
  switch (res.status) {
    case 400: {
      // The mock answers 400 "session is not verified"; anything else at 400 is our bug.
      const body = json(res) as { error?: unknown } | undefined;
      if (typeof body?.error === 'string' && /not verified/i.test(body.error)) throw notVerified();
      throw new ProtocolError(`${what}: the server rejected the request as malformed (400)`);
    }
    case 401:
    case 403:
      throw notVerified();
    case 404:
      throw sessionNotFound();
    case 409:
      throw new RegistrationError(
        'DEVICE_TRANSFER',
        `${what}: Signal offers a transfer from the phone that has this number; register again ` +
          'from the start.',
      );
    case 422:
      throw new RegistrationError(
        'REJECTED',
        `${what}: Signal rejected the account keys or attributes (422).`,
      );
    case 423: {
      const body = json(res) as { timeRemaining?: unknown } | undefined;
      const ms = typeof body?.timeRemaining === 'number' ? body.timeRemaining : undefined;
      throw new RegistrationLockedError(e164, ms);
    }
  }
  fail(res, what);
}
