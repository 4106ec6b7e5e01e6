/**
 * `npm start`: Node-RED with this package against an embedded Signal sandbox. Signal's own mock
 * server runs on 127.0.0.1 with a simulated phone (it approves any link request made in the
 * editor, for the preset account or a new one) and two contacts that answer every message with
 * "echo: <text>". Node-RED (the dev dependency) runs on http://127.0.0.1:1880 (SIGFLOW_PORT) with a
 * project-local user dir (.sandbox/, or SIGFLOW_SANDBOX_DIR) and the example flows deployed against
 * a preset account. No phone, no network. The pieces are exported for test/nodes/examples.test.ts;
 * main() runs only as a script (test/harness/start.test.ts runs it end to end).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { startSandbox, withTimeout, type PrimaryDevice, type Sandbox } from './sandbox';

// The project folder: two levels up from source (test/harness), three when built (dist/test/harness).
const root = [path.resolve(__dirname, '..', '..'), path.resolve(__dirname, '..', '..', '..')].find(
  (d) => fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'examples')),
) as string;
export const ACCOUNT_ID = 'a1c0ffee00000001';

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

/**
 * The example flows, each on its own tab, against one account preset for the sandbox. The alert goes
 * to the first contact; the lookup asks for the contacts' numbers: on the mock (a custom server
 * without contact discovery) only numbers among the linked phone's contacts can be answered, and a
 * lookup with one unknown number fails whole, so the example shows who of them is on Signal.
 */
export function sandboxFlows(sandbox: Sandbox, contacts: PrimaryDevice[]): unknown[] {
  const bob = contacts[0];
  if (!bob) throw new Error('sandboxFlows needs at least one contact');
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
        node.payload = JSON.stringify(contacts.map((c) => c.device.number));
      flows.push(node);
      // What signal-in receives (Bob's "echo: …") shows in the debug sidebar: the examples wire
      // signal-in straight to a reply, which the sidebar would not show.
      if (node.type === 'signal-in') {
        const debug = `d${String(node.id).slice(1)}`;
        const wires = (node.wires as string[][] | undefined) ?? [[]];
        node.wires = [[...(wires[0] ?? []), debug], ...wires.slice(1)];
        flows.push({
          id: debug,
          type: 'debug',
          z: tab,
          name: 'received',
          active: true,
          tosidebar: true,
          console: false,
          tostatus: false,
          complete: 'payload',
          targetType: 'msg',
          x: Number(node.x ?? 140) + 170,
          y: Number(node.y ?? 100) + 60,
          wires: [],
        });
      }
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
    serverPublicParams: sandbox.environment.serverPublicParams,
    deviceName: 'Node-RED sandbox',
    identityTrust: 'accept',
  });
  return flows;
}

/**
 * Source of a settings.js `httpAdminMiddleware` factory: given `send`, a middleware that reports the
 * node id of every link request (POST /signal-account/:id/link) before the route handles it, so the
 * simulated phone knows which account's QR code to "scan", including accounts not yet deployed.
 * Plain ES5 text: settings.js is written as source, and functions do not survive JSON.
 */
export const LINK_REQUEST_MIDDLEWARE = `function (send) {
  return function (req, res, next) {
    var m = req.method === 'POST' && new RegExp('^/signal-account/([^/]+)/link$').exec(req.path);
    if (m) send({ linkRequested: decodeURIComponent(m[1]) });
    next();
  };
}`;

export interface LinkApprover {
  /** An account asked to link (its id): the phone approves its QR code when it shows. */
  requested(id: string): void;
  stop(): void;
}

/**
 * The simulated phone: approves every link request made while the sandbox runs. For each
 * provisioning socket the mock server queues, it finds the QR code of the most recent request still
 * waiting (through `linkState`, the editor's GET /signal-account/:id/link) and completes it.
 */
