'use strict';
// build = protos -> tsc -> copy the non-TypeScript files Node-RED and the engine load at run time.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const dist = path.join(root, 'dist');

execFileSync(process.execPath, [path.join(__dirname, 'build-proto.js')], { stdio: 'inherit' });

let tscFailed = false;
try {
  execFileSync(
    process.execPath,
    [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root],
    {
      stdio: 'inherit',
    },
  );
} catch {
  tscFailed = true;
}

function copy(from, to) {
  if (!fs.existsSync(from)) return;
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.cpSync(from, to, { recursive: true });
}

// Generated protobuf code is plain JS: tsc does not emit it, so it is copied beside proto/index.js.
copy(path.join(root, 'proto', 'compiled.js'), path.join(dist, 'proto', 'compiled.js'));
copy(path.join(root, 'proto', 'compiled.d.ts'), path.join(dist, 'proto', 'compiled.d.ts'));
// Node-RED looks for a node's .html, locales/ and icons/ beside its .js file.
const nodesDir = path.join(root, 'nodes');
for (const entry of fs.existsSync(nodesDir) ? fs.readdirSync(nodesDir) : []) {
  if (entry.endsWith('.html')) copy(path.join(nodesDir, entry), path.join(dist, 'nodes', entry));
}
copy(path.join(nodesDir, 'locales'), path.join(dist, 'nodes', 'locales'));
copy(path.join(root, 'icons'), path.join(dist, 'nodes', 'icons'));
// Static assets of the engine (e.g. pinned CA certificates).
copy(path.join(root, 'core', 'assets'), path.join(dist, 'core', 'assets'));

if (tscFailed) {
  console.error('build: TypeScript reported errors');
  process.exit(1);
}
