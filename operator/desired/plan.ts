// The plan of one node group (pure): model architecture from the spec, hardware from the GPU
// product, host memory from the node's allocatable memory, then planning's planNode. Failures are
// values (reason + message for a condition), never exceptions, so a bad spec cannot crash-loop us.
import { createHash } from 'node:crypto';
import { parseModelSpec } from '../../model/spec.js';
import { presetConfig, PRESET_NAMES } from '../../model/presets.js';
import type { ModelConfig } from '../../model/types.js';
import { hardwareProfile, hostMemoryBudgetDetail, planNode, KNOWN_PRODUCTS, type Plan } from '../../planning/index.js';
import type { HsdSpec } from '../api/types.js';
import type { NodeGroup } from './node-groups.js';
import { formatBytes } from './quantity.js';

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