export function approveLinkRequests(opts: {
  sandbox: Sandbox;
  phone: PrimaryDevice;
  linkState: (id: string) => Promise<{ state?: string; url?: string }>;
  log?: (line: string) => void;
  pollMs?: number;
}): LinkApprover {
  const pending: string[] = [];
  const approved = new Set<string>();
  let stopped = false;
  const pollMs = opts.pollMs ?? 250;
  const findUrl = async (): Promise<string | undefined> => {
    for (const id of [...pending].reverse()) {
      const s = await opts.linkState(id);
      if (s.state === 'waiting' && s.url && !approved.has(s.url)) return s.url;
      if (s.state === 'linked' || s.state === 'failed' || s.state === 'cancelled') {
        const i = pending.indexOf(id);
        if (i >= 0) pending.splice(i, 1);
      }
    }
    return undefined;
  };
  void (async () => {
    while (!stopped) {
      const provision = await opts.sandbox.server.waitForProvision();
      let url: string | undefined;
      // A QR code stays valid for minutes; give up on this socket after five.
      for (let i = 0; !stopped && !url && i * pollMs < 300_000; i++) {
        url = await findUrl();
        if (!url) await new Promise((r) => setTimeout(r, pollMs));
      }
      if (!url || stopped) continue;
      approved.add(url);
      opts.log?.('[sandbox] the simulated phone scanned the QR code and approved the link');
      await withTimeout(
        provision.complete({ provisionURL: url, primaryDevice: opts.phone }),
        30_000,
        'link approval',
      ).catch((e: unknown) =>
        opts.log?.(`[sandbox] link failed: ${e instanceof Error ? e.message : String(e)}`),
      );
    }
  })().catch((e: unknown) => {
    // The sandbox closing under a pending waitForProvision() ends the loop; that is no error.
    if (!stopped)
      opts.log?.(`[sandbox] link approvals stopped: ${e instanceof Error ? e.message : String(e)}`);
  });
  return {
    requested: (id) => {
      const i = pending.indexOf(id);
      if (i >= 0) pending.splice(i, 1);
      pending.push(id);
    },
    stop: () => {
      stopped = true;
    },
  };
}

/** The sandbox's folder: SIGFLOW_SANDBOX_DIR, else .sandbox/ in the project. */
function sandboxDir(): string {
  return path.resolve(process.env.SIGFLOW_SANDBOX_DIR || path.join(root, '.sandbox'));
}

/** The editor's port: SIGFLOW_PORT, else 1880. */
function sandboxPort(): number {
  const raw = process.env.SIGFLOW_PORT || '1880';
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port < 1 || port > 65535)
    throw new Error(`SIGFLOW_PORT must be a port number (1-65535), not "${raw}"`);
  return port;
}

/**
 * The sandbox's settings.js: the settings as JSON plus the link-request middleware, a function
 * that JSON cannot carry, which reports each link request over the IPC channel (process.send) to the
 * simulated phone. Spliced in by position: as a String.replace replacement the middleware's `$'`
 * (end of its RegExp) would be read as "the text after the match" and break the file.
 */
export function sandboxSettingsSource(settings: Record<string, unknown>): string {
  const json = JSON.stringify(settings, null, 2);
  const middleware = `(${LINK_REQUEST_MIDDLEWARE})(function (m) { if (process.send) process.send(m); })`;
  return `module.exports = ${json.slice(0, json.lastIndexOf('}')).trimEnd()},\n  "httpAdminMiddleware": ${middleware}\n};\n`;
}

