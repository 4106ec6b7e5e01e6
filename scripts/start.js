'use strict';
// npm start: build, then run Node-RED against the embedded Signal sandbox (test/harness/start.ts).
// `npm start -- --no-build` skips the build (test/harness/start.test.ts, after npm test's build).
// SIGFLOW_PORT (default 1880) and SIGFLOW_SANDBOX_DIR (default .sandbox/) pass through.
const { execFileSync, spawn } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
if (!process.argv.includes('--no-build'))
  execFileSync(process.execPath, [path.join(__dirname, 'build.js')], { stdio: 'inherit' });
const child = spawn(process.execPath, [path.join(root, 'dist', 'test', 'harness', 'start.js')], {
  stdio: 'inherit',
});
// Forwarded for a signal sent to this process alone; the sandbox stops once however often it
// hears one (Ctrl-C in a terminal reaches it directly too).
process.on('SIGINT', () => child.kill('SIGINT'));
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
