// TEST DOUBLE: a simulated LeaderWorkerSet controller (sigs.k8s.io/lws) + kubelet for the loopback
// API test double, in the kubelet's 'process' mode (./kubelet.ts): for every LeaderWorkerSet
// labelled app.kubernetes.io/managed-by=hybridserve-operator it keeps spec.replicas groups of
// leaderWorkerTemplate.size pods, as LWS does:
//   - pod names <lws>-<group> (the leader, worker index 0) and <lws>-<group>-<index>; labels of the
//     template plus leaderworkerset.sigs.k8s.io/{name, group-index, worker-index, group-key}; owned
//     by the LWS (so GC removes them); env LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX;
//   - one real `hybridserve serve` process per pod, from the pod's container as the kubelet double
//     runs it (localServeArgs/localEnv: tiny model, --device cpu, loopback port, local plan file),
//     the downward-API env (HYBRIDSERVE_RANK from the worker-index label) resolved, and $(VAR) in
//     args expanded from the container's env as a kubelet does. One change a real cluster does not
//     need: every group's leader would listen on the same rendezvous port of its own pod IP, but all
//     pods share 127.0.0.1 here, so each group gets a free port in its --leader-address;
//   - readiness from the container's readinessProbe path (leaders /readyz, workers /healthz);
//   - restartPolicy RecreateGroupOnPodRestart: when any process of a group exits, every process of
//     the group is stopped and the whole group starts again (groupRestarts counts it);
//   - status: replicas, readyReplicas (groups whose pods are all Ready) and the Available condition.
// Not emulated: startup policy (all pods start at once, which LeaderCreated allows), rolling updates,
// scheduling and topology spread, subgroups, the LWS webhook's defaults.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeApiServer, Obj, ResourceDef } from './apiserver.js';
import { LEADER_WORKER_SET } from './apiserver.js';
import {
  cpuPlan,
  freePort,
  localEnv,
  localServeArgs,
  spawnServer,
  stopServer,
  waitHttpReady,
  writeAtomic,
  writeStatus,
  type KubeletOptions,
} from './kubelet.js';

const MANAGED = 'app.kubernetes.io/managed-by=hybridserve-operator';
const L = 'leaderworkerset.sigs.k8s.io';

interface GroupPod {
  name: string;
  index: number;
  port: number;
  readyPath: string;
  container: Obj;
  labels: Record<string, string>;
  proc?: ChildProcess;
  ready: boolean;
}

interface Group {
  namespace: string;
  lws: string;
  index: number;
  rendezvousPort: number;
  dir: string;
  planFile: string;
  configMap?: string;
  pods: GroupPod[];
  stopping: boolean;
  /** Bumped at every (re)start: an exit or readiness of an older start is ignored. */
  epoch: number;
}

/** $(NAME) in a container arg, expanded from the container's env as the kubelet does (unknown names stay as written). */
export function expandArgs(args: readonly string[], env: Record<string, string>): string[] {
  return args.map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string) => env[name] ?? m));
}

/** Args with --leader-address pointed at this loopback group's rendezvous port (see the header). */
export function loopbackLeaderAddress(args: readonly string[], port: number): string[] {
  const out = [...args];
  const i = out.indexOf('--leader-address');
  if (i >= 0 && i + 1 < out.length) out[i + 1] = `127.0.0.1:${port}`;
  return out;
}

export class SimulatedLwsController {
  private readonly lwsDef: ResourceDef = LEADER_WORKER_SET;
  private readonly pods: ResourceDef;
  private readonly cms: ResourceDef;
  private readonly secrets: ResourceDef;
  private readonly groups = new Map<string, Group>();
  private unsubscribe?: () => void;
  private stopped = false;
  private chain: Promise<void> = Promise.resolve();
  /** Whole-group restarts so far (RecreateGroupOnPodRestart). */
  groupRestarts = 0;

  constructor(
    private readonly api: FakeApiServer,
    private readonly o: KubeletOptions,
  ) {
    this.pods = api.def('', 'v1', 'pods');
    this.cms = api.def('', 'v1', 'configmaps');
    this.secrets = api.def('', 'v1', 'secrets');
  }

