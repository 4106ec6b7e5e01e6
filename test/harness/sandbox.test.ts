import assert from 'node:assert/strict';
import { startSandbox, withTimeout, type Sandbox } from './sandbox';

describe('harness: Signal sandbox', () => {
  let sandbox: Sandbox | undefined;
  afterEach(async function () {
    this.timeout(10_000);
    await sandbox?.close();
    sandbox = undefined;
  });

  it('starts the mock server, creates two primary devices, and tears down within 10 s', async function () {
    this.timeout(20_000);
    sandbox = await startSandbox();
    assert.match(sandbox.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(sandbox.caCert, /BEGIN CERTIFICATE/);
    assert.equal(Buffer.from(sandbox.trustRoot, 'base64').length, 33);
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const bob = await sandbox.createPrimary({ profileName: 'Bob', contacts: [alice] });
    assert.notEqual(alice.device.aci, bob.device.aci);
    assert.notEqual(alice.device.number, bob.device.number);
    const closing = Date.now();
    await sandbox.close();
    sandbox = undefined;
    // mocha's 20 s budget covers creation; teardown alone must also fit in 10 s.
    assert.ok(Date.now() - closing < 10_000, 'teardown is bounded');
  });

  it('closes tracked clients before the server, and close() is idempotent', async function () {
    this.timeout(20_000);
    sandbox = await startSandbox();
    const order: string[] = [];
    const server = sandbox.server;
    const originalClose = server.close.bind(server);
    server.close = async () => {
      order.push('server');
      return originalClose();
    };
    sandbox.track({ close: async () => void order.push('client') });
    await Promise.all([sandbox.close(), sandbox.close()]);
    await sandbox.close();
    assert.deepEqual(order, ['client', 'server']);
    sandbox = undefined;
  });

  it('withTimeout rejects a wait that never ends, naming it', async () => {
    await assert.rejects(
      withTimeout(new Promise(() => undefined), 20, 'waitForMessage'),
      /waitForMessage: no result within 20 ms/,
    );
  });
});
