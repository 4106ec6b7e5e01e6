/**
 * An account speaks only to the server it was linked on: opened against another one, it refuses
 * with ENVIRONMENT_MISMATCH before any connection is made (its password would go there in Basic
 * auth), and Link device can set it aside. Against the mock server, with a counting TCP listener as
 * "the other server".
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import Database from 'better-sqlite3';
import type { SignalClient } from '../../core/client';
import { EnvironmentMismatchError } from '../../core/errors';
import { linkClient, openClient, startSandbox, type Sandbox } from './helpers';

describe('integration: an account is bound to its server', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let other: net.Server;
  let otherPort = 0;
  let connections = 0;

  before(async () => {
    sandbox = await startSandbox();
    other = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    otherPort = (other.address() as net.AddressInfo).port;
  });
  after(async () => {
    await sandbox.close();
    await new Promise((r) => other.close(r));
  });

  /** Closes a freshly linked client once the phone's contacts arrived (the mock errors if it is
   * still sending them to a socket that closed). lookup() waits for them. */
  async function settleAndClose(client: SignalClient): Promise<void> {
    await client.lookup([]);
    await client.idle();
    await client.close();
  }

  const otherServer = () => ({
    ...sandbox.environment,
    serviceUrl: `https://127.0.0.1:${otherPort}`,
  });

  it('opened against another server it connects nowhere, names both servers, and can be set aside', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const { client, dataFile } = await linkClient(sandbox, alice);
    await settleAndClose(client);

    const moved = await openClient(sandbox, dataFile, { environment: otherServer() });
    const mismatch = moved.environmentMismatch;
    assert.ok(mismatch instanceof EnvironmentMismatchError);
    assert.equal(mismatch.code, 'ENVIRONMENT_MISMATCH');
    assert.equal(mismatch.accountEnvironment, `custom ${sandbox.url}`);
    assert.equal(mismatch.configuredEnvironment, `custom https://127.0.0.1:${otherPort}`);
    assert.equal(moved.state, 'unlinked');
    await assert.rejects(moved.connect(2000), (e: unknown) => e === mismatch);
    await assert.rejects(moved.send(alice.device.aci, { text: 'hi' }), /connect/);
    assert.equal(connections, 0, 'no connection reached the other server');

    // Link device on the new server starts by setting the old account aside.
    const aside = await moved.discardUnlinkedAccount();
    assert.match(aside, /\.unlinked-/);
    assert.equal(moved.account, null);
    assert.equal(moved.environmentMismatch, null);
    await moved.close();
    assert.equal(connections, 0);

    // Set back to its own server, the set-aside account is gone; a fresh link works there.
    const again = await linkClient(sandbox, alice);
    assert.equal(again.client.state, 'connected');
  });

  it('a file from sigflow 0.1 (server recorded as "custom" alone) takes the configured URL once', async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const { client, dataFile } = await linkClient(sandbox, bob);
    await settleAndClose(client);
    const db = new Database(dataFile);
    db.prepare("UPDATE account SET environment = 'custom'").run();
    db.close();

    const reopened = await openClient(sandbox, dataFile);
    assert.equal(reopened.environmentMismatch, null);
    const drained = new Promise<void>((r) => reopened.once('queue-empty', () => r()));
    await reopened.connect(10_000);
    assert.equal(reopened.state, 'connected');
    await drained;
    await reopened.close();
    const check = new Database(dataFile, { readonly: true });
    const row = check.prepare('SELECT environment FROM account').get() as { environment: string };
    check.close();
    assert.equal(row.environment, `custom ${sandbox.url}`);

    // From then on another server is refused.
    const moved = await openClient(sandbox, dataFile, { environment: otherServer() });
    assert.ok(moved.environmentMismatch instanceof EnvironmentMismatchError);
    assert.equal(connections, 0);
  });
});
