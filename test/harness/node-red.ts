/**
 * A real Node-RED (the dev dependency) in a child process, on a free 127.0.0.1 port with a temporary
 * user dir, loading this package's nodes: what the test helper cannot give (its runtime stubs
 * adminAuth out, and it serves no editor). Used by the admin-permission and browser tests.
 *
 * Run compiled (dist/test/harness/node-red.js, `npm test`) it loads the project folder as a package
 * (package.json → dist/nodes), as Node-RED loads the installed package. Run from source (tsx,
 * `npm run test:dev`) it writes a private package into the user dir: a package.json, one small .js
 * per node that requires nodes/<type>.ts, copies of the .html, locales/ and icons/; Node-RED starts
 * with tsx's require hook. dist/ is not touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const NODE_TYPES = ['signal-account', 'signal-in', 'signal-out', 'signal-lookup'];

export interface NodeRedProcess {
  port: number;
  /** http://127.0.0.1:<port> (the editor and the admin routes). */
  url: string;
  userDir: string;
  /** Where the signal-account nodes keep their stores. */
  dataDir: string;
  /** Everything Node-RED printed so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

export interface NodeRedOptions {
  flows: unknown[];
  /**
   * Extra entries for settings.js, as JavaScript source inserted into its object literal (settings
   * such as adminAuth hold functions, which JSON cannot carry).
   */
  settingsSource?: string;
  /** How long to wait for "Started flows". */
  startTimeoutMs?: number;
  /**
   * The user dir to run in (created when missing, left in place by stop(): it is the caller's).
   * Default: a new temporary folder, removed by stop().
   */
  userDir?: string;
  /**
   * false: this project is not put in nodesDir, so only what is installed in <userDir>/node_modules
   * loads, as after a user's `npm install` (the packaging test installs the packed tarball there).
   * Default true.
   */
  loadProject?: boolean;
}

/** The project root: the folder of this package's package.json, from test/ or dist/test/ alike. */
export function projectRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && /"@sigflow\/node-red-signal"/.test(fs.readFileSync(pkg, 'utf8')))
      return dir;
    const up = path.dirname(dir);
    if (up === dir)
      throw new Error(`No package.json of @sigflow/node-red-signal above ${__dirname}`);
    dir = up;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The folder Node-RED loads the package from, and the node flags it needs to load it. Node-RED
 * loads a nodesDir folder that has a package.json with a "node-red" section as a module: its nodes
 * get their locales/ (i18n catalogs) and icons/. Loose .js files in a nodesDir count as core files
 * and get no catalog, so the editor would show raw message keys.
 */
function packageFolder(root: string, userDir: string): { dir: string; execArgv: string[] } {
  if (path.extname(__filename) === '.js') {
    for (const t of NODE_TYPES) {
      for (const f of [`${t}.js`, `${t}.html`, path.join('locales', 'en-US', `${t}.json`)]) {
        const file = path.join(root, 'dist', 'nodes', f);
        if (!fs.existsSync(file)) throw new Error(`${file} is missing: run the build first`);
      }
    }
    return { dir: root, execArgv: [] };
  }
  const src = path.join(root, 'nodes');
  const dir = path.join(userDir, 'sigflow-package');
  fs.mkdirSync(dir, { recursive: true });
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    'node-red': { version: string };
  };
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({
      name: pkg.name,
      version: pkg.version,
      'node-red': {
        version: pkg['node-red'].version,
        nodes: Object.fromEntries(NODE_TYPES.map((t) => [t, `${t}.js`])),
      },
    }),
  );
  for (const t of NODE_TYPES) {
    fs.writeFileSync(
      path.join(dir, `${t}.js`),
      `module.exports = require(${JSON.stringify(path.join(src, `${t}.ts`))});\n`,
    );
    fs.copyFileSync(path.join(src, `${t}.html`), path.join(dir, `${t}.html`));
  }
  fs.cpSync(path.join(src, 'locales'), path.join(dir, 'locales'), { recursive: true });
  fs.cpSync(path.join(root, 'icons'), path.join(dir, 'icons'), { recursive: true });
  return { dir, execArgv: ['--require', require.resolve('tsx/cjs')] };
}

export async function startNodeRed(opts: NodeRedOptions): Promise<NodeRedProcess> {
  const root = projectRoot();
  const ownUserDir = !opts.userDir;
  const userDir = opts.userDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-node-red-'));
  fs.mkdirSync(userDir, { recursive: true });
  const dataDir = path.join(userDir, 'signal');
  const port = await freePort();
  const nodes =
    opts.loadProject === false ? { dir: null, execArgv: [] } : packageFolder(root, userDir);
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(opts.flows, null, 2));
  const settings = {
    uiHost: '127.0.0.1',
    uiPort: port,
    flowFile: 'flows.json',
    credentialSecret: false,
    ...(nodes.dir ? { nodesDir: [nodes.dir] } : {}),
    signalAccountDataDir: dataDir,
    // No tour, no update check: nothing covers the editor, nothing reaches for the network.
    editorTheme: { tours: false, palette: { catalogues: [] } },
    telemetry: { enabled: false, updateNotification: false },
    logging: { console: { level: 'info' } },
  };
  const json = JSON.stringify(settings, null, 2);
  const source = opts.settingsSource
    ? `${json.slice(0, json.lastIndexOf('}'))},\n${opts.settingsSource}\n}`
    : json;
  fs.writeFileSync(path.join(userDir, 'settings.js'), `module.exports = ${source};\n`);

  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...nodes.execArgv,
      require.resolve('node-red/red.js'),
      '--userDir',
      userDir,
      '--settings',
      path.join(userDir, 'settings.js'),
    ],
    {
      cwd: userDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_RED_DISABLE_TELEMETRY: '1' },
    },
  );
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));

  let stopped: Promise<void> | null = null;
  const proc: NodeRedProcess = {
    port,
    url: `http://127.0.0.1:${port}`,
    userDir,
    dataDir,
    output: () => out,
    stop: () => {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGINT');
          const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(killer);
        }
        if (ownUserDir) fs.rmSync(userDir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };

  const timeout = opts.startTimeoutMs ?? 30_000;
  const deadline = Date.now() + timeout;
  while (!/Started flows/.test(out)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await proc.stop();
      throw new Error(`Node-RED exited before starting its flows:\n${out}`);
    }
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`Node-RED did not start its flows within ${timeout} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return proc;
}
