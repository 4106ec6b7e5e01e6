import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SignalClient } from '../../core/client';
import { CancelledError } from '../../core/errors';
import type { Logger } from '../../core/log';

// From source this file is test/core/; built, it is dist/test/core/ and the package root one more up.
const built = __filename.endsWith('.js');
const root = path.join(__dirname, '..', '..', ...(built ? ['..'] : []));

function tempDataFile(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-client-')), 'account.db');
}

function recordingLogger(): Logger & { errors: string[] } {
  const errors: string[] = [];
  const none = () => undefined;
  return { errors, debug: none, info: none, warn: none, error: (msg) => void errors.push(msg) };
}

describe('engine entry point', () => {
  it('package.json main is the compiled core/index, which exports the client, errors and helpers', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      main: string;
      types: string;
    };
    assert.equal(pkg.main, 'dist/core/index.js');
    assert.equal(pkg.types, 'dist/core/index.d.ts');
    // Built: `main` itself. From source: what the build compiles to `main` (rootDir ".", outDir
    // "dist"), so that SignalClient below is the same class either way.
    const entry = built
      ? path.join(root, pkg.main)
      : path.join(root, pkg.main.replace(/^dist\//, '').replace(/\.js$/, '.ts'));
    assert.ok(fs.existsSync(entry), entry);
    const engine = require(entry) as Record<string, unknown>;
    assert.equal(engine.SignalClient, SignalClient);
    for (const name of [
      'SignalError',
      'CancelledError',
      'ClosedError',
      'NotLinkedError',
      'RateLimitedError',
      'UnauthorizedError',
      'RegistrationError',
      'CaptchaRequiredError',
    ]) {
      assert.equal(typeof engine[name], 'function', `${name} is exported`);
    }
    // Every error class a caller can meet is there, the registration ones included.
    for (const mod of [
      require('../../core/errors') as Record<string, unknown>,
      require('../../core/registration/errors') as Record<string, unknown>,
    ]) {
      for (const [name, value] of Object.entries(mod)) {
        if (typeof value === 'function' && value.prototype instanceof Error)
          assert.equal(engine[name], value, `${name} is exported`);
      }
    }
    const { CancelledError: Exported, SignalError } = engine as {
      CancelledError: typeof CancelledError;
      SignalError: new (...a: never[]) => Error;
    };
    assert.equal(Exported, CancelledError);
    assert.ok(new Exported('Linking') instanceof SignalError);
    assert.equal(new Exported('Linking').code, 'CANCELLED');
    assert.equal(typeof engine.resolveEnvironment, 'function');
    assert.equal(typeof engine.consoleLogger, 'function');
    assert.equal(
      (engine.resolveEnvironment as (o: { server: 'staging' }) => { name: string })({
        server: 'staging',
      }).name,
      'staging',
    );
  });
});

describe('SignalClient state listeners', () => {
  it('a state listener that throws is logged, and close() still resolves to closed', async () => {
    const logger = recordingLogger();
    const dataFile = tempDataFile();
    const client = await SignalClient.open({
      dataFile,
      environment: { server: 'staging' },
      logger,
    });
    client.on('state', (s) => {
      throw new Error(`listener broke on ${s}`);
    });
    await client.close();
    assert.equal(client.state, 'closed');
    assert.ok(logger.errors.some((m) => /'state' listener failed on 'closed'/.test(m)));
    await client.close();
    fs.rmSync(path.dirname(dataFile), { recursive: true, force: true });
  });

  it('a state listener that throws does not break link(): it ends as cancelled and can be retried', async () => {
    const logger = recordingLogger();
    const dataFile = tempDataFile();
    const client = await SignalClient.open({
      dataFile,
      environment: { server: 'staging' },
      logger,
    });
    const states: string[] = [];
    client.on('state', (s) => {
      states.push(s);
      throw new Error(`listener broke on ${s}`);
    });
    const linkStates: string[] = [];
    client.on('link-state', (s) => linkStates.push(s));
    for (let i = 0; i < 2; i++) {
      const controller = new AbortController();
      controller.abort();
      await assert.rejects(
        client.link({ signal: controller.signal, onUrl: () => undefined }),
        (e: unknown) => e instanceof CancelledError,
      );
      assert.equal(client.state, 'idle');
    }
    assert.deepEqual(states, ['linking', 'idle', 'linking', 'idle']);
    assert.deepEqual(linkStates, ['cancelled', 'cancelled']);
    assert.equal(fs.existsSync(dataFile), false);
    await client.close();
    fs.rmSync(path.dirname(dataFile), { recursive: true, force: true });
  });
});

describe('SignalClient.send: the outgoing-message model', () => {
  const environment = {
    server: 'custom' as const,
    serviceUrl: 'https://127.0.0.1:9',
    caCert: fs.readFileSync(
      path.join(
        path.dirname(require.resolve('@signalapp/mock-server/package.json')),
        'certs',
        'ca-cert.pem',
      ),
      'utf8',
    ),
    trustRoots: 'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF',
  };

  it('refuses a message that is not {text}, an empty or non-text text, a missing file, and a field it cannot send, naming it', async () => {
    const client = await SignalClient.open({ dataFile: tempDataFile(), environment });
    try {
      const refused = async (message: unknown, pattern: RegExp) =>
        assert.rejects(
          client.send('+15551234567', message as never),
          (e: unknown) =>
            (e as { code?: string }).code === 'INVALID_INPUT' && pattern.test(String(e)),
        );
      await refused('just text', /must be an object such as \{text/);
      await refused(null, /must be an object/);
      await refused(['a'], /must be an object/);
      await refused({}, /neither text nor attachments/);
      await refused({ text: 42 }, /text must be a string/);
      await refused({ text: '' }, /text is empty/);
      await refused({ text: 'hi', sticker: {} }, /field "sticker" is not one this engine can send/);
      await refused(
        { attachments: [{ path: '/no/such/file.png' }] },
        /attachments\[0\]\.path: no such file \/no\/such\/file\.png/,
      );
      await refused({ text: 'hi', quote: { timestamp: 1 } }, /quote\.author must be an ACI/);
      await refused(
        { text: 'hi', styles: [{ style: 'underline', start: 0, length: 1 }] },
        /styles\[0\]\.style/,
      );
      // A valid message gets as far as the account: this client has none linked.
      await assert.rejects(client.send('+15551234567', { text: 'hi' }), { code: 'NOT_LINKED' });
    } finally {
      await client.close();
    }
  });
});
