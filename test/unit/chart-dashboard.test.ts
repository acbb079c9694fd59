// Acceptance 4: the Grafana dashboard loads, covers what operators need, and every PromQL query
// (dashboard and alert rules) names only metrics that the server or the operator registers, found
// by reading their source (server/**, operator/**), so a renamed metric breaks this test.
import { describe, expect, test } from '@jest/globals';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { CHART, ROOT, findOne, renderChart } from './chart-helm.js';

type Target = { expr: string; legendFormat?: string; refId: string };
type Panel = {
  type: string;
  title: string;
  targets?: Target[];
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { uid: string };
};
type Dashboard = { uid: string; title: string; panels: Panel[]; templating: { list: { name: string; query?: unknown }[] } };

const dashboardFiles = readdirSync(path.join(CHART, 'dashboards')).filter((f) => f.endsWith('.json'));
const load = (f: string) => JSON.parse(readFileSync(path.join(CHART, 'dashboards', f), 'utf8')) as Dashboard;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? sourceFiles(p) : /\.ts$/.test(name) && !name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Metric names registered in server/ and operator/: string literals `hybridserve_...`, with their kind. */
function registeredMetrics(): Map<string, 'histogram' | 'other'> {
  const found = new Map<string, 'histogram' | 'other'>();
  for (const file of [...sourceFiles(path.join(ROOT, 'server')), ...sourceFiles(path.join(ROOT, 'operator'))]) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/['"`](hybridserve_[a-z0-9_]+)['"`]/g)) {
      // A histogram is constructed just before its name: `new Histogram({ name: '...'`.
      const before = text.slice(Math.max(0, (m.index ?? 0) - 120), m.index);
      const kind = /Histogram|Summary/.test(before) ? 'histogram' : 'other';
      if (found.get(m[1]) !== 'histogram') found.set(m[1], kind);
    }
  }
  return found;
}

/** Names of hybridserve metrics in a query that the code does not export (empty = all exist). */
function unknownMetrics(expr: string, registered: Map<string, 'histogram' | 'other'>): string[] {
  const names = [...expr.matchAll(/\b(hybridserve_[a-z0-9_]+)/g)].map((m) => m[1]);
  return names.filter((n) => {
    if (registered.has(n)) return false;
    const base = n.replace(/_(bucket|sum|count)$/, '');
    return !(base !== n && registered.get(base) === 'histogram');
  });
}

function balanced(expr: string): boolean {
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  const stack: string[] = [];
  let quoted = false;
  for (const ch of expr) {
    if (ch === '"') quoted = !quoted;
    if (quoted) continue;
    if ('([{'.includes(ch)) stack.push(ch);
    else if (ch in pairs && stack.pop() !== pairs[ch]) return false;
  }
  return stack.length === 0 && !quoted;
}

const registered = registeredMetrics();

describe('metric names in the code', () => {
  test('the server and operator metrics of DESIGN.md §4 are found in the source', () => {
    for (const n of [
      'hybridserve_requests_total',
      'hybridserve_generated_tokens_total',
      'hybridserve_queue_depth',
      'hybridserve_cache_blocks',
      'hybridserve_act_fraction',
      'hybridserve_transfer_bytes_total',
      'hybridserve_step_phase_seconds_total',
    ])
      expect(registered.get(n)).toBe('other');
    expect(registered.get('hybridserve_time_to_first_token_seconds')).toBe('histogram');
    expect(registered.get('hybridserve_time_per_output_token_seconds')).toBe('histogram');
    expect(registered.has('hybridserve_operator_reconciles_total')).toBe(true);
  });

  test('the checker flags a misspelt metric and a _bucket of a non-histogram', () => {
    expect(unknownMetrics('rate(hybridserve_generated_token_total[5m])', registered)).toEqual(['hybridserve_generated_token_total']);
    expect(unknownMetrics('hybridserve_queue_depth_bucket', registered)).toEqual(['hybridserve_queue_depth_bucket']);
    expect(unknownMetrics('hybridserve_time_to_first_token_seconds_bucket', registered)).toEqual([]);
  });
});

describe.each(dashboardFiles)('dashboard %s', (file) => {
  const d = load(file);
  const queries = d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

  test('loads with a uid, a title, panels and queries', () => {
    expect(d.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(d.title).toBeTruthy();
    expect(d.panels.filter((p) => p.type !== 'row').length).toBeGreaterThanOrEqual(10);
    for (const p of d.panels.filter((x) => x.type !== 'row')) expect(p.targets?.length).toBeGreaterThan(0);
    const ids = d.panels.map((p) => (p as unknown as { id: number }).id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test('every query names only metrics the server or operator exports, and is well formed', () => {
    const problems = queries.flatMap((q) => [
      ...unknownMetrics(q.expr, registered).map((n) => `${q.panel}: unknown metric ${n}`),
      ...(balanced(q.expr) ? [] : [`${q.panel}: unbalanced brackets in ${q.expr}`]),
      ...(/hybridserve_/.test(q.expr) ? [] : [`${q.panel}: no hybridserve metric in ${q.expr}`]),
    ]);
    expect(problems).toEqual([]);
  });

  test('covers throughput, TTFT, TPOT, queue, KV and ACT blocks, ACT fraction per node group, PCIe bytes and phase times', () => {
    const all = queries.map((q) => q.expr).join('\n');
    expect(all).toMatch(/rate\(hybridserve_generated_tokens_total/);
    expect(all).toMatch(/histogram_quantile\([^\n]*hybridserve_time_to_first_token_seconds_bucket/);
    expect(all).toMatch(/histogram_quantile\([^\n]*hybridserve_time_per_output_token_seconds_bucket/);
    expect(all).toMatch(/hybridserve_queue_depth/);
    expect(all).toMatch(/by \(kind\) \(hybridserve_cache_blocks\{[^}]*state="used"/);
    expect(all).toMatch(/by \([^)]*node_group[^)]*\) \(hybridserve_act_fraction/);
    expect(all).toMatch(/by \(kind, direction\) \(rate\(hybridserve_transfer_bytes_total/);
    expect(all).toMatch(/by \(phase\) \(rate\(hybridserve_step_phase_seconds_total/);
  });

  test('uses only template variables it defines, and panels do not overlap', () => {
    const defined = new Set(d.templating.list.map((v) => v.name));
    const used = new Set([...JSON.stringify(d.panels).matchAll(/\$\{?([a-z_]+)/gi)].map((m) => m[1]).filter((v) => !v.startsWith('__')));
    for (const v of used) expect(defined).toContain(v);
    const cells = new Set<string>();
    for (const p of d.panels) {
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          const key = `${x},${y}`;
          expect(cells.has(key)).toBe(false);
          cells.add(key);
        }
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
    }
  });
});

describe('alert rules', () => {
  test('every alert expression names only exported metrics (or Prometheus up)', () => {
    const rule = findOne(renderChart({ set: ['metrics.prometheusRule.enabled=true'] }), 'PrometheusRule') as unknown as {
      spec: { groups: { rules: { alert: string; expr: string }[] }[] };
    };
    const rules = rule.spec.groups.flatMap((g) => g.rules);
    expect(rules.length).toBeGreaterThanOrEqual(4);
    const problems = rules.flatMap((r) => [
      ...unknownMetrics(r.expr, registered).map((n) => `${r.alert}: unknown metric ${n}`),
      ...(balanced(r.expr) ? [] : [`${r.alert}: unbalanced`]),
      ...(/hybridserve_|\bup\{/.test(r.expr) ? [] : [`${r.alert}: names no metric`]),
    ]);
    expect(problems).toEqual([]);
  });
});
