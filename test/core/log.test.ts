import assert from 'node:assert/strict';
import { redact, redactString, redactingLogger } from '../../core/log';

describe('log: redaction', () => {
  it('removes provisioning URLs, auth headers and long base64 secrets from text', () => {
    const line = redactString(
      'url sgnl://linkdevice?uuid=abc&pub_key=BQ%2B header Basic dXNlcjpwYXNzd29yZA== key BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF',
    );
    assert.ok(!line.includes('linkdevice?uuid'));
    assert.ok(!line.includes('dXNlcjpwYXNzd29yZA'));
    assert.ok(!line.includes('BXu6QIKVz5MA8'));
  });

  it('replaces secret-named fields and binary values in logged objects', () => {
    const out = redact({
      password: 'hunter2',
      body: 'hello',
      profileKey: new Uint8Array(32),
      deviceId: 2,
      nested: { token: 't' },
    });
    assert.deepEqual(out, {
      password: '[redacted]',
      body: '[redacted]',
      profileKey: '[redacted]',
      deviceId: 2,
      nested: { token: '[redacted]' },
    });
  });

  it('wraps a sink so nothing secret reaches it', () => {
    const lines: string[] = [];
    const sink = (msg: string, ...meta: unknown[]) => lines.push(`${msg} ${JSON.stringify(meta)}`);
    const log = redactingLogger({ debug: sink, info: sink, warn: sink, error: sink });
    log.info('linking with sgnl://linkdevice?uuid=x&pub_key=y', {
      password: 'p',
      message: 'secret text',
    });
    assert.equal(lines.length, 1);
    assert.ok(!/pub_key|"p"|secret text/.test(lines[0] ?? ''), lines[0]);
  });
});
