/**
 * A new account's keys and its first save, shared by linking (PROTOCOL.md §3) and registering (§9):
 * both generate a password, registration ids, and for each identity a signed prekey and a Kyber
 * last-resort prekey, tell Signal about them, then save the account and those keys in one
 * transaction, because from then on Signal knows only these keys.
 */
import type { IdentityKeyPair } from '@signalapp/libsignal-client';
import type { UploadSignedKey } from '../api';
import {
  generateKyberPreKey,
  generatePassword,
  generateRegistrationId,
  generateSignedPreKey,
} from '../crypto/keys';
import type { SignalStore } from '../store';
import type { AccountRecord } from '../store/records';

type SignedKey = ReturnType<typeof generateSignedPreKey>;
type KyberKey = ReturnType<typeof generateKyberPreKey>;

export interface NewAccountKeys {
  password: string;
  registrationId: number;
  pniRegistrationId: number;
  aciSigned: SignedKey;
  pniSigned: SignedKey;
  aciLastResort: KyberKey;
  pniLastResort: KyberKey;
}

/** Fresh credentials and the first signed and last-resort prekeys of both identities. */
export function generateAccountKeys(aci: IdentityKeyPair, pni: IdentityKeyPair): NewAccountKeys {
  return {
    password: generatePassword(),
    registrationId: generateRegistrationId(),
    pniRegistrationId: generateRegistrationId(),
    aciSigned: generateSignedPreKey(aci.privateKey, 1),
    pniSigned: generateSignedPreKey(pni.privateKey, 1),
    aciLastResort: generateKyberPreKey(aci.privateKey, 1),
    pniLastResort: generateKyberPreKey(pni.privateKey, 1),
  };
}

/** The four signed keys as `PUT /v1/devices/link` and `POST /v1/registration` take them. */
export function signedKeyUploads(keys: NewAccountKeys): {
  aciSignedPreKey: UploadSignedKey;
  pniSignedPreKey: UploadSignedKey;
  aciPqLastResortPreKey: UploadSignedKey;
  pniPqLastResortPreKey: UploadSignedKey;
} {
  return {
    aciSignedPreKey: keys.aciSigned.upload,
    pniSignedPreKey: keys.pniSigned.upload,
    aciPqLastResortPreKey: keys.aciLastResort.upload,
    pniPqLastResortPreKey: keys.pniLastResort.upload,
  };
}

/** What Signal answered and the account holds besides the generated keys. */
export type NewAccountRecord = Omit<
  AccountRecord,
  | 'password'
  | 'aciRegistrationId'
  | 'pniRegistrationId'
  | 'aciIdentityKeyPair'
  | 'pniIdentityKeyPair'
> & { aciIdentity: IdentityKeyPair; pniIdentity: IdentityKeyPair };

/** Saves the account and its first keys in one transaction, then drops the store's caches. */
export function saveNewAccount(
  store: SignalStore,
  account: NewAccountRecord,
  keys: NewAccountKeys,
): void {
  const { aciIdentity, pniIdentity, ...rest } = account;
  store.transaction(() => {
    store.account.save({
      ...rest,
      password: keys.password,
      aciRegistrationId: keys.registrationId,
      pniRegistrationId: keys.pniRegistrationId,
      aciIdentityKeyPair: aciIdentity.serialize(),
      pniIdentityKeyPair: pniIdentity.serialize(),
    });
    store.saveSignedPreKey('aci', keys.aciSigned.record);
    store.saveSignedPreKey('pni', keys.pniSigned.record);
    store.saveKyberPreKeys('aci', [keys.aciLastResort.record], true);
    store.saveKyberPreKeys('pni', [keys.pniLastResort.record], true);
  });
  store.accountChanged();
}
