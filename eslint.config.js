import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Test kits and fakes: only tests import them. */
const TEST_KITS = {
  regex: '(^|/)(testing|executor/fake)/|/memory-store\\.ts$',
  message: 'Test kits and fakes (src/testing/, src/executor/fake/, memory-store.ts) are for tests only.',
};

/** `no-restricted-syntax` entries: no setInterval loops anywhere. */
const NO_SET_INTERVAL = {
  selector: "CallExpression[callee.name='setInterval']",
  message: 'No setInterval loops: schedule the next run when the last one ends.',
};

/** Tests: every assertion says what failed. */
const ASSERT_MESSAGES = [
  {
    selector: "CallExpression[callee.object.name='assert'][callee.property.name='ok'][arguments.length<2]",
    message: 'Say what failed: assert.ok(value, message).',
  },
  { selector: "CallExpression[callee.name='assert'][arguments.length<2]", message: 'Say what failed: assert(value, message).' },
];

/** The wire's words live in src/protocol/wire.ts: no other file of src/ (tests aside) spells a header. */
const WIRE_MESSAGE = 'Protocol headers are spelled once, in src/protocol/wire.ts: import HEADER (or its helpers) from there.';
const NO_WIRE_LITERALS = [
  { selector: 'Literal[value=/x-foreman-/i]', message: WIRE_MESSAGE },
  { selector: 'TemplateElement[value.raw=/x-foreman-/i]', message: WIRE_MESSAGE },
];

/** `no-restricted-imports` for each folder's production files: its own rule plus the test-kit rule; tests may import anything. */
function boundaries(rooms) {
  return rooms.map(({ files, regex, message }) => ({
    files,
    ignores: ['**/*.test.ts', ...(files.some((f) => f.startsWith('src/testing/')) ? [] : ['src/testing/**'])],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex, message }, ...(files.some((f) => f.startsWith('src/testing/')) ? [] : [TEST_KITS])] }],
    },
  }));
}

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'src/server/public/**', 'src/**/*.generated.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'bin/*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Only src/cli reads process.env; pass config down.' },
        { object: 'process', property: 'argv', message: 'Only src/cli reads process.argv; pass what it parsed down.' },
      ],
      'no-restricted-syntax': ['error', NO_SET_INTERVAL],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/protocol/**', 'src/**/*.test.ts'],
    rules: { 'no-restricted-syntax': ['error', NO_SET_INTERVAL, ...NO_WIRE_LITERALS] },
  },
  {
    files: ['src/cli/**', 'test/**', 'bench/**', 'examples/**', 'scripts/**', 'packages/**'],
    rules: { 'no-restricted-properties': 'off' },
  },
  // Node's assert prints the source expression of a failed `assert.ok(x)`, read at the position of the code tsx
  // compiled, which is not the line in the file: give each one a message that names what failed.
  {
    files: ['**/*.test.ts', 'test/**/*.ts', 'src/testing/**'],
    rules: { 'no-restricted-syntax': ['error', NO_SET_INTERVAL, ...ASSERT_MESSAGES] },
  },
  {
    files: ['src/testing/**'],
    ignores: ['src/**/*.test.ts'],
    rules: { 'no-restricted-syntax': ['error', NO_SET_INTERVAL, ...ASSERT_MESSAGES, ...NO_WIRE_LITERALS] },
  },
  // Timers go through the injectable clock (src/shared/clock.ts), so tests can move time.
  {
    files: ['src/**/*.ts'],
    ignores: ['src/**/*.test.ts', 'src/shared/clock.ts', 'src/testing/clock-kit.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use the injected Clock (clock.after / clock.sleep).' },
        { name: 'setInterval', message: 'No setInterval loops; use the injected Clock.' },
      ],
    },
  },
  // One folder per concern. Which folder may import which: docs/architecture.md draws the same arrows, and
  // test/architecture.test.ts fails on any import cycle. Tests may import anything, test kits included.
  ...boundaries([
    {
      files: ['src/{config,control,jobs,executor,job-api,callbacks,logs,images,tracing}/*.ts'],
      regex: '^\\.\\./(?!shared/|protocol/)',
      message: 'Only src/agent/ imports sibling folders; take what this module needs as a parameter.',
    },
    {
      files: ['src/executor/*/*.ts'],
      regex: '^\\.\\./\\.\\./(?!shared/|protocol/)',
      message: 'Only src/agent/ imports sibling folders; take what this module needs as a parameter.',
    },
    { files: ['src/shared/*.ts'], regex: '^\\.\\./', message: 'src/shared/ holds leaf helpers: it imports no other folder of the project.' },
    { files: ['src/protocol/*.ts'], regex: '^\\.\\./', message: 'src/protocol/ is the wire alone: it imports no other folder of the project.' },
    { files: ['src/agent/*.ts'], regex: '^\\.\\./cli/', message: 'The agent never imports the command line.' },
    {
      files: ['src/agent/job/*.ts'],
      regex: '^\\.\\./(?!\\.\\./)|^\\.\\./\\.\\./cli/',
      message: "A job's parts (src/agent/job/) are given what they need by the supervisor; they never import it (src/agent/*.ts) or the command line.",
    },
    {
      files: ['src/cli/*.ts'],
      regex: '^\\.\\./(?!agent/process\\.ts$|server/process\\.ts$|conformance/conformance\\.ts$|config/formats\\.ts$|\\.\\./package\\.json$)',
      message:
        'src/cli/ reaches the agent only through src/agent/process.ts, the control server through src/server/process.ts, the checker through src/conformance/conformance.ts (and foreman check through ./check/).',
    },
    {
      files: ['src/cli/check/*.ts'],
      regex: '^\\.\\./\\.\\./(?!(config|control|executor|protocol|shared)/|\\.\\./package\\.json$)|^\\.\\./(?!\\.\\./)',
      message:
        'foreman check reads the config and probes the engine and the control server: it imports src/config, src/control, src/executor, src/protocol and src/shared only.',
    },
    { files: ['src/testing/*.ts'], regex: '^\\.\\./cli/', message: 'Test kits build parts of the agent, not the command line.' },
    {
      files: ['src/server/*.ts'],
      regex: '^\\.\\./(?!shared/|protocol/|config/formats\\.ts$|\\.\\./package\\.json$|\\.\\./packages/control-server-kit/)',
      message:
        'The control server (src/server/) is a program of its own: it imports src/shared/, the wire names of src/protocol/, the duration format of src/config/formats.ts and the control-server kit, never the agent.',
    },
    {
      files: ['src/conformance/*.ts'],
      regex: '^\\.\\./(?!shared/|protocol/|\\.\\./package\\.json$|\\.\\./packages/control-server-kit/)',
      message: 'The conformance checker (src/conformance/) plays an agent by the protocol: it imports src/shared/ and the control-server kit only.',
    },
    {
      files: ['packages/control-server-kit/*.ts'],
      ignores: ['**/*.test.ts'],
      regex: '^\\.',
      message: 'The control-server kit depends on nothing: not on foreman, not on other files.',
    },
  ]),
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['src/**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable' } },
  },
  {
    // Build-time stand-ins bundled in place of a module: they load the real one with require.
    files: ['scripts/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['bin/*.js', 'scripts/*.mjs'],
    languageOptions: { globals: { process: 'readonly', URL: 'readonly' } },
    rules: { 'no-restricted-properties': 'off' },
  },
);
