// The feedback loop writes nothing to the cluster (it has no client): it records measurements,
// the retuner's proposal and the scaling decision in RuntimeState and enqueues the HSD; reconcile
// then writes the next plan generation. Failures are logged and counted, never swallowed; stats
// bodies are size-capped. Stats come from a loopback stub speaking the stats contract.
import { describe, test, expect, beforeAll, afterAll } from '@jest/globals';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { feedbackTick, MAX_STATS_BYTES, type FeedbackDeps, type PodLike } from '../../operator/controller/feedback.js';
import { RuntimeState } from '../../operator/controller/state.js';
import { OperatorMetrics } from '../../operator/controller/metrics.js';
import { groupNodes, type NodeLike } from '../../operator/desired/node-groups.js';
import { planGroup } from '../../operator/desired/plan.js';
import type { HybridServeDeployment } from '../../operator/api/types.js';

// An L4: its plan streams layers and keeps a host KV/ACT tier, so the ACT fraction has room to move
// (on an H100 the whole batch fits the GPU tier and the retune range collapses to 0).
const node: NodeLike = {
  metadata: { name: 'n1', labels: { 'nvidia.com/gpu.product': 'NVIDIA-L4', 'nvidia.com/gpu.count': '8' } },
  status: { allocatable: { memory: '512Gi', 'nvidia.com/gpu': '8' }, conditions: [{ type: 'Ready', status: 'True' }] },
};
let body: (n: number) => string;
let server: http.Server;
let port = 0;
let hits = 0;

beforeAll(async () => {
  server = http.createServer((_req, res) => {
    hits++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body(hits));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
});

// Transfer-bound steps: the retuner moves the fraction up.
const stats = (n: number) =>
  JSON.stringify({
    actFraction: 0.3,
    planGeneration: 1,
    uptimeSeconds: n,
    queueDepth: 20,
    runningSequences: 4,
    requestsTotal: n,
    generatedTokensTotal: n * 400,
    promptTokensTotal: 0,
    counters: { steps: n * 100, transferSeconds: n * 0.9, computeSeconds: n * 0.2, recomputeSeconds: n * 0.05, idleSeconds: 0 },
  });

function setup(spec: Partial<HybridServeDeployment['spec']> = {}) {
  const hsd: HybridServeDeployment = {
    apiVersion: 'hybridserve.io/v1alpha1',
    kind: 'HybridServeDeployment',
    metadata: { name: 'demo', namespace: 'ml', uid: 'u' },
    spec: { model: { uri: 'synthetic:opt-13b' }, server: { port }, ...spec },
  };
  const [group] = groupNodes([node], hsd.spec);
  const pod: PodLike = {
    metadata: { name: 'p1', uid: 'p1', labels: { 'hybridserve.io/node-group': group.id } },
    spec: { containers: [{ ports: [{ name: 'http', containerPort: port }] }] },
    status: { podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] },
  };
  const state = new RuntimeState();
  const logs: string[] = [];
  const enqueued: string[] = [];
  let now = 0;
  const deps: FeedbackDeps = {
    state,
    metrics: new OperatorMetrics(),
    hsds: () => [hsd],
    nodes: () => [node],
    pods: () => [pod],
    enqueue: (k) => enqueued.push(k),
    log: (m) => logs.push(m),
    intervalMsOverride: 0,
    now: () => (now += 1000),
  };
  return { hsd, group, state, deps, logs, enqueued };
}
const count = async (c: { get(): Promise<{ values: { value: number }[] }> }) => (await c.get()).values[0]?.value ?? 0;

describe('feedback records, reconcile writes', () => {
  test('two scrapes: measured figures and a retune proposal in state, the HSD enqueued', async () => {
    body = stats;
    const { hsd, group, state, deps, enqueued, logs } = setup();
    const plan = planGroup(hsd.spec, group);
    if (!plan.ok) throw new Error(plan.message);
    // What reconcile applied (the only writer records it).
    state.group('ml/demo', group.id).applied = { inputHash: plan.inputHash, actFraction: 0.3, generation: 1 };
    await feedbackTick(deps); // baseline
    expect(state.group('ml/demo', group.id).measured).toBeUndefined();
    await feedbackTick(deps);
    const g = state.group('ml/demo', group.id);
    expect(g.measured).toMatchObject({ steps: 100, pods: 1, queueDepth: 20 });
    expect(g.proposal).toMatchObject({ inputHash: plan.inputHash });
    expect(g.proposal!.actFraction).toBeGreaterThan(0.3);
    expect(enqueued).toEqual(['ml/demo']);
    expect(logs).toEqual([]);
  });

  test('no proposal for a plan reconcile has not applied (stale input)', async () => {
    body = stats;
    const { group, state, deps } = setup();
    state.group('ml/demo', group.id).applied = { inputHash: 'older-input', actFraction: 0.3, generation: 1 };
    await feedbackTick(deps);
    await feedbackTick(deps);
    expect(state.group('ml/demo', group.id).measured).toBeDefined();
    expect(state.group('ml/demo', group.id).proposal).toBeUndefined();
  });

  test("autoscaling: the decision goes to state with a note for reconcile's Event", async () => {
    body = stats;
    const { state, deps } = setup({ autoscaling: { enabled: true, maxReplicas: 5, target: 4 } });
    await feedbackTick(deps);
    await feedbackTick(deps);
    expect(state.get('ml/demo')).toMatchObject({ desiredReplicas: 5, autoscaleMetric: { metric: 'queueDepth', value: 20 } });
    expect(state.get('ml/demo').scaleNote).toMatch(/replicas 1 -> 5/);
  });
});

describe('failures are logged and counted', () => {
  test('an oversized stats body is refused (size cap) and counted as a scrape error', async () => {
    body = () => JSON.stringify({ pad: 'x'.repeat(MAX_STATS_BYTES + 10) });
    const { deps, logs } = setup();
    await feedbackTick(deps);
    expect(await count(deps.metrics.scrapeErrors)).toBe(1);
    expect(logs.join('\n')).toMatch(/Scrape of pod ml\/p1 stats failed: .*exceeds the 65536-byte cap/);
    // Still failing: counted again, logged once (no log line per pod per interval).
    await feedbackTick(deps);
    expect(await count(deps.metrics.scrapeErrors)).toBe(2);
    expect(logs).toHaveLength(1);
  });

  test('a failure of the pass itself is logged and counted, not swallowed', async () => {
    body = stats;
    const { deps, logs } = setup();
    deps.nodes = () => {
      throw new Error('cache gone');
    };
    await feedbackTick(deps);
    expect(await count(deps.metrics.feedbackErrors)).toBe(1);
    expect(logs).toEqual(['Feedback for HybridServeDeployment ml/demo failed: cache gone']);
  });
});
