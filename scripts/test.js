'use strict';
// npm test: build (type-checked), lint, then every test. Exits non-zero on any failure and always
// ends with the plain line "N passed, N failed".
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const passthrough = args.filter((a) => !a.startsWith('--no-'));

function run(label, cmd, cmdArgs) {
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`\n${label} failed`);
    console.log('0 passed, 1 failed');
    process.exit(r.status || 1);
  }
}

if (!flag('--no-build')) run('build', process.execPath, [path.join(__dirname, 'build.js')]);
if (!flag('--no-lint')) {
  run('eslint', process.execPath, [
    path.join(root, 'node_modules', 'eslint', 'bin', 'eslint.js'),
    '.',
  ]);
  run('prettier', process.execPath, [
    path.join(root, 'node_modules', 'prettier', 'bin', 'prettier.cjs'),
    '--check',
    '.',
  ]);
}
const mocha = spawnSync(
  process.execPath,
  [path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js'), ...passthrough],
  { cwd: root, stdio: 'inherit' },
);
process.exit(mocha.status === null ? 1 : mocha.status);
