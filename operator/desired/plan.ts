// The plan of one node group (pure): model architecture from the spec, hardware from the GPU
// product, host memory from the node's allocatable memory, then planning's planNode. Failures are
// values (reason + message for a condition), never exceptions, so a bad spec cannot crash-loop us.
import { createHash } from 'node:crypto';
import { parseModelSpec } from '../../model/spec.js';
import { presetConfig, PRESET_NAMES } from '../../model/presets.js';
import type { ModelConfig } from '../../model/types.js';
import {
  hardwareProfile, hostLayout, hostMemoryBudgetDetail, modelProfile, planNode, podMemoryResources, splitCache, KNOWN_PRODUCTS, type Plan,
} from '../../planning/index.js';
import type { HsdSpec } from '../api/types.js';
import { isCpuGroup, type NodeGroup } from './node-groups.js';
import { formatBytes } from '../../planning/quantity.js';

/** The JSON the server reads (ConfigMap key plan.json); see the shared contract. */
export interface PlanFile {
  actFraction: number; kvBlocks?: number; actBlocks?: number; blockTokens?: number; maxBatch?: number;
  generation?: number; reason?: string;
}

export type GroupPlan =
  | { ok: true; plan: Plan; file: PlanFile; inputHash: string; retuneBounds: { min: number; max: number } }
  | { ok: false; reason: 'InvalidModel' | 'UnknownGpuProduct' | 'HostMemoryExceedsNode' | 'PlanFailed'; message: string };

