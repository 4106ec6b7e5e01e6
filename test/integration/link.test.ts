import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SignalClient } from '../../core/client';
import { CancelledError, ClosedError } from '../../core/errors';
import { ChatConnection, type ConnectionOptions } from '../../core/net/connection';
import type { ChatRequest } from '../../core/net/types';
import {
  captureLogger,
  linkClient,
  openClient,
  startSandbox,
  tempDataFile,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
  inspect,
} from './helpers';

/** Lets the mock phone scan the first link URL; the promise is the phone's view of the link. */
function scanWith(sandbox: Sandbox, primary: PrimaryDevice) {
  const provision = sandbox.server.waitForProvision();
  let firstUrl!: (url: string) => void;
  const url = new Promise<string>((resolve) => (firstUrl = resolve));
  const phone = Promise.all([provision, url]).then(([p, provisionURL]) =>
    p.complete({ provisionURL, primaryDevice: primary }),
  );
  // Cancelled links never finish on the phone's side: no unhandled rejection from it either way.
  phone.catch(() => undefined);
  return { onUrl: (u: string) => firstUrl(u), phone };
}

/**
 * Runs `fn` with ChatConnection.open wrapped for the unauthenticated chat socket linking opens
 * (the provisioning socket and authenticated ones pass through untouched).
 */
async function withUnauthOpen<T>(
  wrap: (open: Promise<ChatConnection>) => Promise<ChatConnection>,
  fn: () => Promise<T>,
): Promise<T> {
  const realOpen = ChatConnection.open.bind(ChatConnection);
  ChatConnection.open = (opts: ConnectionOptions) => {
    const opening = realOpen(opts);
    return opts.path === '/v1/websocket/' && !opts.auth ? wrap(opening) : opening;
  };
  try {
    return await fn();
  } finally {
    ChatConnection.open = realOpen;
  }
}

