// TEST DOUBLE: a simulated Deployment controller + kubelet for the loopback API test double.
// For every Deployment labelled app.kubernetes.io/managed-by=hybridserve-operator it keeps
// spec.replicas Pod objects (owned by the Deployment, so GC removes them), and for each Pod either
//   - mode 'process': starts a real `hybridserve serve` process on a free loopback port, from the
//     pod's own container args and env (localServeArgs/localEnv), changed only where this CPU-only
//     loopback machine must differ from a node: --model becomes the kubelet's tiny model (default
//     synthetic:opt-tiny; the HSD's model is planned, not run), `--device cuda` becomes
//     `--device cpu` (there is no GPU here; the Deployment object still says cuda), --host/--port
//     become 127.0.0.1 and a free port, --plan and HYBRIDSERVE_PLAN_FILE a local file F,
//     --host-memory is dropped (it is sized for a real node), --threads defaults to 1; env values
//     are copied and secretKeyRef env is resolved from the double's Secrets (missing: the pod does
//     not start, as CreateContainerConfigError). Everything else (--max-queue, --max-total-tokens,
//     --threads, HYBRIDSERVE_API_KEYS, ...) reaches the server as the operator wrote it.
//     It writes F from the group's ConfigMap (plan.json) and rewrites it whenever the ConfigMap
//     changes (as the kubelet refreshes a mounted ConfigMap), restarts a process that exits
//     (restartPolicy Always, restartCount), and reports podIP 127.0.0.1, the port (annotation
//     hybridserve.io/port) and Ready once GET /readyz answers 200; or
//   - mode 'fake': marks the Pod Ready at once (no process; for the operator bench).
// It writes Deployment status (replicas, readyReplicas, observedGeneration). Not emulated:
// scheduling, node affinity, rolling updates of changed templates, probes after readiness, volumes
// other than the plan ConfigMap (a pvc:// model is not mounted), securityContext (the process runs
// as this test's user; the pod objects carry the securityContext for tests to inspect).
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
  return Object.entries(d.spec?.selector?.matchLabels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

interface RunningPod {
  name: string;
  namespace: string;
  port: number;
  planFile: string;
  configMap?: string;
  proc?: ChildProcess;
  stopping: boolean;
  restarts: number;
  /** The pod's container (args, env) the process is started from. */
  container: Obj;
  volumes?: Obj[];
  /** The pod's local working directory. */
  dir: string;
}

/** Flags whose value the kubelet replaces or drops (see the header); all others pass through. */
const REPLACED = new Set(['--model', '--host', '--port', '--plan', '--host-memory', '--device']);

/**
 * The `hybridserve serve` argv this loopback kubelet runs for a container's args (pure): the
 * container's flags, with the machine-specific ones replaced as the header describes.
 */
export function localServeArgs(containerArgs: readonly string[], o: { model: string; port: number; planFile: string }): string[] {
  const args = [...containerArgs];
  if (args[0] === 'serve') args.shift();
  const kept: string[] = [];
  let device = 'cpu';
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const hasInlineValue = flag !== a;
    if (REPLACED.has(flag)) {
      const value = hasInlineValue ? a.slice(eq + 1) : args[++i];
      // No GPU on this machine: a CUDA pod runs the CPU engine here (its Deployment still says cuda).
      if (flag === '--device') device = value === 'cuda' ? 'cpu' : value;
      continue;
    }
    kept.push(a);
  }
  const threads = kept.some((a) => a === '--threads' || a.startsWith('--threads=')) ? [] : ['--threads', '1'];
  return [
    'serve',
    '--model',
    o.model,
    '--device',
    device,
    '--host',
    '127.0.0.1',
    '--port',
    String(o.port),
    '--plan',
    o.planFile,
    ...threads,
    ...kept,
  ];
}

/**
 * The process environment for a container's env (pure apart from `secret`): plain values copied,
 * secretKeyRef values looked up (base64 `data` or `stringData`), fieldRef values of the form
 * metadata.labels['k'] taken from the pod's `labels` (the downward API); HYBRIDSERVE_PLAN_FILE
 * points at the local plan file. Throws when a referenced Secret or key is missing (the pod does
 * not start).
 */
