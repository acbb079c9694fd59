// Issue 15, acceptance 3, end to end on CPU: the operator on the API TEST DOUBLE with the simulated
// LeaderWorkerSet controller running REAL `hybridserve serve` processes (test/k8s/lws-controller.ts;
// needs `npm run build` first). An HSD with parallelism.nodes 2 becomes a LeaderWorkerSet whose group
// is two processes — rank 0 (HTTP) and rank 1 (its stage) — that meet at the rendezvous and serve a
// completion; the HSD is Ready once the group is. When rank 1's process dies, rank 0 fails its
// requests with 503 and exits (HS_PEER_LOST), the group is recreated (RecreateGroupOnPodRestart),
// the HSD's readiness follows the group down and up again, and the new group serves.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { cond, waitFor } from '../k8s/cluster.js';
import type { Obj } from '../k8s/apiserver.js';
import { startProcessCluster, type ProcessCluster } from './operator-harness.js';

const NS = 'default';
const H100 = 'NVIDIA-H100-80GB-HBM3';
let env: ProcessCluster;

beforeAll(async () => {
  env = await startProcessCluster(
    [
      { name: 'g1', product: H100, memory: '512Gi', gpus: 8 },
      { name: 'g2', product: H100, memory: '512Gi', gpus: 8 },
    ],
    'hs-lws-',
    NS,
    { leaderWorkerSet: true },
  );
}, 60_000);
afterAll(async () => {
  await env?.stop();
}, 60_000);

const ready = (name: string) => cond(env.cluster.hsd(name, NS), 'Ready')?.status;

async function complete(port: number): Promise<{ status: number; body: Obj }> {
  const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'synthetic:opt-tiny', prompt: [5, 6, 7], max_tokens: 6, temperature: 0, ignore_eos: true }),
  });
  return { status: r.status, body: (await r.json()) as Obj };
}

describe('an HSD over two nodes runs as a group of two processes', () => {
  test('Ready, serves, survives the loss of a rank by recreating the group', async () => {
    const lwsCtl = env.cluster.lws!;
    env.cluster.createHsd({ metadata: { name: 'big' }, spec: { model: { uri: 'synthetic:opt-13b' }, parallelism: { nodes: 2 } } }, NS);
    await waitFor('HSD big Ready', () => ready('big') === 'True', 90_000, 100);
    const pods = lwsCtl.runningPods();
    expect(pods.map((p) => p.index).sort()).toEqual([0, 1]);
    const leader = pods.find((p) => p.index === 0)!;
    const worker = pods.find((p) => p.index === 1)!;
    const first = await complete(leader.port);
    expect(first.status).toBe(200);
    expect(first.body.usage.completion_tokens).toBe(6);
    // Rank 1 answers /healthz only: the Service selects leaders.
    expect((await fetch(`http://127.0.0.1:${worker.port}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${worker.port}/v1/models`)).status).toBe(404);

    expect(lwsCtl.crash(worker.name)).toBe(true);
    await waitFor('the group recreated', () => lwsCtl.groupRestarts >= 1, 30_000, 50);
    // Its pods start again from scratch: the group (and so the HSD) is Ready once both joined.
    await waitFor('HSD big Ready again', () => ready('big') === 'True' && lwsCtl.readyGroups() === 1, 90_000, 100);
    const again = await waitFor(
      'a completion from the new group',
      async () => {
        const r = await complete(leader.port).catch(() => null);
        return r?.status === 200 && r;
      },
      30_000,
      200,
    );
    expect(again.body.choices[0].text).toBe(first.body.choices[0].text); // greedy: the same tokens
    const lws = env.cluster.list('leaderworkerset.x-k8s.io', 'v1', 'leaderworkersets', NS)[0];
    expect(lws.status.readyReplicas).toBe(1);
    expect(lwsCtl.groupRestarts).toBe(1); // one loss, one restart: no restart loop
  });
});