describe('integration: linking to a mock phone', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('links, stores ACI, PNI and device id, and a fresh client reconnects without linking again', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const { client, dataFile } = await linkClient(sandbox, alice);
    const account = client.account;
    assert.ok(account);
    assert.equal(account.aci, alice.device.aci);
    assert.equal(`PNI:${account.pni}`, alice.device.pni);
    assert.ok(account.deviceId > 1, 'a secondary device id');
    assert.equal(account.number, alice.device.number);
    assert.equal(client.state, 'connected');
    assert.equal(fs.statSync(dataFile).mode & 0o777, 0o600);
    await client.close();

    const again = await openClient(sandbox, dataFile);
    assert.deepEqual(again.account, account);
    const queueEmpty = new Promise<void>((resolve) => again.once('queue-empty', () => resolve()));
    await again.connect();
    await withTimeout(queueEmpty, 10_000, 'queue/empty after reconnecting');
    assert.equal(again.state, 'connected');
    // One-time keys were uploaded for both identities at link time (§3 step 6).
    const store = inspect(again).store();
    assert.ok(store);
    assert.equal(store.countKeys('aci').preKeys, 100);
    assert.equal(store.countKeys('pni').kyberOneTime, 100);
  });

  it('cancelling a link in progress leaves no account file behind', async () => {
    const dataFile = tempDataFile();
    const client = await SignalClient.open({ dataFile, environment: sandbox.environment });
    sandbox.track(client);
    const controller = new AbortController();
    const urls: string[] = [];
    const linking = client.link({ signal: controller.signal, onUrl: (u) => urls.push(u) });
    while (urls.length === 0) await new Promise((r) => setTimeout(r, 20));
    assert.match(urls[0] ?? '', /^sgnl:\/\/linkdevice\?uuid=.+&pub_key=.+/);
    controller.abort();
    await assert.rejects(linking, (e: unknown) => e instanceof CancelledError);
    assert.equal(fs.existsSync(dataFile), false);
    assert.equal(fs.readdirSync(path.dirname(dataFile)).length, 0);
    assert.equal(client.account, null);
  });

  it('a cancel right after the scan, before the link request, ends cancelled with no account file', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const lines: string[] = [];
    const dataFile = tempDataFile();
    const client = await openClient(sandbox, dataFile, { logger: captureLogger(lines) });
    const linkStates: string[] = [];
    client.on('link-state', (s) => {
      linkStates.push(s);
      // The scan arrived and was decrypted: cancel before the keys go to the server.
      if (s === 'linking') client.cancelLink();
    });
    const { onUrl } = scanWith(sandbox, alice);
    await assert.rejects(
      withTimeout(client.link({ onUrl }), 20_000, 'linking'),
      (e: unknown) => e instanceof CancelledError,
    );
    assert.deepEqual(linkStates, ['waiting', 'linking', 'cancelled']);
    assert.ok(!lines.some((l) => /linking failed/.test(l)), lines.join('\n'));
    assert.equal(client.state, 'idle');
    assert.equal(client.account, null);
    assert.equal(fs.existsSync(dataFile), false);
  });

  it('a cancel while the link socket is opening ends cancelled, never links, and leaves no file', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const dataFile = tempDataFile();
    const client = await openClient(sandbox, dataFile);
    const linkStates: string[] = [];
    client.on('link-state', (s) => linkStates.push(s));
    const requests: string[] = [];
    const { onUrl } = scanWith(sandbox, alice);
    await withUnauthOpen(
      (opening) => {
        // The socket's connect is under way: cancel now, in the middle of it.
        client.cancelLink();
        return opening.then((conn) => {
          const request = conn.request.bind(conn);
          conn.request = (req: ChatRequest) => {
            requests.push(`${req.verb} ${req.path}`);
            return request(req);
          };
          return conn;
        });
      },
      () =>
        assert.rejects(
          withTimeout(client.link({ onUrl }), 20_000, 'linking'),
          (e: unknown) => e instanceof CancelledError,
        ),
    );
    assert.deepEqual(requests, [], 'no PUT /v1/devices/link was sent');
    assert.equal(linkStates.at(-1), 'cancelled');
    assert.equal(client.account, null);
    assert.equal(fs.existsSync(dataFile), false);
  });

  it('close() while the link request is in flight saves the account, closes the store and rejects as closed', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const dataFile = tempDataFile();
    const client = await openClient(sandbox, dataFile);
    const { onUrl } = scanWith(sandbox, alice);
    let closing: Promise<void> | undefined;
    await withUnauthOpen(
      (opening) =>
        opening.then((conn) => {
          const request = conn.request.bind(conn);
          conn.request = (req: ChatRequest) => {
            const answer = request(req);
            if (req.path !== '/v1/devices/link') return answer;
            // The server has the request: the client is closed before its answer is read.
            closing = client.close();
            return answer.then(async (res) => {
              await closing;
              return res;
            });
          };
          return conn;
        }),
      () =>
        assert.rejects(
          withTimeout(client.link({ onUrl }), 20_000, 'linking'),
          (e: unknown) => e instanceof ClosedError,
        ),
    );
    assert.ok(closing, 'close() ran during the link request');
    assert.equal(client.state, 'closed');
    assert.ok(
      inspect(client).stores.every((s) => !s.db.open),
      'no database handle left open on a closed client',
    );
    // The server linked the device (the phone lists it), so the account behind it was kept: a new
    // client has it. (The mock's provision.complete() waits for one-time keys a closed client
    // never uploads, so it is not awaited here.)
    const again = await openClient(sandbox, dataFile);
    assert.equal(again.account?.aci, alice.device.aci);
  });

  it('wrong credentials end unlinked with a clear error, and no reconnect loop', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const lines: string[] = [];
    const { client, dataFile } = await linkClient(sandbox, alice, { logger: captureLogger(lines) });
    await client.close();
    // Corrupt the stored password, as if the device had been unlinked from the phone.
    const raw = await openClient(sandbox, dataFile);
    inspect(raw).store()?.account.update({ password: 'not-the-password' });
    await raw.close();
    const client2 = await openClient(sandbox, dataFile, {
      connection: { backoff: { baseMs: 10, maxMs: 20 } },
    });
    const states: string[] = [];
    client2.on('state', (s) => states.push(s));
    const unlinked = new Promise<unknown>((resolve) =>
      client2.on('state', (s, err) => s === 'unlinked' && resolve(err)),
    );
    // Production refuses the upgrade (401/403: connect() rejects); the mock accepts it, then closes
    // with 3000. Either way the client must end unlinked, with the reason.
    await client2.connect(5000).catch(() => undefined);
    const err = await withTimeout(unlinked, 5000, 'unlinked state');
    assert.equal((err as { code?: string }).code, 'UNAUTHORIZED');
    assert.match((err as Error).message, /credentials/);
    assert.equal(client2.state, 'unlinked');
    const connections = inspect(client2).chat()?.connections ?? -1;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(
      states.filter((s) => s === 'connecting').length,
      1,
      'connected once, then stopped',
    );
    assert.equal(inspect(client2).chat()?.connections, connections);
  });

  it('an account Signal no longer accepts is set aside, and the same client links again', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const { client, dataFile } = await linkClient(sandbox, alice);
    const first = client.account;
    await client.close();
    const raw = await openClient(sandbox, dataFile);
    inspect(raw).store()?.account.update({ password: 'not-the-password' });
    await raw.close();
    const client2 = await openClient(sandbox, dataFile, {
      connection: { backoff: { baseMs: 10, maxMs: 20 } },
    });
    try {
      // A working account is never discarded.
      await assert.rejects(client2.discardUnlinkedAccount(), { code: 'INVALID_INPUT' });
      const unlinked = new Promise<void>((resolve) =>
        client2.on('state', (st) => st === 'unlinked' && resolve()),
      );
      await client2.connect(5000).catch(() => undefined);
      await withTimeout(unlinked, 5000, 'unlinked state');
      // Two at once (a double click): one discard, the same answer for both.
      const [aside, twice] = await Promise.all([
        client2.discardUnlinkedAccount(),
        client2.discardUnlinkedAccount(),
      ]);
      assert.equal(twice, aside);
      assert.equal(client2.state, 'idle');
      assert.equal(client2.account, null);
      assert.equal(fs.existsSync(dataFile), false, 'the dead account file is moved away');
      assert.equal(fs.statSync(aside).mode & 0o777, 0o600);
      assert.match(path.basename(aside), /\.unlinked-/);

      const bob = await sandbox.createPrimary({ profileName: 'Bob' });
      const scan = scanWith(sandbox, bob);
      const again = await withTimeout(client2.link({ onUrl: scan.onUrl }), 20_000, 'relink');
      await withTimeout(scan.phone, 20_000, 'the phone accepting the link');
      assert.equal(again.aci, bob.device.aci);
      assert.notEqual(again.aci, first?.aci);
      await client2.connect(5000);
      assert.equal(client2.state, 'connected');
    } finally {
      await client2.close();
    }
  });
});
