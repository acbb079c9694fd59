// Shared setup of the operator end-to-end tests: the API test double with the simulated kubelet
// running REAL `hybridserve serve` processes (needs `npm run build` first), and an operator with
// short feedback intervals so retuning shows within a test.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Operator } from '../../operator/operator.js';
import { TestCluster, type NodeSpec } from '../k8s/cluster.js';

export const ROOT = join(import.meta.dirname ?? process.cwd(), '..', '..');

export interface ProcessCluster {
  cluster: TestCluster;
  op: Operator;
  /** A scratch folder for plan files, kubeconfigs and logs; removed by stop(). */
  work: string;
  stop(): Promise<void>;
}

export async function startProcessCluster(
  nodes: NodeSpec[],
  prefix: string,
  namespace = 'default',
  extras: { leaderWorkerSet?: boolean } = {},
): Promise<ProcessCluster> {
  if (!existsSync(join(ROOT, 'dist/cli/main.js')))
    throw new Error('dist/cli/main.js is missing: run `npm run build` before the operator e2e tests');
  const work = mkdtempSync(join(tmpdir(), prefix));
  const cluster = await new TestCluster().start(nodes, { mode: 'process', workDir: work, cwd: ROOT, readyTimeoutMs: 60_000 }, extras);
  const op = new Operator({
    server: cluster.url,
    leaseNamespace: namespace,
    feedbackTickMs: 100,
    feedbackIntervalMsOverride: 400,
    progressRequeueMs: 500,
    log: () => undefined,
  });
  await op.start();
  return {
    cluster,
    op,
    work,
    async stop() {
      await op.stop();
      await cluster.stop();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
