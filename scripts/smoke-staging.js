'use strict';
/**
 * Smoke test against Signal's real servers, for someone with a phone and a network (never in CI):
 * links this engine (the built dist/core) to the phone as a secondary device, sends one message and
 * waits for one incoming message, reporting each step with ✔/✘, its time and, on failure, the
 * engine's error code. Exits 0 only when every step passed.
 *
 *   node scripts/build.js
 *   node scripts/smoke-staging.js [--server staging|production] [--to +E164] [--wait 120]
 *                                 [--link-wait 300] [--data <file>] [--no-qr] [--verbose]
 *   node scripts/smoke-staging.js --server custom --url https://… --ca <pem file> --trust-root <base64>
 *
 * --to defaults to the linked account's own number (Note to Self). The account file goes in a new
 * temporary folder (0700, the file 0600), removed at the end, unless --data names one to keep; a
 * --data file that is already linked skips linking. The `sgnl://linkdevice` URL and its QR code are
 * secrets shown on this terminal only: the engine's log (--verbose, on stderr) redacts them, and the
 * script writes no log file.
 */
/* global AbortSignal -- a Node global the scripts' ESLint globals do not list */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const USAGE = `Usage: node scripts/smoke-staging.js [options]
  --server staging|production|custom   Signal's servers to use (default staging)
  --url <https url>                    custom: the chat server's URL
  --ca <pem file>                      custom: the CA its certificate chains to
  --trust-root <base64>                custom: a sealed-sender trust root (repeatable)
  --to <+E164>                         recipient of the test message (default: your own number)
  --wait <seconds>                     how long to wait for an incoming message (default 120)
  --link-wait <seconds>                how long to wait for the phone to link (default 300)
  --data <file>                        account file to use and keep (default: a temporary one)
  --device-name <name>                 linked device name shown on the phone (default "sigflow smoke test")
  --no-qr                              print the link URL without a QR code
  --verbose                            the engine's log on stderr (secrets redacted)
  --help`;

/** Parsed options, or an exit with the usage text: bad input is not a failed smoke step. */
function options(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        server: { type: 'string', default: 'staging' },
        url: { type: 'string' },
        ca: { type: 'string' },
        'trust-root': { type: 'string', multiple: true },
        to: { type: 'string' },
        wait: { type: 'string', default: '120' },
        'link-wait': { type: 'string', default: '300' },
        data: { type: 'string' },
        'device-name': { type: 'string', default: 'sigflow smoke test' },
        'no-qr': { type: 'boolean', default: false },
        verbose: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    usage(e instanceof Error ? e.message : String(e));
  }
  if (parsed.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (!['staging', 'production', 'custom'].includes(parsed.server))
    usage(`--server must be staging, production or custom, not "${parsed.server}"`);
  if (parsed.server === 'custom' && (!parsed.url || !parsed.ca || !parsed['trust-root']))
    usage('--server custom needs --url, --ca and --trust-root');
  if (parsed.server !== 'custom' && (parsed.url || parsed.ca || parsed['trust-root']))
    usage('--url, --ca and --trust-root are for --server custom only');
  const seconds = (name) => {
    const n = Number(parsed[name]);
    if (!/^\d+$/.test(parsed[name]) || n < 1) usage(`--${name} must be a whole number of seconds`);
    return n;
  };
  return {
    server: parsed.server,
    url: parsed.url,
    ca: parsed.ca,
    trustRoots: parsed['trust-root'] ?? [],
    to: parsed.to,
    waitMs: seconds('wait') * 1000,
    linkWaitMs: seconds('link-wait') * 1000,
    data: parsed.data,
    deviceName: parsed['device-name'],
    qr: !parsed['no-qr'],
    verbose: parsed.verbose,
  };
}

function usage(problem) {
  console.error(`${problem}\n\n${USAGE}`);
  process.exit(2);
}

/** An error as a step report shows it: the engine's stable code, then its (secret-free) message. */
function describe(e) {
  if (e && typeof e === 'object') {
    const code = typeof e.code === 'string' ? e.code : e.name || 'ERROR';
    return `${code}: ${e.message || String(e)}`;
  }
  return `ERROR: ${String(e)}`;
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A promise that rejects with a TIMEOUT-coded error after ms (the timer does not hold the process). */
function timeout(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const e = new Error(`${what}: nothing within ${seconds(ms)}`);
      e.code = 'TIMEOUT';
      reject(e);
    }, ms);
    timer.unref();
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

