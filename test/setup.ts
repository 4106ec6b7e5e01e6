/**
 * Loaded by mocha before every test file (see .mocharc.json).
 * @signalapp/mock-server uses Promise.withResolvers, which Node 20 lacks (PROTOCOL.md §11).
 */
import { installPolyfills } from './harness/polyfill';

installPolyfills();

// An unhandled rejection anywhere in a test run is a bug: fail loudly instead of letting it pass.
process.on('unhandledRejection', (reason) => {
  console.error('Unhandled rejection during tests:', reason);
  process.exitCode = 1;
  throw reason;
});
