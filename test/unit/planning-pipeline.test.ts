// A pipeline's predicted round, throughput and prefill (planning/pipeline-predict.ts) against hand
// arithmetic, and the GPU count the planner picks (planning/gpu-count.ts).
import { describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import {
  PlanError,
  decodeStepCost,
  hardwareProfile,
  modelProfile,
  planNode,
  predict,
  prefillSeconds,
  type GpuLayout,
  type NodePlanInput,
} from '../../planning/index.js';
import { streamAll } from './planning-layouts.js';
import { planPodStages, stageModel } from '../../planning/stage-plan.js';
import { pipelineCost, predictPipeline } from '../../planning/pipeline-predict.js';
import { chooseGpuCount, TIE_MARGIN } from '../../planning/gpu-count.js';

const opt13b = presetConfig('opt-13b')!;
const h200 = hardwareProfile('NVIDIA-H200')!;
const GiB = 2 ** 30;

const allResident = (layers: number): GpuLayout => ({ ...streamAll(), residentLayers: layers });

const workload = { promptTokens: 512, genTokens: 128 };
const B = 64;

describe('pipelineCost', () => {
  test('S = 1, one group: exactly the one-GPU predict()', () => {
    const mp = modelProfile(opt13b);
    const one = pipelineCost({ stage: mp, hw: h200, layout: streamAll(), actFraction: 0.3, batch: B, stages: 1, groups: 1, workload });
    const ref = predict(mp, h200, streamAll(), 0.3, B, workload);
    expect(one.roundSeconds).toBeCloseTo(ref.stepSeconds, 12);
    expect(one.prefillSeconds).toBeCloseTo(ref.prefillSeconds, 12);
    expect(one.tokensPerSecond).toBeCloseTo(ref.tokensPerSecond, 9);
    expect(one.decodeTokensPerSecond).toBeCloseTo(ref.decodeTokensPerSecond, 9);
    expect(one.bubble).toBe(0);
  });

  // OPT-13B, all on host, KV only, batch 64 of 512 + 128 tokens (mean context 576) on an H200 link:
  //   W = 40 layers × 0.629 GB = 25.2 GB, C = 64 × 576 tokens × 20480 B/token/layer × 40 = 30.2 GB.
  // One GPU: step ≈ (W + C)/BW. Two stages, two groups of 32: a group-step moves W/2 + C/4, a round
  // is two of them: (W + C/2)/BW. Gain ≈ (W + C)/(W + C/2) = 55.4/40.3 ≈ 1.37, not 2. The cost
  // model adds the write-back, the lm_head and the host work per sequence, hence the 3% tolerance.
  test('S = 2, two groups, all on host: the (W + C)/(W + C/2) gain (weights re-streamed per group)', () => {
    const full = modelProfile(opt13b);
    const stage = modelProfile(stageModel(opt13b, 20));
    const W = full.numLayers * full.layerBytes;
    const C = B * (workload.promptTokens + workload.genTokens / 2) * full.kvBytesPerToken * full.numLayers;
    const ideal = (W + C) / (W + C / 2);
    expect(ideal).toBeGreaterThan(1.35);
    expect(ideal).toBeLessThan(1.4);
    const one = predict(full, h200, streamAll(), 0, B, workload);
    const two = pipelineCost({ stage, hw: h200, layout: streamAll(), actFraction: 0, batch: B, stages: 2, groups: 2, workload });
    expect(two.groupBatch).toBe(32);
    expect(two.bound).toBe('transfer');
    const gain = one.stepSeconds / two.roundSeconds;
    expect(Math.abs(gain / ideal - 1)).toBeLessThan(0.03);
    // The round is two group-steps of the stage at batch 32.
    const t = decodeStepCost(stage, h200, streamAll(), { actFraction: 0, batch: 32, contextTokens: 576 }).stepSeconds;
    expect(two.roundSeconds).toBeCloseTo(2 * t, 12);
    expect(two.decodeTokensPerSecond).toBeCloseTo(B / (2 * t), 9);
    // Prefill: two groups pipelined through two stages, three group-prefill slots.
    const p = prefillSeconds(stage, h200, streamAll(), { actFraction: 0, batch: 32, promptTokens: 512 });
    expect(two.prefillSeconds).toBeCloseTo(3 * p, 12);
    expect(two.tokensPerSecond).toBeCloseTo((B * 128) / (3 * p + 128 * 2 * t), 9);
  });

  test('groups < stages: the bubble; one group over two stages gains nothing over one GPU', () => {
    const full = modelProfile(opt13b);
    const stage = modelProfile(stageModel(opt13b, 20));
    const one = predict(full, h200, streamAll(), 0, B, workload);
    const g1 = pipelineCost({ stage, hw: h200, layout: streamAll(), actFraction: 0, batch: B, stages: 2, groups: 1, workload });
    const g2 = pipelineCost({ stage, hw: h200, layout: streamAll(), actFraction: 0, batch: B, stages: 2, groups: 2, workload });
    expect(g1.bubble).toBe(0.5);
    expect(g2.bubble).toBe(0);
    // One group of 64 waits for both stages each token: round = 2 × (W/2 + C/2)/BW ≈ the one-GPU step.
    const t = decodeStepCost(stage, h200, streamAll(), { actFraction: 0, batch: B, contextTokens: 576 }).stepSeconds;
    expect(g1.roundSeconds).toBeCloseTo(2 * t, 12);
    expect(Math.abs(one.stepSeconds / g1.roundSeconds - 1)).toBeLessThan(0.03);
    expect(g2.decodeTokensPerSecond).toBeGreaterThan(1.3 * g1.decodeTokensPerSecond);
    // Four groups on two stages: each stage runs 4 group-steps of 16 per round, no bubble.
    const g4 = pipelineCost({ stage, hw: h200, layout: streamAll(), actFraction: 0, batch: B, stages: 2, groups: 4, workload });
    expect(g4.bubble).toBe(0);
    expect(g4.roundSeconds).toBeCloseTo(
      4 * decodeStepCost(stage, h200, streamAll(), { actFraction: 0, batch: 16, contextTokens: 576 }).stepSeconds,
      12,
    );
  });

  // Resident weights, a small batch of short sequences: the step is the GEMMs reading the weights
  // from HBM (26 GB / 4.29 TB/s ≈ 6 ms); each stage reads its half once per group, twice per round:
  // the same 26 GB per round as one GPU, so ~no gain (the cache, 4 × 24 tokens, is negligible).
  test('resident weights, compute-bound: ~no gain from a second stage', () => {
    const full = modelProfile(opt13b);
    const stage = modelProfile(stageModel(opt13b, 20));
    const small = { promptTokens: 16, genTokens: 16 };
    const one = predict(full, h200, allResident(40), 0, 4, small);
    const two = pipelineCost({ stage, hw: h200, layout: allResident(20), actFraction: 0, batch: 4, stages: 2, groups: 2, workload: small });
    expect(one.step.bound).toBe('compute');
    const gain = two.decodeTokensPerSecond / one.decodeTokensPerSecond;
    expect(gain).toBeGreaterThan(0.9);
    expect(gain).toBeLessThan(1.1);
  });

  test('bad counts are PlanErrors', () => {
    const stage = modelProfile(stageModel(opt13b, 20));
    const base = { stage, hw: h200, layout: streamAll(), actFraction: 0, batch: 4, stages: 2, groups: 2, workload };
    expect(() => pipelineCost({ ...base, groups: 0 })).toThrow(PlanError);
    expect(() => pipelineCost({ ...base, stages: 1.5 })).toThrow(/pipeline stages must be an integer/);
    expect(() => pipelineCost({ ...base, batch: 1 })).toThrow(/cannot fill 2 groups/);
  });
});

function podPlans(model: string, gpu: string, hostGiB: number, extra: Partial<NodePlanInput> = {}) {
  const cfg = presetConfig(model)!;
  const hardware = hardwareProfile(gpu)!;
  const planFor = (stagesPerPod: number) =>
    planPodStages({
      model: cfg,
      pods: 1,
      stagesPerPod,
      podHostMemoryBytes: hostGiB * GiB,
      planStage: (m, bytes, placement) =>
        planNode({ ...extra, ...placement, model: m, hardware, hostMemoryBytes: bytes, actFraction: 'auto' }),
    });
  return { cfg, hardware, planFor };
}

describe('predictPipeline', () => {
  test('a one-stage plan predicts what the plan says', () => {
    const { cfg, hardware, planFor } = podPlans('opt-30b', 'NVIDIA-H200', 256, { gpuMemoryBytes: 40 * GiB });
    const plan = planFor(1);
    const p = predictPipeline({ model: cfg, hardware, plan });
    expect(p.stages).toBe(1);
    expect(p.roundSeconds).toBeCloseTo(plan.stage.predictedStepSeconds, 12);
    expect(p.prefillSeconds).toBeCloseTo(plan.stage.predictedPrefillSeconds, 12);
    expect(p.tokensPerSecond).toBeCloseTo(plan.stage.predictedTokensPerSecond, 9);
  });

  test('a two-stage plan: groups default to one per stage; its round is two group-steps of the stage plan', () => {
    const { cfg, hardware, planFor } = podPlans('opt-30b', 'NVIDIA-H200', 256, { gpuMemoryBytes: 40 * GiB });
    const plan = planFor(2);
    const p = predictPipeline({ model: cfg, hardware, plan });
    expect(p.groups).toBe(2);
    expect(p.groupBatch).toBe(plan.stage.maxBatch / 2);
    // One group over two stages: half the time idle, and slower.
    const g1 = predictPipeline({ model: cfg, hardware, plan, groups: 1 });
    expect(g1.bubble).toBe(0.5);
    expect(p.decodeTokensPerSecond).toBeGreaterThan(g1.decodeTokensPerSecond);
  });
});

describe('chooseGpuCount', () => {
  // OPT-66B (123 GiB of weights) with an 80 GiB GPU share: one H200 streams 26 of its 64 layers every
  // step; two stages of 32 layers (61 GiB each) hold them all and stream only cache.
  test('H200 × 2, OPT-66B with its weights on the host → 2, naming both figures', () => {
    const { cfg, hardware, planFor } = podPlans('opt-66b', 'NVIDIA-H200', 400, { gpuMemoryBytes: 80 * GiB });
    const c = chooseGpuCount({ visible: 2, model: cfg, hardware, planFor });
    expect(c.gpus).toBe(2);
    const [one, two] = c.candidates.map((x) => x.prediction!.tokensPerSecond);
    expect(two).toBeGreaterThan(1.5 * one);
    expect(c.reason).toContain(`1 GPU(s) ${one.toFixed(1)} tokens/s`);
    expect(c.reason).toContain(`2 GPU(s) ${two.toFixed(1)} tokens/s`);
    expect(c.reason).toMatch(/^2 of 2 visible GPU\(s\): the most predicted tokens\/s/);
    expect(c.plan.ranges).toHaveLength(2);
  });

  // OPT-13B (24 GiB) on an H100 holds every layer and ~4300 KV blocks in its GPU cache tier: decode
  // reads the cache at HBM speed. Pipeline stages get no GPU tier, their cache crosses PCIe.
  test('H100 × 8, OPT-13B (fits one GPU with its cache tier) → 1, naming the figures', () => {
    const { cfg, hardware, planFor } = podPlans('opt-13b', 'NVIDIA-H100-80GB-HBM3', 256);
    const c = chooseGpuCount({ visible: 8, model: cfg, hardware, planFor });
    expect(c.gpus).toBe(1);
    expect(c.candidates).toHaveLength(8);
    const tps = c.candidates.map((x) => x.prediction!.tokensPerSecond);
    expect(Math.max(...tps.slice(1))).toBeLessThan(tps[0]);
    expect(c.reason).toMatch(/^1 of 8 visible GPU\(s\): no pipeline beats one GPU/);
    expect(c.reason).toMatch(
      /1 GPU\(s\) [\d.]+ tokens\/s \(batch \d+ in 1 group\(s\), round [\d.]+ ms, .*GPU cache tier [1-9]\d* blocks\)/,
    );
    expect(c.reason).toContain(`8 GPU(s) ${tps[7].toFixed(1)} tokens/s`);
  });

  test('ties go to fewer GPUs; a count whose plan fails is listed, not chosen', () => {
    const { cfg, hardware, planFor } = podPlans('opt-13b', 'NVIDIA-H200', 256);
    const base = planFor(1);
    // Every count predicts the same figures: 1 wins.
    const same = chooseGpuCount({ visible: 3, model: cfg, hardware, planFor: () => base });
    expect(same.candidates.map((x) => x.prediction!.tokensPerSecond)).toEqual(Array(3).fill(same.prediction.tokensPerSecond));
    expect(same.gpus).toBe(1);
    expect(TIE_MARGIN).toBeGreaterThan(0);
    const failing = chooseGpuCount({
      visible: 2,
      model: cfg,
      hardware,
      planFor: (n) => {
        if (n === 2) throw new PlanError('too small');
        return base;
      },
    });
    expect(failing.gpus).toBe(1);
    expect(failing.reason).toContain('2 GPU(s): no plan (too small)');
    expect(() => chooseGpuCount({ visible: 0, model: cfg, hardware, planFor })).toThrow(/no GPU to plan for/);
  });
});