  start(): void {
    this.unsubscribe = this.api.subscribe((e) => {
      if (e.res === 'leaderworkerset.x-k8s.io/v1/leaderworkersets') this.kick();
      if (e.res === '/v1/configmaps' && e.type !== 'DELETED') this.syncPlanFiles(e.object);
    });
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    await this.chain;
    await Promise.all([...this.groups.values()].map((g) => this.stopGroup(g)));
    this.groups.clear();
  }

  /** Kills a pod's process (SIGKILL), as a crash would. */
  crash(podName: string): boolean {
    for (const g of this.groups.values()) {
      const p = g.pods.find((x) => x.name === podName);
      if (p?.proc) return p.proc.kill('SIGKILL');
    }
    return false;
  }

  /** The pods of every group: name, loopback HTTP port, worker index. */
  runningPods(): { name: string; port: number; index: number; group: number }[] {
    return [...this.groups.values()].flatMap((g) => g.pods.map((p) => ({ name: p.name, port: p.port, index: p.index, group: g.index })));
  }

  /** Groups whose pods are all Ready now. */
  readyGroups(): number {
    return [...this.groups.values()].filter((g) => g.pods.every((p) => p.ready)).length;
  }

  /** Syncs one at a time, in order. */
  private kick(): void {
    if (this.stopped) return;
    this.chain = this.chain.then(() => this.sync()).catch((e) => this.o.log?.(`lws controller sync failed: ${(e as Error).message}`));
  }

  private async sync(): Promise<void> {
    if (this.stopped || !this.api.served(this.lwsDef)) return;
    const seen = new Set<string>();
    for (const lws of this.api.list(this.lwsDef, undefined, MANAGED)) {
      const ns = lws.metadata.namespace;
      const replicas: number = lws.spec?.replicas ?? 1;
      for (let g = 0; g < replicas; g++) {
        const key = `${ns}/${lws.metadata.name}/${g}`;
        seen.add(key);
        if (!this.groups.has(key)) await this.createGroup(lws, g, key);
      }
      this.writeLwsStatus(lws);
    }
    for (const [key, g] of this.groups) {
      if (seen.has(key)) continue;
      this.groups.delete(key);
      await this.stopGroup(g);
      for (const p of g.pods) this.safe(() => this.api.remove(this.pods, g.namespace, p.name));
    }
  }