export function localEnv(
  containerEnv: readonly Obj[] | undefined,
  planFile: string,
  secret: (name: string) => Obj | undefined,
  labels: Record<string, string> = {},
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of containerEnv ?? []) {
    if (typeof e.value === 'string') out[e.name] = e.value;
    const label = /^metadata\.labels\['([^']+)'\]$/.exec(String(e.valueFrom?.fieldRef?.fieldPath ?? ''))?.[1];
    if (label !== undefined && labels[label] !== undefined) out[e.name] = labels[label];
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) {
      const s = secret(ref.name);
      const raw =
        s?.data?.[ref.key] !== undefined ? Buffer.from(String(s.data[ref.key]), 'base64').toString('utf8') : s?.stringData?.[ref.key];
      if (raw === undefined) {
        if (ref.optional) continue;
        throw new Error(`CreateContainerConfigError: secret "${ref.name}" key "${ref.key}" not found for env ${e.name}`);
      }
      out[e.name] = raw;
    }
  }
  out.HYBRIDSERVE_PLAN_FILE = planFile;
  return out;
}

/**
 * Secret volumes as a kubelet mounts them: each item written to a local directory standing in for
 * the container's mountPath. Returns mountPath -> local directory. Throws like a kubelet
 * (CreateContainerConfigError) when a referenced Secret or key is missing.
 */
export function localSecretVolumes(
  volumes: readonly Obj[] | undefined,
  container: Obj,
  dir: string,
  secret: (name: string) => Obj | undefined,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of (container.volumeMounts ?? []) as Obj[]) {
    const v = (volumes ?? []).find((x) => x.name === m.name);
    if (!v?.secret) continue;
    const s = secret(v.secret.secretName);
    const local = join(dir, 'volumes', String(m.name));
    mkdirSync(local, { recursive: true });
    const items: { key: string; path: string }[] =
      v.secret.items ?? Object.keys({ ...(s?.data ?? {}), ...(s?.stringData ?? {}) }).map((k) => ({ key: k, path: k }));
    for (const it of items) {
      const raw =
        s?.data?.[it.key] !== undefined ? Buffer.from(String(s.data[it.key]), 'base64').toString('utf8') : s?.stringData?.[it.key];
      if (raw === undefined)
        throw new Error(`CreateContainerConfigError: secret "${v.secret.secretName}" key "${it.key}" not found for volume ${m.name}`);
      writeFileSync(join(local, it.path), raw, { mode: 0o600 });
    }
    out.set(String(m.mountPath), local);
  }
  return out;
}

/** Container args with paths under a mounted volume pointed at the local directory standing in for it. */
export function localPaths(args: readonly string[], mounts: ReadonlyMap<string, string>): string[] {
  return args.map((a) => {
    for (const [mountPath, local] of mounts) if (a.startsWith(`${mountPath}/`)) return local + a.slice(mountPath.length);
    return a;
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** Writes an object's status through the status subresource unless it already reads so; an object gone meanwhile is fine. */
export function writeStatus(api: FakeApiServer, def: ResourceDef, obj: Obj, status: Obj): void {
  if (JSON.stringify(obj.status ?? {}) === JSON.stringify(status)) return;
  try {
    api.update(
      def,
      obj.metadata.namespace,
      obj.metadata.name,
      (o) => {
        o.status = status;
      },
      'status',
    );
  } catch {
    /* object went away meanwhile */
  }
}

/** Starts `node dist/cli/main.js ARGS` as a pod's server process, its output to `log` line-prefixed with the pod name. */
export function spawnServer(args: string[], env: Record<string, string>, o: KubeletOptions, podName: string): ChildProcess {
  // The host's environment (PATH, test settings) with the pod's env on top.
  const proc = spawn(process.execPath, ['dist/cli/main.js', ...args], {
    cwd: o.cwd ?? process.cwd(),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = (b: Buffer) => o.log?.(`[${podName}] ${b.toString().trimEnd()}`);
  proc.stdout?.on('data', log);
  proc.stderr?.on('data', log);
  return proc;
}

/** Polls http://127.0.0.1:port + path until it answers 200 (true), or `current()` turns false or the time is up (false). */
export async function waitHttpReady(port: number, path: string, current: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && current()) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return current();
    } catch {
      /* not listening yet */
    }
    await new Promise((s) => setTimeout(s, 100));
  }
  return false;
}

/** Stops a server process: SIGTERM, SIGKILL after 3 s; resolves once it exited. */
export async function stopServer(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise<void>((res) => p.once('exit', () => res()));
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), 3000);
  await done;
  clearTimeout(t);
}

