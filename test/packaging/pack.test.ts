/**
 * The npm package as users get it: `npm pack` of the built project, its file list, and the tarball
 * installed into a fresh Node-RED user dir, where Node-RED 4 (the dev dependency) must load its four
 * nodes and the shipped example flows.
 *
 * Offline install: the tarball is extracted into <userDir>/node_modules/@sigflow/node-red-signal
 * (what `npm install <tarball>` puts there) with the user dir inside the project (test-output/), so
 * the package's dependencies resolve from the project's node_modules by Node's parent-folder
 * lookup. A real `npm install` would fetch them and compile better-sqlite3 (minutes, and network).
 * That lookup would also find devDependencies, so a separate test checks that the shipped code
 * requires nothing beyond Node's builtins and the package's `dependencies`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { projectRoot, startNodeRed, type NodeRedProcess } from '../harness/node-red';

const MODULE = '@sigflow/node-red-signal';
const NODE_TYPES = ['signal-account', 'signal-in', 'signal-out', 'signal-lookup'];

interface PackageJson {
  name: string;
  version: string;
  main: string;
  types: string;
  files: string[];
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  'node-red': { nodes: Record<string, string> };
}

/** npm with nothing that could reach for the network (no update check, audit or fund notice). */
function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    env: {
      ...process.env,
      npm_config_offline: 'true',
      npm_config_update_notifier: 'false',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Every file under dir, as /-separated paths relative to it. */
function walk(dir: string, base = dir): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory()
      ? walk(full, base)
      : [path.relative(base, full).split(path.sep).join('/')];
  });
}