async function main() {
  const opts = options(process.argv.slice(2));
  let engine;
  try {
    engine = require('../dist/core');
  } catch (e) {
    console.error(
      `dist/core cannot be loaded (run \`node scripts/build.js\` first): ${describe(e)}`,
    );
    process.exit(2);
  }
  const { SignalClient, consoleLogger, silentLogger } = engine;

  let failed = false;
  /** Runs one step, prints ✔ or ✘ with its time; a failed step ends the run (later ones need it). */
  async function step(name, fn) {
    const started = Date.now();
    try {
      const detail = await fn();
      console.log(`✔ ${name} (${seconds(Date.now() - started)})${detail ? `: ${detail}` : ''}`);
      return true;
    } catch (e) {
      failed = true;
      console.log(`✘ ${name} (${seconds(Date.now() - started)}): ${describe(e)}`);
      return false;
    }
  }

  const tempDir = opts.data ? null : fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-smoke-'));
  if (tempDir) fs.chmodSync(tempDir, 0o700);
  const dataFile = opts.data ? path.resolve(opts.data) : path.join(tempDir, 'account.db');
  // Ctrl-C while waiting for the phone: no temporary account file (keys) left behind.
  process.once('SIGINT', () => {
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
    console.log('\ninterrupted: smoke test FAILED');
    process.exit(130);
  });
  const environment =
    opts.server === 'custom'
      ? {
          server: 'custom',
          serviceUrl: opts.url,
          caCert: fs.existsSync(opts.ca) ? fs.readFileSync(opts.ca, 'utf8') : '',
          trustRoots: opts.trustRoots,
        }
      : { server: opts.server };
  console.log(`sigflow smoke test against ${opts.server === 'custom' ? opts.url : opts.server}`);

  let client = null;
  let linkedHere = false;
  // Registered before the send: the answer may come before the send's own round trips are over.
  let incoming = null;
  const run = async () => {
    if (
      !(await step('open the account file', async () => {
        if (opts.server === 'custom' && !fs.existsSync(opts.ca))
          throw Object.assign(new Error(`no CA file ${opts.ca}`), { code: 'INVALID_INPUT' });
        client = await SignalClient.open({
          dataFile,
          environment,
          deviceName: opts.deviceName,
          logger: opts.verbose ? consoleLogger('sigflow') : silentLogger,
        });
        return client.account ? 'already linked' : 'not linked yet';
      }))
    )
      return;

    if (!client.account) {
      const ok = await step('link to the phone', async () => {
        const limit = AbortSignal.timeout(opts.linkWaitMs);
        let shown = 0;
        try {
          await client.link({
            signal: limit,
            onUrl: (url) => void showLinkUrl(url, shown++ > 0, opts.qr),
          });
        } catch (e) {
          if (limit.aborted)
            throw Object.assign(new Error(`not linked within ${seconds(opts.linkWaitMs)}`), {
              code: 'TIMEOUT',
            });
          throw e;
        }
        linkedHere = true;
        const a = client.account;
        return `device ${a.deviceId} of ${a.number ?? a.aci}`;
      });
      if (!ok) return;
    }

    if (
      !(await step('connect', async () => {
        await client.connect();
      }))
    )
      return;

    incoming = new Promise((resolve) => {
      client.on('event', (ev) => {
        // A message from anyone, or a transcript of one the phone sent (Note to Self typed there).
        if (ev.type === 'message' || ev.type === 'sync') resolve(ev);
      });
    });
    const to = opts.to ?? client.account.number;
    if (
      !(await step(`send a message to ${to ?? '(own number unknown)'}`, async () => {
        if (!to)
          throw Object.assign(new Error('the account has no number: give --to'), {
            code: 'INVALID_INPUT',
          });
        const r = await client.send(to, {
          text: `sigflow smoke test, ${new Date().toISOString()}`,
        });
        return `${r.devices.length} device(s), ${r.sealed ? 'sealed sender' : 'unsealed'}`;
      }))
    )
      return;

    console.log(
      `  Now send a message to this account (e.g. answer in ${opts.to ? 'that chat' : 'Note to Self'}) within ${seconds(opts.waitMs)}.`,
    );
    await step('receive a message', async () => {
      const limit = timeout(opts.waitMs, 'receive');
      try {
        const ev = await Promise.race([incoming, limit.promise]);
        // Who and how long, not the text: message bodies stay out of output that may be kept.
        const who =
          ev.type === 'sync' ? 'your phone (sent from it)' : (ev.from.number ?? ev.from.aci);
        return `from ${who}, ${ev.body.length} characters${ev.sealed ? ', sealed sender' : ''}`;
      } finally {
        limit.cancel();
      }
    });
  };

  await run().catch((e) => {
    failed = true;
    console.log(`✘ unexpected: ${describe(e)}`);
  });
  if (client) await step('close', () => client.close());
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  if (linkedHere && tempDir)
    console.log(
      `  The account file is deleted: remove "${opts.deviceName}" from Linked devices on your phone.`,
    );
  else if (linkedHere) console.log(`  Account kept in ${dataFile} (0600); --data reuses it.`);
  console.log(failed ? 'smoke test FAILED' : 'smoke test passed');
  process.exit(failed ? 1 : 0);
}

/** The link URL (a secret) and its QR code, on stdout only. */
async function showLinkUrl(url, again, qr) {
  if (!process.stdout.isTTY)
    console.error('  (stdout is not a terminal: the link URL below is a secret; do not keep it)');
  console.log(
    again
      ? '  The link code changed; scan this one:'
      : '  On your phone: Settings → Linked devices → Link new device, and scan:',
  );
  if (qr) {
    try {
      const text = await require('qrcode').toString(url, { type: 'terminal', small: true });
      console.log(text);
    } catch (e) {
      console.log(`  (no QR code: ${describe(e)})`);
    }
  }
  console.log(`  ${url}`);
}

main().catch((e) => {
  console.error(`smoke test crashed: ${describe(e)}`);
  process.exit(1);
});
