// The examples/ HybridServeDeployments (and the objects beside them) are valid against the chart's
// CRD: its openAPIV3Schema (ajv) and, after the schema defaults are applied as the API server would,
// its CEL rules on create (@marcbachmann/cel-js; rules on oldSelf only apply to updates).
import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { evaluate } from '@marcbachmann/cel-js';
import { chartCrd, exampleHsdFiles, parseYamlDocs, validateManifest } from './chart-helm.js';
import type { Manifest } from './chart-helm.js';

type Schema = {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  default?: unknown;
  'x-kubernetes-validations'?: { rule: string; message: string }[];
};
const rootSchema = () =>
  (chartCrd() as unknown as { spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } }).spec.versions[0].schema.openAPIV3Schema;

/** Structural-schema defaulting: fills absent properties that have a default, depth first. */
function applyDefaults(value: unknown, schema: Schema): unknown {
  if (Array.isArray(value) && schema.items) return value.map((v) => applyDefaults(v, schema.items as Schema));
  if (value === null || typeof value !== 'object' || !schema.properties) return value;
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const [k, s] of Object.entries(schema.properties)) {
    // JSON round trip, not structuredClone: under Jest's VM modules structuredClone returns an object of
    // another realm, which the CEL engine does not recognise as a map.
    if (out[k] === undefined && s.default !== undefined) out[k] = JSON.parse(JSON.stringify(s.default));
    if (out[k] !== undefined) out[k] = applyDefaults(out[k], s);
  }
  return out;
}

/** Messages of the CEL rules (without oldSelf) that the object breaks. */
function celViolations(value: unknown, schema: Schema, at = ''): string[] {
  const errs: string[] = [];
  for (const v of schema['x-kubernetes-validations'] ?? []) {
    if (v.rule.includes('oldSelf')) continue;
    let ok: unknown;
    try {
      ok = evaluate(v.rule, { self: value });
    } catch (e) {
      ok = `error: ${(e as Error).message}`;
    }
    if (ok !== true) errs.push(`${at || '/'}: ${v.message}`);
  }
  if (value && typeof value === 'object' && !Array.isArray(value) && schema.properties) {
    for (const [k, s] of Object.entries(schema.properties)) {
      const child = (value as Record<string, unknown>)[k];
      if (child !== undefined) errs.push(...celViolations(child, s, `${at}/${k}`));
    }
  }
  return errs;
}

async function problems(doc: Manifest): Promise<string[]> {
  const errs = await validateManifest(doc);
  if (doc.kind === 'HybridServeDeployment') errs.push(...celViolations(applyDefaults(doc, rootSchema()), rootSchema()));
  return errs;
}

const files = exampleHsdFiles();
const hsd = (spec: object): Manifest =>
  ({ apiVersion: 'hybridserve.io/v1alpha1', kind: 'HybridServeDeployment', metadata: { name: 'x' }, spec }) as Manifest;

describe('examples', () => {
  test('cover a synthetic model, a PVC checkpoint, fixed and auto ratio, autoscaling and a model over two nodes', () => {
    const specs = files
      .flatMap((f) => parseYamlDocs(readFileSync(f, 'utf8')))
      .filter((d) => d.kind === 'HybridServeDeployment')
      .map((d) => d.spec as { model: { uri: string }; cache?: { actFraction?: unknown }; autoscaling?: { enabled?: boolean } });
    expect(specs.some((s) => s.model.uri.startsWith('synthetic:'))).toBe(true);
    expect(specs.some((s) => s.model.uri.startsWith('pvc://'))).toBe(true);
    expect(specs.some((s) => typeof s.cache?.actFraction === 'number')).toBe(true);
    expect(specs.some((s) => s.cache?.actFraction === 'auto')).toBe(true);
    expect(specs.some((s) => s.autoscaling?.enabled === true)).toBe(true);
    expect(specs.some((s) => (s as { parallelism?: { nodes?: number } }).parallelism?.nodes === 2)).toBe(true);
  });

  test.each(files.map((f) => [path.basename(f), f]))('%s is valid against the CRD schema and its CEL rules', async (_name, file) => {
    const docs = parseYamlDocs(readFileSync(file, 'utf8'));
    expect(docs.length).toBeGreaterThan(0);
    const found: string[] = [];
    for (const d of docs) for (const e of await problems(d)) found.push(`${d.kind} ${d.metadata.name}: ${e}`);
    expect(found).toEqual([]);
  });

  test('the smallest object of DESIGN.md §4 is valid', async () => {
    expect(await problems(hsd({ model: { uri: 'synthetic:opt-13b' }, replicas: 2, cache: { actFraction: 'auto' } }))).toEqual([]);
  });

  test.each([
    [
      'a fraction of 1.5',
      { model: { uri: 'synthetic:opt-tiny' }, cache: { actFraction: 1.5 } },
      /actFraction must be "auto" or a number in \[0, 1\]/,
    ],
    [
      'a fraction word other than auto',
      { model: { uri: 'synthetic:opt-tiny' }, cache: { actFraction: 'max' } },
      /actFraction must be "auto"/,
    ],
    [
      'min above max retune bounds',
      { model: { uri: 'synthetic:opt-tiny' }, cache: { retune: { minActFraction: 0.9, maxActFraction: 0.2 } } },
      /minActFraction must be <= maxActFraction/,
    ],
    [
      'autoscaling min above max',
      { model: { uri: 'synthetic:opt-tiny' }, autoscaling: { minReplicas: 5, maxReplicas: 2 } },
      /minReplicas must be <= maxReplicas/,
    ],
    ['a missing model', { replicas: 1 }, /model/],
    ['negative replicas', { model: { uri: 'synthetic:opt-tiny' }, replicas: -1 }, /replicas/],
    ['zero pods per replica', { model: { uri: 'synthetic:opt-tiny' }, parallelism: { nodes: 0 } }, /nodes/],
  ])('the checks reject %s', async (_what, spec, message) => {
    expect((await problems(hsd(spec))).join('\n')).toMatch(message);
  });
});