export class SimulatedKubelet {
  private readonly deps: ResourceDef;
  private readonly pods: ResourceDef;
  private readonly cms: ResourceDef;
  private readonly secrets: ResourceDef;
  private readonly running = new Map<string, RunningPod>();
  private unsubscribe?: () => void;
  private syncing = false;
  private readonly dirty = new Set<string>();
  private again = false;
  private stopped = false;
  /** Pods started so far (tests count restarts and replacements). */
  podsStarted = 0;

  constructor(
    private readonly api: FakeApiServer,
    private readonly o: KubeletOptions,
  ) {
    this.deps = api.def('apps', 'v1', 'deployments');
    this.pods = api.def('', 'v1', 'pods');
    this.cms = api.def('', 'v1', 'configmaps');
    this.secrets = api.def('', 'v1', 'secrets');
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

  /**
   * Stops (SIGSTOP) or continues (SIGCONT) a pod's server process. A frozen pod still accepts
   * connections (the kernel queues them) but answers nothing until it is continued; no probe runs
   * after readiness, so it stays Ready. A frozen process can still be crashed.
   */
  freeze(podName: string, frozen: boolean): boolean {
    const r = [...this.running.values()].find((x) => x.name === podName);
    if (!r?.proc || r.proc.exitCode !== null || r.proc.signalCode !== null) return false;
    return r.proc.kill(frozen ? 'SIGSTOP' : 'SIGCONT');
  }

  runningPods(): { name: string; namespace: string; port: number; planFile: string }[] {
    return [...this.running.values()].map(({ name, namespace, port, planFile }) => ({ name, namespace, port, planFile }));
  }

  private mark(key: string): void {
    this.dirty.add(key);
    this.kick();
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = true;
    setImmediate(() => {
      this.sync()
        .catch((e) => this.o.log?.(`kubelet sync failed: ${(e as Error).message}`))
        .finally(() => {
          this.syncing = false;
          if (this.again || this.dirty.size > 0) {
            this.again = false;
            this.kick();
          }
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
      const owned = () =>
        this.api
          .list(this.pods, ns, selectorOf(d))
          .filter((p) => (p.metadata.ownerReferences ?? []).some((r: Obj) => r.uid === d.metadata.uid));
      const mine = owned().filter((p) => !p.metadata.deletionTimestamp);
      const want = d.spec?.replicas ?? 1;
      for (let i = mine.length; i < want; i++) await this.createPod(d);
      for (const p of mine.slice(want)) {
        this.safe(() => this.api.remove(this.pods, ns, p.metadata.name));
        await this.forget(ns, p.metadata.name);
      }
      const pods = owned();
      const ready = pods.filter((p) => p.status?.conditions?.some((c: Obj) => c.type === 'Ready' && c.status === 'True')).length;
      const status = {
        replicas: pods.length,
        readyReplicas: ready,
        availableReplicas: ready,
        updatedReplicas: pods.length,
        observedGeneration: d.metadata.generation,
      };
      writeStatus(this.api, this.deps, d, status);
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
    const port = this.o.mode === 'process' ? await freePort() : (tmpl.spec.containers[0].ports?.[0]?.containerPort ?? 8000);
    const pod: Obj = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: ns,
        labels: { ...tmpl.metadata.labels },
        annotations: { 'hybridserve.io/port': String(port) },
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name, uid: d.metadata.uid, controller: true }],
      },
      spec: {
        ...tmpl.spec,
        nodeName:
          tmpl.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms?.[0]?.matchFields?.[0]
            ?.values?.[0],
      },
      status: { phase: 'Pending', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'False' }] },
    };
    this.api.create(this.pods, ns, pod);
    this.podsStarted++;
    if (this.o.mode === 'fake') {
      this.setReady(ns, name, true);
      return;
    }
    const cmName = tmpl.spec.volumes?.find((v: Obj) => v.configMap)?.configMap?.name as string | undefined;
    const dir = join(this.o.workDir ?? '/tmp', `${ns}-${name}`);
    mkdirSync(dir, { recursive: true });
    const r: RunningPod = {
      name,
      namespace: ns,
      port,
      planFile: join(dir, 'plan.json'),
      configMap: cmName,
      stopping: false,
      restarts: 0,
      container: tmpl.spec.containers[0],
      volumes: tmpl.spec.volumes,
      dir,
    };
    this.running.set(`${ns}/${name}`, r);
    const cm = cmName ? this.api.get(this.cms, ns, cmName) : undefined;
    writeAtomic(r.planFile, cpuPlan(cm?.data?.['plan.json'] ?? '{"actFraction":0}'));
    this.launch(r);
  }

  private launch(r: RunningPod): void {
    let args: string[];
    let env: Record<string, string>;
    try {
      const secret = (n: string) => this.api.get(this.secrets, r.namespace, n);
      const mounts = localSecretVolumes(r.volumes, r.container, r.dir, secret);
      args = localPaths(
        localServeArgs(r.container.args ?? [], { model: this.o.model ?? 'synthetic:opt-tiny', port: r.port, planFile: r.planFile }),
        mounts,
      );
      env = localEnv(r.container.env, r.planFile, secret);
    } catch (e) {
      // As a kubelet does: the container is not created; try again a little later.
      this.o.log?.(`[${r.name}] ${(e as Error).message}`);
      setTimeout(() => {
        if (!r.stopping && !this.stopped && this.running.has(`${r.namespace}/${r.name}`)) this.launch(r);
      }, 500);
      return;
    }
    const proc = spawnServer(args, env, this.o, r.name);
    r.proc = proc;
    proc.on('exit', (code, sig) => {
      if (r.stopping || this.stopped) return;
      this.o.log?.(`[${r.name}] exited (${code ?? sig}); restarting`);
      this.setReady(r.namespace, r.name, false);
      r.restarts++;
      setTimeout(() => {
        if (!r.stopping && !this.stopped && this.running.has(`${r.namespace}/${r.name}`)) this.launch(r);
      }, 200);
    });
    void this.waitReady(r, proc);
  }

  private async waitReady(r: RunningPod, proc: ChildProcess): Promise<void> {
    const current = () => !r.stopping && !this.stopped && r.proc === proc && proc.exitCode === null;
    if (await waitHttpReady(r.port, '/readyz', current, this.o.readyTimeoutMs ?? 60_000))
      this.setReady(r.namespace, r.name, true, r.restarts);
  }

  private setReady(ns: string, name: string, ready: boolean, restarts = 0): void {
    this.safe(() =>
      this.api.update(
        this.pods,
        ns,
        name,
        (o) => {
          o.status = {
            phase: 'Running',
            podIP: '127.0.0.1',
            conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
            containerStatuses: [{ name: 'server', ready, restartCount: restarts }],
          };
        },
        'status',
      ),
    );
  }

  private syncPlanFiles(cm: Obj): void {
    for (const r of this.running.values()) {
      if (r.namespace === cm.metadata.namespace && r.configMap === cm.metadata.name && cm.data?.['plan.json'])
        writeAtomic(r.planFile, cpuPlan(cm.data['plan.json']));
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
    await stopServer(r.proc);
    try {
      rmSync(join(r.planFile, '..'), { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  }

  private safe(fn: () => void): void {
    try {
      fn();
    } catch {
      /* object went away meanwhile */
    }
  }
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

export function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${randomBytes(3).toString('hex')}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}
