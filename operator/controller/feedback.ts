// The feedback loop: on each HSD's retune interval, GET every ready pod's /v1/hybridserve/stats,
// diff the counters against the previous scrape, aggregate per node group, run planning's retune()
// and, when it moves the fraction, write the next plan generation into the group's ConfigMap (the
// pods reload it live) and record an Event. The operator autoscaler decides from the same figures.
// Then the HSD is requeued so that reconcile publishes the figures in status.
import { FIELD_MANAGER, type HybridServeDeployment } from '../api/types.js';
import type { KubeClient, KubeObject } from '../k8s/client.js';
import { isNotFound } from '../k8s/errors.js';
import { R } from '../k8s/resources.js';
import { desiredReplicas } from '../desired/autoscale.js';
import { ANNOTATION_PLAN_INPUT, LABEL_GROUP, PLAN_KEY, configMap, configMapName } from '../desired/objects.js';
import { groupNodes, isCpuGroup, type NodeLike } from '../desired/node-groups.js';
import { aggregate, parseStats, podDelta, type PodDelta } from '../feedback/measure.js';
import { planGroupCached as planGroup } from '../desired/plan.js';
import { initialRetuneState, retune, type RetuneOptions } from '../../planning/index.js';
import { parsePlanFile } from './reconcile.js';
import type { RuntimeState } from './state.js';
import type { EventRecorder } from './events.js';
import type { OperatorMetrics } from './metrics.js';

export const PORT_ANNOTATION = 'hybridserve.io/port';

export interface PodLike {
  metadata: { name: string; namespace?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string>; deletionTimestamp?: string };
  spec?: { containers?: { ports?: { name?: string; containerPort: number }[] }[] };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}

export interface FeedbackDeps {
  client: KubeClient;
  state: RuntimeState;
  events: EventRecorder;
  metrics: OperatorMetrics;
  hsds(): readonly HybridServeDeployment[];
  nodes(): readonly NodeLike[];
  pods(namespace: string, hsdName: string): readonly PodLike[];
  enqueue(key: string): void;
  /** Overrides spec.cache.retune.intervalSeconds (tests). */
  intervalMsOverride?: number;
  scrapeTimeoutMs?: number;
  now(): number;
}

