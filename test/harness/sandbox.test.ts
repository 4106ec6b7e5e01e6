import assert from 'node:assert/strict';
import net from 'node:net';
import { startSandbox, withTimeout, type Sandbox } from './sandbox';

/** Resolves with the connection's error code, or 'connected' if the port still accepts. */
function probe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

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
    const port = sandbox.port;
    assert.equal(await probe(port), 'connected');
    const closing = Date.now();
    // close() rejects when the server did not really close within its cap.
    await sandbox.close();
    sandbox = undefined;
    // mocha's 20 s budget covers creation; teardown alone must also fit in 10 s.
    assert.ok(Date.now() - closing < 10_000, 'teardown is bounded');
    assert.equal(await probe(port), 'ECONNREFUSED', 'the server is really gone');
  });

  it('close() reports a server that does not close within the cap, naming it', async function () {
    this.timeout(20_000);
    const box = await startSandbox({ closeTimeoutMs: 200 });
    const server = box.server;
    const originalClose = server.close.bind(server);
    server.close = () => new Promise<void>(() => undefined);
    const started = Date.now();
    try {
      await assert.rejects(box.close(), /the mock server did not close within 200 ms/);
      assert.ok(Date.now() - started < 5000, 'the cap, not the old fixed 5 s');
    } finally {
      await originalClose();
    }
    assert.equal(await probe(box.port), 'ECONNREFUSED');
  });

  it('close() reports a tracked client that does not close within the cap', async function () {
    this.timeout(20_000);
    const box = await startSandbox({ closeTimeoutMs: 200 });
    box.track({ close: () => new Promise<void>(() => undefined) });
    await assert.rejects(box.close(), /1 tracked client\(s\) did not close within 200 ms/);
    assert.equal(await probe(box.port), 'ECONNREFUSED', 'the server is closed all the same');
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
