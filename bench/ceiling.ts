/**
 * The ceiling every throughput figure is compared with (PROTOCOL.md §10): raw libsignal one-way
 * encrypt + decrypt over an established session, with in-memory stores, in this same process.
 * No persistence, no network, no protobuf: just the protocol's crypto.
 */
import {
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KEMKeyPair,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyBundle,
  PreKeyRecord,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SessionRecord,
  SessionStore,
  SignalMessage,
  SignedPreKeyRecord,
  SignedPreKeyStore,
  PreKeySignalMessage,
  CiphertextMessageType,
  processPreKeyBundle,
  sealedSenderDecryptToUsmc,
  sealedSenderEncrypt,
  SenderCertificate,
  ServerCertificate,
  UnidentifiedSenderMessageContent,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from '@signalapp/libsignal-client';

class MemSessions extends SessionStore {
  private readonly map = new Map<string, Uint8Array<ArrayBuffer>>();
  async saveSession(name: ProtocolAddress, record: SessionRecord): Promise<void> {
    this.map.set(name.toString(), record.serialize());
  }
  async getSession(name: ProtocolAddress): Promise<SessionRecord | null> {
    const bytes = this.map.get(name.toString());
    return bytes ? SessionRecord.deserialize(bytes) : null;
  }
  async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    return Promise.all(addresses.map(async (a) => (await this.getSession(a)) as SessionRecord));
  }
}

class MemIdentities extends IdentityKeyStore {
  private readonly map = new Map<string, PublicKey>();
  constructor(
    private readonly pair: IdentityKeyPair,
    private readonly regId: number,
  ) {
    super();
  }
  async getIdentityKey(): Promise<PrivateKey> {
    return this.pair.privateKey;
  }
  async getLocalRegistrationId(): Promise<number> {
    return this.regId;
  }
  async saveIdentity(name: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const old = this.map.get(name.name());
    this.map.set(name.name(), key);
    return old && !old.equals(key)
      ? IdentityChange.ReplacedExisting
      : IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity(): Promise<boolean> {
    return true;
  }
  async getIdentity(name: ProtocolAddress): Promise<PublicKey | null> {
    return this.map.get(name.name()) ?? null;
  }
}

class MemPreKeys extends PreKeyStore {
  readonly map = new Map<number, PreKeyRecord>();
  async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    this.map.set(id, record);
  }
  async getPreKey(id: number): Promise<PreKeyRecord> {
    const r = this.map.get(id);
    if (!r) throw new Error(`no prekey ${id}`);
    return r;
  }
  async removePreKey(id: number): Promise<void> {
    this.map.delete(id);
  }
}

class MemSignedPreKeys extends SignedPreKeyStore {
  readonly map = new Map<number, SignedPreKeyRecord>();
  async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    this.map.set(id, record);
  }
  async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    const r = this.map.get(id);
    if (!r) throw new Error(`no signed prekey ${id}`);
    return r;
  }
}

class MemKyberPreKeys extends KyberPreKeyStore {
  readonly map = new Map<number, KyberPreKeyRecord>();
  async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    this.map.set(id, record);
  }
  async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    const r = this.map.get(id);
    if (!r) throw new Error(`no kyber prekey ${id}`);
    return r;
  }
  async markKyberPreKeyUsed(): Promise<void> {}
}

interface Party {
  address: ProtocolAddress;
  sessions: MemSessions;
  identities: MemIdentities;
  preKeys: MemPreKeys;
  signed: MemSignedPreKeys;
  kyber: MemKyberPreKeys;
  bundle: PreKeyBundle;
  identityPair: IdentityKeyPair;
}

