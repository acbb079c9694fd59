import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const noTestImports = { group: ['**/test/**', '**/bench/**'], message: 'product code must not import tests or benches' };

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'build-*/**', 'node_modules/**', '.tools/**', '.gpu/**', 'charts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Type-aware rules: a promise that is dropped, passed where a void callback is expected, or an
    // `await` on something that is not a promise is almost always a bug (lost errors, races).
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  {
    // The product (what dist/ ships) never imports the tests' doubles or the benches; only bench/ may use
    // the API test double, and package.json's "files" keeps dist/bench and dist/test out of the package.
    // (The block below repeats the pattern for the rest of the product: a later block replaces the rule.)
    files: ['operator/k8s/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [noTestImports] }],
    },
  },
  {
    // One module owns each boundary: only operator/k8s/ may import the Kubernetes client at runtime,
    // and only native/ts/ may load the addon.
    files: ['**/*.ts'],
    ignores: ['operator/k8s/**', 'test/**', 'bench/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@kubernetes/client-node',
              message: 'import it only in operator/k8s/ (use import type elsewhere)',
              allowTypeImports: true,
            },
          ],
          patterns: [noTestImports],
        },
      ],
    },
  },
);
