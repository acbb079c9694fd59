// `npm run bench:operator` (after `npm run build`): 1,000 HybridServeDeployments over 200 fake GPU
// nodes (BENCH_HSDS, BENCH_NODES) in the loopback API test double (test/k8s/), pods turned Ready by
// the double's simulated kubelet (no server processes). The operator runs as a separate process
// (`hybridserve operator --server URL`), so its memory is measured alone. Prints reconciles/s, time
// to converge and the operator's RSS, and checks issue 17's target: all Ready in under 60 s with
// the operator under 300 MB (exit code 1 otherwise).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestCluster, cond, type NodeSpec } from '../test/k8s/cluster.js';

const HSDS = Number(process.env.BENCH_HSDS ?? 1000);
const NODES = Number(process.env.BENCH_NODES ?? 200);
const TARGET_SECONDS = 60;
const TARGET_RSS_BYTES = 300e6;
const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');

function nodes(n: number): NodeSpec[] {
  const kinds = [
    { product: 'NVIDIA-H100-80GB-HBM3', memory: '2015Gi', gpus: 8 },
    { product: 'NVIDIA-H200', memory: '2015Gi', gpus: 8 },
    { product: 'NVIDIA-L4', memory: '192Gi', gpus: 1 },
    { product: 'NVIDIA-A100-SXM4-80GB', memory: '1007Gi', gpus: 8 },
  ];
  return Array.from({ length: n }, (_, i) => ({ name: `node-${i}`, ...kinds[i % kinds.length] }));
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** CPU seconds (user + system) the process has used: on a shared machine a steadier figure than wall time. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name) && !l.startsWith('#'))
    .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
}

async function main(): Promise<void> {
  const cluster = await new TestCluster().start(nodes(NODES), { mode: 'fake' });
  const proc = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
      join(ROOT, 'dist/cli/main.js'),
      'operator',
      '--server',
      cluster.url,
      '--metrics-port',
      '0',
      '--metrics-host',
      '127.0.0.1',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, POD_NAMESPACE: 'default' } },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /metrics on :(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (c) => reject(new Error(`operator exited with ${c}: ${out}`)));
  });
  try {
    const rssIdle = rssBytes(proc.pid!);
    const models = ['synthetic:opt-1.3b', 'synthetic:opt-6.7b', 'synthetic:opt-13b', 'synthetic:llama-7b'];
    const t0 = performance.now();
    for (let i = 0; i < HSDS; i++) {
      cluster.createHsd(
        {
          metadata: { name: `hsd-${i}` },
          spec: { model: { uri: models[i % models.length] }, replicas: 1 + (i % 3), cache: { actFraction: i % 5 === 0 ? 0.5 : 'auto' } },
        },
        `ns-${i % 8}`,
      );
    }
    let readyCount = 0;
    let peakRss = rssIdle;
    const deadline = Date.now() + 300_000;
    while (Date.now() < deadline) {
      readyCount = cluster
        .list('hybridserve.io', 'v1alpha1', 'hybridservedeployments')
        .filter((h) => cond(h, 'Ready')?.status === 'True' && h.status.observedGeneration === h.metadata.generation).length;
      peakRss = Math.max(peakRss, rssBytes(proc.pid!));
      if (readyCount === HSDS) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const convergeS = (performance.now() - t0) / 1000;
    const reconciles = await metric(port, 'hybridserve_operator_reconciles_total');
    const errors = await metric(port, 'hybridserve_operator_reconcile_errors_total');
    const durSum = await metric(port, 'hybridserve_operator_reconcile_duration_seconds_sum');
    const pods = cluster.list('', 'v1', 'pods').length;
    const rssEnd = rssBytes(proc.pid!);
    const cpu = cpuSeconds(proc.pid!);
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    console.log(`operator bench: ${HSDS} HybridServeDeployments over ${NODES} fake nodes (API test double, pods Ready without processes)`);
    console.log(`  ready:               ${readyCount}/${HSDS} HSDs, ${pods} pods`);
    console.log(`  time to converge:    ${convergeS.toFixed(2)} s`);
    console.log(
      `  reconciles:          ${reconciles} (${errors} errors), ${(reconciles / convergeS).toFixed(1)} reconciles/s, mean ${((1000 * durSum) / Math.max(1, reconciles)).toFixed(1)} ms each`,
    );
    console.log(`  operator RSS:        ${mib(rssIdle)} idle, ${mib(peakRss)} peak, ${mib(rssEnd)} at the end`);
    console.log(`  API requests:        ${[...cluster.api.requestCounts.values()].reduce((a, b) => a + b, 0)}`);
    console.log(`  operator CPU:        ${cpu.toFixed(1)} s user+system (machine load average ${load})`);
    const met = readyCount === HSDS && convergeS < TARGET_SECONDS && peakRss < TARGET_RSS_BYTES;
    console.log(
      `  target:              all Ready in < ${TARGET_SECONDS} s with RSS < ${TARGET_RSS_BYTES / 1e6} MB: ${met ? 'met' : 'NOT met'}`,
    );
    if (!met) process.exitCode = 1;
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    await cluster.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