  private async createGroup(lws: Obj, index: number, key: string): Promise<void> {
    const ns = lws.metadata.namespace;
    const t = lws.spec.leaderWorkerTemplate;
    const size: number = t.size ?? 1;
    const dir = join(this.o.workDir ?? '/tmp', `${ns}-${lws.metadata.name}-${index}`);
    mkdirSync(dir, { recursive: true });
    const leader = t.leaderTemplate ?? t.workerTemplate;
    const g: Group = {
      namespace: ns,
      lws: lws.metadata.name,
      index,
      rendezvousPort: await freePort(),
      dir,
      planFile: join(dir, 'plan.json'),
      configMap: leader.spec.volumes?.find((v: Obj) => v.configMap)?.configMap?.name,
      pods: [],
      stopping: false,
      epoch: 0,
    };
    for (let i = 0; i < size; i++) {
      const tmpl = i === 0 ? leader : t.workerTemplate;
      const name = i === 0 ? `${lws.metadata.name}-${index}` : `${lws.metadata.name}-${index}-${i}`;
      const labels = {
        ...tmpl.metadata.labels,
        [`${L}/name`]: lws.metadata.name,
        [`${L}/group-index`]: String(index),
        [`${L}/worker-index`]: String(i),
        [`${L}/group-key`]: `${lws.metadata.uid}-${index}`,
      };
      const container = tmpl.spec.containers[0];
      const port = await freePort();
      g.pods.push({
        name,
        index: i,
        port,
        readyPath: container.readinessProbe?.httpGet?.path ?? '/readyz',
        container,
        labels,
        ready: false,
      });
      this.api.create(this.pods, ns, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name,
          namespace: ns,
          labels,
          annotations: { 'hybridserve.io/port': String(port) },
          ownerReferences: [
            { apiVersion: 'leaderworkerset.x-k8s.io/v1', kind: 'LeaderWorkerSet', name: g.lws, uid: lws.metadata.uid, controller: true },
          ],
        },
        spec: tmpl.spec,
        status: { phase: 'Pending', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'False' }] },
      });
    }
    this.groups.set(key, g);
    const cm = g.configMap ? this.api.get(this.cms, ns, g.configMap) : undefined;
    writeAtomic(g.planFile, cpuPlan(cm?.data?.['plan.json'] ?? '{"actFraction":0}'));
    this.launchGroup(g);
  }

  private launchGroup(g: Group): void {
    const epoch = ++g.epoch;
    const size = g.pods.length;
    for (const p of g.pods) {
      const secret = (n: string) => this.api.get(this.secrets, g.namespace, n);
      const env = {
        ...localEnv(p.container.env, g.planFile, secret, p.labels),
        LWS_LEADER_ADDRESS: '127.0.0.1',
        LWS_GROUP_SIZE: String(size),
        LWS_WORKER_INDEX: String(p.index),
      };
      const args = loopbackLeaderAddress(
        localServeArgs(expandArgs(p.container.args ?? [], env), {
          model: this.o.model ?? 'synthetic:opt-tiny',
          port: p.port,
          planFile: g.planFile,
        }),
        g.rendezvousPort,
      );
      const proc = spawnServer(args, env, this.o, p.name);
      p.proc = proc;
      proc.on('exit', (code, sig) => {
        if (g.stopping || this.stopped || g.epoch !== epoch) return;
        this.o.log?.(`[${p.name}] exited (${code ?? sig}); recreating group ${g.lws}-${g.index}`);
        void this.recreate(g, epoch);
      });
      const current = () => !g.stopping && !this.stopped && g.epoch === epoch && proc.exitCode === null;
      void waitHttpReady(p.port, p.readyPath, current, this.o.readyTimeoutMs ?? 60_000).then((ok) => {
        if (ok) this.setReady(g, p, true);
      });
    }
  }

  /** RecreateGroupOnPodRestart: every pod of the group stops, then the group starts again. */
  private async recreate(g: Group, epoch: number): Promise<void> {
    if (g.epoch !== epoch) return;
    g.epoch++; // the exits of the processes stopped below are not new failures
    this.groupRestarts++;
    for (const p of g.pods) this.setReady(g, p, false);
    await Promise.all(g.pods.map((p) => stopServer(p.proc)));
    await new Promise((r) => setTimeout(r, 200));
    if (!g.stopping && !this.stopped) this.launchGroup(g);
  }

  private async stopGroup(g: Group): Promise<void> {
    g.stopping = true;
    await Promise.all(g.pods.map((p) => stopServer(p.proc)));
    rmSync(g.dir, { recursive: true, force: true });
  }

  private setReady(g: Group, p: GroupPod, ready: boolean): void {
    p.ready = ready;
    const status = {
      phase: 'Running',
      podIP: '127.0.0.1',
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
      containerStatuses: [{ name: 'server', ready, restartCount: this.groupRestarts }],
    };
    writeStatus(this.api, this.pods, { metadata: { namespace: g.namespace, name: p.name } }, status);
    const lws = this.api.get(this.lwsDef, g.namespace, g.lws);
    if (lws) this.writeLwsStatus(lws);
  }

  private writeLwsStatus(lws: Obj): void {
    const ns = lws.metadata.namespace;
    const replicas: number = lws.spec?.replicas ?? 1;
    const mine = [...this.groups.values()].filter((g) => g.namespace === ns && g.lws === lws.metadata.name && g.index < replicas);
    const ready = mine.filter((g) => g.pods.every((p) => p.ready)).length;
    const status = {
      replicas: mine.length,
      readyReplicas: ready,
      conditions: [
        { type: 'Available', status: ready >= replicas ? 'True' : 'False' },
        { type: 'Progressing', status: ready >= replicas ? 'False' : 'True' },
      ],
    };
    writeStatus(this.api, this.lwsDef, lws, status);
  }

  private syncPlanFiles(cm: Obj): void {
    for (const g of this.groups.values())
      if (g.namespace === cm.metadata.namespace && g.configMap === cm.metadata.name && cm.data?.['plan.json'])
        writeAtomic(g.planFile, cpuPlan(cm.data['plan.json']));
  }

  private safe(fn: () => void): void {
    try {
      fn();
    } catch {
      /* object went away meanwhile */
    }
  }
}
