import { describe, test, expect } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CRD_FILE, renderCrdYaml } from '../../operator/api/crd-yaml.js';
import { crdManifest, openApiSchema } from '../../operator/api/schema.js';
import { SPEC_FIELD_PATHS } from '../../operator/api/types.js';
import { resolveSpec } from '../../operator/api/defaults.js';

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
    expect(v.subresources.scale).toEqual({
      specReplicasPath: '.spec.replicas',
      statusReplicasPath: '.status.replicas',
      labelSelectorPath: '.status.selector',
    });
    expect(v.additionalPrinterColumns.map((c: { name: string }) => c.name)).toEqual([
      'Model',
      'Weights',
      'Ready',
      'Replicas',
      'ACT fraction',
      'Host memory',
      'URL',
      'Age',
    ]);
    // Every printer column path points at a field the status schema declares.
    const status = (openApiSchema.properties as Record<string, S>).status.properties!;
    for (const c of v.additionalPrinterColumns as { jsonPath: string }[]) {
      const m = /^\.status\.(\w+)/.exec(c.jsonPath);
      if (m) expect(Object.keys(status)).toContain(m[1]);
      if (c.jsonPath === '.spec.model.uri')
        expect(openApiSchema).toHaveProperty(['properties', 'spec', 'properties', 'model', 'properties', 'uri']);
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

describe('defaults come from the schema, once (operator/api/defaults.ts)', () => {
  test('resolveSpec of the smallest object carries every schema default, at its path', () => {
    const r = resolveSpec({ model: { uri: 'synthetic:opt-13b' } }) as unknown as Record<string, unknown>;
    const missing: string[] = [];
    const walk = (s: S, path: string[]) => {
      if ('default' in s && path.length > 0 && !s.properties) {
        const v = path.reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], r);
        if (JSON.stringify(v) !== JSON.stringify(s.default))
          missing.push(`${path.join('.')}=${JSON.stringify(v)} (schema ${JSON.stringify(s.default)})`);
      }
      for (const [k, v] of Object.entries(s.properties ?? {})) if (!(v as S).required || path.length === 0) walk(v as S, [...path, k]);
    };
    walk((openApiSchema.properties as Record<string, S>).spec, []);
    expect(missing).toEqual([]);
    // The figures the code used to repeat by hand: one place now.
    expect(resolveSpec({}).gpusPerPod).toBe(1);
    expect(resolveSpec({}).autoscaling).toEqual({ enabled: false, minReplicas: 1, maxReplicas: 4, metric: 'queueDepth', target: 8 });
    expect(resolveSpec({}).cache.retune.maxStep).toBe(0.1);
  });

  test('explicit values win; objects with required fields are not invented', () => {
    const r = resolveSpec({ gpusPerPod: 0, autoscaling: { maxReplicas: 9 }, cache: { retune: { maxStep: 0.3 } } });
    expect(r.gpusPerPod).toBe(0);
    expect(r.autoscaling.maxReplicas).toBe(9);
    expect(r.autoscaling.minReplicas).toBe(1);
    expect(r.cache.retune.maxStep).toBe(0.3);
    expect(r.server.apiKeySecretRef).toBeUndefined();
  });
});
