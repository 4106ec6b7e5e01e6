import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { PrivateKey } from '@signalapp/libsignal-client';
import {
  Linker,
  provisionedIdentifiers,
  provisioningUrl,
  type ProvisioningPorts,
  type ProvisioningSocket,
} from '../../../core/provisioning/linker';
import { CancelledError, ProtocolError } from '../../../core/errors';
import { silentLogger } from '../../../core/log';
import { ProvisionEnvelope, ProvisioningAddress, ProvisionMessage } from '../../../proto';
import type { IncomingRequestHandler } from '../../../core/net/types';

/** A fake provisioning server: each socket gets an address; the test decides when to close or scan. */
class FakeProvisioning {
  sockets: Array<{ handler: IncomingRequestHandler; close: () => void; closedByClient: boolean }> =
    [];
  completed: ProvisionMessage[] = [];
  ephemerals: PrivateKey[] = [];

  ports(): ProvisioningPorts {
    return {
      openProvisioningSocket: async (handler) => {
        let closeIt!: () => void;
        const closed = new Promise<void>((resolve) => (closeIt = resolve));
        const entry = { handler, close: closeIt, closedByClient: false };
        this.sockets.push(entry);
        const socket: ProvisioningSocket = {
          closed,
          close: () => {
            entry.closedByClient = true;
            closeIt();
          },
        };
        const address = `address-${this.sockets.length}+/=`;
        // The server sends the address right after the socket opens.
        setImmediate(
          () =>
            void handler({
              verb: 'PUT',
              path: '/v1/address',
              headers: {},
              body: ProvisioningAddress.encode({ address }).finish(),
            }),
        );
        return socket;
      },
      decrypt: (ephemeral, envelope) => {
        this.ephemerals.push(ephemeral);
        return ProvisionMessage.decode(envelope.body ?? new Uint8Array());
      },
      complete: async (message) => {
        this.completed.push(message);
        return {
          aci: '11111111-1111-4111-8111-111111111111',
          pni: '22222222-2222-4222-8222-222222222222',
          deviceId: 2,
          number: message.number ?? '',
        };
      },
    };
  }

  async scan(socketIndex: number, number: string): Promise<number> {
    const s = this.sockets[socketIndex];
    assert.ok(s, `socket ${socketIndex} exists`);
    const body = ProvisionEnvelope.encode({
      publicKey: new Uint8Array(33),
      body: ProvisionMessage.encode({ number }).finish(),
    }).finish();
    return s.handler({ verb: 'PUT', path: '/v1/message', headers: {}, body });
  }
}

const nextUrl = (linker: Linker) => new Promise<string>((resolve) => linker.once('url', resolve));