/** The package a require()d specifier names (`@scope/name`, `name`), or null for a relative one. */
function packageOf(specifier: string): string | null {
  if (specifier.startsWith('.') || specifier.startsWith('/')) return null;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

describe('packaging: the npm package', function () {
  this.timeout(120_000);
  const root = projectRoot();
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as PackageJson;
  let work: string;
  let tarball: string;
  let files: string[];
  let packed: { size: number; unpackedSize: number; entryCount: number };

  before(function () {
    if (!fs.existsSync(path.join(root, 'dist', 'nodes', 'signal-account.js')))
      throw new Error('dist/ is not built: run `node scripts/build.js` first');
    // Inside the project, so that the installed package finds its dependencies (see above).
    fs.mkdirSync(path.join(root, 'test-output'), { recursive: true });
    work = fs.mkdtempSync(path.join(root, 'test-output', 'pack-'));
    // --ignore-scripts: npm test has just built dist/, and prepack would build it again (the test
    // below checks that prepack builds).
    const out = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], root);
    const [info] = JSON.parse(out) as Array<{
      filename: string;
      size: number;
      unpackedSize: number;
      entryCount: number;
    }>;
    assert.ok(info, `npm pack printed no result: ${out}`);
    packed = info;
    tarball = path.join(work, info.filename);
    assert.ok(fs.existsSync(tarball), `${tarball} was not written`);
    // The tarball's own listing, not npm's report of it: what a user gets.
    files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
      .split('\n')
      .filter((f) => f && !f.endsWith('/'))
      .map((f) => f.replace(/^package\//, ''));
  });

  after(function () {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('builds before packing (prepack), so a pack from a fresh clone has dist/', function () {
    assert.match(pkg.scripts.prepack ?? '', /(^|&&\s*)node scripts\/build\.js(\s|$)/);
    assert.ok(fs.existsSync(path.join(root, 'scripts', 'build.js')));
  });

  it('ships the engine, the nodes with their editor files and icons, the protos and the examples', function () {
    const has = (f: string) => assert.ok(files.includes(f), `${f} is not in the package`);
    for (const f of ['package.json', 'README.md', 'LICENSE', pkg.main, pkg.types]) has(f);
    has('dist/core/assets/signal-root-ca.pem');
    has('dist/proto/index.js');
    has('dist/proto/compiled.js');
    for (const [type, file] of Object.entries(pkg['node-red'].nodes)) {
      has(file);
      // Node-RED looks for a node's editor file and catalog only beside its .js.
      const dir = path.posix.dirname(file);
      has(`${dir}/${type}.html`);
      has(`${dir}/locales/en-US/${type}.json`);
    }
    assert.deepEqual(Object.keys(pkg['node-red'].nodes).sort(), [...NODE_TYPES].sort());
    for (const icon of fs.readdirSync(path.join(root, 'icons'))) has(`dist/nodes/icons/${icon}`);
    // Every icon an editor file names is shipped beside the nodes.
    for (const type of NODE_TYPES) {
      const html = fs.readFileSync(path.join(root, 'nodes', `${type}.html`), 'utf8');
      for (const [, icon] of html.matchAll(/\bicon:\s*['"]([^'"]+)['"]/g)) {
        if (icon && !icon.includes('/')) has(`dist/nodes/icons/${icon}`);
      }
    }
    for (const f of fs.readdirSync(path.join(root, 'examples'))) has(`examples/${f}`);
    for (const f of fs.readdirSync(path.join(root, 'proto')).filter((n) => n.endsWith('.proto')))
      has(`proto/${f}`);
  });

  it('ships no tests, benchmarks, stores, source maps or build leftovers', function () {
    const unwanted = files.filter(
      (f) =>
        /^dist\/(test|bench)\//.test(f) ||
        /\.(db|db-wal|db-shm|map|tsbuildinfo)$/.test(f) ||
        (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)) ||
        /^(test|bench|scripts|core|nodes|test-output|\.sandbox|\.ci|node_modules)\//.test(f),
    );
    assert.deepEqual(unwanted, []);
    // A compiled file whose source is gone (a stale dist/) must not ship: prepack's build does not
    // empty dist/ first.
    const stale = files.filter((f) => {
      const m = /^dist\/(core|nodes)\/(.+)\.(js|d\.ts)$/.exec(f);
      return m && !fs.existsSync(path.join(root, m[1] ?? '', `${m[2] ?? ''}.ts`));
    });
    assert.deepEqual(stale, []);
    // A guard against the file list growing back to everything: the engine and nodes are about 200
    // files (a .js and a .d.ts per module), dist/test and dist/bench as many again (373 in all when
    // they shipped). The named checks above catch a leak first; this catches an unnamed one.
    const shipped = files.filter((f) => /^dist\/(core|nodes|proto)\//.test(f)).length;
    assert.ok(
      packed.entryCount <= shipped + 40,
      `${packed.entryCount} files in the package, ${shipped} of them the engine and nodes`,
    );
  });

  it('requires at run time nothing but Node builtins and its own dependencies', function () {
    const builtins = new Set(builtinModules);
    const missing = new Set<string>();
    for (const f of files.filter((n) => /^dist\/.*\.js$/.test(n))) {
      const source = fs.readFileSync(path.join(root, f), 'utf8');
      for (const [, spec] of source.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)) {
        const name = spec ? packageOf(spec) : null;
        if (!name || name.startsWith('node:') || builtins.has(name)) continue;
        // The package's own name appears in comments (`require('@sigflow/node-red-signal')`).
        if (name === pkg.name) continue;
        if (!(name in pkg.dependencies)) missing.add(`${name} (${f})`);
      }
    }
    assert.deepEqual([...missing], []);
  });

  describe('installed into a fresh Node-RED user dir', function () {
    let red: NodeRedProcess | undefined;
    let userDir: string;
    let installed: string;

    before(async function () {
      userDir = path.join(work, 'user');
      installed = path.join(userDir, 'node_modules', ...MODULE.split('/'));
      fs.mkdirSync(installed, { recursive: true });
      execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
      // As `npm install <tarball>` leaves it: listed in the user dir's package.json, so Node-RED
      // counts it as a user-installed module.
      fs.writeFileSync(
        path.join(userDir, 'package.json'),
        JSON.stringify({
          name: 'sigflow-pack-test',
          private: true,
          dependencies: { [MODULE]: `file:../${path.basename(tarball)}` },
        }),
      );
      red = await startNodeRed({
        flows: shippedExampleFlows(installed),
        userDir,
        loadProject: false,
        startTimeoutMs: 60_000,
      });
    });

    after(async function () {
      await red?.stop();
    });

    it('loads the module and its four nodes from node_modules, without errors', async function () {
      assert.ok(red);
      const res = await fetch(`${red.url}/nodes`, { headers: { Accept: 'application/json' } });
      assert.equal(res.status, 200);
      const sets = (await res.json()) as Array<{
        module?: string;
        types: string[];
        enabled: boolean;
        local: boolean;
        user: boolean;
        err?: unknown;
      }>;
      const ours = sets.filter((s) => s.module === MODULE);
      assert.deepEqual(ours.flatMap((s) => s.types).sort(), [...NODE_TYPES].sort(), red.output());
      for (const s of ours) {
        assert.equal(s.err, undefined, `${s.types.join()}: ${JSON.stringify(s.err)}`);
        assert.equal(s.enabled, true);
      }
      const info = (await (
        await fetch(`${red.url}/nodes/${MODULE}`, { headers: { Accept: 'application/json' } })
      ).json()) as { version?: string; path?: string; local?: boolean; user?: boolean };
      assert.equal(info.version, pkg.version);
      // Loaded from the installed copy, not the project folder; local: found in
      // <userDir>/node_modules; user: listed in the user dir's package.json.
      assert.equal(fs.realpathSync(info.path ?? '.'), fs.realpathSync(installed));
      assert.equal(info.local, true);
      assert.equal(info.user, true);
      // The example flows started (Node-RED waits instead for a missing type), and no node failed:
      // an account on Signal's servers reads the pinned CA from dist/core/assets when it opens.
      assert.match(red.output(), /Started flows/);
      const problems = red
        .output()
        .split('\n')
        .filter((l) => /\[(error|warn)\]/.test(l))
        // Node-RED's own notices about settings this test leaves at their defaults.
        .filter((l) => !/Projects disabled|Using unencrypted credentials/.test(l));
      assert.deepEqual(problems, [], red.output());
    });

    it('serves the editor files, the catalogs and the icon from the installed package', async function () {
      assert.ok(red);
      const html = await (
        await fetch(`${red.url}/nodes`, { headers: { Accept: 'text/html' } })
      ).text();
      for (const type of NODE_TYPES)
        assert.match(html, new RegExp(`data-template-name="${type}"`), `${type} editor template`);
      // Each node's catalog, from locales/ beside its .js (Node-RED's namespace is module/type).
      for (const type of NODE_TYPES) {
        const catalog = (await (
          await fetch(`${red.url}/locales/${MODULE}/${type}?lng=en-US`, {
            headers: { Accept: 'application/json' },
          })
        ).json()) as Record<string, unknown>;
        assert.ok(catalog[type], `the ${type} catalog is not served: ${JSON.stringify(catalog)}`);
      }
      const icons = (await (
        await fetch(`${red.url}/icons`, { headers: { Accept: 'application/json' } })
      ).json()) as Record<string, string[]>;
      assert.ok(icons[MODULE]?.includes('signal.svg'), JSON.stringify(icons));
      const icon = await fetch(`${red.url}/icons/${MODULE}/signal.svg`);
      assert.equal(icon.status, 200);
      assert.match(await icon.text(), /<svg/);
    });
  });
});

/**
 * The package's own example flows (as installed), each on its own tab. They all use one account
 * node (the same id, on Signal's production servers, never linked here: it opens no connection);
 * it is deployed once.
 */
function shippedExampleFlows(installed: string): unknown[] {
  const dir = path.join(installed, 'examples');
  const flows: Array<Record<string, unknown>> = [];
  const seen = new Set<string>();
  for (const file of walk(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const tab = `ab${flows.length.toString(16).padStart(14, '0')}`;
    flows.push({ id: tab, type: 'tab', label: path.basename(file, '.json') });
    for (const n of JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as Array<
      Record<string, unknown>
    >) {
      const id = String(n.id);
      if (seen.has(id)) continue;
      seen.add(id);
      flows.push(n.type === 'signal-account' ? n : { ...n, z: tab });
    }
  }
  return flows;
}
