// The plan of one node group (pure): model architecture from the spec, hardware from the GPU
// product, host memory from the node's allocatable memory, then planning's planNode. Failures are
// values (reason + message for a condition), never exceptions, so a bad spec cannot crash-loop us.
import { createHash } from 'node:crypto';
import { parseModelSpec } from '../../model/spec.js';
import { presetConfig, PRESET_NAMES } from '../../model/presets.js';
import type { ModelConfig } from '../../model/types.js';
import { hardwareProfile, hostMemoryBudgetDetail, KNOWN_PRODUCTS, type Plan } from '../../planning/index.js';
import { planFileOf, type PlanFile } from '../../planning/plan-file.js';
import { cpuStartPlan } from '../../planning/start-plan.js';
import { nodeStagePlanner, planPodStages } from '../../planning/stage-plan.js';
import type { HsdSpec } from '../api/types.js';
import { maxTotalTokensOf, resolveSpec, type ResolvedSpec } from '../api/defaults.js';
import { isCpuGroup, type NodeGroup } from './node-groups.js';
import { formatBytes, parseByteSize } from '../../planning/quantity.js';

export type { PlanFile } from '../../planning/plan-file.js';

export type GroupPlan =
  | { ok: true; plan: Plan; file: PlanFile; inputHash: string; retuneBounds: { min: number; max: number } }
  | {
      ok: false;
      reason: 'InvalidModel' | 'UnknownGpuProduct' | 'HostMemoryExceedsNode' | 'InvalidHostMemory' | 'PlanFailed';
      message: string;
    };

/** cache.hostMemory as numbers: a quantity means bytes; the object form's sizes may be quantities too. */
export function hostMemorySpec(spec: HsdSpec): { share?: number; bytes?: number; headroomBytes?: number } | { error: string } {
  const hm = resolveSpec(spec).cache.hostMemory;
  if (typeof hm === 'string' || typeof hm === 'number') {
    const bytes = parseByteSize(hm);
    return bytes && bytes > 0 ? { bytes } : { error: 'cache.hostMemory is not a positive quantity (e.g. "48Gi")' };
  }
  const bytes = hm.bytes === undefined ? undefined : parseByteSize(hm.bytes);
  const headroomBytes = hm.headroomBytes === undefined ? undefined : parseByteSize(hm.headroomBytes);
  if (hm.bytes !== undefined && !(bytes && bytes > 0)) return { error: 'cache.hostMemory.bytes is not a positive quantity' };
  if (hm.headroomBytes !== undefined && headroomBytes === undefined) return { error: 'cache.hostMemory.headroomBytes is not a quantity' };
  return { share: hm.share, bytes, headroomBytes };
}

