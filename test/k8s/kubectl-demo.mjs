#!/usr/bin/env node
// Demo (not a test): the operator against the API TEST DOUBLE, driven by a real kubectl.
// Run `npm run build` first, then `node test/k8s/kubectl-demo.mjs` (needs kubectl on PATH).
// Shows `kubectl get hsd` printer columns, the children, and `kubectl scale` via the scale subresource.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
const run = promisify(execFile);
import { TestCluster, cond } from '../../dist/test/k8s/cluster.js';
import { Operator } from '../../dist/operator/operator.js';
const c = await new TestCluster().start(
  [
    { name: 'h100-a', product: 'NVIDIA-H100-80GB-HBM3', memory: '512Gi', gpus: 2 },
    { name: 'l4-a', product: 'NVIDIA-L4', memory: '128Gi' },
  ],
  { mode: 'fake' },
);
const op = new Operator({ server: c.url, leaseNamespace: 'default', log: () => {} });
await op.start();
c.createHsd({ metadata: { name: 'demo' }, spec: { model: { uri: 'synthetic:opt-13b' }, replicas: 3, cache: { actFraction: 'auto' } } });
while (cond(c.hsd('demo'), 'Ready')?.status !== 'True') await new Promise((r) => setTimeout(r, 50));
const k = async (...a) => {
  try {
    return (
      await run('kubectl', ['--server', c.url, '-n', 'default', ...a], {
        encoding: 'utf8',
        env: { ...process.env, KUBECONFIG: '/dev/null' },
      })
    ).stdout;
  } catch (e) {
    return 'ERR ' + e.stderr;
  }
};
console.log(await k('get', 'hsd'));
console.log(await k('get', 'deployments,configmaps,services', '-l', 'app.kubernetes.io/managed-by=hybridserve-operator'));
console.log(await k('scale', 'hsd/demo', '--replicas=4'));
while (c.hsd('demo')?.status?.readyReplicas !== 4) await new Promise((r) => setTimeout(r, 50));
console.log(await k('get', 'hsd'));
await op.stop();
await c.stop();
