// Issue 14 (quantised weights), the operator part, on the API test double: spec.engine.weightDtype
// is planned with (the host holds the quantised bytes, so the same host budget leaves more to the
// cache: more blocks and a larger batch), reaches the server pods as --weight-dtype (parsed back by
// the server's own flag parser), is carried in plan.json, and shows in status and the Weights column.
// An unknown format is refused by the CRD schema.
import { describe, test, expect, beforeAll, afterAll } from '@jest/globals';
import { Operator } from '../../operator/operator.js';
import { KubeClient, loadKubeConfig } from '../../operator/k8s/client.js';
import { R } from '../../operator/k8s/resources.js';
import { parseServeArgs } from '../../cli/serve.js';
import { parsePlan } from '../../planning/plan-file.js';
import { TestCluster, cond, waitFor } from '../k8s/cluster.js';
import type { Obj } from '../k8s/apiserver.js';

const NS = 'quant';
let c: TestCluster;
let client: KubeClient;
let op: Operator;

const hsd = (name: string, spec: Obj): Obj => ({
  apiVersion: 'hybridserve.io/v1alpha1',
  kind: 'HybridServeDeployment',
  metadata: { name },
  spec,
});

beforeAll(async () => {
  // 8 GPUs and 512Gi per node: each pod's host budget is an eighth of the node (~61 GiB).
  c = await new TestCluster().start([{ name: 'h100', product: 'NVIDIA-H100-80GB-HBM3', memory: '512Gi', gpus: 8 }], { mode: 'fake' });
  client = new KubeClient(loadKubeConfig({ server: c.url }));
  op = new Operator({ server: c.url, leaseNamespace: NS, progressRequeueMs: 300, log: () => undefined });
  await op.start();
});
afterAll(async () => {
  client.close();
  await op.stop();
  await c.stop();
});

interface Deployed {
  status: Obj;
  group: Obj;
  args: string[];
  memoryRequest: string;
  plan: Obj;
}

/** Creates the HSD and waits for its status, Deployment and plan ConfigMap. */
async function deploy(name: string, spec: Obj): Promise<Deployed> {
  await client.create({ type: R.hsd, namespace: NS }, hsd(name, spec));
  const status = await waitFor(`${name} planned`, () => c.hsd(name, NS)?.status?.nodeGroups?.length > 0 && c.hsd(name, NS)!.status, 10_000);
  const sel = `app.kubernetes.io/instance=${name}`;
  const dep = await waitFor(`${name} Deployment`, () => c.list('apps', 'v1', 'deployments', NS, sel)[0], 10_000);
  const cm = await waitFor(`${name} plan`, () => c.list('', 'v1', 'configmaps', NS, sel)[0], 10_000);
  const container = dep.spec.template.spec.containers[0];
  const parsed = parsePlan(cm.data['plan.json']);
  if (!parsed.ok) throw new Error(parsed.error);
  return {
    status,
    group: status.nodeGroups[0],
    args: container.args,
    memoryRequest: container.resources.requests.memory,
    plan: parsed.plan as Obj,
  };
}

