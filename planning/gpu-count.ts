// How many GPUs a pod's pipeline should use (issue 15, `--gpus auto`): the one-GPU plan (which may
// hold cache in the GPU tier) against pipelines of 2..visible stages (no GPU cache tier), each
// predicted with groups = stages in flight (planning/pipeline-predict.ts); the most predicted
// generated tokens/s wins, and a larger count must beat every smaller one by TIE_MARGIN. Pure.
import type { ModelConfig } from '../model/types.js';
import { PlanError } from './errors.js';
import type { HardwareProfile } from './hardware.js';
import type { PodStagesPlan } from './stage-plan.js';
import { predictPipeline, type PipelinePrediction } from './pipeline-predict.js';

/** A larger GPU count must predict more than (1 + TIE_MARGIN)× the best smaller one: predictions are not that exact. */
export const TIE_MARGIN = 0.02;

export interface GpuCountInput {
  /** GPUs this process sees (cudaGetDeviceCount). */
  visible: number;
  model: ModelConfig;
  hardware: HardwareProfile;
  /** The plan of a pipeline of `stages` stages on this pod (planPodStages with stagesPerPod = stages). */
  planFor(stages: number): PodStagesPlan;
}

export interface GpuCountCandidate {
  gpus: number;
  prediction?: PipelinePrediction;
  /** Why this count has no prediction (its plan failed: too many stages, too little memory). */
  error?: string;
}

export interface GpuCountChoice {
  gpus: number;
  prediction: PipelinePrediction;
  plan: PodStagesPlan;
  candidates: GpuCountCandidate[];
  reason: string;
}

const tps = (x: number) => `${x.toFixed(1)} tokens/s`;
const secs = (s: number) => (s < 1 ? `${(s * 1e3).toFixed(1)} ms` : `${s.toFixed(2)} s`);

function candidate(i: GpuCountInput, gpus: number): { c: GpuCountCandidate; plan?: PodStagesPlan } {
  try {
    const plan = i.planFor(gpus);
    const groups = Math.min(plan.ranges.length, Math.max(1, Math.floor(plan.stage.maxBatch)));
    return { c: { gpus, prediction: predictPipeline({ model: i.model, hardware: i.hardware, plan, groups }) }, plan };
  } catch (err) {
    if (err instanceof PlanError) return { c: { gpus, error: err.message } };
    throw err;
  }
}

function describe(c: GpuCountCandidate, plan?: PodStagesPlan): string {
  if (!c.prediction) return `${c.gpus} GPU(s): no plan (${c.error})`;
  const p = c.prediction;
  const tier = c.gpus === 1 ? `, GPU cache tier ${plan?.stage.gpuKvBlocks ?? 0} blocks` : '';
  return (
    `${c.gpus} GPU(s) ${tps(p.tokensPerSecond)} (batch ${Math.floor(plan?.stage.maxBatch ?? 0)} in ${p.groups} group(s), ` +
    `round ${secs(p.roundSeconds)}, prefill ${secs(p.prefillSeconds)}, ${p.bound}-bound${tier})`
  );
}

/** The GPU count with the best predicted tokens/s; ties (within TIE_MARGIN) go to fewer GPUs. */
export function chooseGpuCount(i: GpuCountInput): GpuCountChoice {
  if (!(Number.isInteger(i.visible) && i.visible >= 1)) throw new PlanError(`no GPU to plan for: ${i.visible} visible`);
  const all = Array.from({ length: i.visible }, (_, k) => candidate(i, k + 1));
  let best: (typeof all)[number] | undefined;
  for (const x of all) {
    const t = x.c.prediction?.tokensPerSecond;
    if (t === undefined) continue;
    if (!best || t > best.c.prediction!.tokensPerSecond * (1 + TIE_MARGIN)) best = x;
  }
  if (!best || !best.plan) {
    throw new PlanError(`no GPU count up to ${i.visible} has a plan: ${all.map((x) => describe(x.c)).join('; ')}`);
  }
  const list = all.map((x) => describe(x.c, x.plan)).join('; ');
  const why =
    best.c.gpus === 1
      ? i.visible === 1
        ? 'one GPU visible'
        : `no pipeline beats one GPU by more than ${TIE_MARGIN * 100}%`
      : `the most predicted tokens/s (a larger count must win by more than ${TIE_MARGIN * 100}%)`;
  return {
    gpus: best.c.gpus,
    prediction: best.c.prediction!,
    plan: best.plan,
    candidates: all.map((x) => x.c),
    reason: `${best.c.gpus} of ${i.visible} visible GPU(s): ${why}; ${list}`,
  };
}
