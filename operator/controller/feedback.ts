// The feedback loop: on each HSD's retune interval, GET every ready pod's /v1/hybridserve/stats
// (bounded in time and size), diff the counters against the previous scrape, aggregate per node
// group and run planning's retune() and the operator autoscaler. It WRITES NOTHING to the cluster:
// the figures, the retuner's proposal and the scaling decision go into RuntimeState and the HSD is
// enqueued; reconcile, the only writer of children and status, applies them. Errors are logged and
// counted (hybridserve_operator_feedback_errors_total), never swallowed.
import type { HybridServeDeployment } from '../api/types.js';
import { resolveSpec, type ResolvedSpec } from '../api/defaults.js';
import { desiredReplicas } from '../desired/autoscale.js';
import { LABEL_GROUP } from '../desired/objects.js';
import { groupNodes, isCpuGroup, type NodeLike } from '../desired/node-groups.js';
import { aggregate, parseStats, podDelta, type PodDelta } from '../feedback/measure.js';
import { planGroupCached as planGroup } from '../desired/plan.js';
import { initialRetuneState, retune, type RetuneOptions } from '../../planning/index.js';
import { retuneEnabled } from './reconcile.js';
import type { RuntimeState } from './state.js';
import type { OperatorMetrics } from './metrics.js';

/** Largest stats body read from a pod (the real one is ~1 KiB); a bigger one is an error, not a memory sink. */
export const MAX_STATS_BYTES = 64 * 1024;

export const PORT_ANNOTATION = 'hybridserve.io/port';

export interface PodLike {
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec?: { containers?: { ports?: { name?: string; containerPort: number }[] }[] };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}

export interface FeedbackDeps {
  state: RuntimeState;
  metrics: OperatorMetrics;
  hsds(): readonly HybridServeDeployment[];
  nodes(): readonly NodeLike[];
  pods(namespace: string, hsdName: string): readonly PodLike[];
  enqueue(key: string): void;
  log(message: string): void;
  /** Overrides spec.cache.retune.intervalSeconds (tests). */
  intervalMsOverride?: number;
  scrapeTimeoutMs?: number;
  maxStatsBytes?: number;
  now(): number;
}

export function podReady(p: PodLike): boolean {
  return (
    !p.metadata.deletionTimestamp &&
    Boolean(p.status?.podIP) &&
    p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true
  );
}

export function statsUrl(p: PodLike): string | undefined {
  const ann = p.metadata.annotations?.[PORT_ANNOTATION];
  const port = ann ? Number(ann) : p.spec?.containers?.[0]?.ports?.find((x) => x.name === 'http')?.containerPort;
  if (!p.status?.podIP || !port) return undefined;
  const host = p.status.podIP.includes(':') ? `[${p.status.podIP}]` : p.status.podIP;
  return `http://${host}:${port}/v1/hybridserve/stats`;
}

/** Reads a response body up to `max` bytes; a longer one is cancelled and rejected. */
export async function readCapped(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel();
    throw new Error(`body of ${declared} bytes exceeds the ${max}-byte cap`);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      throw new Error(`body exceeds the ${max}-byte cap`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function scrape(url: string, timeoutMs: number, maxBytes: number): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`HTTP ${res.status}`);
  }
  return JSON.parse(await readCapped(res, maxBytes));
}

/** One pass over every HSD whose interval has elapsed. Never throws: failures are logged and counted. */
export async function feedbackTick(deps: FeedbackDeps): Promise<void> {
  const now = deps.now();
  await Promise.all(
    deps.hsds().map(async (hsd) => {
      if (hsd.metadata.deletionTimestamp) return;
      const key = `${hsd.metadata.namespace}/${hsd.metadata.name}`;
      const rt = deps.state.get(key);
      const interval = deps.intervalMsOverride ?? resolveSpec(hsd.spec).cache.retune.intervalSeconds * 1000;
      if (rt.lastFeedbackMs !== undefined && now - rt.lastFeedbackMs < interval) return;
      rt.lastFeedbackMs = now;
      try {
        feedbackForHsd(hsd, key, await scrapeHsd(hsd, key, deps), deps);
      } catch (e) {
        deps.metrics.feedbackErrors.inc();
        deps.log(`Feedback for HybridServeDeployment ${key} failed: ${(e as Error).message}`);
      }
    }),
  );
}

interface Scraped {
  byGroup: Map<string, PodDelta[]>;
  queueSum: number;
  tps: number;
  measuredPods: number;
}

