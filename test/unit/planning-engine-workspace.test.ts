// planning/engine-workspace.ts: the CUDA engine's layer slots and step workspace as the planner
// counts them, checked against which placements the engine could and could not hold on an H200
// under a 24 GiB cap (bench/data/placement-sweep-opt13b-24g-h200.jsonl and its stderr: "GPU memory
// budget exceeded" for 30, 32 and 35 resident layers in 4 mini-batches).
import { describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import {
  engineLayerBufferBytes,
  engineWorkspaceBytes,
  gpuKvBlockBytes,
  workspaceStepRows,
  modelProfile,
  planNode,
  tieredLayout,
  requireHardwareProfile,
  type WorkspaceShape,
} from '../../planning/index.js';

const GiB = 2 ** 30;
const mp = modelProfile(presetConfig('opt-13b')!);
const shape = (miniBatches: number, over: Partial<WorkspaceShape> = {}): WorkspaceShape => ({
  batch: 128,
  promptTokens: 512,
  seqTokens: 544,
  actFraction: 1,
  blockTokens: 16,
  miniBatchTokens: Math.ceil(128 / miniBatches) * 544,
  ...over,
});

/** The engine's test under --gpu-memory: its allocations within the cap less the GPU cache tier (engine.cu). */
function engineHolds(resident: number, miniBatches: number, gpuBlocks: number): boolean {
  const budget = 24 * GiB - gpuBlocks * gpuKvBlockBytes(mp, 16);
  const need =
    mp.headBytes +
    engineLayerBufferBytes(mp, resident < mp.numLayers) +
    resident * mp.layerBytes +
    engineWorkspaceBytes(mp, shape(miniBatches));
  return need <= budget;
}

describe('engine workspace', () => {
  test('a step cap bounds the hidden states; one window-long prompt reserves its rows (and score buffers without the fused attention)', () => {
    const base = engineWorkspaceBytes(mp, shape(4));
    // Under a cap of 16,384 new tokens, a batch of 2,047-token prompts holds 16,384 rows, not 128 × 2,047.
    const long = shape(4, { promptTokens: 2047, seqTokens: 2048 });
    const capped = engineWorkspaceBytes(mp, { ...long, stepTokens: 16384 });
    expect(engineWorkspaceBytes(mp, long) - capped).toBeGreaterThanOrEqual((128 * 2047 - 16384) * mp.hiddenSize * 4);
    expect(workspaceStepRows({ ...long, stepTokens: 16384 })).toBe(16384);
    expect(workspaceStepRows(shape(4, { longestPromptTokens: 2047 }))).toBe(128 * 512);
    expect(workspaceStepRows({ batch: 2, promptTokens: 512, longestPromptTokens: 2047 })).toBe(2047);
    // OPT-13B (head dim 128) runs its prompts' attention fused, from the pages: one 2,047-token prompt
    // next to the 128 × 512 run needs no score buffers (its rows and pages fit the run's).
    const scoreBytes = (p: typeof mp) => p.numHeads * (2047 * 2047 - 512 * 512) * 6;
    const withLong = engineWorkspaceBytes(mp, shape(4, { longestPromptTokens: 2047 }));
    expect(withLong - base).toBeLessThan(scoreBytes(mp) / 10);
    // A head dim the fused kernel is not built for (96) keeps the GEMM path: fp32 scores and fp16 probabilities.
    const hd96 = modelProfile({ ...presetConfig('opt-13b')!, hiddenSize: 3072, numHeads: 32, numKvHeads: 32, headDim: 96, ffnSize: 12288 });
    expect(hd96.qDim / hd96.numHeads).toBe(96);
    const gemmLong = engineWorkspaceBytes(hd96, shape(4, { longestPromptTokens: 2047 })) - engineWorkspaceBytes(hd96, shape(4));
    expect(gemmLong).toBeGreaterThanOrEqual(scoreBytes(hd96));
    // The placement lays out the GPU with it (a server's largest step), and says how many rows it holds.
    const run = { batch: 128, promptTokens: 512, genTokens: 32, actFraction: 1, blockTokens: 16, miniBatchTokens: 17408 };
    const plain = tieredLayout(hd96, 80 * GiB, run, 20)!;
    const served = tieredLayout(
      hd96,
      80 * GiB,
      { ...run, largestStep: { sequences: 0, promptTokens: 0, seqTokens: 2048, longestPromptTokens: 2047 } },
      20,
    )!;
    expect(served.workspaceBytes! - plain.workspaceBytes!).toBeGreaterThanOrEqual(scoreBytes(hd96));
    expect(served.gpuKvBlocks!).toBeLessThan(plain.gpuKvBlocks!);
    expect(plain.stepTokens).toBe(128 * 512);
  });

  test('classifies the measured 24 GiB placements as the engine did', () => {
    const ran: Array<[number, number, number]> = [
      [20, 4, 28],
      [24, 4, 28],
      [26, 4, 28],
      [28, 4, 28],
      [30, 9, 6],
      [31, 9, 6],
    ];
    const failed: Array<[number, number, number]> = [
      [30, 4, 28],
      [32, 4, 28],
      [35, 4, 28],
    ];
    for (const [r, m, g] of ran) expect([r, m, g, engineHolds(r, m, g)]).toEqual([r, m, g, true]);
    for (const [r, m, g] of failed) expect([r, m, g, engineHolds(r, m, g)]).toEqual([r, m, g, false]);
  });

  test('the prefill holds every prompt row in fp32; the staging follows the mini-batch and the fraction', () => {
    const base = engineWorkspaceBytes(mp, shape(4));
    // Twice the batch at the same mini-batch size: the hidden states and the logits double, nothing else.
    const twice = engineWorkspaceBytes(mp, shape(4, { batch: 256 }));
    expect(twice - base).toBe(128 * 512 * mp.hiddenSize * 4 + 128 * (mp.hiddenSize * 6 + mp.vocabSize * 4));
    expect(engineWorkspaceBytes(mp, shape(9))).toBeLessThan(base);
    expect(engineWorkspaceBytes(mp, shape(4, { actFraction: 0 }))).toBeLessThan(base);
    expect(engineWorkspaceBytes(mp, shape(1))).toBeGreaterThan(base);
  });

  test('a sequence longer than a mini-batch is a mini-batch of its own', () => {
    const tiny = engineWorkspaceBytes(mp, shape(1, { miniBatchTokens: 1 }));
    const one = engineWorkspaceBytes(mp, shape(128));
    expect(tiny).toBe(one);
  });

  test('layer slots: three streamed fp16 slots, none when every layer is resident; quantised layers add fp16 slots', () => {
    expect(engineLayerBufferBytes(mp, true)).toBe(3 * mp.layerBytes);
    expect(engineLayerBufferBytes(mp, false)).toBe(0);
    const fp8 = modelProfile(presetConfig('opt-13b')!, 2, 'fp8');
    expect(engineLayerBufferBytes(fp8, false)).toBe(3 * fp8.slotLayerBytes);
    expect(engineLayerBufferBytes(fp8, true)).toBe(3 * fp8.slotLayerBytes + 3 * fp8.layerBytes);
  });

  test("the planner's 24 GiB plan fits the engine as the engine counts it, with the reserve to spare", () => {
    const plan = planNode({
      model: presetConfig('opt-13b')!,
      hardware: requireHardwareProfile('NVIDIA-H200'),
      hostMemoryBytes: 120 * GiB,
      gpuMemoryBytes: 24 * GiB,
      promptTokens: 512,
      genTokens: 32,
      maxBatchCap: 128,
      actFraction: 'auto',
    });
    const miniBatches = Math.ceil(plan.maxBatch / Math.floor(plan.miniBatchTokens / 544));
    // The workspace the plan reports is the engine's for its batch and mini-batch size (at fraction 1: retunable).
    expect(plan.gpuWorkspaceBytes).toBe(
      engineWorkspaceBytes(mp, { ...shape(miniBatches), batch: plan.maxBatch, miniBatchTokens: plan.miniBatchTokens }),
    );
    const engineBudget = 24 * GiB - plan.gpuKvBlocks! * gpuKvBlockBytes(mp, 16);
    const engineNeeds =
      mp.headBytes + engineLayerBufferBytes(mp, plan.residentLayers < 40) + plan.residentLayers * mp.layerBytes + plan.gpuWorkspaceBytes!;
    expect(engineNeeds).toBeLessThanOrEqual(engineBudget - GiB);
    expect(plan.residentLayers).toBeGreaterThanOrEqual(26); // at least the engine's own fit
  });
});
