// The GPU cache tier through the addon: the gpuKvBlocks option, the pool and sequence stats, greedy
// tokens that do not depend on the split (CPU backend, emulated tier), and the same on the CUDA
// backend against the CPU (skipped where addon.devices() lacks 'cuda').
import { describe, expect, test } from '@jest/globals';
import { loadAddon } from '../../native/ts/engine.js';
import { chooseTiers } from '../../planning/server-start.js';
import { generate, greedy, presetEngine, relError } from './engine-helpers.js';

const prompt = [5, 17, 99, 3, 250, 7, 41];

describe('GPU cache tier (CPU backend, emulated)', () => {
  test('gpuKvBlocks fills first, is reported, and leaves greedy tokens unchanged', async () => {
    const ref = await presetEngine('opt-tiny', { kvBlocks: 64, actBlocks: 64, actFraction: 0.5 });
    const tiered = await presetEngine('opt-tiny', { kvBlocks: 64, actBlocks: 64, actFraction: 0.5, gpuKvBlocks: 2 });
    try {
      expect(tiered.pools().gpuKvBlocksTotal).toBe(2);
      const id = tiered.addSequence(Int32Array.from(prompt), { sampling: greedy }); // 2 blocks of 4 tokens
      expect(tiered.sequence(id)).toMatchObject({ gpuKvBlocks: 2, kvBlocks: 0, actBlocks: 0 });
      expect(tiered.pools().gpuKvBlocksFree).toBe(0);
      tiered.removeSequence(id);
      expect(tiered.pools().gpuKvBlocksFree).toBe(2);
      const a = await generate(ref, prompt, 9);
      const b = await generate(tiered, prompt, 9);
      expect(b.tokens).toEqual(a.tokens);
    } finally {
      await ref.close();
      await tiered.close();
    }
  });

  test('a negative or fractional gpuKvBlocks is a RangeError', async () => {
    await expect(presetEngine('opt-tiny', { gpuKvBlocks: -1 })).rejects.toThrow(/gpuKvBlocks/);
    await expect(presetEngine('opt-tiny', { gpuKvBlocks: 1.5 })).rejects.toThrow(RangeError);
  });

  test('the server applies the plan file tier sizes and --gpu-memory on cuda only (a plan sizes a GPU; the CPU tier takes flags)', () => {
    const plan = { actFraction: 0, gpuKvBlocks: 100, residentLayers: 40 } as unknown as { actFraction: number };
    expect(chooseTiers({ device: 'cuda', plan, gpuMemoryBytes: 2 ** 34 })).toEqual({
      gpuKvBlocks: 100,
      residentLayers: 40,
      gpuMemoryBytes: 2 ** 34,
    });
    expect(chooseTiers({ device: 'cpu', plan, gpuMemoryBytes: 2 ** 34 })).toEqual({});
    expect(chooseTiers({ device: 'cpu', plan, gpuKvBlocks: 8 })).toEqual({ gpuKvBlocks: 8 });
    expect(chooseTiers({ device: 'cuda', plan: { actFraction: 0 } })).toEqual({});
  });
});

const hasCuda = loadAddon().devices().includes('cuda');
(hasCuda ? describe : describe.skip)('CUDA backend through the addon (mixed tiers)', () => {
  test('greedy logits match the CPU backend with the GPU tier empty, partial and whole', async () => {
    const cpu = await presetEngine('opt-tiny', { kvBlocks: 64, actBlocks: 64, actFraction: 0.5 });
    const ref = await generate(cpu, prompt, 12);
    await cpu.close();
    for (const gpuKvBlocks of [0, 2, 64]) {
      const gpu = await presetEngine('opt-tiny', { device: 'cuda', kvBlocks: 64, actBlocks: 64, actFraction: 0.5, gpuKvBlocks });
      try {
        const got = await generate(gpu, prompt, 12);
        // fp16 weights and cache on the GPU, fp32 on the CPU: compare whole rows relatively. Greedy
        // paths may part at a near-tie, so only the first steps (before any divergence) must agree.
        const same = got.tokens.findIndex((t, i) => t !== ref.tokens[i]);
        const n = same < 0 ? 12 : same + 1;
        expect(n).toBeGreaterThanOrEqual(4);
        for (let s = 0; s < n; s++) expect(relError(got.logits[s], ref.logits[s])).toBeLessThan(0.05);
      } finally {
        await gpu.close();
      }
    }
  });
});
