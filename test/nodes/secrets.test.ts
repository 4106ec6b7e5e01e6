/**
 * No secret reaches a log line or a status text (DESIGN.md: password, private keys, profile keys,
 * provisioning URLs, message bodies), through a full link → receive → send cycle of the nodes, and
 * the account's store is private to its user (0600 file in a 0700 folder).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import { IdentityKeyPair } from '@signalapp/libsignal-client';
import Database from 'better-sqlite3';
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import inNode = require('../../nodes/signal-in');
import lookupNode = require('../../nodes/signal-lookup');
import { startSandbox, withTimeout, type PrimaryDevice, type Sandbox } from '../harness/sandbox';
import {
  accountConfig,
  helper,
  linkThroughAdminRoutes,
  nextError,
  nextInput,
  type AccountTestNode,
  type TestNode,
} from './support';

/** Every form a binary secret could take in a log: base64, base64url, hex. */
function forms(bytes: Uint8Array): string[] {
  const b = Buffer.from(bytes);
  return [
    b.toString('base64'),
    b.toString('base64').replace(/=+$/, ''),
    b.toString('base64url'),
    b.toString('hex'),
    b.toString('hex').toUpperCase(),
  ];
}

/** The secrets the account's store holds after linking, named for the failure message. */
function storedSecrets(file: string): Map<string, string[]> {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const account = db
      .prepare(
        'SELECT password, aci_identity_key_pair, pni_identity_key_pair, profile_key, master_key FROM account',
      )
      .get() as {
      password: string;
      aci_identity_key_pair: Buffer;
      pni_identity_key_pair: Buffer;
      profile_key: Buffer | null;
      master_key: Buffer | null;
    };
    const secrets = new Map<string, string[]>();
    secrets.set('account password', [account.password]);
    for (const kind of ['aci', 'pni'] as const) {
      const blob = account[`${kind}_identity_key_pair`];
      const pair = IdentityKeyPair.deserialize(new Uint8Array(blob));
      secrets.set(`${kind} identity private key`, forms(pair.privateKey.serialize()));
      secrets.set(`${kind} identity key pair`, forms(blob));
    }
    assert.ok(account.profile_key, 'linking stores our profile key');
    secrets.set('our profile key', forms(account.profile_key));
    if (account.master_key) secrets.set('master key', forms(account.master_key));
    const contacts = db
      .prepare('SELECT aci, profile_key FROM contacts WHERE profile_key IS NOT NULL')
      .all() as Array<{ aci: string; profile_key: Buffer }>;
    for (const c of contacts) secrets.set(`profile key of ${c.aci}`, forms(c.profile_key));
    return secrets;
  } finally {
    db.close();
  }
}

/** One log line as text: its message (with an error's stack and fields) and everything else on it. */
function render(entry: unknown): string {
  return util.inspect(entry, { depth: 6, breakLength: Infinity, maxStringLength: Infinity });
}