export function modelConfigFor(spec: HsdSpec): ModelConfig | { error: string } {
  if (spec.model.preset) {
    // The URI is still checked (a bad pvc:// claim name must not reach the pod spec).
    try {
      parseModelSpec(spec.model.uri, {});
    } catch (e) {
      return { error: (e as Error).message };
    }
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

export function planGroup(rawSpec: HsdSpec, group: NodeGroup): GroupPlan {
  const spec = resolveSpec(rawSpec);
  const model = modelConfigFor(spec);
  if ('error' in model) return { ok: false, reason: 'InvalidModel', message: model.error };
  const hm = hostMemorySpec(spec);
  if ('error' in hm) return { ok: false, reason: 'InvalidHostMemory', message: hm.error };
  const share = hm.share ?? (isCpuGroup(group) ? 1 : 1 / podsPerNode(group, spec.gpusPerPod));
  let budget;
  try {
    budget = hostMemoryBudgetDetail(group.allocatableMemoryBytes, { share, bytes: hm.bytes, headroomBytes: hm.headroomBytes });
  } catch (e) {
    return { ok: false, reason: 'PlanFailed', message: `node group ${group.id}: ${(e as Error).message}` };
  }
  if (budget.clamped) {
    return {
      ok: false,
      reason: 'HostMemoryExceedsNode',
      message: `node group ${group.id}: host memory ${formatBytes(hm.bytes!)} exceeds what the node can give (${formatBytes(budget.usableBytes)} of ${formatBytes(group.allocatableMemoryBytes)} allocatable after headroom)`,
    };
  }
  return isCpuGroup(group) ? planCpuGroup(spec, group, model, budget.bytes) : planGpuGroup(spec, group, model, budget.bytes);
}

/** The planning input the desired state is built from; its hash tells a new plan from a retuned one. */
function planGpuGroup(spec: ResolvedSpec, group: NodeGroup, model: ModelConfig, hostMemoryBytes: number): GroupPlan {
  const hardware = hardwareProfile(group.gpuProduct);
  if (!hardware) {
    return {
      ok: false,
      reason: 'UnknownGpuProduct',
      message: `node group ${group.id}: unknown GPU product '${group.gpuProduct}' (known: ${KNOWN_PRODUCTS.join(', ')})`,
    };
  }
  const actFraction = spec.cache.actFraction === 'auto' ? 'auto' : Number(spec.cache.actFraction);
  // The pod's server accepts prompts up to its window: the engine's workspace must hold one such
  // prompt alone (its rows and score buffers), beyond the planned batch of planned prompts.
  const window = Math.min(model.maxPositions, maxTotalTokensOf(spec) ?? model.maxPositions);
  const input = {
    model,
    hardware,
    hostMemoryBytes,
    actFraction,
    blockTokens: spec.cache.blockTokens,
    promptTokens: spec.engine.promptTokens,
    genTokens: spec.engine.genTokens,
    elementBytes: spec.engine.elementBytes,
    // The layer weight format: the host (and GPU) hold its bytes, so the resident layers and the
    // batch follow it. Only when quantised, so an fp16 HSD keeps the input hash it had before.
    ...(spec.engine.weightDtype !== 'fp16' ? { weightDtype: spec.engine.weightDtype } : {}),
    // Planning's SLO input (planNode's sloTpotSeconds); carried in the input either way so that a
    // change of the SLO makes a new plan.
    ...(spec.slo?.tpotSeconds !== undefined ? { sloTpotSeconds: spec.slo.tpotSeconds } : {}),
    largestStep: { sequences: 0, promptTokens: 0, seqTokens: window, longestPromptTokens: Math.max(1, window - 1) },
  } as const;
  const shape = pipelineShape(spec, group);
  let plan: Plan;
  try {
    plan = planPodStages({
      model,
      ...shape,
      podHostMemoryBytes: hostMemoryBytes,
      planStage: nodeStagePlanner(input),
    }).pod;
  } catch (e) {
    return { ok: false, reason: 'PlanFailed', message: `node group ${group.id}: ${(e as Error).message}` };
  }
  if (spec.engine.maxBatch !== undefined) plan = { ...plan, maxBatch: Math.min(plan.maxBatch, spec.engine.maxBatch) };
  const inputHash = hashInput({
    ...input,
    model: model.name,
    hardware: hardware.product,
    maxBatch: spec.engine.maxBatch,
    ...stagesKey(shape),
  });
  const file = planFileOf(plan);
  return { ok: true, plan, file, inputHash, retuneBounds: plan.retuneBounds ?? { min: 0, max: 1 } };
}

/** A group whose pods run the CPU engine: planning's CPU start plan (fraction 0, never retuned). */
function planCpuGroup(spec: ResolvedSpec, group: NodeGroup, model: ModelConfig, hostMemoryBytes: number): GroupPlan {
  const input = {
    model,
    hostMemoryBytes,
    blockTokens: spec.cache.blockTokens,
    promptTokens: spec.engine.promptTokens,
    genTokens: spec.engine.genTokens,
    maxBatch: spec.engine.maxBatch,
    gpuProduct: group.gpuProduct,
    ...(spec.engine.weightDtype !== 'fp16' ? { weightDtype: spec.engine.weightDtype } : {}),
  };
  const shape = pipelineShape(spec, group);
  let plan: Plan;
  try {
    plan = planPodStages({
      model,
      ...shape,
      podHostMemoryBytes: hostMemoryBytes,
      planStage: (m, bytes) => cpuStartPlan({ ...input, model: m, hostMemoryBytes: bytes }),
    }).pod;
  } catch (e) {
    return { ok: false, reason: 'PlanFailed', message: `node group ${group.id}: ${(e as Error).message}` };
  }
  const inputHash = hashInput({ ...input, cpu: true, model: model.name, ...stagesKey(shape) });
  const file = planFileOf(plan);
  return { ok: true, plan, file, inputHash, retuneBounds: { min: 0, max: 0 } };
}

/** Pods per replica and pipeline stages per pod: a CPU pod runs one stage, a GPU pod one per GPU. */
export function pipelineShape(spec: ResolvedSpec, group: NodeGroup): { pods: number; stagesPerPod: number } {
  return { pods: spec.parallelism.nodes, stagesPerPod: isCpuGroup(group) ? 1 : Math.max(1, spec.gpusPerPod) };
}

/** Hashed only for a pipeline, so that the plans of single-stage pods keep their hash (and generation). */
function stagesKey(shape: { pods: number; stagesPerPod: number }): Record<string, number> {
  return shape.pods * shape.stagesPerPod > 1 ? { pods: shape.pods, stagesPerPod: shape.stagesPerPod } : {};
}

function hashInput(v: unknown): string {
  return createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);
}

const CACHE_LIMIT = 4096;
const cache = new Map<string, GroupPlan>();

/**
 * planGroup memoised on exactly the inputs it reads (it is pure): a reconcile of an unchanged HSD
 * and the feedback loop then cost a map lookup instead of a solver run (~5-20 ms each).
 */
export function planGroupCached(spec: HsdSpec, group: NodeGroup): GroupPlan {
  const key = JSON.stringify([
    spec.model,
    spec.cache,
    spec.engine,
    spec.slo,
    spec.gpusPerPod,
    spec.parallelism,
    group.gpuProduct,
    group.allocatableMemoryBytes,
    group.gpusPerNode,
    group.id,
  ]);
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const p = planGroup(spec, group);
  cache.set(key, p);
  if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  return p;
}