describe('spec.engine.weightDtype', () => {
  test('fp8 plans the quantised bytes: same host request, more cache blocks, larger batch; the pods load fp8', async () => {
    // opt-30b: 60 GB of fp16 weights fill most of a 61 GiB pod budget; fp8 halves the layer weights.
    const fp16 = await deploy('opt30-fp16', { model: { uri: 'synthetic:opt-30b' } });
    const fp8 = await deploy('opt30-fp8', { model: { uri: 'synthetic:opt-30b' }, engine: { weightDtype: 'fp8' } });

    // The host budget is the node share either way; what it holds changes.
    expect(fp8.memoryRequest).toBe(fp16.memoryRequest);
    expect(fp8.group.hostMemoryBytes).toBe(fp16.group.hostMemoryBytes);
    expect(fp8.group.kvBlocks + fp8.group.actBlocks).toBeGreaterThan(2 * (fp16.group.kvBlocks + fp16.group.actBlocks));
    expect(fp8.group.maxBatch).toBeGreaterThan(fp16.group.maxBatch);
    expect(fp8.plan.maxBatch).toBe(fp8.group.maxBatch);
    expect(fp8.plan.residentLayers).toBeGreaterThanOrEqual(fp16.plan.residentLayers);
    expect(fp8.group.predictedTokensPerSecond).toBeGreaterThan(fp16.group.predictedTokensPerSecond);
    expect(fp8.group.reason).toMatch(/fp8 weights \(28\.\d GiB/);
    expect(fp16.group.reason).not.toMatch(/fp8|int8|int4/);

    // The server loads the format the plan counted: --weight-dtype, parsed back by the server's parser.
    const cfg8 = parseServeArgs(fp8.args.slice(1), {});
    const cfg16 = parseServeArgs(fp16.args.slice(1), {});
    if (cfg8 === 'help' || cfg16 === 'help') throw new Error('help');
    expect(cfg8.weightDtype).toBe('fp8');
    expect(cfg16.weightDtype).toBeUndefined(); // the server's default, fp16
    // fp16 is the server's default: an fp16 HSD's pods keep the template they had before the field existed.
    expect(fp16.args).not.toContain('--weight-dtype');
    // plan.json records the format its placement was sized for (fp16: absent, the default).
    expect(fp8.plan.weightDtype).toBe('fp8');
    expect(fp16.plan.weightDtype).toBeUndefined();
    // Status and the printer column (defaulted to fp16 by the schema).
    expect(fp8.status.weightDtype).toBe('fp8');
    expect(fp16.status.weightDtype).toBe('fp16');
  });

  test('a model that does not fit the pod budget in fp16 plans in int4; the Weights column shows it', async () => {
    const fp16 = 'opt66-fp16';
    await client.create({ type: R.hsd, namespace: NS }, hsd(fp16, { model: { uri: 'synthetic:opt-66b' } }));
    const failed = await waitFor('Degraded', () => cond(c.hsd(fp16, NS), 'Degraded')?.status === 'True' && c.hsd(fp16, NS), 10_000);
    expect(cond(failed, 'Degraded')?.message).toMatch(/cannot hold opt-66b: weights 122\.4 GiB/);
    const int4 = await deploy('opt66-int4', { model: { uri: 'synthetic:opt-66b' }, engine: { weightDtype: 'int4' } });
    expect(int4.group.maxBatch).toBeGreaterThan(0);
    expect(int4.group.reason).toMatch(/int4 weights/);
    const cfg = parseServeArgs(int4.args.slice(1), {});
    expect(cfg !== 'help' && cfg.weightDtype).toBe('int4');

    const table = (await (
      await fetch(`${c.url}/apis/hybridserve.io/v1alpha1/namespaces/${NS}/hybridservedeployments/opt66-int4`, {
        headers: { accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' },
      })
    ).json()) as Obj;
    const col = table.columnDefinitions.findIndex((d: Obj) => d.name === 'Weights');
    expect(col).toBeGreaterThan(0);
    expect(table.rows[0].cells[col]).toBe('int4');
  });

  test('CPU-engine pods (gpusPerPod 0) size their pools from the quantised bytes too', async () => {
    const base = { model: { uri: 'synthetic:opt-1.3b' }, gpusPerPod: 0, cache: { hostMemory: '8Gi' } };
    const fp16 = await deploy('cpu-fp16', base);
    const int8 = await deploy('cpu-int8', { ...base, engine: { weightDtype: 'int8' } });
    expect(int8.memoryRequest).toBe(fp16.memoryRequest);
    expect(int8.group.kvBlocks).toBeGreaterThan(fp16.group.kvBlocks);
    expect(int8.group.reason).toMatch(/int8 weights/);
    const cfg = parseServeArgs(int8.args.slice(1), {});
    expect(cfg !== 'help' && cfg.device).toBe('cpu');
    expect(cfg !== 'help' && cfg.weightDtype).toBe('int8');
  });

  test('an unknown format is refused by the schema', async () => {
    await expect(
      client.create({ type: R.hsd, namespace: NS }, hsd('bad', { model: { uri: 'synthetic:opt-13b' }, engine: { weightDtype: 'int3' } })),
    ).rejects.toThrow(/weightDtype|Unsupported value|must be equal to one of/);
  });
});