export function podReady(p: PodLike): boolean {
  return !p.metadata.deletionTimestamp && Boolean(p.status?.podIP) && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

export function statsUrl(p: PodLike): string | undefined {
  const ann = p.metadata.annotations?.[PORT_ANNOTATION];
  const port = ann ? Number(ann) : p.spec?.containers?.[0]?.ports?.find((x) => x.name === 'http')?.containerPort;
  if (!p.status?.podIP || !port) return undefined;
  const host = p.status.podIP.includes(':') ? `[${p.status.podIP}]` : p.status.podIP;
  return `http://${host}:${port}/v1/hybridserve/stats`;
}

async function scrape(url: string, timeoutMs: number): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

/** One pass over every HSD whose interval has elapsed. Never throws. */
export async function feedbackTick(deps: FeedbackDeps): Promise<void> {
  const now = deps.now();
  await Promise.all(deps.hsds().map(async (hsd) => {
    if (hsd.metadata.deletionTimestamp) return;
    const key = `${hsd.metadata.namespace}/${hsd.metadata.name}`;
    const rt = deps.state.get(key);
    const interval = deps.intervalMsOverride ?? (hsd.spec.cache?.retune?.intervalSeconds ?? 30) * 1000;
    if (rt.lastFeedbackMs !== undefined && now - rt.lastFeedbackMs < interval) return;
    rt.lastFeedbackMs = now;
    try { await feedbackForHsd(hsd, key, deps); } catch { /* the next interval tries again */ }
  }));
}

async function feedbackForHsd(hsd: HybridServeDeployment, key: string, deps: FeedbackDeps): Promise<void> {
  const ns = hsd.metadata.namespace ?? 'default';
  const pods = deps.pods(ns, hsd.metadata.name).filter(podReady);
  const byGroup = new Map<string, PodDelta[]>();
  let queueSum = 0; let tps = 0; let measuredPods = 0;
  const live = new Set<string>();
  await Promise.all(pods.map(async (p) => {
    const url = statsUrl(p); const uid = `${key}|${p.metadata.uid ?? p.metadata.name}`;
    const group = p.metadata.labels?.[LABEL_GROUP];
    if (!url || !group) return;
    live.add(uid);
    let snap;
    try { snap = parseStats(await scrape(url, deps.scrapeTimeoutMs ?? 3000)); } catch { deps.metrics.scrapeErrors.inc(); return; }
    if (!snap) { deps.metrics.scrapeErrors.inc(); return; }
    const prev = deps.state.podStats.get(uid);
    deps.state.podStats.set(uid, snap);
    const d = prev && podDelta(prev, snap);
    if (!d) return;
    byGroup.set(group, [...(byGroup.get(group) ?? []), d]);
    queueSum += d.queueDepth; tps += d.generatedTokens / d.seconds; measuredPods++;
  }));
  // Pods that are gone or not ready lose their baseline (a restart must not look like negative work).
  for (const uid of [...deps.state.podStats.keys()]) if (uid.startsWith(`${key}|`) && !live.has(uid)) deps.state.podStats.delete(uid);

  const groups = groupNodes(deps.nodes(), hsd.spec);
  const auto = (hsd.spec.cache?.actFraction ?? 'auto') === 'auto' && hsd.spec.cache?.retune?.enabled !== false;
  let changedAny = false;
  for (const g of groups) {
    const m = aggregate(byGroup.get(g.id) ?? []);
    if (!m) continue;
    const grt = deps.state.group(key, g.id);
    grt.measured = {
      tokensPerSecond: round(m.tokensPerSecond), queueDepth: round(m.queueDepth), transferSeconds: round(m.transferSeconds),
      computeSeconds: round(m.computeSeconds), recomputeSeconds: round(m.recomputeSeconds), idleSeconds: round(m.idleSeconds),
      steps: m.steps, pods: m.pods, at: new Date(deps.now()).toISOString(),
    };
    changedAny = true;
    // CPU groups keep ACT fraction 0: with nothing streamed over PCIe there is no transfer time to trade.
    if (!auto || m.steps <= 0 || isCpuGroup(g)) continue;
    const plan = planGroup(hsd.spec, g);
    if (!plan.ok) continue;
    const cmRef = { type: R.configMap, namespace: ns, name: configMapName(hsd, g) };
    let cm: KubeObject & { data?: Record<string, string>; metadata: { annotations?: Record<string, string> } };
    try { cm = await deps.client.get(cmRef); } catch (e) { if (isNotFound(e)) continue; throw e; }
    if (cm.metadata.annotations?.[ANNOTATION_PLAN_INPUT] !== plan.inputHash) continue; // reconcile has not caught up yet
    const file = parsePlanFile(cm.data?.[PLAN_KEY]);
    if (!file) continue;
    const r = hsd.spec.cache?.retune ?? {};
    const opts = retuneOptions(r, plan.retuneBounds);
    const state = grt.retune && grt.retune.actFraction === file.actFraction ? grt.retune : initialRetuneState(file.actFraction);
    const out = retune(state, m, opts);
    grt.retune = out.state;
    if (!out.changed || out.state.actFraction === file.actFraction) continue;
    const next = { ...file, actFraction: out.state.actFraction, generation: (file.generation ?? 1) + 1, reason: `retuned: ${out.reason}` };
    await deps.client.apply(cmRef, configMap(hsd, g, next, plan.inputHash), FIELD_MANAGER);
    deps.metrics.retunes.inc();
    await deps.events.record(hsd, 'Normal', 'ActFractionRetuned', 'Retune',
      `node group ${g.id}: ACT fraction ${file.actFraction} -> ${next.actFraction} (plan generation ${next.generation}): ${out.reason}`);
  }

  if (hsd.spec.autoscaling?.enabled) {
    const rt = deps.state.get(key);
    const current = rt.desiredReplicas ?? hsd.status?.autoscaler?.desiredReplicas ?? hsd.spec.replicas ?? 1;
    if (measuredPods > 0) {
      const d = desiredReplicas(hsd.spec.autoscaling, { current, readyPods: measuredPods, queueDepthPerPod: queueSum / measuredPods, tokensPerSecond: tps });
      rt.autoscaleMetric = { metric: d.metric, value: round(d.value) };
      if (d.replicas !== current) {
        rt.desiredReplicas = d.replicas; rt.lastScaleTime = new Date(deps.now()).toISOString();
        await deps.events.record(hsd, 'Normal', 'Scaled', 'Scale', `replicas ${current} -> ${d.replicas} (${d.metric} ${round(d.value)} per pod, target ${hsd.spec.autoscaling.target ?? 8})`);
      }
      changedAny = true;
    }
  }
  if (changedAny) deps.enqueue(key);
}

/**
 * Retune bounds: explicit spec bounds win (the server then admits fewer sequences when a pool runs
 * short); without them, the range where the pools sized at start still serve the planned batch.
 */
export function retuneOptions(r: NonNullable<NonNullable<HybridServeDeployment['spec']['cache']>['retune']>, bounds: { min: number; max: number }): RetuneOptions {
  const explicit = r.minActFraction !== undefined || r.maxActFraction !== undefined;
  const min = explicit ? r.minActFraction ?? 0 : bounds.min;
  const max = explicit ? r.maxActFraction ?? 1 : bounds.max;
  return { min, max, damping: r.damping ?? 0.5, hysteresis: r.hysteresis ?? 0.1, maxStep: r.maxStep ?? 0.1 };
}

function round(n: number): number { return Math.round(n * 1e4) / 1e4; }