/** The HTTP status of GET url, or 0 when nothing answers. */
function statusOf(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.setTimeout(2000, () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

async function main(): Promise<void> {
  const work = sandboxDir();
  const port = sandboxPort();
  const userDir = path.join(work, 'node-red');
  const dataDir = path.join(work, 'signal');
  const sandbox = await startSandbox();
  const bob = await sandbox.createPrimary({ profileName: 'Bob' });
  const carol = await sandbox.createPrimary({ profileName: 'Carol' });
  const phone = await sandbox.createPrimary({ profileName: 'My phone', contacts: [bob, carol] });

  // Contacts answer each message, except echoes (so two echo bots never loop). The loop ends when
  // the sandbox closes under a pending wait.
  for (const contact of [bob, carol]) {
    void (async () => {
      for (;;) {
        const m = await contact.waitForMessage();
        if (!m.body.startsWith('echo:'))
          await contact.sendText(m.source, `echo: ${m.body}`).catch(() => undefined);
      }
    })().catch(() => undefined);
  }

  // A fresh start each time, clearing only what the sandbox writes: SIGFLOW_SANDBOX_DIR may name a
  // folder that holds other things.
  for (const dir of [userDir, dataDir]) fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(userDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(
    path.join(userDir, 'flows.json'),
    JSON.stringify(sandboxFlows(sandbox, [bob, carol]), null, 2),
  );
  fs.writeFileSync(
    path.join(userDir, 'settings.js'),
    sandboxSettingsSource({
      uiHost: '127.0.0.1',
      uiPort: port,
      flowFile: 'flows.json',
      credentialSecret: false,
      // The project folder, loaded as the package its package.json describes (→ dist/nodes): loose
      // node files in a nodesDir count as core files and get no locale catalog (raw i18n keys).
      nodesDir: [root],
      signalAccountDataDir: dataDir,
      // No tour, no palette catalogue, no update check: the sandbox reaches for no network.
      editorTheme: { tours: false, palette: { catalogues: [] } },
      telemetry: { enabled: false, updateNotification: false },
      logging: { console: { level: 'info' } },
    }),
  );

  const bin = require.resolve('node-red/red.js');
  const red: ChildProcess = spawn(
    process.execPath,
    [bin, '--userDir', userDir, '--settings', path.join(userDir, 'settings.js')],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  const redExited = new Promise<number | null>((resolve) => red.once('exit', (c) => resolve(c)));

  // The simulated phone approves every link request made in the editor, for any account.
  const approver = approveLinkRequests({
    sandbox,
    phone,
    linkState: (id) =>
      getJson(`http://127.0.0.1:${port}/signal-account/${encodeURIComponent(id)}/link`),
    log: (line) => console.log(line),
  });
  red.on('message', (m: { linkRequested?: unknown }) => {
    if (typeof m?.linkRequested === 'string') approver.requested(m.linkRequested);
  });

  // Ctrl-C reaches this process twice (from the terminal, and forwarded by scripts/start.js) and
  // Node-RED too: one stop, which waits for Node-RED (killed after 10 s) before closing the mock
  // server, so nothing is left running.
  let stopping: Promise<void> | undefined;
  const stop = (code: number): void => {
    stopping ??= (async () => {
      approver.stop();
      if (red.exitCode === null && red.signalCode === null) {
        red.kill('SIGINT');
        const killer = setTimeout(() => red.kill('SIGKILL'), 10_000);
        await redExited;
        clearTimeout(killer);
      }
      await sandbox
        .close()
        .catch((e: unknown) => console.error(e instanceof Error ? e.message : String(e)));
      process.exit(code);
    })();
  };
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));
  void redExited.then((code) => {
    if (!stopping) console.log(`Node-RED exited (${String(code)})`);
    stop(code ?? 1);
  });

  // What to open, once the editor answers (not before a Node-RED that fails to start).
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; !stopping && (await statusOf(`${url}/`)) !== 200; i++) {
    if (i >= 240) {
      console.error(`Node-RED did not answer on ${url} within 60 s`);
      return stop(1);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (stopping) return;
  console.log(`
  Signal sandbox: Signal's mock server on ${sandbox.url}
  Node-RED:       ${url}   (SIGFLOW_PORT=<port> for another port)
  Sandbox folder: ${work}   (SIGFLOW_SANDBOX_DIR=<folder> for another; cleared at each start)

  1. Open ${url} and double-click the "Sandbox phone" Signal account (or any Signal node).
  2. Click "Link device": a QR code appears; the simulated phone approves it within a second.
  3. On the "Send an alert" tab, click the inject node: Bob (${String(bob.device.number)}) gets the alert and
     answers "echo: …", which the "Echo bot" tab's "received" debug node shows in the debug sidebar
     (and answers him back).
  4. On the "Look up numbers" tab, click the inject node: the debug sidebar shows Bob
     (${String(bob.device.number)}) and Carol (${String(carol.device.number)}), the phone's contacts, as
     registered on Signal. (The sandbox has no contact discovery: only the phone's contacts can be
     looked up; a lookup with another number fails, naming it.)
  A new Signal account node links the same way: the simulated phone approves any link request.
  Ctrl-C stops everything. Real use: set the account's server to "production".
`);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error('sandbox failed to start:', e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
