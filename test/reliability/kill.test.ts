/**
 * SIGKILL in the middle of receiving: 500 messages wait on the server; the engine's process is
 * killed twice while receiving them, then runs to the end. The first kill comes from inside at a
 * fixed point (as the 150th envelope starts: the one before it ACKed but not yet emitted, others
 * in flight); the second from the parent, when a hundred more have been emitted (wherever the
 * child happens to be). Every message must come out across the three runs, and exactly once,
 * except the one whose emit the outside kill may have cut before its row was marked emitted.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { linkClient, startSandbox, type Sandbox } from '../integration/helpers';

const fromSources = __filename.endsWith('.ts');

/**
 * Runs the engine's child process. `killAfterLines`: the parent SIGKILLs it as soon as the emitted
 * file has that many lines (a kill from outside, at whatever point the child has reached).
 */
function runChild(
  env: Record<string, string>,
  killAfterLines?: { file: string; lines: number },
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const script = path.join(__dirname, fromSources ? 'kill-child.ts' : 'kill-child.js');
  const child = spawn(
    process.execPath,
    [...(fromSources ? ['--require', require.resolve('tsx/cjs')] : []), script],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const watcher = killAfterLines
    ? setInterval(() => {
        if (countLines(killAfterLines.file) >= killAfterLines.lines) child.kill('SIGKILL');
      }, 2)
    : undefined;
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearInterval(watcher);
      resolve({ code, signal, stderr });
    });
  });
}

function countLines(file: string): number {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
}

describe('reliability: SIGKILL while receiving', function () {
  this.timeout(300_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('500 messages, SIGKILLed twice mid-stream (at a fixed envelope, then from outside): none lost, each emitted once (the emit the outside kill cut at most twice)', async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const { client, dataFile } = await linkClient(sandbox, alice);
    const account = client.account;
    assert.ok(account);
    const device = await sandbox.server.getDeviceByServiceId(
      account.aci as never,
      account.deviceId as never,
    );
    assert.ok(device);
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    await client.close();

    // 500 messages queued for us while no engine runs (the mock resolves a send on delivery).
    const COUNT = 500;
    const base = Date.now();
    const expected = Array.from({ length: COUNT }, (_, i) => base + i);
    // Signal's server keeps a message until the device ACKs it and delivers it again on the next
    // connection. The mock instead hands its whole queue to a socket at once and forgets what that
    // socket never ACKed (its send rejects): do what the real server does and queue those again,
    // with the same timestamp, i.e. the same message as far as exactly-once is concerned.
    let redelivered = 0;
    const deliver = (timestamp: number, i: number): Promise<void> =>
      bob.sendText(device, `message ${i}`, { timestamp }).then(
        () => undefined,
        () => {
          redelivered++;
          return deliver(timestamp, i);
        },
      );
    const deliveries = expected.map((timestamp, i) => deliver(timestamp, i));
    const queues = (sandbox.server as unknown as { messageQueue: Map<unknown, unknown[]> })
      .messageQueue;
    const deadline = Date.now() + 120_000;
    while ((queues.get(device)?.length ?? 0) < COUNT) {
      assert.ok(Date.now() < deadline, 'messages queued');
      await new Promise((r) => setTimeout(r, 20));
    }

    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-kill-')), 'emitted');
    const env = {
      SIGFLOW_DATA_FILE: dataFile,
      SIGFLOW_OUT: out,
      SIGFLOW_ENV: JSON.stringify(sandbox.environment),
    };
    const lines = () =>
      fs.existsSync(out) ? fs.readFileSync(out, 'utf8').split('\n').filter(Boolean) : [];

    const first = await runChild({ ...env, SIGFLOW_KILL_AT: '150' });
    assert.equal(first.signal, 'SIGKILL', `first run killed (${first.stderr})`);
    const afterFirst = lines().length;
    assert.ok(afterFirst > 0 && afterFirst < COUNT, `the first run was mid-stream (${afterFirst})`);

    // The second run is killed from outside, by the parent, a hundred messages further on.
    const second = await runChild(env, { file: out, lines: afterFirst + 100 });
    assert.equal(second.signal, 'SIGKILL', `second run killed (${second.stderr})`);
    const afterSecond = lines().length;
    assert.ok(afterSecond > afterFirst && afterSecond < COUNT, `progress (${afterSecond})`);

    const last = await runChild(env);
    assert.equal(last.code, 0, `last run finished (${last.stderr})`);

    await Promise.race([
      Promise.all(deliveries),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('not every message was ACKed')), 30_000).unref(),
      ),
    ]);
    assert.ok(redelivered > 0, 'the kills left messages un-ACKed, delivered again');
    const emitted = lines().map(Number);
    const counts = new Map<number, number>();
    for (const t of emitted) counts.set(t, (counts.get(t) ?? 0) + 1);
    const missing = expected.filter((t) => !counts.has(t));
    const doubled = [...counts].filter(([, n]) => n > 1).map(([t]) => t);
    // The one thing a kill from outside may do twice: the emit it cut between the listener's side
    // effect (this line in the file) and the row marked emitted, a window of one synchronous SQLite
    // update. That message was ACKed and is emitted again at the next start (at-least-once: the
    // other order could lose it). Only the last message of the killed run may repeat, only once.
    const inFlightAtKill = emitted[afterSecond - 1];
    const allowed = doubled.length === 1 && doubled[0] === inFlightAtKill ? doubled : [];
    assert.deepEqual({ missing, doubled }, { missing: [], doubled: allowed });
    assert.equal(emitted.length, COUNT + allowed.length);
    console.log(
      `      emitted ${afterFirst}, then ${afterSecond - afterFirst}, then ${COUNT - afterSecond}; ${redelivered} redeliveries`,
    );
  });
});
