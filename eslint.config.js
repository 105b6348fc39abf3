import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'examples/control-server/public/**', 'src/**/*.generated.ts'] },
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
      'no-restricted-syntax': ['error', { selector: "CallExpression[callee.name='setInterval']", message: 'No setInterval loops: schedule the next run when the last one ends.' }],
    },
  },
  {
    files: ['src/cli/**', 'test/**', 'bench/**', 'examples/**', 'scripts/**'],
    rules: { 'no-restricted-properties': 'off' },
  },
  // Timers go through the injectable clock (src/shared/clock.ts), so tests can move time.
  {
    files: ['src/**/*.ts'],
    ignores: ['src/**/*.test.ts', 'src/shared/clock.ts', 'src/shared/manual-clock.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Use the injected Clock (clock.after / clock.sleep).' },
        { name: 'setInterval', message: 'No setInterval loops; use the injected Clock.' },
      ],
    },
  },
  // One folder per concern: only src/agent/ imports its siblings; the others import src/shared/ at most.
  {
    files: ['src/{config,control,jobs,executor,job-api,callbacks,logs}/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ regex: '^\\.\\./(?!shared/)', message: 'Only src/agent/ imports sibling folders; take what this module needs as a parameter.' }] }] },
  },
  {
    files: ['src/executor/*/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ regex: '^\\.\\./\\.\\./(?!shared/)', message: 'Only src/agent/ imports sibling folders; take what this module needs as a parameter.' }] }] },
  },
  {
    files: ['src/shared/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ regex: '^\\.\\./', message: 'src/shared/ holds leaf helpers: it imports no other folder of the project.' }] }] },
  },
  {
    files: ['src/cli/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ regex: '^\\.\\./(?!agent/|\\.\\./package\\.json$)', message: 'src/cli/ reaches the agent only through src/agent/.' }] }] },
  },
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
