// `hybridserve operator` as the chart runs it (the built CLI, against the API double): the
// leader-election Lease is kept in POD_NAMESPACE, which wins over --namespace; without it,
// --namespace; SIGTERM ends it with exit 0 and releases the Lease, also just after it started
// (an informer stopped while its watch connected used to keep that watch, and the process, alive).
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, test } from '@jest/globals';
import { builtCli } from '../fixtures/helpers.js';
import { KubeClient, loadKubeConfig } from '../../operator/k8s/client.js';
import { R } from '../../operator/k8s/resources.js';
import { TestCluster, waitFor } from '../k8s/cluster.js';

let cluster: TestCluster | undefined;
let child: ChildProcess | undefined;
afterEach(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  child = undefined;
  await cluster?.stop();
  cluster = undefined;
});

function operator(args: string[], env: Record<string, string>): ChildProcess {
  const { POD_NAMESPACE: _drop, ...rest } = process.env;
  const p = spawn(process.execPath, [builtCli(), 'operator', '--server', cluster!.url, '--metrics-port', '0', ...args], {
    env: { ...rest, NODE_OPTIONS: '', ...env },
    stdio: 'ignore',
  });
  return p;
}

const leaseIn = (ns: string) =>
  cluster!.list('coordination.k8s.io', 'v1', 'leases', ns).find((l) => l.metadata.name === 'hybridserve-operator');

describe('hybridserve operator: where the Lease lives', () => {
  test('POD_NAMESPACE wins over --namespace; SIGTERM exits 0', async () => {
    cluster = await new TestCluster().start([]);
    child = operator(['--namespace', 'flag-ns'], { POD_NAMESPACE: 'pod-ns' });
    const lease = await waitFor('the Lease in POD_NAMESPACE', () => leaseIn('pod-ns'), 30_000);
    expect(lease.spec.holderIdentity).toBeTruthy();
    expect(leaseIn('flag-ns')).toBeUndefined();
    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(leaseIn('pod-ns')!.spec.holderIdentity).toBe('');
  }, 60_000);

  test('without POD_NAMESPACE: --namespace', async () => {
    cluster = await new TestCluster().start([]);
    child = operator(['--namespace', 'flag-ns'], {});
    await waitFor('the Lease in --namespace', () => leaseIn('flag-ns'), 30_000);
  }, 60_000);
});

describe('informers', () => {
  test('stop() while the first list is in flight leaves no watch open', async () => {
    cluster = await new TestCluster().start([]);
    const client = new KubeClient(loadKubeConfig({ server: cluster.url }));
    const inf = client.informer({ type: R.pod, namespace: 'default' });
    const started = inf.start(); // the list is in flight; the watch would follow it
    await inf.stop();
    await started.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
    expect(cluster.api.openWatches).toBe(0);
    client.close();
  });
});