function party(name: string): Party {
  const identity = IdentityKeyPair.generate();
  const regId = 1 + Math.floor(Math.random() * 16000);
  const preKey = PrivateKey.generate();
  const signedKey = PrivateKey.generate();
  const signedSig = identity.privateKey.sign(signedKey.getPublicKey().serialize());
  const kem = KEMKeyPair.generate();
  const kemSig = identity.privateKey.sign(kem.getPublicKey().serialize());
  const p: Party = {
    address: ProtocolAddress.new(name, 1),
    identityPair: identity,
    sessions: new MemSessions(),
    identities: new MemIdentities(identity, regId),
    preKeys: new MemPreKeys(),
    signed: new MemSignedPreKeys(),
    kyber: new MemKyberPreKeys(),
    bundle: PreKeyBundle.new(
      regId,
      1,
      1,
      preKey.getPublicKey(),
      1,
      signedKey.getPublicKey(),
      signedSig,
      identity.publicKey,
      1,
      kem.getPublicKey(),
      kemSig,
    ),
  };
  const now = Date.now();
  p.preKeys.map.set(1, PreKeyRecord.new(1, preKey.getPublicKey(), preKey));
  p.signed.map.set(
    1,
    SignedPreKeyRecord.new(1, now, signedKey.getPublicKey(), signedKey, signedSig),
  );
  p.kyber.map.set(1, KyberPreKeyRecord.new(1, now, kem, kemSig));
  return p;
}

/**
 * Messages per second for one-way encrypt (Alice) + decrypt (Bob) over an established session.
 * `sealed`: each message also goes through sealed sender as the engine does it (wrap in an
 * UnidentifiedSenderMessageContent with a sender certificate, sealedSenderEncrypt; on the other side
 * sealedSenderDecryptToUsmc, validate the certificate against the trust root, then decrypt).
 */
export async function measureCeiling(
  messages = 2000,
  { sealed = false }: { sealed?: boolean } = {},
): Promise<{ msgsPerSecond: number; messages: number }> {
  const alice = party('11111111-1111-4111-8111-111111111111');
  const bob = party('22222222-2222-4222-8222-222222222222');
  await processPreKeyBundle(
    bob.bundle,
    bob.address,
    alice.address,
    alice.sessions,
    alice.identities,
  );
  const plaintext = new Uint8Array(160).fill(0x41);
  // Establish the session both ways so the timed loop measures steady-state ratchet messages.
  const first = await signalEncrypt(
    plaintext,
    bob.address,
    alice.address,
    alice.sessions,
    alice.identities,
  );
  if (first.type() !== CiphertextMessageType.PreKey)
    throw new Error('expected a PreKey message first');
  await signalDecryptPreKey(
    PreKeySignalMessage.deserialize(first.serialize()),
    alice.address,
    bob.address,
    bob.sessions,
    bob.identities,
    bob.preKeys,
    bob.signed,
    bob.kyber,
  );
  const reply = await signalEncrypt(
    plaintext,
    alice.address,
    bob.address,
    bob.sessions,
    bob.identities,
  );
  await signalDecrypt(
    SignalMessage.deserialize(reply.serialize()),
    bob.address,
    alice.address,
    alice.sessions,
    alice.identities,
  );
  const trustRoot = PrivateKey.generate();
  const serverKey = PrivateKey.generate();
  const server = ServerCertificate.new(1, serverKey.getPublicKey(), trustRoot);
  const certificate = SenderCertificate.new(
    alice.address.name(),
    null,
    1,
    alice.identityPair.publicKey,
    Date.now() + 86_400_000,
    server,
    serverKey,
  );
  const start = process.hrtime.bigint();
  for (let i = 0; i < messages; i++) {
    const ct = await signalEncrypt(
      plaintext,
      bob.address,
      alice.address,
      alice.sessions,
      alice.identities,
    );
    let wire = ct.serialize();
    if (sealed) {
      const usmc = UnidentifiedSenderMessageContent.new(ct, certificate, 0, null);
      const envelope = await sealedSenderEncrypt(usmc, bob.address, alice.identities);
      const opened = await sealedSenderDecryptToUsmc(envelope, bob.identities);
      if (
        !opened.senderCertificate().validateWithTrustRoots([trustRoot.getPublicKey()], Date.now())
      )
        throw new Error('sender certificate did not validate');
      wire = opened.contents();
    }
    await signalDecrypt(
      SignalMessage.deserialize(wire),
      alice.address,
      bob.address,
      bob.sessions,
      bob.identities,
    );
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { msgsPerSecond: messages / seconds, messages };
}

if (require.main === module) {
  measureCeiling().then(
    (r) => console.log(`ceiling: ${r.msgsPerSecond.toFixed(0)} msg/s over ${r.messages} messages`),
    (e) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
