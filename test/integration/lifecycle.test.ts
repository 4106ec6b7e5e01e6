import assert from 'node:assert/strict';
import type http2 from 'node:http2';
import { linkClient, startSandbox, type Sandbox, inspect } from './helpers';
import { until } from '../harness/wait';

/** What keeps the process alive, as a multiset; passing file-system requests do not count. */
function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) {
    if (r.startsWith('FSReq')) continue;
    counts.set(r, (counts.get(r) ?? 0) + 1);
  }
  return counts;
}

/** Resources held now beyond `baseline` (the sandbox's own server, mocha's timer). */
function beyond(baseline: Map<string, number>): string[] {
  const extra: string[] = [];
  for (const [r, n] of activeResources()) {
    const more = n - (baseline.get(r) ?? 0);
    if (more > 0) extra.push(`${r}×${more}`);
  }
  return extra;
}

describe('integration: SignalClient.close()', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('closes for good: state closed, no reconnect past the backoff, no timer or socket left, idempotent', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    // Every WebSocket the server accepts arrives as an HTTP/2 CONNECT stream.
    const https = (sandbox.server as unknown as { https: http2.Http2SecureServer }).https;
    let websockets = 0;
    https.on('connect', () => void websockets++);
    await new Promise((r) => setImmediate(r));
    const baseline = activeResources();

    const backoff = { baseMs: 200, maxMs: 400 };
    const { client } = await linkClient(sandbox, alice, { connection: { backoff } });
    assert.equal(client.state, 'connected');
    const states: string[] = [];
    client.on('state', (s) => states.push(s));
    const chat = inspect(client).chat();
    assert.ok(chat);
    assert.ok(beyond(baseline).length > 0, 'the connected client holds sockets and timers');

    // Drop the socket so a reconnect is scheduled, then close before it fires.
    chat.dropConnection();
    await until(() => client.state === 'disconnected', 5000, 'the drop is noticed');
    const attempts = chat.attempts;
    const seen = websockets;
    await Promise.all([client.close(), client.close()]);
    assert.equal(client.state, 'closed');
    assert.equal(states.at(-1), 'closed');
    assert.equal(chat.state, 'closed');
    assert.equal(inspect(client).store(), null, 'the store is closed');
    assert.ok(
      inspect(client).stores.every((s) => !s.db.open),
      'every store it opened is closed',
    );

    // Past the longest backoff, with the server still up: nothing reconnected.
    await new Promise((r) => setTimeout(r, 3 * backoff.maxMs));
    assert.equal(websockets, seen, 'no new WebSocket reached the server');
    assert.equal(chat.attempts, attempts, 'no connection attempt after close()');
    assert.equal(client.state, 'closed');

    await until(() => beyond(baseline).length === 0, 5000, 'back to the sandbox baseline').catch(
      (e: Error) => {
        throw new Error(`${e.message}; still held: ${beyond(baseline).join(', ')}`);
      },
    );
    await client.close();
    assert.equal(client.state, 'closed');
    await assert.rejects(client.send(alice.device.aci, { text: 'after close' }), {
      code: 'CLOSED',
    });
  });

  it('close() while connected resolves and nothing reconnects afterwards', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const https = (sandbox.server as unknown as { https: http2.Http2SecureServer }).https;
    let websockets = 0;
    https.on('connect', () => void websockets++);
    const backoff = { baseMs: 50, maxMs: 100 };
    const { client } = await linkClient(sandbox, alice, { connection: { backoff } });
    const seen = websockets;
    await client.close();
    assert.equal(client.state, 'closed');
    await new Promise((r) => setTimeout(r, 5 * backoff.maxMs));
    assert.equal(websockets, seen);
  });
});
