import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SignalClient } from '../../core/client';
import { CancelledError } from '../../core/errors';
import {
  captureLogger,
  linkClient,
  openClient,
  startSandbox,
  tempDataFile,
  withTimeout,
  type Sandbox,
} from './helpers';

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
    const store = again.storeForTesting;
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

  it('wrong credentials end unlinked with a clear error, and no reconnect loop', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const lines: string[] = [];
    const { client, dataFile } = await linkClient(sandbox, alice, { logger: captureLogger(lines) });
    await client.close();
    // Corrupt the stored password, as if the device had been unlinked from the phone.
    const raw = await openClient(sandbox, dataFile);
    raw.storeForTesting?.account.update({ password: 'not-the-password' });
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
    const connections = client2.chatForTesting?.connections ?? -1;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(
      states.filter((s) => s === 'connecting').length,
      1,
      'connected once, then stopped',
    );
    assert.equal(client2.chatForTesting?.connections, connections);
  });
});
