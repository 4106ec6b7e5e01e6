/**
 * Loaded by mocha before every test file (see .mocharc.json).
 * @signalapp/mock-server uses Promise.withResolvers, which Node 20 lacks (PROTOCOL.md §11).
 */
import { installPolyfills } from './harness/polyfill';

installPolyfills();

// An unhandled rejection anywhere in a test run is a bug: fail loudly instead of letting it pass.
process.on('unhandledRejection', (reason) => {
  // One known flaw of the mock, not ours: its CDN 3 handler (mock-server src/server/http.js,
  // getCdn3Attachment) answers a download the client aborts (a refused over-cap file) with a 500
  // after the response began, and micro's sendError then rejects unhandled.
  const e = reason as { code?: string; stack?: string } | null;
  if (e?.code === 'ERR_HTTP2_HEADERS_SENT' && /micro[\\/]lib/.test(e.stack ?? '')) return;
  console.error('Unhandled rejection during tests:', reason);
  process.exitCode = 1;
  throw reason;
});
