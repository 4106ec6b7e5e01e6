/**
 * The import direction of docs/ARCHITECTURE.md is enforced by ESLint (eslint.config.mjs,
 * no-restricted-imports per layer): these lint a deliberately wrong import in each layer and expect
 * the lint to fail naming the rule, and the same file with a permitted import to pass.
 */
import assert from 'node:assert/strict';
import { ESLint } from 'eslint';
import { projectRoot } from './harness/node-red';

describe('architecture: the import-direction lint', function () {
  this.timeout(60_000);
  const eslint = new ESLint({ cwd: projectRoot() });

  async function problems(filePath: string, code: string): Promise<string[]> {
    const [result] = await eslint.lintText(code, { filePath });
    return (result?.messages ?? []).map((m) => `${m.ruleId}: ${m.message}`);
  }

  const wrong: Array<[file: string, code: string, says: RegExp]> = [
    ['core/api/bad.ts', "export { Sender } from '../messaging/sender';\n", /REST layer/],
    ['core/api/bad.ts', "export { SignalStore } from '../store';\n", /REST layer/],
    [
      'core/messaging/bad.ts',
      "import WebSocket from 'ws';\nexport const w = WebSocket;\n",
      /Only core\/net\/ opens connections/,
    ],
    [
      'core/directory/bad.ts',
      "import Database from 'better-sqlite3';\nexport const d = Database;\n",
      /Only core\/store\/ runs SQL/,
    ],
    [
      'core/groups/bad.ts',
      "import Database from 'better-sqlite3';\nexport const d = Database;\n",
      /Only core\/store\/ runs SQL/,
    ],
    [
      'core/groups/bad.ts',
      "import http2 from 'node:http2';\nexport const h = http2;\n",
      /Only core\/net\/ opens connections/,
    ],
    [
      'core/net/bad.ts',
      "export { Receiver } from '../messaging/receiver';\n",
      /core\/net\/ is the transport/,
    ],
    ['core/store/bad.ts', "export * as api from '../api';\n", /core\/store\/ is storage/],
    ['core/crypto/bad.ts', "export { SignalStore } from '../store';\n", /core\/crypto\/ is pure/],
    ['core/bad.ts', "export { statusFor } from '../nodes/lib/status';\n", /never imports Node-RED/],
    ['core/bad.ts', "export * from '../proto/compiled';\n", /proto\/index.ts only/],
    ['nodes/lib/bad.ts', "export { WebSocketMessage } from '../../proto';\n", /no protocol logic/],
  ];

  for (const [file, code, says] of wrong) {
    it(`fails on ${code.split('\n')[0]} in ${file}`, async () => {
      const found = await problems(file, code);
      assert.ok(
        found.some((p) => p.startsWith('no-restricted-imports') && says.test(p)),
        `expected the layer rule (${says}) to fire, got ${JSON.stringify(found)}`,
      );
    });
  }

  it('passes the permitted direction (a service over the api, the api over net types)', async () => {
    assert.deepEqual(
      await problems('core/messaging/fine.ts', "export * as api from '../api';\n"),
      [],
    );
    assert.deepEqual(
      await problems('core/groups/fine.ts', "export type { GroupAuth } from '../api';\n"),
      [],
    );
    assert.deepEqual(
      await problems('core/api/fine.ts', "export type { ChatRequester } from '../net/types';\n"),
      [],
    );
  });
});
