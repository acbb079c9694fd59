// Acceptance 1 (CRD part): the chart installs exactly the CRD in crds/ (scripts/sync-chart-crds.mjs
// copies it; this test fails when someone regenerates crds/ and forgets to sync).
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { CHART, ROOT, chartCrd, renderChart } from './chart-helm.js';

const yamls = (dir: string) =>
  readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();

describe('chart CRDs', () => {
  test('charts/hybridserve/crds/ holds byte-identical copies of every CRD in crds/', () => {
    const source = yamls(path.join(ROOT, 'crds'));
    expect(source.length).toBeGreaterThan(0);
    expect(yamls(path.join(CHART, 'crds'))).toEqual(source);
    for (const f of source) {
      expect(readFileSync(path.join(CHART, 'crds', f), 'utf8')).toBe(readFileSync(path.join(ROOT, 'crds', f), 'utf8'));
    }
  });

  test('the sync script agrees (--check exits 0, changing nothing)', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'sync-chart-crds.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('helm installs it: --include-crds renders the HybridServeDeployment CRD with status and scale subresources', () => {
    const crds = renderChart({ includeCrds: true }).filter((d) => d.kind === 'CustomResourceDefinition');
    expect(crds.map((d) => d.metadata.name)).toEqual(['hybridservedeployments.hybridserve.io']);
    const spec = (
      chartCrd() as unknown as {
        spec: { group: string; names: { shortNames: string[] }; versions: { name: string; subresources: Record<string, unknown> }[] };
      }
    ).spec;
    expect(spec.group).toBe('hybridserve.io');
    expect(spec.names.shortNames).toContain('hsd');
    const v = spec.versions.find((x) => x.name === 'v1alpha1');
    expect(v?.subresources.status).toEqual({});
    expect(v?.subresources.scale).toMatchObject({
      specReplicasPath: '.spec.replicas',
      statusReplicasPath: '.status.replicas',
      labelSelectorPath: '.status.selector',
    });
  });
});
