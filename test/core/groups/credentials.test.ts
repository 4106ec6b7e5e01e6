import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Aci, Pni } from '@signalapp/libsignal-client';
import {
  ClientZkAuthOperations,
  GroupMasterKey,
  GroupSecretParams,
  ServerSecretParams,
  ServerZkAuthOperations,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import {
  credentialRange,
  dayOf,
  DAY_SECONDS,
  GroupCredentials,
} from '../../../core/groups/credentials';
import { ProtocolError } from '../../../core/errors';

const aci = crypto.randomUUID();
const pni = crypto.randomUUID();
const secret = ServerSecretParams.generate();
const serverParams = secret.getPublicParams();
const issuer = new ServerZkAuthOperations(secret);

/** A fake `GET /v1/certificate/auth/group`: real credentials, one per day, as the server issues. */
function fakeServer(by = issuer) {
  const calls: Array<{ start: number; end: number }> = [];
  return {
    calls,
    fetch: async (start: number, end: number) => {
      calls.push({ start, end });
      const credentials = [];
      for (let t = start; t <= end; t += DAY_SECONDS) {
        const response = by.issueAuthCredentialWithPniZkc(Aci.fromUuid(aci), Pni.fromUuid(pni), t);
        credentials.push({ credential: response.serialize(), redemptionTime: t });
      }
      return { pni, credentials };
    },
  };
}

/** The day (epoch seconds) a credential redeems at, read back from a presentation of it. */
function redemptionDay(credential: Awaited<ReturnType<GroupCredentials['today']>>): number {
  const group = GroupSecretParams.deriveFromMasterKey(
    new GroupMasterKey(new Uint8Array(crypto.randomBytes(32))),
  );
  const presentation = new ClientZkAuthOperations(
    serverParams,
  ).createAuthCredentialWithPniPresentation(group, credential);
  return presentation.getRedemptionTime().getTime() / 1000;
}

const utc = (iso: string) => Date.parse(iso);

describe('groups/credentials: group auth credentials by day', () => {
  it('asks for today … today+6 days, UTC midnights', () => {
    assert.equal(dayOf(utc('2026-03-10T23:59:59.999Z')), utc('2026-03-10T00:00:00Z') / 1000);
    assert.deepEqual(credentialRange(utc('2026-03-10T12:00:00Z')), {
      start: utc('2026-03-10T00:00:00Z') / 1000,
      end: utc('2026-03-16T00:00:00Z') / 1000,
    });
  });

  it("uses today's credential, switches at UTC midnight without a fetch, and refetches past the week", async () => {
    let now = utc('2026-03-10T23:59:59Z');
    const server = fakeServer();
    const creds = new GroupCredentials({
      serverParams,
      aci,
      pni,
      fetch: server.fetch,
      now: () => now,
    });
    assert.equal(redemptionDay(await creds.today()), utc('2026-03-10T00:00:00Z') / 1000);
    assert.equal(server.calls.length, 1);
    assert.equal(creds.heldDays().length, 7);
    now = utc('2026-03-11T00:00:01Z');
    assert.equal(redemptionDay(await creds.today()), utc('2026-03-11T00:00:00Z') / 1000);
    now = utc('2026-03-16T18:00:00Z');
    assert.equal(redemptionDay(await creds.today()), utc('2026-03-16T00:00:00Z') / 1000);
    assert.equal(server.calls.length, 1, 'the week fetched once covers its last day');
    now = utc('2026-03-17T00:00:00Z');
    assert.equal(redemptionDay(await creds.today()), utc('2026-03-17T00:00:00Z') / 1000);
    assert.equal(server.calls.length, 2, 'a day past the week fetches again');
    assert.deepEqual(server.calls[1], credentialRange(now));
    assert.equal(creds.heldDays()[0], utc('2026-03-17T00:00:00Z') / 1000, 'past days dropped');
  });

  it('concurrent first uses share one fetch', async () => {
    const server = fakeServer();
    const creds = new GroupCredentials({
      serverParams,
      aci,
      pni,
      fetch: server.fetch,
      now: Date.now,
    });
    await Promise.all([creds.today(), creds.today(), creds.today()]);
    assert.equal(server.calls.length, 1);
  });

  it('refuses credentials another server issued (they do not verify against our params)', async () => {
    const other = new ServerZkAuthOperations(ServerSecretParams.generate());
    const creds = new GroupCredentials({
      serverParams,
      aci,
      pni,
      fetch: fakeServer(other).fetch,
      now: Date.now,
    });
    await assert.rejects(creds.today(), ProtocolError);
  });

  it('a server that sends no credential for today is a ProtocolError, not a hang', async () => {
    const creds = new GroupCredentials({
      serverParams,
      aci,
      pni,
      fetch: async () => ({ credentials: [] }),
      now: Date.now,
    });
    await assert.rejects(creds.today(), /no group credential for today/);
  });
});
