'use strict';
// npm start: build, then run Node-RED against the embedded Signal sandbox (test/harness/start.ts).
const { execFileSync, spawn } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
execFileSync(process.execPath, [path.join(__dirname, 'build.js')], { stdio: 'inherit' });
const child = spawn(process.execPath, [path.join(root, 'dist', 'test', 'harness', 'start.js')], {
  stdio: 'inherit',
});
process.on('SIGINT', () => child.kill('SIGINT'));
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code) => process.exit(code ?? 0));
