// Lint rules for the whole repository: typescript-eslint's recommended set, with the few settings this code base
// relies on on purpose (see each comment).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'cdktf.out/**', '.cache/**', 'coverage/**', '**/*.snap'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node, ...globals.jest } },
    rules: {
      // `_name` marks a binding that is destructured away on purpose (e.g. to drop a key from an object).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      // The provisioner entry loads the full agent lazily with require(), only when the daemon cannot serve it.
      '@typescript-eslint/no-require-imports': ['error', { allow: ['^\\./cli$'] }],
    },
  },
  {
    // The offline stand-in for hashicorp/null and other plain Node scripts are CommonJS.
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
