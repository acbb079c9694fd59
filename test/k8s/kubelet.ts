// TEST DOUBLE: a simulated Deployment controller + kubelet for the loopback API test double.
// For every Deployment labelled app.kubernetes.io/managed-by=hybridserve-operator it keeps
// spec.replicas Pod objects (owned by the Deployment, so GC removes them), and for each Pod either
//   - mode 'process': starts a real `hybridserve serve` process on a free loopback port
//     (node dist/cli/main.js serve --model synthetic:opt-tiny --host 127.0.0.1 --port P --plan F),
//     writes F from the group's ConfigMap (plan.json) and rewrites it whenever the ConfigMap
//     changes (as the kubelet refreshes a mounted ConfigMap), restarts a process that exits
//     (restartPolicy Always, restartCount), and reports podIP 127.0.0.1, the port (annotation
//     hybridserve.io/port) and Ready once GET /readyz answers 200; or
//   - mode 'fake': marks the Pod Ready at once (no process; for the operator bench).
// It writes Deployment status (replicas, readyReplicas, observedGeneration). Not emulated:
// scheduling, node affinity, rolling updates of changed templates, probes after readiness.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FakeApiServer, Obj, ResourceDef } from './apiserver.js';

export interface KubeletOptions {
  mode: 'fake' | 'process';
  /** Where plan files go (mode 'process'). */
  workDir?: string;
  /** Repository root holding dist/cli/main.js. */
  cwd?: string;
  model?: string;
  readyTimeoutMs?: number;
  log?: (line: string) => void;
}

const MANAGED = 'app.kubernetes.io/managed-by=hybridserve-operator';

