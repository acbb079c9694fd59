// `hybridserve gateway` wired together: the EndpointSlice watch (or fixed upstreams, for benches
// and local use) feeds the pod table; the stats poller adds load; the proxy routes; the activity
// stamp and the scale subresource serve scale from zero. Only operator/k8s talks to Kubernetes.
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { KubeClient, loadKubeConfig, type Informer } from '../operator/k8s/client.js';
import { endpointSliceInformer, type EndpointSliceLike } from '../operator/k8s/endpoint-slices.js';
import { advertiseGateway } from '../operator/k8s/scale.js';
import { HsdActivity } from './activity.js';
import { PodTable, podAddresses } from './endpoints.js';
import { HoldQueue } from './hold.js';
import { gatewayMetrics } from './metrics.js';
import { buildProxy, type ProxyOptions } from './proxy.js';
import { DEFAULT_EJECTION, DEFAULT_ROUTING, type EjectionOptions, type RoutingOptions } from './routing.js';
import { StatsPoller } from './stats.js';

export interface GatewayOptions {
  port: number;
  host: string;
  /** Kubernetes mode: the HSD (and its Service, by default of the same name). */
  namespace?: string;
  deployment?: string;
  service?: string;
  /** Talk to this API server without auth (tests against the API double). */
  server?: string;
  /** Fixed pod URLs instead of EndpointSlices (no scale from zero). */
  upstreams?: string[];
  routing?: Partial<RoutingOptions>;
  ejection?: Partial<EjectionOptions>;
  proxy?: Partial<ProxyOptions>;
  statsIntervalMs?: number;
  maxHeld?: number;
  maxHoldMs?: number;
  /** Least time between two last-request stamps on the HSD. */
  activityIntervalMs?: number;
  /** A URL to record on the HSD (annotation hybridserve.io/gateway-url) so that status.url names the gateway. */
  advertiseUrl?: string;
  /** Period of renewed wake-ups while requests are held and no pod is ready. */
  rewakeMs?: number;
  log?: (line: string) => void;
}

export class Gateway {
  readonly table: PodTable;
  readonly hold: HoldQueue;
  readonly metrics = gatewayMetrics();
  private app?: FastifyInstance;
  private client?: KubeClient;
  private informer?: Informer<EndpointSliceLike>;
  private poller?: StatsPoller;
  private restartTimer?: NodeJS.Timeout;
  private rewakeTimer?: NodeJS.Timeout;
  private stopped = false;
  port = 0;

  constructor(private readonly o: GatewayOptions) {
    if (!o.upstreams?.length && !o.deployment)
      throw new Error('either a deployment (--deployment) or fixed upstreams (--upstream) is required');
    this.table = new PodTable({ ...DEFAULT_EJECTION, ...o.ejection });
    this.hold = new HoldQueue(o.maxHeld ?? 256, o.maxHoldMs ?? 300_000);
    if (!o.upstreams?.length) this.client = new KubeClient(loadKubeConfig({ server: o.server, namespace: o.namespace }));
  }

  private log(line: string): void {
    (this.o.log ?? ((l) => console.log(`${new Date().toISOString()} ${l}`)))(line);
  }

  async start(): Promise<void> {
    this.table.onChange(() => {
      if (this.table.readyCount() > 0) this.hold.release();
    });
    let activity: HsdActivity | undefined;
    if (this.client) {
      const namespace = this.o.namespace ?? this.client.defaultNamespace();
      activity = new HsdActivity(this.client, {
        namespace,
        name: this.o.deployment!,
        stampIntervalMs: this.o.activityIntervalMs ?? 10_000,
        log: (l) => this.log(l),
      });
      await this.watch(namespace, this.o.service ?? this.o.deployment!);
      if (this.o.advertiseUrl) {
        await advertiseGateway(this.client, namespace, this.o.deployment!, this.o.advertiseUrl).catch((e: Error) =>
          this.log(`cannot record the gateway URL on the HSD: ${e.message}`),
        );
      }
    } else {
      this.table.setAddresses(this.o.upstreams!.map((u, i) => ({ id: `upstream-${i}`, url: u.replace(/\/$/, ''), ready: true })));
    }
    this.poller = new StatsPoller(this.table, { intervalMs: this.o.statsIntervalMs ?? 1000, timeoutMs: 500, maxBytes: 64 * 1024 });
    this.poller.start();
    this.app = buildProxy(
      {
        routing: { ...DEFAULT_ROUTING, ...this.o.routing },
        blockChars: 64,
        blockTokens: 16,
        maxAttempts: 3,
        headersTimeoutMs: 600_000,
        bodyLimitBytes: 16 * 1024 * 1024,
        affinityEntries: 200_000,
        ...this.o.proxy,
      },
      {
        table: this.table,
        hold: this.hold,
        metrics: this.metrics,
        log: (l) => this.log(l),
        ...(activity ? { touch: (now: number) => activity.touch(now), wake: () => void activity.wake() } : {}),
      },
    );
    if (activity) {
      // A wake-up can fail (API server unreachable, a reset connection): ask again while requests wait.
      this.rewakeTimer = setInterval(() => {
        if (this.hold.size > 0 && this.table.readyCount() === 0) void activity.wake();
      }, this.o.rewakeMs ?? 2000);
      this.rewakeTimer.unref();
    }
    await this.app.listen({ port: this.o.port, host: this.o.host });
    this.port = (this.app.server.address() as AddressInfo).port;
  }

  /** Watches the Service's EndpointSlices; a watch that stops on an error is restarted after 1 s. */
  private async watch(namespace: string, service: string): Promise<void> {
    const inf = endpointSliceInformer(this.client!, namespace, service);
    this.informer = inf;
    const refresh = () => this.table.setAddresses(podAddresses(inf.list(namespace)));
    for (const v of ['add', 'update', 'delete'] as const) inf.on(v, refresh);
    inf.on('error', (e) => {
      this.log(`EndpointSlice watch failed (${(e as Error)?.message ?? e}); restarting in 1 s`);
      if (!this.stopped)
        this.restartTimer = setTimeout(() => {
          inf.start().then(refresh, () => undefined);
        }, 1000);
    });
    await inf.start();
    refresh();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    clearInterval(this.rewakeTimer);
    this.poller?.stop();
    this.hold.close();
    await this.informer?.stop();
    await this.app?.close();
    this.client?.close();
  }
}
