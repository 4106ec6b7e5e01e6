'use strict';
// Compiles Signal's .proto sources in proto/ to static protobufjs code (pbjs) and its types (pbts).
// Skips the work when the generated files are newer than every source.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const protoDir = path.join(root, 'proto');
const sources = [
  'SignalService.proto',
  'WebSocketResources.proto',
  'Provisioning.proto',
  'DeviceName.proto',
  'Groups.proto',
  'SignalStorage.proto',
].map((f) => path.join(protoDir, f));
const outJs = path.join(protoDir, 'compiled.js');
const outDts = path.join(protoDir, 'compiled.d.ts');

function mtime(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

const newestSource = Math.max(...sources.map(mtime), mtime(__filename));
if (Math.min(mtime(outJs), mtime(outDts)) > newestSource && !process.argv.includes('--force')) {
  process.exit(0);
}

const bin = (name) => path.join(root, 'node_modules', '.bin', name);
execFileSync(
  bin('pbjs'),
  [
    '-t',
    'static-module',
    '-w',
    'commonjs',
    '--no-beautify',
    '--no-delimited',
    '--no-service',
    '-o',
    outJs,
    ...sources,
  ],
  { stdio: 'inherit' },
);
execFileSync(bin('pbts'), ['--no-comments', '-o', outDts, outJs], { stdio: 'inherit' });
// Progress on stderr: `npm pack --json` runs the build (prepack) and its stdout is the JSON.
console.error('proto: compiled', sources.length, 'files');