export function modelConfigFor(spec: HsdSpec): ModelConfig | { error: string } {
  if (spec.model.preset) {
    // The URI is still checked (a bad pvc:// claim name must not reach the pod spec).
    try { parseModelSpec(spec.model.uri, {}); } catch (e) { return { error: (e as Error).message }; }
    const c = presetConfig(spec.model.preset);
    return c ?? { error: `unknown model preset '${spec.model.preset}' (known: ${PRESET_NAMES.join(', ')})` };
  }
  try {
    const m = parseModelSpec(spec.model.uri, {});
    if (m.kind === 'synthetic') return m.config;
    return { error: `model '${spec.model.uri}' is a checkpoint: set spec.model.preset to its architecture so the operator can plan it` };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Pods per node in this group (each takes gpusPerPod GPUs). */
export function podsPerNode(group: NodeGroup, gpusPerPod: number): number {
  return gpusPerPod > 0 ? Math.max(1, Math.floor(group.gpusPerNode / gpusPerPod)) : 1;
}

export function planGroup(spec: HsdSpec, group: NodeGroup): GroupPlan {
  const model = modelConfigFor(spec);
  if ('error' in model) return { ok: false, reason: 'InvalidModel', message: model.error };
  if (isCpuGroup(group)) return planCpuGroup(spec, group, model);
  const hardware = hardwareProfile(group.gpuProduct);
  if (!hardware) {
    return { ok: false, reason: 'UnknownGpuProduct',
      message: `node group ${group.id}: unknown GPU product '${group.gpuProduct}' (known: ${KNOWN_PRODUCTS.join(', ')})` };
  }
  const cache = spec.cache ?? {};
  const hm = cache.hostMemory ?? {};
  const share = hm.share ?? 1 / podsPerNode(group, spec.gpusPerPod ?? 1);
  let budget;
  try {
    budget = hostMemoryBudgetDetail(group.allocatableMemoryBytes, { share, bytes: hm.bytes, headroomBytes: hm.headroomBytes });
  } catch (e) {
    return { ok: false, reason: 'PlanFailed', message: `node group ${group.id}: ${(e as Error).message}` };
  }
  if (budget.clamped) {
    return { ok: false, reason: 'HostMemoryExceedsNode',
      message: `node group ${group.id}: host memory ${formatBytes(hm.bytes!)} exceeds what the node can give (${formatBytes(budget.usableBytes)} of ${formatBytes(group.allocatableMemoryBytes)} allocatable after headroom)` };
  }
  const actFraction = cache.actFraction === undefined || cache.actFraction === 'auto' ? 'auto' : Number(cache.actFraction);
  const input = {
    model, hardware, hostMemoryBytes: budget.bytes, actFraction,
    blockTokens: cache.blockTokens ?? 16,
    promptTokens: spec.engine?.promptTokens ?? 512, genTokens: spec.engine?.genTokens ?? 128,
    elementBytes: spec.engine?.elementBytes ?? 2,
  } as const;
  let plan: Plan;
  try {
    plan = planNode({ ...input, actFraction });
  } catch (e) {
    return { ok: false, reason: 'PlanFailed', message: `node group ${group.id}: ${(e as Error).message}` };
  }
  if (spec.engine?.maxBatch !== undefined) plan = { ...plan, maxBatch: Math.min(plan.maxBatch, spec.engine.maxBatch) };
  const inputHash = createHash('sha256').update(JSON.stringify({ ...input, model: model.name, hardware: hardware.product, maxBatch: spec.engine?.maxBatch }))
    .digest('hex').slice(0, 16);
  const file: PlanFile = {
    actFraction: plan.actFraction, kvBlocks: plan.kvBlocks, actBlocks: plan.actBlocks, blockTokens: plan.blockTokens,
    maxBatch: plan.maxBatch, generation: 1, reason: plan.reason,
  };
  const rb = (plan as Plan & { retuneBounds?: { min: number; max: number } }).retuneBounds ?? { min: 0, max: 1 };
  return { ok: true, plan, file, inputHash, retuneBounds: rb };
}

/** The server's default batch (`hybridserve serve --max-batch`); CPU pods run at most this many. */
export const CPU_MAX_BATCH = 64;
/** Element bytes of the CPU engine (fp32), as server/runtime.ts sizes CPU pools. */
const CPU_ELEMENT_BYTES = 4;

/**
 * A group whose pods run the CPU engine (gpusPerPod 0; its nodes may have no GPU label at all).
 * No GPU hardware profile applies and nothing streams over PCIe, so ACT would only add recomputation: the fraction is 0 and fixed
 * (retuneBounds [0, 0]). Host memory is the same budget as for GPU groups (share of allocatable
 * less headroom); the cache is what is left after the fp32 weights and the runtime, all of it KV.
 */
function planCpuGroup(spec: HsdSpec, group: NodeGroup, model: ModelConfig): GroupPlan {
  const cache = spec.cache ?? {};
  const hm = cache.hostMemory ?? {};
  const blockTokens = cache.blockTokens ?? 16;
  const promptTokens = spec.engine?.promptTokens ?? 512;
  const genTokens = spec.engine?.genTokens ?? 128;
  let budget;
  try {
    budget = hostMemoryBudgetDetail(group.allocatableMemoryBytes, { share: hm.share ?? 1, bytes: hm.bytes, headroomBytes: hm.headroomBytes });
  } catch (e) {
    return { ok: false, reason: 'PlanFailed', message: `node group ${group.id}: ${(e as Error).message}` };
  }
  if (budget.clamped) {
    return { ok: false, reason: 'HostMemoryExceedsNode',
      message: `node group ${group.id}: host memory ${formatBytes(hm.bytes!)} exceeds what the node can give (${formatBytes(budget.usableBytes)} of ${formatBytes(group.allocatableMemoryBytes)} allocatable after headroom)` };
  }
  const mp = modelProfile(model, CPU_ELEMENT_BYTES);
  let layout, split;
  try {
    layout = hostLayout(mp, budget.bytes);
    split = splitCache(mp, layout.cacheBytes, 0, blockTokens, promptTokens + genTokens, Math.min(CPU_MAX_BATCH, spec.engine?.maxBatch ?? CPU_MAX_BATCH));
  } catch (e) {
    return { ok: false, reason: 'PlanFailed', message: `node group ${group.id}: ${(e as Error).message}` };
  }
  const res = podMemoryResources(budget.bytes);
  const reason = `CPU engine (gpusPerPod 0): no PCIe transfer to hide, so ACT fraction 0 ` +
    `(ACT would only add recomputation); ${formatBytes(budget.bytes)} host memory, batch up to ${split.maxBatch}`;
  const plan: Plan = {
    actFraction: 0, hostMemoryBytes: budget.bytes, kvBlocks: split.kvBlocks, actBlocks: split.actBlocks, blockTokens,
    maxBatch: split.maxBatch, predictedStepSeconds: 0, predictedTokensPerSecond: 0, reason,
    memoryRequestBytes: res.requestBytes, memoryLimitBytes: res.limitBytes, weightBytes: layout.weightBytes, cacheBytes: layout.cacheBytes,
    model: mp.name, gpuProduct: group.gpuProduct, gpuMemoryBytes: 0, gpuUsedBytes: 0, runtimeBytes: layout.runtimeBytes,
    kvBlockBytes: split.kvBlockBytes, actBlockBytes: split.actBlockBytes, residentLayers: mp.numLayers, numLayers: mp.numLayers,
    miniBatchTokens: 0, miniBatchBytes: 0, promptTokens, genTokens, predictedPrefillSeconds: 0, predictedDecodeTokensPerSecond: 0,
    predictedPhases: { transferSeconds: 0, computeSeconds: 0, recomputeSeconds: 0, idleSeconds: 0 }, bound: 'compute',
    retuneBounds: { min: 0, max: 0 }, sweep: [],
  };
  const inputHash = createHash('sha256').update(JSON.stringify({ cpu: true, model: model.name, hostMemoryBytes: budget.bytes, blockTokens, promptTokens, genTokens, maxBatch: spec.engine?.maxBatch }))
    .digest('hex').slice(0, 16);
  const file: PlanFile = { actFraction: 0, kvBlocks: split.kvBlocks, actBlocks: split.actBlocks, blockTokens, maxBatch: split.maxBatch, generation: 1, reason };
  return { ok: true, plan, file, inputHash, retuneBounds: { min: 0, max: 0 } };
}

const CACHE_LIMIT = 4096;
const cache = new Map<string, GroupPlan>();

/**
 * planGroup memoised on exactly the inputs it reads (it is pure): a reconcile of an unchanged HSD
 * and the feedback loop then cost a map lookup instead of a solver run (~5-20 ms each).
 */
export function planGroupCached(spec: HsdSpec, group: NodeGroup): GroupPlan {
  const key = JSON.stringify([spec.model, spec.cache, spec.engine, spec.gpusPerPod, group.gpuProduct, group.allocatableMemoryBytes, group.gpusPerNode, group.id]);
  const hit = cache.get(key);
  if (hit) { cache.delete(key); cache.set(key, hit); return hit; }
  const p = planGroup(spec, group);
  cache.set(key, p);
  if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  return p;
}
