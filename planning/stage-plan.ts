// Plans for a model split into pipeline stages (issue 15): the layers divide evenly over
// G = pods × stagesPerPod stages (one per GPU), and each stage is planned as a model of its own
// layers with its pod's host memory shared among the pod's stages. The pod's figures (host memory,
// memory request, weights) are those of its stages added up, sized by the LARGEST stage because
// every pod of a LeaderWorkerSet shares one template. Pure.
import type { ModelConfig } from '../model/types.js';
import { PlanError } from './errors.js';
import { planNode, type NodePlanInput, type Plan } from './plan.js';

/** One stage: a contiguous layer range [firstLayer, firstLayer + layerCount). */
export interface StageRange {
  stage: number;
  firstLayer: number;
  layerCount: number;
}

/** Layers split as evenly as possible; the first `numLayers % stages` stages get one more. */
export function splitLayers(numLayers: number, stages: number): StageRange[] {
  if (!(Number.isInteger(stages) && stages >= 1)) throw new PlanError(`pipeline stages must be an integer ≥ 1, got ${stages}`);
  if (stages > numLayers) throw new PlanError(`${stages} pipeline stages need at least ${stages} layers; the model has ${numLayers}`);
  const base = Math.floor(numLayers / stages);
  const extra = numLayers % stages;
  const out: StageRange[] = [];
  let first = 0;
  for (let s = 0; s < stages; s++) {
    const layerCount = base + (s < extra ? 1 : 0);
    out.push({ stage: s, firstLayer: first, layerCount });
    first += layerCount;
  }
  return out;
}

/**
 * The model as one stage sees it: its own layers only. Embeddings and the LM head stay counted
 * (the first and last stages hold them), which over-sizes middle stages a little: the safe side.
 */
export function stageModel(model: ModelConfig, layerCount: number): ModelConfig {
  return { ...model, numLayers: layerCount };
}

export interface PodStagesInput {
  model: ModelConfig;
  /** Pods of one replica (LeaderWorkerSet size; 1 for a Deployment). */
  pods: number;
  /** Stages (GPUs) per pod; 1 for a CPU pod. */
  stagesPerPod: number;
  /** The pod's host memory budget, shared equally by its stages. */
  podHostMemoryBytes: number;
  /**
   * Plans one stage (planNode or cpuStartPlan with the caller's other inputs); `placement` holds
   * what the pipeline forces on the stage's placement, to be passed on to planNode.
   */
  planStage(model: ModelConfig, hostMemoryBytes: number, placement: StagePlacement): Plan;
}

/** Placement forced on every stage of a pipeline. */
export interface StagePlacement {
  /** 0 with more than one stage: the engine's pipeline stages do not run the GPU cache tier yet. */
  gpuKvBlocks?: number;
}

export interface PodStagesPlan {
  ranges: StageRange[];
  /** The plan of the largest stage: its pools are what every stage of the pipeline allocates. */
  stage: Plan;
  /** The pod's plan: the stage's pools, host memory, memory request and weights times stagesPerPod. */
  pod: Plan;
}

/** A planStage that plans each stage with planNode and the node's other inputs; the pipeline's placement wins. */
export function nodeStagePlanner(node: Omit<NodePlanInput, 'model' | 'hostMemoryBytes'>): PodStagesInput['planStage'] {
  return (model, hostMemoryBytes, placement) => planNode({ ...node, model, hostMemoryBytes, ...placement });
}

/** The stage plan and the pod plan of a pipeline of pods × stagesPerPod stages. */
export function planPodStages(i: PodStagesInput): PodStagesPlan {
  if (!(Number.isInteger(i.pods) && i.pods >= 1)) throw new PlanError(`pods per replica must be an integer ≥ 1, got ${i.pods}`);
  if (!(Number.isInteger(i.stagesPerPod) && i.stagesPerPod >= 1))
    throw new PlanError(`stages per pod must be an integer ≥ 1, got ${i.stagesPerPod}`);
  const stages = i.pods * i.stagesPerPod;
  const ranges = splitLayers(i.model.numLayers, stages);
  const stageBytes = Math.floor(i.podHostMemoryBytes / i.stagesPerPod);
  // native/src/pipeline/cuda/cuda_stage.cc refuses a GPU cache tier on a stage that is not the whole
  // model: a plan with one would stop the server at start.
  const placement: StagePlacement = stages > 1 ? { gpuKvBlocks: 0 } : {};
  const stage = i.planStage(stageModel(i.model, ranges[0].layerCount), stageBytes, placement);
  if (stages === 1) return { ranges, stage, pod: stage };
  const n = i.stagesPerPod;
  const pod: Plan = {
    ...stage,
    hostMemoryBytes: stage.hostMemoryBytes * n,
    memoryRequestBytes: stage.memoryRequestBytes * n,
    memoryLimitBytes: stage.memoryLimitBytes * n,
    weightBytes: stage.weightBytes * n,
    cacheBytes: stage.cacheBytes * n,
    reason:
      `pipeline of ${stages} stages (${i.pods} pod(s) × ${n}), up to ${ranges[0].layerCount} of ${i.model.numLayers} layers and ` +
      `${Math.round(stageBytes / 2 ** 30)} GiB of host memory per stage, no GPU cache tier (not run by pipeline stages yet): ${stage.reason}`,
  };
  return { ranges, stage, pod };
}
