// Wires the controller together: leader election, informers (HSDs, Nodes, owned Deployments and
// Pods), the work queue running reconcile(), the feedback loop and the health/metrics endpoint.
// Informer handlers only enqueue keys: an HSD's own key, or for a child its owner's key (from the
// instance label), or every HSD for a Node change.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { MANAGED_BY, type HybridServeDeployment } from './api/types.js';
import { KubeClient, loadKubeConfig, type Informer, type KubeObject } from './k8s/client.js';
import { R } from './k8s/resources.js';
import { LABEL_INSTANCE, LABEL_MANAGED_BY } from './desired/objects.js';
import type { NodeLike } from './desired/node-groups.js';
import { reconcile, type ConfigMapLike, type DeploymentLike } from './controller/reconcile.js';
import { WorkQueue } from './controller/queue.js';
import { RuntimeState } from './controller/state.js';
import { eventRecorder } from './controller/events.js';
import { OperatorMetrics } from './controller/metrics.js';
import { feedbackTick, type PodLike } from './controller/feedback.js';
import { LeaderElector } from './controller/leader.js';
import { startHealthServer } from './controller/http.js';
import { parsePolicy, type HsdPolicy } from './desired/policy.js';
import { servesHttp } from './desired/lws.js';

export interface OperatorOptions {
  /** API server URL for a plain loopback config (tests); otherwise in-cluster or KUBECONFIG. */
  server?: string;
  /** Lease namespace: POD_NAMESPACE, else the kubeconfig's namespace. */
  leaseNamespace?: string;
  leaseName?: string;
  identity?: string;
  metricsPort?: number;
  metricsHost?: string;
  concurrency?: number;
  /** Retry backoff after a failed reconcile: base doubles per failure up to max (defaults 200 ms, 60 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  feedbackTickMs?: number;
  feedbackIntervalMsOverride?: number;
  progressRequeueMs?: number;
  resyncMs?: number;
  leaseDurationMs?: number;
  leaseRenewMs?: number;
  leaseRetryMs?: number;
  log?: (msg: string) => void;
  /**
   * Namespaces whose HSDs this operator serves (informers and writes only there; the chart then
   * grants Roles per namespace instead of ClusterRole writes). Empty/unset: all namespaces.
   * Default: $WATCH_NAMESPACES (comma-separated).
   */
  watchNamespaces?: readonly string[];
  /** The HSD policy; default from $HYBRIDSERVE_POLICY_ALLOWED_IMAGES, _ALLOW_PVC, _ALLOW_SECRETS (unset: open). */
  policy?: HsdPolicy;
  /** Retry period of the LeaderWorkerSet watch while that API is missing (default 60 s). */
  lwsWatchRetryMs?: number;
  /** NetworkPolicy peer selecting the operator's pods; default from $POD_NAMESPACE and the chart's labels. */
  operatorPeer?: Record<string, unknown>;
}

