/**
 * `npm start` end to end: the entry point the README names (scripts/start.js, with --no-build after
 * the build `npm test` runs first) on a free port with a sandbox folder that does not exist yet, as
 * in a fresh clone. Through Node-RED's own routes only: the editor answers, GET /flows has the
 * example flows, the preset account links through the admin routes (approved by the simulated
 * phone), the "Send an alert" inject reaches Bob and his "echo: …" arrives through signal-in (the
 * sandbox's "received" debug node, read on the editor's debug channel, /comms), and Ctrl-C (SIGINT
 * to the whole process group, as a terminal sends it) stops everything within seconds. The
 * process group is killed in after() whatever happened.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { freePort, projectRoot } from './node-red';

const root = projectRoot();
const ACCOUNT_ID = 'a1c0ffee00000001';
const ALERT_INJECT = '10000000000000a1';
const STOP_WITHIN_MS = 8000;

interface DebugMessage {
  id?: string;
  name?: string;
  msg?: unknown;
}

/** Polls `check` every 200 ms until it returns a value, failing after `ms` with `what` and `detail`. */
async function until<T>(
  what: string,
  ms: number,
  check: () => Promise<T | undefined> | T | undefined,
  detail: () => string = () => '',
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${detail()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Whether any process of the group `pgid` is still there (signal 0 only checks). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm start (the sandbox, end to end)', function () {
  this.timeout(120_000);
  let tmp: string;
  let sandboxDir: string;
  let base: string;
  let child: ChildProcess;
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let out = '';
  let ws: WebSocket | undefined;
  const debug: DebugMessage[] = [];
  const output = () => `--- sandbox output ---\n${out.slice(-6000)}`;
  const get = async (p: string): Promise<Response> =>
    fetch(`${base}${p}`, { signal: AbortSignal.timeout(10_000) });

  before(async function () {
    const entry = path.join(root, 'dist', 'test', 'harness', 'start.js');
    assert.ok(fs.existsSync(entry), `${entry} is missing: run node scripts/build.js first`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-start-'));
    // Not there yet, as .sandbox/ in a fresh clone.
    sandboxDir = path.join(tmp, 'sandbox');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, [path.join(root, 'scripts', 'start.js'), '--no-build'], {
      cwd: root,
      // Its own process group: SIGINT to the group is Ctrl-C, and after() can kill all of it.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SIGFLOW_PORT: String(port), SIGFLOW_SANDBOX_DIR: sandboxDir },
    });
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
    exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    // The console says what to open once the editor answers.
    await until(
      'the console names the editor',
      60_000,
      () => {
        if (child.exitCode !== null) throw new Error(`npm start exited early\n${output()}`);
        return out.includes(`Node-RED:       ${base}`) ? true : undefined;
      },
      output,
    );
  });

  after(async () => {
    ws?.terminate();
    if (child?.pid && groupAlive(child.pid)) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone in between
      }
      await until('the process group to go', 5000, () => (groupAlive(child.pid!) ? undefined : 1));
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('answers on SIGFLOW_PORT with the example flows deployed against the preset account, in a new SIGFLOW_SANDBOX_DIR', async () => {
    assert.equal((await get('/')).status, 200);
    assert.match(out, /Open http:\/\/127\.0\.0\.1:\d+ and double-click the "Sandbox phone"/);
    const flows = (await (await get('/flows')).json()) as Array<Record<string, unknown>>;
    const ids = new Set(flows.map((n) => n.id));
    const examples = path.join(root, 'examples');
    for (const file of fs.readdirSync(examples).filter((f) => f.endsWith('.json'))) {
      for (const n of JSON.parse(fs.readFileSync(path.join(examples, file), 'utf8')) as Array<{
        id: string;
        type: string;
      }>)
        assert.ok(ids.has(n.id), `${file}: ${n.type} ${n.id} is not deployed`);
      assert.ok(flows.some((n) => n.type === 'tab' && n.label === path.basename(file, '.json')));
    }
    const account = flows.find((n) => n.id === ACCOUNT_ID);
    assert.equal(account?.type, 'signal-account');
    assert.equal(account?.server, 'custom');
    assert.equal(account?.name, 'Sandbox phone');
    assert.ok(fs.existsSync(path.join(sandboxDir, 'node-red', 'flows.json')));
    assert.equal(fs.statSync(sandboxDir).mode & 0o777, 0o700);
  });

  it('links the preset account through the admin routes, approved by the simulated phone', async () => {
    const started = await fetch(`${base}/signal-account/${ACCOUNT_ID}/link`, {
      method: 'POST',
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(started.status, 202, output());
    const state = await until(
      'the link to be approved',
      30_000,
      async () => {
        const s = (await (await get(`/signal-account/${ACCOUNT_ID}/link`)).json()) as {
          state: string;
        };
        if (s.state === 'failed' || s.state === 'cancelled')
          throw new Error(`link ${s.state}\n${output()}`);
        return s.state === 'linked' ? s : undefined;
      },
      output,
    );
    assert.equal(state.state, 'linked');
    assert.match(out, /the simulated phone scanned the QR code and approved the link/);
  });

  it('the "Send an alert" inject reaches Bob, whose "echo: …" arrives through signal-in (debug sidebar)', async () => {
    // A number is sent to once the phone's contacts are synced (no contact discovery in the
    // sandbox); they follow the link within a second.
    await until(
      'the contact sync',
      15_000,
      () => /contacts synced: 2/.test(out) || undefined,
      output,
    );
    const socket = new WebSocket(`${base.replace('http', 'ws')}/comms`);
    ws = socket;
    socket.on('message', (data: WebSocket.RawData) => {
      for (const m of JSON.parse(data.toString()) as Array<{ topic: string; data: DebugMessage }>)
        if (m.topic === 'debug') debug.push(m.data);
    });
    await until(
      'the debug channel',
      10_000,
      () => socket.readyState === WebSocket.OPEN || undefined,
    );
    socket.send(JSON.stringify({ subscribe: 'debug' }));
    // Subscriptions are taken in order with messages; a beat so none is sent before it.
    await new Promise((r) => setTimeout(r, 300));

    const injected = await fetch(`${base}/inject/${ALERT_INJECT}`, {
      method: 'POST',
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(injected.status, 200);
    const echo = await until(
      'Bob\'s "echo: …" on the "received" debug node',
      20_000,
      () => debug.find((d) => d.name === 'received'),
      () => `debug: ${JSON.stringify(debug)}\n${output()}`,
    );
    assert.equal(echo.msg, 'echo: Alert: disk /data is 95% full');
    const results = debug.find((d) => d.name === 'results');
    assert.match(String(results?.msg), /"status":"sent"/);
  });

  it('Ctrl-C (SIGINT to the process group) stops it cleanly within seconds, leaving no process', async () => {
    ws?.close();
    const pgid = child.pid!;
    const t0 = Date.now();
    process.kill(-pgid, 'SIGINT');
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_WITHIN_MS));
    const result = await Promise.race([exited, timer]);
    assert.notEqual(
      result,
      'timeout',
      `still running ${STOP_WITHIN_MS} ms after SIGINT\n${output()}`,
    );
    assert.deepEqual(result, { code: 0, signal: null }, output());
    // Node-RED and the sandbox process go with it (Node-RED is waited for before the exit).
    await until(
      'every process of the group to be gone',
      Math.max(1000, STOP_WITHIN_MS - (Date.now() - t0)),
      () => (groupAlive(pgid) ? undefined : true),
      output,
    );
    assert.match(out, /Stopped flows/);
    assert.doesNotMatch(out, /Unhandled|UnhandledPromiseRejection|sandbox teardown/, output());
  });
});
