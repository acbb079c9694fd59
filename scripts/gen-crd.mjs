#!/usr/bin/env node
// Writes crds/hybridservedeployments.yaml from the TypeScript schema (operator/api/schema.ts).
// Run `npm run build` first; test/unit/operator-crd.test.ts fails when the committed file is stale.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { renderCrdYaml, CRD_FILE } = await import(join(root, 'dist/operator/api/crd-yaml.js'));
writeFileSync(join(root, CRD_FILE), renderCrdYaml());
console.log(`wrote ${CRD_FILE}`);
