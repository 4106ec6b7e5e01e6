import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The import direction of docs/ARCHITECTURE.md, enforced: each layer lists what it must not import.
// ESLint applies the last matching config's rule whole, so each layer repeats the rules of core/.
// A group lists path patterns; a `modules` group names bare modules exactly ('net' the module, not
// './net/…' of this project).
const restrict = (...groups) => ({
  'no-restricted-imports': [
    'error',
    {
      paths: groups
        .filter((g) => g.modules)
        .flatMap((g) => g.modules.map((name) => ({ name, message: g.message }))),
      patterns: groups.filter((g) => g.group),
    },
  ],
});
const rule = (group, message) => ({ group: [...new Set(group)], message });
const modules = (names, message) => ({ modules: names, message });
const engine = [
  rule(
    ['**/nodes/**', 'node-red', '@node-red/*'],
    'core/ is the engine: it never imports Node-RED or nodes/.',
  ),
  rule(['**/proto/compiled*'], 'Protobuf types come from proto/index.ts only.'),
];
const sockets = modules(
  ['ws', 'node:http2', 'node:https', 'node:tls', 'node:net', 'http2', 'https', 'tls', 'net'],
  'Only core/net/ opens connections.',
);
const sql = modules(['better-sqlite3'], 'Only core/store/ runs SQL.');
// The layers above core/api, core/net, core/store and core/crypto, as import patterns from there.
const SERVICE_DIRS = [
  'messaging',
  'registration',
  'directory',
  'provisioning',
  'account',
  'groups',
  'store',
];
const services = (message, { withApi = true } = {}) =>
  rule(
    [
      ...SERVICE_DIRS.flatMap((d) => [`../${d}`, `../${d}/**`]),
      '../client',
      ...(withApi ? ['../api', '../api/**'] : []),
    ],
    message,
  );

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'proto/compiled.*', 'test-output/**', '.sandbox/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-require-imports': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  { files: ['core/**/*.ts'], rules: restrict(...engine, sockets, sql) },
  {
    files: ['core/net/**/*.ts'],
    rules: restrict(
      ...engine,
      sql,
      services('core/net/ is the transport: it imports no service, no REST call and no store.'),
    ),
  },
  {
    files: ['core/store/**/*.ts'],
    rules: restrict(
      ...engine,
      sockets,
      services('core/store/ is storage: it imports no service and no REST call.'),
    ),
  },
  {
    files: ['core/api/**/*.ts'],
    rules: restrict(
      ...engine,
      sockets,
      sql,
      services(
        'core/api/ is the REST layer under the services: it imports none of them (wire errors live in api/errors.ts).',
        { withApi: false },
      ),
    ),
  },
  {
    files: ['core/crypto/**/*.ts'],
    rules: restrict(
      ...engine,
      sockets,
      sql,
      services('core/crypto/ is pure: it imports no service, REST call or store.'),
    ),
  },
  {
    files: ['nodes/**/*.ts'],
    rules: restrict(
      rule(
        ['**/proto', '**/proto/**'],
        'nodes/ holds no protocol logic: it talks to the engine (core/).',
      ),
      sockets,
      sql,
    ),
  },
  {
    // Node-RED node constructors are plain functions whose `this` is the node: `const node = this`
    // is the platform's idiom for using it inside callbacks.
    files: ['nodes/**/*.ts'],
    rules: { '@typescript-eslint/no-this-alias': 'off' },
  },
  {
    files: ['scripts/**/*.js', 'nodes/**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        __filename: 'readonly',
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        console: 'readonly',
        __dirname: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
      },
    },
  },
);