/** Namespaces from a comma-separated list (empty: all). */
export function parseNamespaces(v: string | undefined): string[] {
  return [
    ...new Set(
      (v ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
}

type Key = string;
/** Retry period of the LeaderWorkerSet watch while its API is missing or failing. */
const LWS_WATCH_RETRY_MS = 60_000;

export class Operator {
  readonly client: KubeClient;
  readonly metrics = new OperatorMetrics();
  readonly state = new RuntimeState();
  readonly identity: string;
  private readonly queue: WorkQueue;
  private readonly elector: LeaderElector;
  private informers:
    | {
        hsd: ScopedInformer<HybridServeDeployment & KubeObject>;
        nodes: Informer<NodeLike & KubeObject>;
        deps: ScopedInformer<DeploymentLike>;
        pods: ScopedInformer<PodLike & KubeObject>;
        cms: ScopedInformer<ConfigMapLike>;
      }
    | undefined;
  /** Optional: wakes reconciles on LeaderWorkerSet changes where the LWS API exists. */
  private lwsInformer?: Informer<KubeObject>;
  private readonly namespaces: string[];
  private readonly policy: HsdPolicy;
  private timers: NodeJS.Timeout[] = [];
  private health?: { port: number; close(): Promise<void> };
  private synced = false;
  private stopped = false;
  private feedbackRunning = false;
  private readonly log: (msg: string) => void;

  constructor(private readonly o: OperatorOptions = {}) {
    this.client = new KubeClient(loadKubeConfig({ server: o.server }));
    this.identity = o.identity ?? `${hostname()}-${randomBytes(3).toString('hex')}`;
    this.log = o.log ?? ((m) => console.log(`${new Date().toISOString()} ${m}`));
    const events = eventRecorder(this.client, this.identity);
    this.namespaces = [...(o.watchNamespaces ?? parseNamespaces(process.env.WATCH_NAMESPACES))];
    this.policy =
      o.policy ??
      parsePolicy({
        allowedImages: process.env.HYBRIDSERVE_POLICY_ALLOWED_IMAGES,
        allowPvc: process.env.HYBRIDSERVE_POLICY_ALLOW_PVC,
        allowSecrets: process.env.HYBRIDSERVE_POLICY_ALLOW_SECRETS,
      });
    const podNs = process.env.POD_NAMESPACE;
    const operatorPeer = o.operatorPeer ?? {
      ...(podNs ? { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': podNs } } } : { namespaceSelector: {} }),
      podSelector: { matchLabels: { 'app.kubernetes.io/component': 'operator' } },
    };
    this.queue = new WorkQueue(
      async (key) => {
        // Never reconcile from empty caches (after losing the Lease, or before the first sync): an
        // empty node list would look like "no node groups" and delete every Deployment.
        if (!this.synced || !this.informers) return {};
        const end = this.metrics.reconcileDuration.startTimer();
        try {
          const res = await reconcile(key, {
            client: this.client,
            state: this.state,
            events,
            now: () => new Date(),
            metrics: this.metrics,
            policy: this.policy,
            operatorPeer,
            nodes: () => this.informers?.nodes.list() ?? [],
            deployments: (ns, name) => (this.informers?.deps.list(ns) ?? []).filter((d) => d.metadata.labels?.[LABEL_INSTANCE] === name),
            configMap: (ns, name) => this.informers?.cms.get(name, ns),
            leaderWorkerSets: (ns, name) =>
              (this.lwsInformer?.list(ns) ?? []).filter(
                (l) => (l.metadata as { labels?: Record<string, string> }).labels?.[LABEL_INSTANCE] === name,
              ),
            progressRequeueMs: o.progressRequeueMs,
          });
          this.metrics.reconciles.inc({ result: 'success' });
          return res;
        } catch (e) {
          this.metrics.reconciles.inc({ result: 'error' });
          this.metrics.reconcileErrors.inc();
          throw e;
        } finally {
          end();
          this.metrics.queueDepth.set(this.queue.len());
        }
      },
      {
        concurrency: o.concurrency ?? 4,
        baseBackoffMs: o.backoffBaseMs,
        maxBackoffMs: o.backoffMaxMs,
        onError: (key, err) =>
          this.log(`Reconcile of HybridServeDeployment ${key} failed (requeued with backoff): ${(err as Error).message}`),
      },
    );
    const ns = o.leaseNamespace ?? process.env.POD_NAMESPACE ?? this.client.defaultNamespace();
    this.elector = new LeaderElector(
      this.client,
      {
        namespace: ns,
        name: o.leaseName ?? 'hybridserve-operator',
        identity: this.identity,
        leaseDurationMs: o.leaseDurationMs,
        renewMs: o.leaseRenewMs,
        retryMs: o.leaseRetryMs,
      },
      {
        onStartedLeading: () => {
          this.log(`Acquired leader Lease ${ns}/${o.leaseName ?? 'hybridserve-operator'} as ${this.identity}`);
          this.metrics.leader.set(1);
          void this.startControllers();
        },
        onError: (e) => this.log(`Leader election on Lease ${ns}/${o.leaseName ?? 'hybridserve-operator'} failed: ${(e as Error).message}`),
        onStoppedLeading: () => {
          this.log('Lost the leader Lease; stopping controllers');
          this.metrics.leader.set(0);
          void this.stopControllers();
        },
      },
    );
  }

  get healthPort(): number | undefined {
    return this.health?.port;
  }
  isLeader(): boolean {
    return this.elector.isLeader();
  }
  isSynced(): boolean {
    return this.synced;
  }

  async start(): Promise<void> {
    if (this.o.metricsPort !== undefined) {
      this.health = await startHealthServer(this.o.metricsPort, this.o.metricsHost ?? '0.0.0.0', this.metrics.registry, {
        healthy: () => !this.stopped,
        ready: () => !this.stopped && (!this.elector.isLeader() || this.synced),
      });
    }
    this.elector.start();
  }

  /** Waits until nothing is queued or running (tests and the bench). */
  idle(): Promise<void> {
    return this.queue.idle();
  }
  enqueueAll(): void {
    for (const h of this.informers?.hsd.list() ?? []) this.queue.add(keyOf(h));
  }

  private async startControllers(): Promise<void> {
    if (this.informers || this.stopped) return;
    const sel = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
    const ns = this.namespaces;
    const inf = {
      hsd: scoped(ns, (n) => this.client.informer<HybridServeDeployment & KubeObject>({ type: R.hsd, namespace: n })),
      nodes: this.client.informer<NodeLike & KubeObject>({ type: R.node }),
      deps: scoped(ns, (n) => this.client.informer<DeploymentLike>({ type: R.deployment, namespace: n }, sel)),
      pods: scoped(ns, (n) => this.client.informer<PodLike & KubeObject>({ type: R.pod, namespace: n }, sel)),
      cms: scoped(ns, (n) => this.client.informer<ConfigMapLike>({ type: R.configMap, namespace: n }, sel)),
    };
    this.informers = inf;
    this.watchLeaderWorkerSets(inf);
    const enqueueHsd = (o: KubeObject) => this.queue.add(keyOf(o));
    const enqueueOwner = (o: KubeObject & { metadata: { labels?: Record<string, string> } }) => {
      const owner = o.metadata.labels?.[LABEL_INSTANCE];
      if (owner) this.queue.add(`${o.metadata.namespace ?? 'default'}/${owner}`);
    };
    for (const v of ['add', 'update', 'delete'] as const) {
      inf.hsd.on(v, enqueueHsd);
      inf.nodes.on(v, () => this.enqueueAll());
      inf.deps.on(v, enqueueOwner);
      inf.pods.on(v, enqueueOwner);
      inf.cms.on(v, enqueueOwner);
    }
    // client-node's ListWatch stops on any error but 410: restart it after a pause (it relists).
    for (const [name, i] of Object.entries(inf) as [string, Informer<KubeObject>][]) {
      i.on('error', (err) => {
        if (this.stopped || this.informers !== inf) return;
        this.log(`Watch of ${name} failed (${(err as Error)?.message ?? String(err)}); restarting`);
        const t = setTimeout(() => {
          if (!this.stopped && this.informers === inf) i.start().catch(() => undefined);
        }, 1000);
        this.timers.push(t);
      });
    }
    await Promise.all(
      Object.values(inf).map((i) => startWithRetry(i as Informer<KubeObject>, () => this.stopped || this.informers !== inf)),
    );
    if (this.informers !== inf) return;
    this.synced = true;
    this.enqueueAll();
    this.timers.push(
      setInterval(() => {
        if (this.feedbackRunning || !this.synced) return;
        this.feedbackRunning = true;
        feedbackTick({
          state: this.state,
          metrics: this.metrics,
          now: () => Date.now(),
          log: this.log,
          hsds: () => inf.hsd.list(),
          nodes: () => inf.nodes.list(),
          // LWS workers run a stage and answer /healthz only: the leaders carry the stats.
          pods: (ns, name) => inf.pods.list(ns).filter((p) => p.metadata.labels?.[LABEL_INSTANCE] === name && servesHttp(p)),
          enqueue: (k) => this.queue.add(k),
          intervalMsOverride: this.o.feedbackIntervalMsOverride,
        })
          .catch((e: unknown) => this.log(`feedback tick failed: ${(e as Error).message}`))
          .finally(() => {
            this.feedbackRunning = false;
          });
      }, this.o.feedbackTickMs ?? 1000),
    );
    this.timers.push(
      setInterval(() => {
        this.state.clearAppliedHashes();
        this.enqueueAll();
      }, this.o.resyncMs ?? 300_000),
    );
  }

  /**
   * LeaderWorkerSet changes (a group becoming ready or failing) wake the owner's reconcile. LWS is an
   * add-on: without its CRD the list fails, and this watch retries once a minute, apart from the
   * informers the operator needs to sync (reconcile reads each LWS itself and reports the missing API).
   */
  private watchLeaderWorkerSets(inf: NonNullable<Operator['informers']>): void {
    const sel = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
    const lws = scoped(this.namespaces, (n) => this.client.informer<KubeObject>({ type: R.leaderWorkerSet, namespace: n }, sel));
    this.lwsInformer = lws;
    const enqueueOwner = (o: KubeObject & { metadata: { labels?: Record<string, string> } }) => {
      const owner = o.metadata.labels?.[LABEL_INSTANCE];
      if (owner) this.queue.add(`${o.metadata.namespace ?? 'default'}/${owner}`);
    };
    for (const v of ['add', 'update', 'delete'] as const) lws.on(v, enqueueOwner);
    const retry = () => {
      if (this.stopped || this.informers !== inf) return;
      const again = () => {
        if (this.informers === inf && !this.stopped) lws.start().catch(retry);
      };
      this.timers.push(setTimeout(again, this.o.lwsWatchRetryMs ?? LWS_WATCH_RETRY_MS));
    };
    lws.on('error', retry);
    void lws.start().catch(retry);
  }

  private async stopControllers(): Promise<void> {
    const inf = this.informers;
    this.informers = undefined;
    const lws = this.lwsInformer;
    this.lwsInformer = undefined;
    await lws?.stop().catch(() => undefined);
    this.synced = false;
    for (const t of this.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    this.timers = [];
    if (inf) await Promise.all(Object.values(inf).map((i) => (i as Informer<KubeObject>).stop().catch(() => undefined)));
  }

  /** Graceful shutdown: stop taking work, let running reconciles finish, release the Lease. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.stopControllers();
    await this.queue.shutdown();
    await this.elector.stop();
    await this.health?.close();
    this.client.close();
  }
}

/** One informer per watched namespace behind the Informer interface (or one cluster-wide). */
type ScopedInformer<T> = Informer<T>;
function scoped<T extends KubeObject>(namespaces: readonly string[], make: (ns?: string) => Informer<T>): Informer<T> {
  if (namespaces.length === 0) return make(undefined);
  const parts = namespaces.map((n) => ({ n, i: make(n) }));
  const byNs = (n?: string) => (n === undefined ? parts : parts.filter((p) => p.n === n));
  return {
    on: ((ev: string, cb: (o: T) => void) => {
      for (const p of parts) (p.i.on as (e: string, c: (o: T) => void) => void)(ev, cb);
    }) as Informer<T>['on'],
    start: async () => {
      await Promise.all(parts.map((p) => p.i.start()));
    },
    stop: async () => {
      await Promise.all(parts.map((p) => p.i.stop()));
    },
    list: (n?: string) => byNs(n).flatMap((p) => [...p.i.list(n)]),
    get: (name: string, n?: string) =>
      byNs(n)
        .map((p) => p.i.get(name, n))
        .find((x) => x !== undefined),
  };
}

function keyOf(o: KubeObject): Key {
  return `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
}

async function startWithRetry(i: Informer<KubeObject>, cancelled: () => boolean): Promise<void> {
  for (let delay = 250; !cancelled(); delay = Math.min(delay * 2, 5000)) {
    try {
      await i.start();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
