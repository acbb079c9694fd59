// The operator's autoscaling mode: replicas between min and max from the pods' measured queue depth.
// Pods are the test double's (no processes); their stats come from a stub that speaks the stats
// contract (the HSD's server.port points the pods' port annotation at it).
import { describe, test, expect } from '@jest/globals';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Operator } from '../../operator/operator.js';
import { TestCluster, waitFor } from '../k8s/cluster.js';

function statsStub(queueDepth: () => number) {
  const start = Date.now();
  let steps = 0;
  return http.createServer((_req, res) => {
    steps += 10;
    const t = (Date.now() - start) / 1000 + steps * 1e-4;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        model: 'stub',
        device: 'cpu',
        actFraction: 0.5,
        planGeneration: 1,
        uptimeSeconds: t,
        queueDepth: queueDepth(),
        runningSequences: 1,
        requestsTotal: steps,
        generatedTokensTotal: steps * 4,
        promptTokensTotal: 0,
        counters: { steps, transferSeconds: steps * 0.001, computeSeconds: steps * 0.001, recomputeSeconds: steps * 0.001, idleSeconds: 0 },
      }),
    );
  });
}

describe('operator autoscaling mode', () => {
  test('queue depth above target scales up to max; an idle queue scales down to min; Events record it', async () => {
    let queue = 40;
    const stub = statsStub(() => queue);
    await new Promise<void>((r) => stub.listen(0, '127.0.0.1', r));
    const port = (stub.address() as AddressInfo).port;
    const c = await new TestCluster().start([{ name: 'n1', product: 'NVIDIA-H100-80GB-HBM3', memory: '512Gi', gpus: 8 }], { mode: 'fake' });
    const op = new Operator({
      server: c.url,
      leaseNamespace: 'default',
      feedbackTickMs: 50,
      feedbackIntervalMsOverride: 150,
      progressRequeueMs: 200,
      log: () => undefined,
    });
    await op.start();
    try {
      c.createHsd({
        metadata: { name: 'auto' },
        spec: {
          model: { uri: 'synthetic:opt-1.3b' },
          replicas: 1,
          server: { port },
          cache: { actFraction: 0.5 },
          autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 4, metric: 'queueDepth', target: 8 },
        },
      });
      await waitFor(
        'scaled to max',
        () => c.hsd('auto')?.status?.autoscaler?.desiredReplicas === 4 && c.hsd('auto')?.status?.readyReplicas === 4,
        15_000,
      );
      expect(c.hsd('auto')!.spec.replicas).toBe(1); // the operator never writes spec.replicas
      const dep = c.list('apps', 'v1', 'deployments', 'default', 'app.kubernetes.io/instance=auto')[0];
      expect(dep.spec.replicas).toBe(4);
      queue = 0;
      await waitFor(
        'scaled to min',
        () => c.hsd('auto')?.status?.autoscaler?.desiredReplicas === 1 && c.hsd('auto')?.status?.readyReplicas === 1,
        15_000,
      );
      const scaled = c.list('events.k8s.io', 'v1', 'events', 'default').filter((e) => e.reason === 'Scaled');
      expect(scaled.length).toBeGreaterThanOrEqual(2);
      expect(c.hsd('auto')!.status.nodeGroups[0].measured.queueDepth).toBe(0);
    } finally {
      await op.stop();
      await c.stop();
      await new Promise((r) => stub.close(r));
    }
  }, 40_000);
});
