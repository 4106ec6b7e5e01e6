/**
 * Creating the account of a registered number (PROTOCOL.md §9, last step): new identity keys, a
 * profile key, the account entropy pool and the recovery password derived from it, and
 * `POST /v1/registration` on the verified session. The caller saves what it returns
 * (core/account/new-account.ts) and connects.
 */
import { IdentityKeyPair } from '@signalapp/libsignal-client';
import { AccountEntropyPool, SvrKey } from '@signalapp/libsignal-client/dist/AccountKeys.js';
import { deviceCapabilities } from '../account/capabilities';
import {
  generateAccountKeys,
  signedKeyUploads,
  type NewAccountKeys,
  type NewAccountRecord,
} from '../account/new-account';
import { deriveAccessKey } from '../crypto/access-key';
import { generateProfileKey } from '../crypto/keys';
import type { ChatRequester } from '../net/types';
import { environmentKey, type Environment } from '../config';
import type { Logger } from '../log';
import { ChatConnection } from '../net/connection';
import { registerAccount } from './register';
import { Registrar } from './registrar';

export async function createRegisteredAccount(
  requester: ChatRequester,
  args: { number: string; sessionId: string; environment: string },
): Promise<{ record: NewAccountRecord; keys: NewAccountKeys; reregistration: boolean }> {
  const aciIdentity = IdentityKeyPair.generate();
  const pniIdentity = IdentityKeyPair.generate();
  const keys = generateAccountKeys(aciIdentity, pniIdentity);
  const profileKey = generateProfileKey();
  // The primary holds the account's root secret; the recovery password Signal's apps register
  // with is derived from it (libsignal's SvrKey), so a later re-registration could use it.
  const accountEntropyPool = AccountEntropyPool.generate();
  const masterKey = AccountEntropyPool.deriveSvrKey(accountEntropyPool);
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  const registered = await registerAccount(requester, {
    number: args.number,
    password: keys.password,
    sessionId: args.sessionId,
    accountAttributes: {
      fetchesMessages: true,
      registrationId: keys.registrationId,
      pniRegistrationId: keys.pniRegistrationId,
      capabilities: deviceCapabilities(),
      unidentifiedAccessKey: Array.from(deriveAccessKey(profileKey)),
      unrestrictedUnidentifiedAccess: false,
      discoverableByPhoneNumber: true,
      recoveryPassword: b64(new SvrKey(masterKey).deriveRegistrationRecoveryPassword()),
    },
    aciIdentityKey: b64(aciIdentity.publicKey.serialize()),
    pniIdentityKey: b64(pniIdentity.publicKey.serialize()),
    ...signedKeyUploads(keys),
  });
  return {
    keys,
    reregistration: Boolean(registered.reregistration),
    record: {
      aci: registered.aci,
      pni: registered.pni,
      number: registered.number,
      deviceId: 1,
      aciIdentity,
      pniIdentity,
      profileKey,
      masterKey,
      accountEntropyPool,
      environment: args.environment,
      deviceName: null,
    },
  };
}

/**
 * The registrar of a client: registration routes over unauthenticated sockets to `environment`,
 * and the account, once Signal created it, handed to `save` (which must not lose it: Signal knows
 * only these keys now).
 */
export function accountRegistrar(opts: {
  environment: Environment;
  logger: Logger;
  save: (record: NewAccountRecord, keys: NewAccountKeys) => void;
}): Registrar {
  const { environment, logger } = opts;
  return new Registrar({
    logger,
    openRequester: () =>
      ChatConnection.open({ env: environment, path: '/v1/websocket/', logger, keepalive: false }),
    createAccount: async (requester, args) => {
      const created = await createRegisteredAccount(requester, {
        ...args,
        environment: environmentKey(environment),
      });
      // Another install of the number without a registration lock was just signed out: the
      // registrar reports it (RegistrationStatus.reregistration) so the editor can tell the user.
      if (created.reregistration)
        logger.warn(`${args.number} was registered elsewhere; that registration ended`);
      opts.save(created.record, created.keys);
      const { aci, pni, number, deviceId } = created.record;
      return {
        aci,
        pni,
        number: number ?? args.number,
        deviceId,
        ...(created.reregistration ? { reregistration: true } : {}),
      };
    },
  });
}
