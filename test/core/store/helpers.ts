import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  IdentityKeyPair,
  KEMKeyPair,
  KyberPreKeyRecord,
  PreKeyBundle,
  PreKeyRecord,
  PrivateKey,
  SignedPreKeyRecord,
} from '@signalapp/libsignal-client';
import { SignalStore, type SignalStoreOptions } from '../../../core/store';

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-store-'));
}

/** A store with an account row and a fresh identity, as linking would leave it. */
export function makeAccount(file: string, options: SignalStoreOptions = {}): SignalStore {
  const store = SignalStore.open(file, options);
  store.account.save({
    aci: randomUUID(),
    pni: randomUUID(),
    number: '+15550100' + String(Math.floor(Math.random() * 900) + 100),
    deviceId: 1,
    password: 'secret-password',
    aciRegistrationId: 1 + Math.floor(Math.random() * 16000),
    pniRegistrationId: 1 + Math.floor(Math.random() * 16000),
    aciIdentityKeyPair: IdentityKeyPair.generate().serialize(),
    pniIdentityKeyPair: IdentityKeyPair.generate().serialize(),
    profileKey: null,
    masterKey: null,
    accountEntropyPool: null,
    environment: 'custom',
    deviceName: 'test',
  });
  return store;
}

export interface Published {
  bundle: PreKeyBundle;
  preKeyId: number;
  kyberId: number;
  signedId: number;
}

/** Generates and stores prekeys for the ACI identity, returning the bundle a peer would fetch. */
export function publishKeys(
  store: SignalStore,
  opts: { lastResortKyber?: boolean; withPreKey?: boolean } = {},
): Published {
  const account = store.requireAccount();
  const identity = IdentityKeyPair.deserialize(new Uint8Array(account.aciIdentityKeyPair));
  const ids = store.nextKeyIds('aci');
  const now = Date.now();
  const pre = PrivateKey.generate();
  const signed = PrivateKey.generate();
  const signedSig = identity.privateKey.sign(signed.getPublicKey().serialize());
  const kem = KEMKeyPair.generate();
  const kemSig = identity.privateKey.sign(kem.getPublicKey().serialize());
  const withPreKey = opts.withPreKey ?? true;
  if (withPreKey) store.savePreKeys('aci', [PreKeyRecord.new(ids.preKey, pre.getPublicKey(), pre)]);
  store.saveSignedPreKey(
    'aci',
    SignedPreKeyRecord.new(ids.signed, now, signed.getPublicKey(), signed, signedSig),
  );
  store.saveKyberPreKeys(
    'aci',
    [KyberPreKeyRecord.new(ids.kyber, now, kem, kemSig)],
    opts.lastResortKyber ?? false,
  );
  return {
    preKeyId: ids.preKey,
    kyberId: ids.kyber,
    signedId: ids.signed,
    bundle: PreKeyBundle.new(
      account.aciRegistrationId,
      account.deviceId,
      withPreKey ? ids.preKey : null,
      withPreKey ? pre.getPublicKey() : null,
      ids.signed,
      signed.getPublicKey(),
      signedSig,
      identity.publicKey,
      ids.kyber,
      kem.getPublicKey(),
      kemSig,
    ),
  };
}