describe('provisioning/linker', () => {
  it('URL-encodes the address and the base64 public key (a raw "+" would reach the phone as a space)', () => {
    const pub = new Uint8Array(33).fill(0xfb); // base64 of 0xfb bytes is full of '+' and '/'
    const url = provisioningUrl('a+b/c', pub);
    assert.match(url, /^sgnl:\/\/linkdevice\?uuid=a%2Bb%2Fc&pub_key=/);
    assert.ok(!url.slice('sgnl://linkdevice?'.length).includes('+'));
    const parsed = new URL(url);
    assert.equal(Buffer.from(parsed.searchParams.get('pub_key') ?? '', 'base64').length, 33);
  });

  it('shows the URL, decrypts the scan with the same ephemeral key, and completes', async () => {
    const fake = new FakeProvisioning();
    const linker = new Linker(fake.ports(), { logger: silentLogger });
    const states: string[] = [];
    linker.on('state', (s) => states.push(s));
    const result = linker.run();
    const url = await nextUrl(linker);
    const pub = Buffer.from(new URL(url).searchParams.get('pub_key') ?? '', 'base64');
    assert.equal(await fake.scan(0, '+15550001111'), 200);
    const account = await result;
    assert.equal(account.number, '+15550001111');
    assert.deepEqual(Buffer.from(fake.ephemerals[0]?.getPublicKey().serialize() ?? []), pub);
    assert.deepEqual(states, ['waiting', 'linking', 'linked']);
    assert.equal(linker.url, null);
  });

  it('reopens a provisioning socket that closes before the scan and shows a fresh URL', async () => {
    const fake = new FakeProvisioning();
    const linker = new Linker(fake.ports(), { logger: silentLogger, reopenDelayMs: 1 });
    const result = linker.run();
    const first = await nextUrl(linker);
    fake.sockets[0]?.close(); // the server closes the unused socket
    const second = await nextUrl(linker);
    assert.notEqual(second, first);
    assert.equal(fake.sockets.length, 2);
    await fake.scan(1, '+15550002222');
    assert.equal((await result).number, '+15550002222');
    assert.equal(fake.sockets[1]?.closedByClient, true, 'the used socket is closed after the scan');
  });

  it('cancels while waiting: rejects with CancelledError, closes the socket, never completes', async () => {
    const fake = new FakeProvisioning();
    const controller = new AbortController();
    const linker = new Linker(fake.ports(), { logger: silentLogger, signal: controller.signal });
    const result = linker.run();
    await nextUrl(linker);
    controller.abort();
    await assert.rejects(
      result,
      (e: unknown) => e instanceof CancelledError && e.code === 'CANCELLED',
    );
    assert.equal(linker.state, 'cancelled');
    assert.equal(fake.sockets[0]?.closedByClient, true);
    assert.equal(fake.completed.length, 0);
  });

  it("keeps one abort listener on the caller's signal however often the socket is reopened", async () => {
    const fake = new FakeProvisioning();
    const controller = new AbortController();
    const warnings: string[] = [];
    const onWarning = (w: Error) => void warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const linker = new Linker(fake.ports(), {
        logger: silentLogger,
        signal: controller.signal,
        reopenDelayMs: 1,
        maxReopens: 100,
      });
      const result = linker.run();
      const counts: number[] = [];
      for (let i = 0; i < 40; i++) {
        await nextUrl(linker);
        counts.push(getEventListeners(controller.signal, 'abort').length);
        fake.sockets[i]?.close(); // the server closes the unused socket: reopen
      }
      await nextUrl(linker);
      assert.ok(Math.max(...counts) <= 1, `listeners per reopen: ${counts.join(',')}`);
      controller.abort();
      await assert.rejects(result, CancelledError);
      assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
      await new Promise((r) => setImmediate(r));
      assert.ok(!warnings.includes('MaxListenersExceededWarning'));
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('reads the ACI and PNI from the binary fields, or from the string fields when those are absent', () => {
    const aci = '0a1b2c3d-4e5f-4061-8172-8394a5b6c7d8';
    const pni = 'f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f';
    const bytes = (u: string) => new Uint8Array(Buffer.from(u.replace(/-/g, ''), 'hex'));
    assert.deepEqual(provisionedIdentifiers({ aciBinary: bytes(aci), pniBinary: bytes(pni) }), {
      aci,
      pni,
    });
    // An older phone: strings only, upper case, the PNI with its prefix.
    assert.deepEqual(
      provisionedIdentifiers({
        aciBinary: new Uint8Array(0),
        aci: aci.toUpperCase(),
        pni: `PNI:${pni.toUpperCase()}`,
      }),
      { aci, pni },
    );
    assert.deepEqual(provisionedIdentifiers({ aciBinary: bytes(aci), pni }), { aci, pni });
    // The binary field wins over the string one.
    assert.equal(
      provisionedIdentifiers({ aciBinary: bytes(aci), aci: pni, pniBinary: bytes(pni) }).aci,
      aci,
    );
    assert.throws(() => provisionedIdentifiers({ aci }), /no account identifiers/);
    assert.throws(
      () => provisionedIdentifiers({ aci: 'not-a-uuid', pni }),
      (e: unknown) => e instanceof ProtocolError && /malformed ACI/.test(e.message),
    );
    assert.throws(
      () => provisionedIdentifiers({ aciBinary: new Uint8Array(15), pni }),
      ProtocolError,
    );
  });

  it('gives up with a clear error when the socket keeps closing', async () => {
    const fake = new FakeProvisioning();
    const ports = fake.ports();
    const closing: ProvisioningPorts = {
      ...ports,
      openProvisioningSocket: async (h) => {
        const s = await ports.openProvisioningSocket(h);
        setImmediate(() => fake.sockets[fake.sockets.length - 1]?.close());
        return s;
      },
    };
    const linker = new Linker(closing, { logger: silentLogger, reopenDelayMs: 1, maxReopens: 3 });
    await assert.rejects(linker.run(), /kept closing/);
    assert.equal(linker.state, 'failed');
    assert.equal(fake.sockets.length, 4);
  });
});
