// Issue 11: at --act-fraction auto on CUDA the pools must be split at the fraction the engine then
// runs. openRuntime now learns the device name before splitting (server/runtime.ts); these are the
// two decisions it chains, for the issue's command line on an H200.
import { describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { engineLayerBufferBytes, gpuKvBlockBytes, modelProfile } from '../../planning/index.js';
import {
  DEFAULT_CUDA_STEP_TOKENS,
  chooseFraction,
  choosePools,
  chooseStepTokens,
  chooseTiers,
  placementOf,
  serverStartPlan,
} from '../../planning/server-start.js';
import { openPlanned, type RuntimeOptions } from '../../server/runtime.js';

const cfg = presetConfig('opt-13b')!;
const issue: RuntimeOptions & { maxTotalTokens: number } = {
  model: 'synthetic:opt-13b',
  device: 'cuda',
  actFraction: 'auto',
  hostMemoryBytes: 96 * 2 ** 30,
  maxBatch: 128,
  maxTotalTokens: 2048,
};

describe('server runtime: fraction and pools agree', () => {
  test('with the device known, auto picks ACT and the ACT pool gets blocks for it', () => {
    // An L4: the tiered plan streams layers and keeps a host KV/ACT tier there, so auto picks ACT
    // (on an H200 with this host budget the cache goes to the GPU tier at fraction 0).
    const { fraction } = chooseFraction(issue, cfg, 'NVIDIA L4');
    expect(fraction).toBeGreaterThan(0);
    const pools = choosePools(issue, cfg, fraction);
    expect(pools.actBlocks).toBeGreaterThan(0);
    // Enough of both kinds for the issue's 128 sequences of 512 + 32 tokens at that fraction.
    const perSeq = Math.ceil(544 / 16);
    expect(pools.actBlocks).toBeGreaterThanOrEqual(Math.floor(128 * perSeq * fraction) - 128);
  });

  test('without it, auto falls back to 0 and says so; the pools are then all KV, matching', () => {
    const r = chooseFraction(issue, cfg, '');
    expect(r.fraction).toBe(0);
    expect(r.reason).toMatch(/no hardware profile/);
    expect(choosePools(issue, cfg, r.fraction).actBlocks).toBe(0);
  });
});

// Issue 10: a cuda server without a plan file places weights and cache by planning (serverStartPlan),
// as the operator's plan file would: all layers resident and the cache in the GPU tier where they
// fit, fewer layers and a mini-batch split under a memory cap; flags and a plan file win.
describe('server runtime: the start plan places a cuda server without a plan file', () => {
  const GiB = 2 ** 30;
  const serve = { ...issue, maxBatch: 64 };

  test('an H200: every layer resident, the cache in the GPU tier, from the planner', () => {
    const start = serverStartPlan({ ...serve, model: cfg, product: 'NVIDIA-H200' });
    expect(start.plan).toBeDefined();
    const tiers = chooseTiers(serve, cfg.numLayers, start);
    expect(tiers.residentLayers).toBe(40);
    expect(tiers.gpuKvBlocks).toBeGreaterThan(0);
    expect(placementOf(serve, cfg.numLayers, start).source).toMatch(/resident layers: planner; GPU cache blocks: planner/);
    // The fraction comes from the same plan (the cache is in HBM: nothing to recompute).
    expect(chooseFraction(serve, cfg, 'NVIDIA-H200', start).fraction).toBe(start.plan!.actFraction);
  });

  test('a 24 GiB cap: fewer layers, a mini-batch split, and a workspace for the largest step the server may form', () => {
    const capped = { ...serve, gpuMemoryBytes: 24 * GiB };
    const start = serverStartPlan({ ...capped, model: cfg, product: 'NVIDIA-H200' });
    const tiers = chooseTiers(capped, cfg.numLayers, start);
    expect(tiers.residentLayers).toBeLessThan(40);
    expect(tiers.miniBatchTokens).toBeGreaterThan(0);
    expect(tiers.gpuMemoryBytes).toBe(24 * GiB);
    // 64 prompts of 2047 tokens in one step: their fp32 hidden states alone are 2.7 GB of the workspace.
    const mp = modelProfile(cfg);
    expect(start.plan!.gpuWorkspaceBytes).toBeGreaterThan(64 * 2047 * mp.hiddenSize * 4);
    const engineNeeds =
      mp.headBytes + engineLayerBufferBytes(mp, true) + tiers.residentLayers! * mp.layerBytes + start.plan!.gpuWorkspaceBytes!;
    expect(engineNeeds + tiers.gpuKvBlocks! * gpuKvBlockBytes(mp, 16)).toBeLessThanOrEqual(24 * GiB);
  });

  test('--max-step-tokens under a 24 GiB cap: a workspace for that many rows, so more layers stay resident', () => {
    const capped = { ...serve, maxBatch: 128, gpuMemoryBytes: 24 * GiB };
    const whole = serverStartPlan({ ...capped, model: cfg, product: 'NVIDIA-H200' }).plan!;
    const stepped = serverStartPlan({ ...capped, maxStepTokens: 16384, model: cfg, product: 'NVIDIA-H200' }).plan!;
    const mp = modelProfile(cfg);
    // 128 prompts of 2047 tokens: 5.4 GB of fp32 hidden states; under the cap at most 16,384 rows.
    expect(whole.gpuWorkspaceBytes!).toBeGreaterThan(128 * 2047 * mp.hiddenSize * 4);
    expect(stepped.gpuWorkspaceBytes!).toBeLessThan(whole.gpuWorkspaceBytes! - 3 * GiB);
    expect(stepped.residentLayers).toBeGreaterThan(whole.residentLayers);
    // The plans say what their workspace holds; the server keeps its steps within it.
    expect(whole.maxStepTokens).toBe(128 * 2047);
    expect(stepped.maxStepTokens).toBe(16384);
    const engineNeeds =
      mp.headBytes + engineLayerBufferBytes(mp, true) + stepped.residentLayers * mp.layerBytes + stepped.gpuWorkspaceBytes!;
    expect(engineNeeds + stepped.gpuKvBlocks! * gpuKvBlockBytes(mp, 16)).toBeLessThanOrEqual(24 * GiB);
  });

  test('the step cap: the flag (0 turns it off), else on cuda the plan file’s workspace rows, else the cuda default, none on cpu', () => {
    const plan = { actFraction: 0, maxStepTokens: 65536 };
    const maxBatch = 128;
    expect(chooseStepTokens({ device: 'cuda', plan, maxBatch, maxStepTokens: 16384 })).toEqual({
      maxStepTokens: 16384,
      source: '--max-step-tokens',
    });
    expect(chooseStepTokens({ device: 'cuda', plan, maxBatch, maxStepTokens: 0 }).maxStepTokens).toBe(0);
    expect(chooseStepTokens({ device: 'cuda', plan, maxBatch })).toEqual({ maxStepTokens: 65536, source: 'the plan file' });
    expect(chooseStepTokens({ device: 'cpu', plan, maxBatch }).maxStepTokens).toBe(0); // no GPU workspace to protect
    expect(chooseStepTokens({ device: 'cpu', maxBatch }).maxStepTokens).toBe(0);
    expect(chooseStepTokens({ device: 'cuda', plan: { actFraction: 0 }, maxBatch })).toEqual({
      maxStepTokens: DEFAULT_CUDA_STEP_TOKENS,
      source: 'the cuda default',
    });
    // A decode step holds one token per sequence: the default never splits one.
    expect(chooseStepTokens({ device: 'cuda', maxBatch: 20000 }).maxStepTokens).toBe(20000);
  });

  test('flags and a plan file win; cpu, pipelines and unknown GPUs are not planned', () => {
    const flagged = { ...serve, residentLayers: 0 };
    const start = serverStartPlan({ ...flagged, model: cfg, product: 'NVIDIA-H200' });
    const tiers = chooseTiers(flagged, cfg.numLayers, start);
    expect(tiers.residentLayers).toBe(0); // the flag, and the planner planned around it
    expect(start.plan!.residentLayers).toBe(0);
    const withFile = { ...serve, plan: { actFraction: 0.5, residentLayers: 12 } };
    expect(serverStartPlan({ ...withFile, model: cfg, product: 'NVIDIA-H200' }).plan).toBeUndefined();
    expect(chooseTiers(withFile, cfg.numLayers).residentLayers).toBe(12);
    expect(serverStartPlan({ ...serve, device: 'cpu', model: cfg, product: '' }).plan).toBeUndefined();
    expect(serverStartPlan({ ...serve, gpus: 2, model: cfg, product: 'NVIDIA-H200' }).reason).toMatch(/pipeline/);
    const unknown = serverStartPlan({ ...serve, model: cfg, product: 'Some GPU' });
    expect(unknown.plan).toBeUndefined();
    expect(unknown.reason).toMatch(/no hardware profile for 'Some GPU'/);
    expect(chooseTiers(serve, cfg.numLayers, unknown)).toEqual({});
  });
});

describe('server runtime: opening with the start plan', () => {
  test('the planned placement opens; if it cannot, the unplanned one does and the reason is kept', async () => {
    const planned = { residentLayers: 40, gpuKvBlocks: 8000, miniBatchTokens: 8704 };
    const unplanned = {};
    const opened: object[] = [];
    const ok = await openPlanned(async (t) => (opened.push(t), 'engine'), planned, unplanned);
    expect(ok).toEqual({ engine: 'engine', tiers: planned });
    const failing = async (t: object) => {
      opened.push(t);
      if (t === planned) throw new Error('cannot start the engine: cuda backend: out of GPU memory');
      return 'engine';
    };
    const fell = await openPlanned(failing, planned, unplanned);
    expect(fell.tiers).toBe(unplanned);
    expect(fell.fellBack).toMatch(/out of GPU memory/);
    // No start plan (flags or a plan file placed it): the error is the caller's, unchanged.
    await expect(openPlanned(failing, planned, undefined)).rejects.toThrow(/out of GPU memory/);
  });
});
