'use strict';
// npm run bench: build, then run the benchmarks (bench/run.ts) against the sandbox.
const { execFileSync } = require('node:child_process');
const path = require('node:path');

execFileSync(process.execPath, [path.join(__dirname, 'build.js')], { stdio: 'inherit' });
require('../dist/test/harness/polyfill').installPolyfills();
require('../dist/bench/run');
