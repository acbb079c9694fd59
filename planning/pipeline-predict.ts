// What a pipeline of S stages (one per GPU) gives with G groups of sequences in flight (issue 15).
// Pure; docs/planning.md ("Pipeline throughput") derives it.
//
// The pipeline's batch B (the stage plan's maxBatch: every stage holds the cache of its own layers
// for all B sequences) splits into G groups of b = B/G. A group-step on a stage is the cost model's
// decode step of the stage's model (its layers, the stage plan's layout and ACT fraction) at batch b:
// its layers' weights stream once per GROUP (W/S per group-step, not per round), its layers' cache of
// b sequences streams (C/S per round over the G groups). A group's next step needs its sampled token,
// so it runs again only after passing all S stages: with G ≥ S every stage works G group-steps per
// round back to back; with G < S it idles S − G of every S group-step slots (the bubble):
//   round   = max(G, S) · t_stage(b)                   every group advances one token
//   decode  = B / round tokens/s
//   prefill = (G + S − 1) · p_stage(b)                  G prompts pipelined through S stages
//   tokens/s = B·gen / (prefill + gen · round)
// Taken as the stage plan's step: the lm_head (the last stage's) and the leader's host work per
// sequence are counted on every stage's clock (the slowest stage bounds the round). Hidden states
// between stages (b × hidden × 2 bytes per group-step, peer-to-peer) are not counted.
import type { ModelConfig } from '../model/types.js';
import { PlanError } from './errors.js';
import type { HardwareProfile } from './hardware.js';
import { modelProfile, type ModelProfile } from './model-profile.js';
import { decodeStepCost, prefillSeconds, type GpuLayout, type WorkloadShape } from './cost-model.js';
import type { Plan } from './plan.js';
import { stageModel, type PodStagesPlan } from './stage-plan.js';

export interface PipelineCostInput {
  /** One stage's model profile (its layers only: stageModel). */
  stage: ModelProfile;
  hw: HardwareProfile;
  /** One stage's GPU layout (a pipeline stage has no GPU cache tier). */
  layout: GpuLayout;
  actFraction: number;
  /** Sequences of the whole pipeline, all groups together. */
  batch: number;
  stages: number;
  /** Groups of sequences in flight (the server runs one lane per stage). */
  groups: number;
  workload: WorkloadShape;
}

export interface PipelinePrediction {
  stages: number;
  groups: number;
  /** Sequences of one group, B / G. */
  groupBatch: number;
  /** One group-step on one stage (its layers at the group batch). */
  stageStepSeconds: number;
  /** Every group advances one token: max(G, S) group-steps. */
  roundSeconds: number;
  /** Share of a stage's time idle for want of a group (S − G)/S when G < S, else 0. */
  bubble: number;
  decodeTokensPerSecond: number;
  /** Until the last group's prompt has passed the last stage. */
  prefillSeconds: number;
  /** Generated tokens per second over prefill + generation. */
  tokensPerSecond: number;
  bound: 'transfer' | 'compute' | 'recompute';
}

function checkCount(v: number, what: string): void {
  if (!(Number.isInteger(v) && v >= 1)) throw new PlanError(`${what} must be an integer ≥ 1, got ${v}`);
}

/** The pipeline's round, decode rate and prefill from one stage's cost. */
export function pipelineCost(i: PipelineCostInput): PipelinePrediction {
  checkCount(i.stages, 'pipeline stages');
  checkCount(i.groups, 'groups in flight');
  if (!(i.batch >= i.groups)) throw new PlanError(`a batch of ${i.batch} sequences cannot fill ${i.groups} groups`);
  const b = i.batch / i.groups;
  const { promptTokens, genTokens } = i.workload;
  const step = decodeStepCost(i.stage, i.hw, i.layout, {
    actFraction: i.actFraction,
    batch: b,
    contextTokens: promptTokens + genTokens / 2,
  });
  const roundSeconds = Math.max(i.groups, i.stages) * step.stepSeconds;
  const pre = (i.groups + i.stages - 1) * prefillSeconds(i.stage, i.hw, i.layout, { actFraction: i.actFraction, batch: b, promptTokens });
  return {
    stages: i.stages,
    groups: i.groups,
    groupBatch: b,
    stageStepSeconds: step.stepSeconds,
    roundSeconds,
    bubble: Math.max(0, i.stages - i.groups) / i.stages,
    decodeTokensPerSecond: i.batch / roundSeconds,
    prefillSeconds: pre,
    tokensPerSecond: (i.batch * genTokens) / (pre + genTokens * roundSeconds),
    bound: step.bound,
  };
}

/** The GPU layout a plan was predicted with (the parts the cost model reads). */
export function layoutOfPlan(p: Plan): GpuLayout {
  const gpuKvBlocks = p.gpuKvBlocks ?? 0;
  return {
    budgetBytes: p.gpuMemoryBytes,
    reserveBytes: 0,
    headBytes: 0,
    residentLayers: p.residentLayers,
    layerBufferBytes: 0,
    cacheBufferBytes: 2 * p.miniBatchBytes,
    miniBatchTokens: p.miniBatchTokens,
    usedBytes: p.gpuUsedBytes,
    gpuKvBlocks,
    gpuKvTokens: gpuKvBlocks * p.blockTokens,
  };
}

export interface PipelineInput {
  model: ModelConfig;
  hardware: HardwareProfile;
  /** planPodStages' result: the largest stage's plan and the layer split. */
  plan: PodStagesPlan;
  /** Groups in flight (default: one per stage, as the server's lanes). */
  groups?: number;
  /** Bytes per cache and activation element (default 2, as planNode). */
  elementBytes?: number;
}

/** The pipeline's predicted figures for a stage plan (S = 1: the plan's own prediction). */
export function predictPipeline(i: PipelineInput): PipelinePrediction {
  const stages = i.plan.ranges.length;
  const stage = i.plan.stage;
  const mp = modelProfile(stageModel(i.model, i.plan.ranges[0].layerCount), i.elementBytes ?? 2, stage.weightDtype ?? 'fp16');
  return pipelineCost({
    stage: mp,
    hw: i.hardware,
    layout: layoutOfPlan(stage),
    actFraction: stage.actFraction,
    batch: stage.maxBatch,
    stages,
    groups: i.groups ?? stages,
    workload: { promptTokens: stage.promptTokens, genTokens: stage.genTokens },
  });
}
