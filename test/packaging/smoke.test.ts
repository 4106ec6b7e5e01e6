/**
 * scripts/smoke-staging.js, run as a user runs it (a child process on the built dist/core), against
 * the sandbox instead of Signal's servers (--server custom): the mock phone scans the URL the script
 * prints, a contact answers the test message, and the script must report every step passed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../harness/node-red';
import { startSandbox, withTimeout, type Sandbox } from '../harness/sandbox';

interface Run {
  /** Resolves with the first `sgnl://linkdevice` URL the script prints. */
  url: Promise<string>;
  /** Resolves when the script has exited. */
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  kill(): void;
}

function runScript(args: string[]): Run {
  const script = path.join(projectRoot(), 'scripts', 'smoke-staging.js');
  const child = spawn(process.execPath, [script, ...args], {
    cwd: projectRoot(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let gotUrl!: (url: string) => void;
  const url = new Promise<string>((resolve) => (gotUrl = resolve));
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
    const m = /sgnl:\/\/linkdevice\?\S+/.exec(stdout);
    if (m) gotUrl(m[0]);
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, stdout, stderr })),
  );
  return { url, done, kill: () => child.kill('SIGKILL') };
}

describe('packaging: scripts/smoke-staging.js against the sandbox', function () {
  this.timeout(90_000);
  let sandbox: Sandbox;
  let dir: string;
  let caFile: string;
  let run: Run | undefined;

  beforeEach(async function () {
    sandbox = await startSandbox();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-smoke-test-'));
    caFile = path.join(dir, 'ca.pem');
    fs.writeFileSync(caFile, sandbox.caCert);
  });

  afterEach(async function () {
    run?.kill();
    run = undefined;
    await sandbox.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const custom = () => [
    '--server',
    'custom',
    '--url',
    sandbox.url,
    '--ca',
    caFile,
    '--trust-root',
    sandbox.trustRoot,
  ];

  it('links, sends, receives the answer and reports every step passed', async function () {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const phone = await sandbox.createPrimary({ profileName: 'Phone', contacts: [bob] });
    const provision = sandbox.server.waitForProvision();
    const dataFile = path.join(dir, 'data', 'account.db');
    run = runScript([
      ...custom(),
      '--to',
      String(bob.device.number),
      '--wait',
      '30',
      '--data',
      dataFile,
    ]);
    const url = await withTimeout(run.url, 30_000, 'the link URL on stdout');
    // The phone scans it; Bob answers the test message.
    await withTimeout(
      (await provision).complete({ provisionURL: url, primaryDevice: phone }),
      30_000,
      'link approval',
    );
    const got = await withTimeout(bob.waitForMessage(), 30_000, 'Bob receives the test message');
    assert.match(got.body, /^sigflow smoke test, /);
    await bob.sendText(got.source, 'echo from Bob');

    const { code, stdout, stderr } = await withTimeout(run.done, 45_000, 'the script to exit');
    const report = stdout.split('\n').filter((l) => /^[✔✘] /.test(l));
    assert.deepEqual(
      report.map((l) => l.replace(/ \(\d+\.\d s\).*$/, '')),
      [
        '✔ open the account file',
        '✔ link to the phone',
        '✔ connect',
        `✔ send a message to ${String(bob.device.number)}`,
        '✔ receive a message',
        '✔ close',
      ],
      stdout + stderr,
    );
    assert.equal(code, 0, stdout + stderr);
    assert.match(stdout, /✔ receive a message \(\d+\.\d s\): from \S+, 13 characters/);
    assert.match(stdout, /smoke test passed/);
    // The QR code was drawn (terminal block characters), and the URL went to stdout only.
    assert.match(stdout, /[█▀▄]/);
    assert.ok(!stderr.includes(url), 'the link URL is not on stderr');
    // --data keeps the account, 0600.
    assert.equal(fs.statSync(dataFile).mode & 0o777, 0o600);
  });

  it('fails with the error code and a non-zero exit when a step fails', async function () {
    // Nobody scans the code: linking is cut off by --link-wait.
    run = runScript([...custom(), '--link-wait', '2', '--no-qr']);
    const { code, stdout } = await withTimeout(run.done, 30_000, 'the script to exit');
    assert.equal(code, 1, stdout);
    assert.match(stdout, /✔ open the account file \(\d+\.\d s\): not linked yet/);
    assert.match(stdout, /✘ link to the phone \(\d+\.\d s\): TIMEOUT: /);
    assert.doesNotMatch(stdout, /✔ connect|✔ send/);
    assert.match(stdout, /smoke test FAILED/);
  });

  it('refuses a custom server without its CA, as INVALID_INPUT', async function () {
    run = runScript([
      '--server',
      'custom',
      '--url',
      sandbox.url,
      '--ca',
      path.join(dir, 'none.pem'),
      '--trust-root',
      sandbox.trustRoot,
    ]);
    const { code, stdout } = await withTimeout(run.done, 30_000, 'the script to exit');
    assert.equal(code, 1, stdout);
    assert.match(stdout, /✘ open the account file \(\d+\.\d s\): INVALID_INPUT: /);
  });
});
