// Renders the CRD as the YAML committed in crds/ (the generator script and the drift test share it).
import { stringify } from 'yaml';
import { crdManifest } from './schema.js';

export const CRD_FILE = 'crds/hybridservedeployments.yaml';

export function renderCrdYaml(): string {
  const header = '# GENERATED from operator/api/schema.ts by `node scripts/gen-crd.mjs` (after `npm run build`). Do not edit.\n';
  return header + stringify(crdManifest(), { lineWidth: 0 });
}
