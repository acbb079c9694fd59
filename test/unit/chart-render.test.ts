// Acceptance 1 and 5 (chart side): helm lint --strict and helm template with the real helm binary for
// the default values and every examples/values-*.yaml; every rendered manifest validates against the
// Kubernetes schemas (kubernetes-models) or the CRD; the operator pod is locked down.
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CHART, exampleValuesFiles, findOne, helm, renderChart, renderNotes, validateManifest } from './chart-helm.js';
import type { Manifest } from './chart-helm.js';
import { selectorLabels } from '../../operator/desired/objects.js';

const cases: [string, string[]][] = [
  ['default values', []],
  ...exampleValuesFiles().map((f): [string, string[]] => [path.basename(f), [f]]),
];

type Container = {
  name: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  securityContext?: Record<string, unknown>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  ports?: { name: string; containerPort: number }[];
};
type PodSpec = { securityContext?: Record<string, unknown>; containers: Container[]; serviceAccountName?: string };
const podSpec = (d: Manifest) => (d.spec as { template: { spec: PodSpec } }).template.spec;

describe('chart renders and validates', () => {
  test('there are example values files to test', () => {
    expect(exampleValuesFiles().length).toBeGreaterThanOrEqual(3);
  });

  test.each(cases)('helm lint --strict passes with %s', (_name, values) => {
    const r = helm(['lint', '--strict', CHART, ...values.flatMap((v) => ['--values', v])]);
    expect(r.stderr + r.stdout).toContain('0 chart(s) failed');
    expect(r.status).toBe(0);
  });

  test.each(cases)('every manifest from helm template with %s is valid', async (_name, values) => {
    const docs = renderChart({ values, includeCrds: true });
    expect(docs.filter((d) => d.kind === 'Deployment')).toHaveLength(1);
    expect(docs.filter((d) => d.kind === 'CustomResourceDefinition')).toHaveLength(1);
    const failures: string[] = [];
    for (const d of docs) {
      const errs = await validateManifest(d);
      if (errs.length) failures.push(`${d.kind} ${d.metadata?.name}: ${errs.join('; ')}`);
    }
    expect(failures).toEqual([]);
    // Namespaced objects land in the release namespace (or the dashboards' own, or a watched
    // namespace's Role/RoleBinding), never elsewhere.
    const watched = values.flatMap(
      (v) => (parseYaml(readFileSync(v, 'utf8')) as { watchNamespaces?: string[] } | null)?.watchNamespaces ?? [],
    );
    for (const d of docs) {
      if (['ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition'].includes(d.kind)) expect(d.metadata.namespace).toBeUndefined();
      else if (['Role', 'RoleBinding'].includes(d.kind) && d.metadata.namespace !== 'hybridserve-system')
        expect(watched).toContain(d.metadata.namespace);
      else if (d.kind !== 'ConfigMap') expect(d.metadata.namespace).toBe('hybridserve-system');
    }
  });

  test('helm package builds an archive that carries the CRD, the dashboard and the values schema', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hybridserve-package-'));
    try {
      const r = helm(['package', CHART, '--destination', dir]);
      expect(r.status).toBe(0);
      const archive = path.join(dir, 'hybridserve-0.1.0.tgz');
      const list = spawnSync('tar', ['-tzf', archive], { encoding: 'utf8' }).stdout.split('\n');
      expect(list).toEqual(
        expect.arrayContaining([
          'hybridserve/crds/hybridservedeployments.yaml',
          'hybridserve/dashboards/hybridserve.json',
          'hybridserve/values.schema.json',
          'hybridserve/templates/NOTES.txt',
        ]),
      );
      // The packaged chart renders like the folder.
      expect(helm(['template', 'hs', archive]).status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the validator rejects a broken manifest (it is not a rubber stamp)', async () => {
    const docs = renderChart();
    const dep = structuredClone(findOne(docs, 'Deployment')) as Manifest & { spec: { replicas: unknown } };
    dep.spec.replicas = 'two';
    expect((await validateManifest(dep)).join()).toMatch(/replicas must be integer/);
    expect(await validateManifest({ apiVersion: 'example.com/v1', kind: 'Gadget', metadata: { name: 'x' } })).toEqual([
      'unknown kind example.com/v1 Gadget',
    ]);
    const hsd = {
      apiVersion: 'hybridserve.io/v1alpha1',
      kind: 'HybridServeDeployment',
      metadata: { name: 'x' },
      spec: { model: { uri: 'synthetic:opt-tiny' }, replicas: -1 },
    };
    expect((await validateManifest(hsd)).join()).toMatch(/replicas/);
  });
});

describe('operator pod', () => {
  const docs = renderChart();
  const dep = findOne(docs, 'Deployment');
  const spec = podSpec(dep);
  const [c] = spec.containers;

  test('runs as non-root with a read-only root filesystem, no privilege escalation and no capabilities', () => {
    expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(spec.securityContext?.runAsUser).toBeGreaterThan(0);
    expect(c.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(c.securityContext).not.toHaveProperty('privileged', true);
    expect((c.securityContext?.capabilities as { add?: string[] }).add).toBeUndefined();
  });

  test('runs `hybridserve operator` with resources, probes on the metrics port and the downward-API namespace', () => {
    expect(c.args?.slice(0, 3)).toEqual(['operator', '--metrics-port', '8080']);
    expect(c.resources?.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(c.resources?.limits?.memory).toBeDefined();
    expect(c.ports).toEqual([{ name: 'metrics', containerPort: 8080, protocol: 'TCP' }]);
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c.readinessProbe?.httpGet?.port).toBe('metrics');
    const ns = c.env?.find((e) => e.name === 'POD_NAMESPACE');
    expect(ns?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.namespace');
  });

  test('uses the chart ServiceAccount, and a custom metrics port follows through', () => {
    expect(spec.serviceAccountName).toBe(findOne(docs, 'ServiceAccount').metadata.name);
    const custom = renderChart({ set: ['operator.metricsPort=9100'] });
    const c2 = podSpec(findOne(custom, 'Deployment')).containers[0];
    expect(c2.args).toContain('9100');
    expect(c2.ports?.[0].containerPort).toBe(9100);
    const svc = findOne(custom, 'Service') as Manifest & { spec: { ports: { port: number; targetPort: string }[] } };
    expect(svc.spec.ports[0]).toMatchObject({ port: 9100, targetPort: 'metrics' });
  });

  test('no HybridServeDeployment Service can select the operator pod, even one named like the release', () => {
    const podLabels = (dep.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
    // operator/desired/objects.ts: a Service for HSD "hs" (the release name here) selects these labels.
    const hsdSelector = selectorLabels({
      apiVersion: 'hybridserve.io/v1alpha1',
      kind: 'HybridServeDeployment',
      metadata: { name: 'hs', namespace: 'hybridserve-system' },
      spec: { model: { uri: 'synthetic:opt-tiny' } },
    });
    expect(Object.entries(hsdSelector).every(([k, v]) => podLabels[k] === v)).toBe(false);
    const svc = findOne(docs, 'Service') as Manifest & { spec: { selector: Record<string, string> } };
    expect(Object.entries(svc.spec.selector).every(([k, v]) => podLabels[k] === v)).toBe(true);
  });

  test('image defaults to the appVersion tag and a digest wins over it', () => {
    expect(c).toMatchObject({ image: 'ghcr.io/hybridserve/hybridserve-operator:0.1.0' });
    const digest = `sha256:${'a'.repeat(64)}`;
    const pinned = podSpec(findOne(renderChart({ set: [`operator.image.digest=${digest}`] }), 'Deployment')).containers[0];
    expect(pinned).toMatchObject({ image: `ghcr.io/hybridserve/hybridserve-operator@${digest}` });
  });
});

describe('optional objects', () => {
  test('monitors, alerts and the HPA are off by default and rendered when enabled', () => {
    const kinds = (docs: Manifest[]) => docs.map((d) => d.kind).sort();
    expect(kinds(renderChart())).not.toEqual(expect.arrayContaining(['ServiceMonitor']));
    const all = renderChart({
      set: [
        'metrics.serviceMonitor.enabled=true',
        'metrics.podMonitor.enabled=true',
        'metrics.prometheusRule.enabled=true',
        'autoscaling.enabled=true',
        'autoscaling.target=demo',
      ],
    });
    expect(kinds(all)).toEqual(expect.arrayContaining(['ServiceMonitor', 'PodMonitor', 'PrometheusRule', 'HorizontalPodAutoscaler']));
  });

  test('the HPA scales a HybridServeDeployment through its scale subresource on a Pods metric', () => {
    const hpa = findOne(
      renderChart({ set: ['autoscaling.enabled=true', 'autoscaling.target=chat', 'autoscaling.maxReplicas=7'] }),
      'HorizontalPodAutoscaler',
    ) as Manifest & { spec: Record<string, unknown> };
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'hybridserve.io/v1alpha1', kind: 'HybridServeDeployment', name: 'chat' });
    expect(hpa.spec.maxReplicas).toBe(7);
    expect(hpa.spec.metrics).toEqual([
      { type: 'Pods', pods: { metric: { name: 'hybridserve_queue_depth' }, target: { type: 'AverageValue', averageValue: '8' } } },
    ]);
  });

  test('the PodMonitor selects the pods the operator manages in every namespace', () => {
    const pm = findOne(renderChart({ set: ['metrics.podMonitor.enabled=true'] }), 'PodMonitor') as Manifest & {
      spec: Record<string, unknown>;
    };
    expect(pm.spec.selector).toEqual({ matchLabels: { 'app.kubernetes.io/managed-by': 'hybridserve-operator' } });
    expect(pm.spec.namespaceSelector).toEqual({ any: true });
  });

  test('the dashboard ConfigMap carries the dashboard JSON and the sidecar label', () => {
    const cm = findOne(renderChart(), 'ConfigMap') as Manifest & { data: Record<string, string> };
    expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    expect(JSON.parse(cm.data['hybridserve.json']).uid).toBe('hybridserve-overview');
    expect(renderChart({ set: ['dashboards.enabled=false'] }).some((d) => d.kind === 'ConfigMap')).toBe(false);
  });

  test('an existing ServiceAccount without chart RBAC renders no SA or RBAC objects', () => {
    const docs = renderChart({ set: ['serviceAccount.create=false', 'serviceAccount.name=mine', 'rbac.create=false'] });
    expect(docs.filter((d) => /ServiceAccount|Role/.test(d.kind))).toEqual([]);
    expect(podSpec(findOne(docs, 'Deployment')).serviceAccountName).toBe('mine');
  });

  test('NOTES.txt renders', () => {
    const notes = renderNotes(['autoscaling.enabled=true', 'autoscaling.target=chat'], 'ns1');
    expect(notes).toContain('kubectl -n ns1 rollout status deployment/hs-hybridserve-operator');
    expect(notes).toContain('An HPA scales HybridServeDeployment chat');
    expect(renderNotes()).not.toContain('An HPA');
  });
});
