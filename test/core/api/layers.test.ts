/**
 * core/api is the bottom layer of the REST side: the services (messaging, registration, directory,
 * provisioning, store, client) call it, so it must import none of them, or the layers run backwards.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

// From source this file is test/core/api/; built, it is dist/test/core/api/ and the root one more up.
const built = __filename.endsWith('.js');
const root = path.join(__dirname, '..', '..', '..', ...(built ? ['..'] : []));
const apiDir = path.join(root, 'core', 'api');

/** What core/api may import besides its own files and libraries. */
const ALLOWED = new Set(['core/errors', 'core/net/types', 'core/log', 'proto']);

describe('core/api layering', () => {
  it('imports only core/errors, core/net/types, core/log, proto and libraries', () => {
    const files = fs.readdirSync(apiDir).filter((f) => f.endsWith('.ts'));
    assert.ok(files.includes('index.ts') && files.length > 5, `api files: ${files.join(', ')}`);
    for (const file of files) {
      const source = fs.readFileSync(path.join(apiDir, file), 'utf8');
      for (const [, spec] of source.matchAll(/from '([^']+)'/g)) {
        if (!spec || !spec.startsWith('.')) continue;
        const target = path.relative(root, path.resolve(apiDir, spec)).split(path.sep).join('/');
        if (target.startsWith('core/api/')) continue;
        assert.ok(ALLOWED.has(target), `core/api/${file} imports ${spec} (${target})`);
      }
    }
  });
});
