/**
 * `npm start`: Node-RED with this package against an embedded Signal sandbox. Signal's own mock
 * server runs on 127.0.0.1 with a simulated phone (it approves any link request shown in the
 * editor) and two contacts that answer every message with "echo: <text>". Node-RED (the dev
 * dependency) runs on http://127.0.0.1:1880 with a project-local user dir (.sandbox/) and the
 * example flows deployed against a preset account. No phone, no network.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { startSandbox, type PrimaryDevice, type Sandbox } from './sandbox';

const root = path.resolve(__dirname, '..', '..', '..');
const work = path.join(root, '.sandbox');
const userDir = path.join(work, 'node-red');
const port = Number(process.env.SIGFLOW_PORT ?? 1880);
const ACCOUNT_ID = 'a1c0ffee00000001';

function getJson(url: string): Promise<{ state?: string; url?: string }> {
  return new Promise((resolve) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body) as { state?: string; url?: string });
          } catch {
            resolve({});
          }
        });
      })
      .on('error', () => resolve({}));
  });
}

/** The example flows, each on its own tab, against one account preset for the sandbox. */
function sandboxFlows(sandbox: Sandbox, bob: PrimaryDevice): unknown[] {
  const dir = path.join(root, 'examples');
  const flows: Array<Record<string, unknown>> = [];
  for (const file of fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const tab = `tab${flows.length.toString(16).padStart(4, '0')}`;
    flows.push({ id: tab, type: 'tab', label: path.basename(file, '.json') });
    for (const n of JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as Array<
      Record<string, unknown>
    >) {
      if (n.type === 'signal-account') continue;
      const node: Record<string, unknown> = { ...n, z: tab };
      // The alert goes to Bob, a simulated contact who answers.
      if (Array.isArray(node.props)) {
        node.props = (node.props as Array<Record<string, unknown>>).map((p) =>
          p.p === 'to' ? { ...p, v: bob.device.number } : p,
        );
      }
      if (node.type === 'inject' && node.payloadType === 'json')
        node.payload = JSON.stringify([bob.device.number, '+15550009999']);
      flows.push(node);
    }
  }
  flows.push({
    id: ACCOUNT_ID,
    type: 'signal-account',
    name: 'Sandbox phone',
    server: 'custom',
    serviceUrl: sandbox.url,
    caCert: sandbox.caCert,
    trustRoots: sandbox.trustRoot,
    deviceName: 'Node-RED sandbox',
    identityTrust: 'accept',
  });
  return flows;
}

async function main(): Promise<void> {
  const sandbox = await startSandbox();
  const bob = await sandbox.createPrimary({ profileName: 'Bob' });
  const carol = await sandbox.createPrimary({ profileName: 'Carol' });
  const phone = await sandbox.createPrimary({ profileName: 'My phone', contacts: [bob, carol] });

  // Contacts answer each message, except echoes (so two echo bots never loop).
  for (const contact of [bob, carol]) {
    void (async () => {
      for (;;) {
        const m = await contact.waitForMessage();
        if (!m.body.startsWith('echo:'))
          await contact.sendText(m.source, `echo: ${m.body}`).catch(() => undefined);
      }
    })();
  }

  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(userDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(
    path.join(userDir, 'flows.json'),
    JSON.stringify(sandboxFlows(sandbox, bob), null, 2),
  );
  fs.writeFileSync(
    path.join(userDir, 'settings.js'),
    `module.exports = ${JSON.stringify(
      {
        uiHost: '127.0.0.1',
        uiPort: port,
        flowFile: 'flows.json',
        credentialSecret: false,
        // The project folder, loaded as the package its package.json describes (→ dist/nodes): loose
        // node files in a nodesDir count as core files and get no locale catalog (raw i18n keys).
        nodesDir: [root],
        signalAccountDataDir: path.join(work, 'signal'),
        editorTheme: { tours: false },
        logging: { console: { level: 'info' } },
      },
      null,
      2,
    )};\n`,
  );

  const bin = require.resolve('node-red/red.js');
  const red: ChildProcess = spawn(
    process.execPath,
    [bin, '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );

  // The simulated phone approves every link request the editor shows.
  void (async () => {
    for (;;) {
      const provision = await sandbox.server.waitForProvision();
      let url: string | undefined;
      for (let i = 0; i < 600 && !url; i++) {
        const s = await getJson(`http://127.0.0.1:${port}/signal-account/${ACCOUNT_ID}/link`);
        url = s.state === 'waiting' ? s.url : undefined;
        if (!url) await new Promise((r) => setTimeout(r, 500));
      }
      if (url) {
        console.log('[sandbox] the simulated phone scanned the QR code and approved the link');
        await provision
          .complete({ provisionURL: url, primaryDevice: phone })
          .catch((e: unknown) => console.error('[sandbox] link failed', e));
      }
    }
  })();

  console.log(`
  Signal sandbox: Signal's mock server on ${sandbox.url}
  Node-RED:       http://127.0.0.1:${port}

  1. Open http://127.0.0.1:${port} and double-click the "Sandbox phone" Signal account (or any Signal node).
  2. Click "Link device": a QR code appears; the simulated phone approves it within a second.
  3. On the "Send an alert" tab, click the inject node: Bob (${String(bob.device.number)}) gets the alert and
     answers "echo: …"; the "Echo bot" tab answers him back. Watch the debug sidebar.
  4. "Look up numbers" shows who is on Signal among the phone's contacts.
  Ctrl-C stops everything. Real use: set the account's server to "production".
`);

  const stop = async () => {
    red.kill('SIGINT');
    await sandbox.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  red.once('exit', (code) => {
    console.log(`Node-RED exited (${String(code)})`);
    void sandbox.close().then(() => process.exit(code ?? 0));
  });
}

main().catch((e: unknown) => {
  console.error('sandbox failed to start:', e);
  process.exit(1);
});
