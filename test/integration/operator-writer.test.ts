// Issue 17: reconcile is the ONLY writer of the plan ConfigMap and of status. A retune proposal
// left in RuntimeState by the feedback loop becomes the next plan generation when reconcile runs
// (with its Event and metric); status figures come from controller state, never from the HSD's
// previous status. Runs reconcile() directly against the API test double.
import { describe, test, expect, beforeAll, afterAll } from '@jest/globals';
import { reconcile, type ReconcileDeps, type DeploymentLike } from '../../operator/controller/reconcile.js';
import { RuntimeState } from '../../operator/controller/state.js';
import { OperatorMetrics } from '../../operator/controller/metrics.js';
import { KubeClient, loadKubeConfig } from '../../operator/k8s/client.js';
import { R } from '../../operator/k8s/resources.js';
import type { NodeLike } from '../../operator/desired/node-groups.js';
import type { HybridServeDeployment } from '../../operator/api/types.js';
import { parsePlan } from '../../planning/plan-file.js';
import { TestCluster } from '../k8s/cluster.js';

let c: TestCluster;
let client: KubeClient;
beforeAll(async () => {
  c = await new TestCluster().start([{ name: 'n1', product: 'NVIDIA-H100-80GB-HBM3', memory: '512Gi', gpus: 8 }], { mode: 'fake' });
  client = new KubeClient(loadKubeConfig({ server: c.url }));
});
afterAll(async () => {
  client.close();
  await c.stop();
});

function deps(state: RuntimeState, metrics: OperatorMetrics, notes: string[]): ReconcileDeps {
  return {
    client,
    state,
    metrics,
    now: () => new Date('2026-01-01T00:00:00Z'),
    nodes: () => c.list('', 'v1', 'nodes') as unknown as NodeLike[],
    deployments: (ns, name) => c.list('apps', 'v1', 'deployments', ns, `app.kubernetes.io/instance=${name}`) as unknown as DeploymentLike[],
    events: {
      record: async (_h, _t, reason, _a, note) => {
        notes.push(`${reason}: ${note}`);
      },
    },
  };
}

describe('reconcile is the only writer', () => {
  test('a proposal in state becomes plan generation 2; status measured comes from state only', async () => {
    c.createHsd({ metadata: { name: 'w' }, spec: { model: { uri: 'synthetic:opt-13b' } } });
    const state = new RuntimeState();
    const metrics = new OperatorMetrics();
    const notes: string[] = [];
    await reconcile('default/w', deps(state, metrics, notes));
    const cmOf = () => c.list('', 'v1', 'configmaps', 'default', 'app.kubernetes.io/instance=w')[0];
    const first = parsePlan(cmOf().data['plan.json']);
    if (!first.ok) throw new Error(first.error);
    expect(first.plan.generation).toBe(1);
    const groupId = [...state.get('default/w').groups.keys()][0];
    const g = state.group('default/w', groupId);
    expect(g.applied).toMatchObject({ actFraction: first.plan.actFraction, generation: 1 });

    // A stale status figure must not be republished: only state counts.
    const hsd = c.hsd('w') as HybridServeDeployment;
    await client.mergePatch(
      { type: R.hsd, namespace: 'default', name: 'w', subresource: 'status' },
      { status: { nodeGroups: [{ ...hsd.status!.nodeGroups![0], measured: { tokensPerSecond: 999 } }] } },
    );
    const next = Math.round((first.plan.actFraction >= 0.5 ? first.plan.actFraction - 0.1 : first.plan.actFraction + 0.1) * 100) / 100;
    g.measured = {
      tokensPerSecond: 42,
      queueDepth: 1,
      transferSeconds: 1,
      computeSeconds: 1,
      recomputeSeconds: 0,
      idleSeconds: 0,
      steps: 10,
      pods: 1,
      at: 't',
    };
    g.proposal = { inputHash: g.applied!.inputHash, actFraction: next, reason: 'transfer-bound' };
    await reconcile('default/w', deps(state, metrics, notes));
    const second = parsePlan(cmOf().data['plan.json']);
    if (!second.ok) throw new Error(second.error);
    expect(second.plan).toMatchObject({ actFraction: next, generation: 2 });
    expect(second.plan.reason).toMatch(/^retuned: transfer-bound/);
    expect(g.proposal).toBeUndefined();
    expect(notes.some((n) => n.startsWith('ActFractionRetuned:'))).toBe(true);
    expect((await metrics.retunes.get()).values[0].value).toBe(1);
    const status = (c.hsd('w') as HybridServeDeployment).status!;
    expect(status.nodeGroups![0]).toMatchObject({ actFraction: next, planGeneration: 2, measured: { tokensPerSecond: 42 } });

    // After an operator restart (empty state) nothing is invented from old status; the plan in the ConfigMap stays.
    await reconcile('default/w', deps(new RuntimeState(), metrics, notes));
    const after = (c.hsd('w') as HybridServeDeployment).status!;
    expect(after.nodeGroups![0].measured).toBeUndefined();
    expect(after.nodeGroups![0]).toMatchObject({ actFraction: next, planGeneration: 2 });

    // Nothing changed: the Deployment (desired-hash annotation and replicas as wanted) and the
    // ConfigMap (same planning input) are not written again.
    const patches = (what: string) => c.api.requestCounts.get(`PATCH ${what}`) ?? 0;
    const before = [patches('deployments'), patches('configmaps')];
    await reconcile('default/w', deps(state, metrics, notes));
    expect([patches('deployments'), patches('configmaps')]).toEqual(before);
    // A change of the desired pod template is applied.
    await client.mergePatch({ type: R.hsd, namespace: 'default', name: 'w' }, { spec: { pod: { annotations: { a: 'b' } } } });
    await reconcile('default/w', deps(state, metrics, notes));
    expect(patches('deployments')).toBe(before[0] + 1);
    const dep = c.list('apps', 'v1', 'deployments', 'default', 'app.kubernetes.io/instance=w')[0];
    expect(dep.spec.template.metadata.annotations).toEqual({ a: 'b' });
  });
});