describe('nodes: no secret in any log line or status text', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let alice: PrimaryDevice;
  let bob: PrimaryDevice;
  let tmp: string;
  let dataDir: string;
  const printed: string[] = [];
  const writes = {
    stdout: process.stdout.write.bind(process.stdout),
    stderr: process.stderr.write.bind(process.stderr),
  };

  before(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-secrets-'));
    // A folder that does not exist yet, as on a first start: the engine creates it.
    dataDir = path.join(tmp, 'signal');
    helper.settings({ signalAccountDataDir: dataDir });
    // Whatever reaches the console too (a stray console.log would not go through RED.log).
    for (const stream of ['stdout', 'stderr'] as const) {
      process[stream].write = ((chunk: unknown, ...rest: never[]) => {
        printed.push(String(chunk));
        return (writes[stream] as (c: unknown, ...r: never[]) => boolean)(chunk, ...rest);
      }) as typeof process.stdout.write;
    }
  });
  after(async () => {
    process.stdout.write = writes.stdout;
    process.stderr.write = writes.stderr;
    await helper.unload().catch(() => undefined);
    await sandbox.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('link → receive → send → echo → lookup → a failed send: no password, key, profile key, provisioning URL or message body in the logs or statuses; store 0600 in 0700', async () => {
    await helper.load(
      [accountNode, outNode, inNode, lookupNode],
      [
        accountConfig(sandbox, 'acct1', 'Alice'),
        { id: 'out1', type: 'signal-out', account: 'acct1', to: '', wires: [['outSink']] },
        { id: 'in1', type: 'signal-in', account: 'acct1', types: 'message', wires: [['inSink']] },
        { id: 'lookup1', type: 'signal-lookup', account: 'acct1', wires: [['lookupSink']] },
        { id: 'outSink', type: 'helper' },
        { id: 'inSink', type: 'helper' },
        { id: 'lookupSink', type: 'helper' },
      ],
    );
    const node = (id: string) => helper.getNode(id) as TestNode;
    const { url } = await linkThroughAdminRoutes(sandbox, 'acct1', alice);

    // Bob → signal-in (sealed, with his profile key), then an echo back through signal-out.
    const client = await (helper.getNode('acct1') as AccountTestNode).client();
    const a = client.account;
    assert.ok(a);
    const device = await sandbox.server.getDeviceByServiceId(a.aci as never, a.deviceId as never);
    assert.ok(device);
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    const bodies = {
      received: `incoming body ${crypto.randomBytes(6).toString('hex')}`,
      sent: `outgoing body ${crypto.randomBytes(6).toString('hex')}`,
      echo: `echo body ${crypto.randomBytes(6).toString('hex')}`,
      failed: `undeliverable body ${crypto.randomBytes(6).toString('hex')}`,
    };
    const received = nextInput(node('inSink'), (m) => m.payload === bodies.received);
    await bob.sendText(device, bodies.received, { sealed: true, withProfileKey: true });
    const inMsg = await received;
    const echoed = nextInput(node('outSink'), (m) => m.payload === bodies.echo);
    node('out1').receive({ ...inMsg, payload: bodies.echo });
    await echoed;
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'echo')).body, bodies.echo);

    const sent = nextInput(node('outSink'), (m) => m.payload === bodies.sent);
    node('out1').receive({ payload: bodies.sent, to: bob.device.number });
    await sent;
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'send')).body, bodies.sent);

    const looked = nextInput(node('lookupSink'));
    node('lookup1').receive({ payload: [bob.device.number] });
    await looked;

    // A failure is logged (node.error) with the msg: its text must still stay out of the log line.
    const gone = await sandbox.createPrimary({ profileName: 'Gone' });
    sandbox.server.unregister(gone);
    const err = nextError(node('out1'));
    node('out1').receive({ payload: bodies.failed, to: gone.device.aci });
    assert.equal((await err).code, 'NOT_ON_SIGNAL');

    // What to search for.
    const file = path.join(dataDir, 'acct1.db');
    const secrets = storedSecrets(file);
    const provisioning = new URL(url);
    secrets.set('provisioning URL', [url, encodeURIComponent(url), url.replace(/^sgnl:\/\//, '')]);
    for (const param of ['uuid', 'pub_key']) {
      const v = provisioning.searchParams.get(param);
      assert.ok(v, `the provisioning URL has ${param}`);
      secrets.set(`provisioning URL ${param}`, [v, encodeURIComponent(v)]);
    }
    // The public key's raw bytes, in case something logs them rather than the URL's base64.
    secrets.set('provisioning public key bytes', [
      Buffer.from(provisioning.searchParams.get('pub_key') ?? '', 'base64').toString('hex'),
    ]);
    for (const [what, body] of Object.entries(bodies)) secrets.set(`${what} message body`, [body]);

    const logLines = helper
      .log()
      .getCalls()
      .map((c) => render(c.args[0]));
    const statuses = helper._NodePrototype.status
      .getCalls()
      .map((c) => `${c.thisValue?.id ?? '?'}: ${render(c.args[0])}`);
    // The capture works: the engine and the nodes did log, and the nodes did show statuses.
    assert.ok(
      logLines.some((l) => l.includes('[signal-account:acct1]')),
      'engine log lines captured',
    );
    assert.ok(logLines.some((l) => /NOT_ON_SIGNAL|not registered on Signal/.test(l)));
    assert.ok(statuses.some((s) => s.includes('connected')));
    assert.ok(statuses.some((s) => s.includes('sent to 1')));

    const leaks: string[] = [];
    for (const [what, values] of secrets) {
      for (const v of values) {
        assert.ok(v.length >= 8, `${what}: a form too short to search for (${v.length} chars)`);
        for (const [where, lines] of [
          ['log', logLines],
          ['status', statuses],
          ['console', printed],
        ] as const) {
          const hit = lines.find((l) => l.includes(v));
          if (hit) leaks.push(`${what} in a ${where} line: ${hit.slice(0, 300)}`);
        }
      }
    }
    assert.deepEqual(leaks, [], `secrets leaked:\n${leaks.join('\n')}`);

    // The store is private to the user running Node-RED.
    assert.equal((fs.statSync(dataDir).mode & 0o777).toString(8), '700', dataDir);
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      if (f !== file && !fs.existsSync(f)) continue;
      assert.equal((fs.statSync(f).mode & 0o777).toString(8), '600', f);
    }
  });
});