/** Scrapes the HSD's ready pods; per-pod failures are counted and logged, and skip that pod. */
async function scrapeHsd(hsd: HybridServeDeployment, key: string, deps: FeedbackDeps): Promise<Scraped> {
  const ns = hsd.metadata.namespace ?? 'default';
  const pods = deps.pods(ns, hsd.metadata.name).filter(podReady);
  const out: Scraped = { byGroup: new Map(), queueSum: 0, tps: 0, measuredPods: 0 };
  const live = new Set<string>();
  await Promise.all(
    pods.map(async (p) => {
      const url = statsUrl(p);
      const uid = `${key}|${p.metadata.uid ?? p.metadata.name}`;
      const group = p.metadata.labels?.[LABEL_GROUP];
      if (!url || !group) return;
      live.add(uid);
      let snap;
      // Every failure is counted; it is logged when the pod starts failing, not on every interval.
      const failed = (why: string) => {
        deps.metrics.scrapeErrors.inc();
        if (!deps.state.scrapeFailing.has(uid)) deps.log(`Scrape of pod ${ns}/${p.metadata.name} stats failed: ${why}`);
        deps.state.scrapeFailing.add(uid);
      };
      try {
        snap = parseStats(await scrape(url, deps.scrapeTimeoutMs ?? 3000, deps.maxStatsBytes ?? MAX_STATS_BYTES));
      } catch (e) {
        failed((e as Error).message);
        return;
      }
      if (!snap) {
        failed("the body is not the stats contract's shape");
        return;
      }
      deps.state.scrapeFailing.delete(uid);
      const prev = deps.state.podStats.get(uid);
      deps.state.podStats.set(uid, snap);
      const d = prev && podDelta(prev, snap);
      if (!d) return;
      out.byGroup.set(group, [...(out.byGroup.get(group) ?? []), d]);
      out.queueSum += d.queueDepth;
      out.tps += d.generatedTokens / d.seconds;
      out.measuredPods++;
    }),
  );
  // Pods that are gone or not ready lose their baseline (a restart must not look like negative work).
  for (const uid of [...deps.state.podStats.keys()]) if (uid.startsWith(`${key}|`) && !live.has(uid)) deps.state.podStats.delete(uid);
  for (const uid of [...deps.state.scrapeFailing]) if (uid.startsWith(`${key}|`) && !live.has(uid)) deps.state.scrapeFailing.delete(uid);
  return out;
}

/** Records figures, retune proposals and the scaling decision in state (pure apart from state). */
function feedbackForHsd(hsd: HybridServeDeployment, key: string, m: Scraped, deps: FeedbackDeps): void {
  const spec = resolveSpec(hsd.spec);
  const groups = groupNodes(deps.nodes(), spec);
  const auto = retuneEnabled(spec);
  let changedAny = false;
  for (const g of groups) {
    const agg = aggregate(m.byGroup.get(g.id) ?? []);
    if (!agg) continue;
    const grt = deps.state.group(key, g.id);
    grt.measured = {
      tokensPerSecond: round(agg.tokensPerSecond),
      queueDepth: round(agg.queueDepth),
      transferSeconds: round(agg.transferSeconds),
      computeSeconds: round(agg.computeSeconds),
      recomputeSeconds: round(agg.recomputeSeconds),
      idleSeconds: round(agg.idleSeconds),
      steps: agg.steps,
      pods: agg.pods,
      at: new Date(deps.now()).toISOString(),
    };
    changedAny = true;
    // CPU groups keep ACT fraction 0: with nothing streamed over PCIe there is no transfer time to trade.
    if (!auto || agg.steps <= 0 || isCpuGroup(g)) continue;
    const plan = planGroup(spec, g);
    // Retune only what reconcile applied for the current planning input.
    if (!plan.ok || grt.applied?.inputHash !== plan.inputHash) continue;
    const applied = grt.applied;
    const state = grt.retune && grt.retune.actFraction === applied.actFraction ? grt.retune : initialRetuneState(applied.actFraction);
    const out = retune(state, agg, retuneOptions(spec.cache.retune, plan.retuneBounds));
    grt.retune = out.state;
    grt.proposal =
      out.changed && out.state.actFraction !== applied.actFraction
        ? { inputHash: plan.inputHash, actFraction: out.state.actFraction, reason: out.reason }
        : undefined;
  }

  if (spec.autoscaling.enabled && m.measuredPods > 0) {
    const rt = deps.state.get(key);
    const current = rt.desiredReplicas ?? rt.appliedReplicas ?? spec.replicas;
    const d = desiredReplicas(spec.autoscaling, {
      current,
      readyPods: m.measuredPods,
      queueDepthPerPod: m.queueSum / m.measuredPods,
      tokensPerSecond: m.tps,
    });
    rt.autoscaleMetric = { metric: d.metric, value: round(d.value) };
    if (d.replicas !== current) {
      rt.desiredReplicas = d.replicas;
      rt.lastScaleTime = new Date(deps.now()).toISOString();
      rt.scaleNote = `replicas ${current} -> ${d.replicas} (${d.metric} ${round(d.value)} per pod, target ${spec.autoscaling.target})`;
    }
    changedAny = true;
  }
  if (changedAny) deps.enqueue(key);
}

/**
 * Retune bounds: explicit spec bounds win (the server then admits fewer sequences when a pool runs
 * short); without them, the range where the pools sized at start still serve the planned batch.
 */
export function retuneOptions(r: ResolvedSpec['cache']['retune'], bounds: { min: number; max: number }): RetuneOptions {
  const explicit = r.minActFraction !== undefined || r.maxActFraction !== undefined;
  const min = explicit ? (r.minActFraction ?? 0) : bounds.min;
  const max = explicit ? (r.maxActFraction ?? 1) : bounds.max;
  return { min, max, damping: r.damping, hysteresis: r.hysteresis, maxStep: r.maxStep };
}

function round(n: number): number {
  return Math.round(n * 1e4) / 1e4;
}
