import { describe, test, expect } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CRD_FILE, renderCrdYaml } from '../../operator/api/crd-yaml.js';
import { crdManifest, openApiSchema } from '../../operator/api/schema.js';
import { SPEC_FIELD_PATHS } from '../../operator/api/types.js';

const ROOT = join(import.meta.dirname ?? process.cwd(), '..', '..');
type S = { properties?: Record<string, S>; items?: S; [k: string]: unknown };

function leafPaths(s: S, prefix = ''): string[] {
  if (!s.properties) return [prefix];
  return Object.entries(s.properties).flatMap(([k, v]) => {
    const p = prefix ? `${prefix}.${k}` : k;
    return v.properties && !v['x-kubernetes-preserve-unknown-fields'] ? leafPaths(v, p) : [p];
  });
}

describe('CRD single source of truth', () => {
  test('the committed YAML equals the one generated from operator/api/schema.ts (run `npm run build && node scripts/gen-crd.mjs`)', () => {
    expect(readFileSync(join(ROOT, CRD_FILE), 'utf8')).toBe(renderCrdYaml());
  });

  test('TypeScript spec fields and schema spec fields are the same set', () => {
    const spec = (openApiSchema.properties as Record<string, S>).spec;
    expect(leafPaths(spec).sort()).toEqual([...SPEC_FIELD_PATHS].sort());
  });

  test('names, subresources (scale with labelSelectorPath) and printer columns', () => {
    const crd = parse(readFileSync(join(ROOT, CRD_FILE), 'utf8'));
    expect(crd.metadata.name).toBe('hybridservedeployments.hybridserve.io');
    expect(crd.spec.names).toMatchObject({ kind: 'HybridServeDeployment', plural: 'hybridservedeployments', shortNames: ['hsd'] });
    const v = crd.spec.versions[0];
    expect(v.name).toBe('v1alpha1');
    expect(v.subresources.status).toEqual({});
    expect(v.subresources.scale).toEqual({ specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' });
    expect(v.additionalPrinterColumns.map((c: { name: string }) => c.name)).toEqual(['Ready', 'Replicas', 'ACT fraction', 'Host memory', 'Age']);
    // Every printer column path points at a field the status schema declares.
    const status = (openApiSchema.properties as Record<string, S>).status.properties!;
    for (const c of v.additionalPrinterColumns as { jsonPath: string }[]) {
      const m = /^\.status\.(\w+)/.exec(c.jsonPath);
      if (m) expect(Object.keys(status)).toContain(m[1]);
    }
  });

  test('structural: every property has a type, except fields that preserve unknown fields', () => {
    const bad: string[] = [];
    const walk = (s: S, path: string) => {
      if (!s.type && !s['x-kubernetes-preserve-unknown-fields'] && !s['x-kubernetes-int-or-string']) bad.push(path);
      for (const [k, v] of Object.entries(s.properties ?? {})) walk(v, `${path}.${k}`);
      if (s.items) walk(s.items, `${path}[]`);
    };
    walk(openApiSchema as S, '');
    expect(JSON.stringify(crdManifest())).toContain('openAPIV3Schema');
    expect(bad).toEqual([]);
  });
});