function selectorOf(d: Obj): string {
  return Object.entries(d.spec?.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
}

interface RunningPod { name: string; namespace: string; port: number; planFile: string; configMap?: string; proc?: ChildProcess; stopping: boolean; restarts: number }

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

export class SimulatedKubelet {
  private readonly deps: ResourceDef;
  private readonly pods: ResourceDef;
  private readonly cms: ResourceDef;
  private readonly running = new Map<string, RunningPod>();
  private unsubscribe?: () => void;
  private syncing = false;
  private readonly dirty = new Set<string>();
  private again = false;
  private stopped = false;
  /** Pods started so far (tests count restarts and replacements). */
  podsStarted = 0;

  constructor(private readonly api: FakeApiServer, private readonly o: KubeletOptions) {
    this.deps = api.def('apps', 'v1', 'deployments');
    this.pods = api.def('', 'v1', 'pods');
    this.cms = api.def('', 'v1', 'configmaps');
  }

  start(): void {
    this.unsubscribe = this.api.subscribe((e) => {
      if (e.res === 'apps/v1/deployments') this.mark(`${e.object.metadata.namespace}/${e.object.metadata.name}`);
      if (e.res === '/v1/pods') {
        const owner = e.object.metadata.ownerReferences?.find((r: Obj) => r.kind === 'Deployment');
        if (owner) this.mark(`${e.object.metadata.namespace}/${owner.name}`);
        if (e.type === 'DELETED') this.podGone(e.object);
      }
      if (e.res === '/v1/configmaps' && e.type !== 'DELETED') this.syncPlanFiles(e.object);
    });
    for (const d of this.api.list(this.deps, undefined, MANAGED)) this.mark(`${d.metadata.namespace}/${d.metadata.name}`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    await Promise.all([...this.running.values()].map((r) => this.killProcess(r)));
    this.running.clear();
  }

  /** Kills a pod's server process (SIGKILL), as a crash would; the kubelet restarts it. */
  crash(podName: string): boolean {
    const r = [...this.running.values()].find((x) => x.name === podName);
    if (!r?.proc) return false;
    r.proc.kill('SIGKILL');
    return true;
  }

  runningPods(): { name: string; namespace: string; port: number; planFile: string }[] {
    return [...this.running.values()].map(({ name, namespace, port, planFile }) => ({ name, namespace, port, planFile }));
  }

  private mark(key: string): void { this.dirty.add(key); this.kick(); }

  private kick(): void {
    if (this.stopped) return;
    if (this.syncing) { this.again = true; return; }
    this.syncing = true;
    setImmediate(() => {
      this.sync().catch((e) => this.o.log?.(`kubelet sync failed: ${(e as Error).message}`)).finally(() => {
        this.syncing = false;
        if (this.again || this.dirty.size > 0) { this.again = false; this.kick(); }
      });
    });
  }

  /** Plays the Deployment controller for the Deployments that changed (or whose pods did). */
  private async sync(): Promise<void> {
    const keys = [...this.dirty];
    this.dirty.clear();
    for (const key of keys) {
      const [ns, name] = key.split('/');
      const d = this.api.get(this.deps, ns, name);
      if (!d || d.metadata.labels?.['app.kubernetes.io/managed-by'] !== 'hybridserve-operator') continue;
      const owned = () => this.api.list(this.pods, ns, selectorOf(d)).filter((p) => (p.metadata.ownerReferences ?? []).some((r: Obj) => r.uid === d.metadata.uid));
      const mine = owned().filter((p) => !p.metadata.deletionTimestamp);
      const want = d.spec?.replicas ?? 1;
      for (let i = mine.length; i < want; i++) await this.createPod(d);
      for (const p of mine.slice(want)) { this.safe(() => this.api.remove(this.pods, ns, p.metadata.name)); await this.forget(ns, p.metadata.name); }
      const pods = owned();
      const ready = pods.filter((p) => p.status?.conditions?.some((c: Obj) => c.type === 'Ready' && c.status === 'True')).length;
      const status = { replicas: pods.length, readyReplicas: ready, availableReplicas: ready, updatedReplicas: pods.length, observedGeneration: d.metadata.generation };
      if (JSON.stringify(d.status ?? {}) !== JSON.stringify(status)) {
        this.safe(() => this.api.update(this.deps, ns, d.metadata.name, (o) => { o.status = status; }, 'status'));
      }
    }
  }

  /** A pod object went away (deleted, or garbage-collected with its Deployment): stop its process. */
  private podGone(pod: Obj): void {
    void this.forget(pod.metadata.namespace, pod.metadata.name);
  }

  private async createPod(d: Obj): Promise<void> {
    const ns = d.metadata.namespace;
    const name = `${d.metadata.name.slice(0, 50)}-${randomBytes(3).toString('hex')}`;
    const tmpl = d.spec.template;
    const port = this.o.mode === 'process' ? await freePort() : tmpl.spec.containers[0].ports?.[0]?.containerPort ?? 8000;
    const pod: Obj = {
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace: ns, labels: { ...tmpl.metadata.labels }, annotations: { 'hybridserve.io/port': String(port) },
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name, uid: d.metadata.uid, controller: true }] },
      spec: { ...tmpl.spec, nodeName: tmpl.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0]?.matchFields?.[0]?.values?.[0] },
      status: { phase: 'Pending', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'False' }] },
    };
    this.api.create(this.pods, ns, pod);
    this.podsStarted++;
    if (this.o.mode === 'fake') { this.setReady(ns, name, true); return; }
    const cmName = tmpl.spec.volumes?.find((v: Obj) => v.configMap)?.configMap?.name as string | undefined;
    const dir = join(this.o.workDir ?? '/tmp', `${ns}-${name}`);
    mkdirSync(dir, { recursive: true });
    const r: RunningPod = { name, namespace: ns, port, planFile: join(dir, 'plan.json'), configMap: cmName, stopping: false, restarts: 0 };
    this.running.set(`${ns}/${name}`, r);
    const cm = cmName ? this.api.get(this.cms, ns, cmName) : undefined;
    writeAtomic(r.planFile, cpuPlan(cm?.data?.['plan.json'] ?? '{"actFraction":0}'));
    this.launch(r);
  }

  private launch(r: RunningPod): void {
    const args = ['dist/cli/main.js', 'serve', '--model', this.o.model ?? 'synthetic:opt-tiny', '--host', '127.0.0.1', '--port', String(r.port), '--plan', r.planFile, '--threads', '1'];
    const proc = spawn(process.execPath, args, { cwd: this.o.cwd ?? process.cwd(), env: { ...process.env, HYBRIDSERVE_PLAN_FILE: r.planFile }, stdio: ['ignore', 'pipe', 'pipe'] });
    r.proc = proc;
    const log = (b: Buffer) => this.o.log?.(`[${r.name}] ${b.toString().trimEnd()}`);
    proc.stdout?.on('data', log); proc.stderr?.on('data', log);
    proc.on('exit', (code, sig) => {
      if (r.stopping || this.stopped) return;
      this.o.log?.(`[${r.name}] exited (${code ?? sig}); restarting`);
      this.setReady(r.namespace, r.name, false);
      r.restarts++;
      setTimeout(() => { if (!r.stopping && !this.stopped && this.running.has(`${r.namespace}/${r.name}`)) this.launch(r); }, 200);
    });
    void this.waitReady(r, proc);
  }

  private async waitReady(r: RunningPod, proc: ChildProcess): Promise<void> {
    const deadline = Date.now() + (this.o.readyTimeoutMs ?? 60_000);
    while (Date.now() < deadline && !r.stopping && !this.stopped && r.proc === proc && proc.exitCode === null) {
      try {
        const res = await fetch(`http://127.0.0.1:${r.port}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) { this.setReady(r.namespace, r.name, true, r.restarts); return; }
      } catch { /* not listening yet */ }
      await new Promise((s) => setTimeout(s, 100));
    }
  }

  private setReady(ns: string, name: string, ready: boolean, restarts = 0): void {
    this.safe(() => this.api.update(this.pods, ns, name, (o) => {
      o.status = { phase: 'Running', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
        containerStatuses: [{ name: 'server', ready, restartCount: restarts }] };
    }, 'status'));
  }

  private syncPlanFiles(cm: Obj): void {
    for (const r of this.running.values()) {
      if (r.namespace === cm.metadata.namespace && r.configMap === cm.metadata.name && cm.data?.['plan.json']) writeAtomic(r.planFile, cpuPlan(cm.data['plan.json']));
    }
  }

  private async forget(ns: string, name: string): Promise<void> {
    const r = this.running.get(`${ns}/${name}`);
    if (!r) return;
    this.running.delete(`${ns}/${name}`);
    await this.killProcess(r);
  }

  private async killProcess(r: RunningPod): Promise<void> {
    r.stopping = true;
    const p = r.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const done = new Promise<void>((res) => p.once('exit', () => res()));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 3000);
      await done;
      clearTimeout(t);
    }
    try { rmSync(join(r.planFile, '..'), { recursive: true, force: true }); } catch { /* ignore */ }
  }

  private safe(fn: () => void): void { try { fn(); } catch { /* object went away meanwhile */ } }
}

/**
 * The plan as this CPU test machine can run it: pool sizes planned for a GPU node's host memory
 * (possibly many GiB) are dropped so that the tiny server sizes its own pools, and the batch is
 * capped; actFraction, generation and reason pass through unchanged (what the tests observe).
 */
export function cpuPlan(text: string): string {
  try {
    const { kvBlocks: _k, actBlocks: _a, maxBatch, ...rest } = JSON.parse(text) as Record<string, unknown>;
    return JSON.stringify({ ...rest, ...(typeof maxBatch === 'number' ? { maxBatch: Math.min(maxBatch, 16) } : {}) });
  } catch {
    return text; // a bad file is the server's to reject (it keeps the last good plan)
  }
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${randomBytes(3).toString('hex')}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}
