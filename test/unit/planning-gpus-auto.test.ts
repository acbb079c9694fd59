// `serve --gpus auto` (issue 15): the server's own planning inputs through chooseGpuCount
// (planning/server-start.ts chooseGpus), pure; the visible count is a parameter here.
import { describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { chooseGpus, startWorkload } from '../../planning/server-start.js';

const GiB = 2 ** 30;
const serverDefaults = { actFraction: 'auto' as const, maxBatch: 64 };

describe('chooseGpus', () => {
  test('OPT-66B on two H200s with an 80 GiB GPU share each (weights on the host for one GPU): 2', () => {
    const c = chooseGpus(
      { ...serverDefaults, hostMemoryBytes: 400 * GiB, gpuMemoryBytes: 80 * GiB },
      presetConfig('opt-66b')!,
      'NVIDIA-H200',
      2,
      2048,
    );
    expect(c.gpus).toBe(2);
    expect(c.reason).toMatch(/^auto \(planning for NVIDIA-H200\): 2 of 2 visible GPU\(s\): the most predicted tokens\/s/);
    expect(c.reason).toMatch(/1 GPU\(s\) [\d.]+ tokens\/s .*; 2 GPU\(s\) [\d.]+ tokens\/s/);
  });

  test('OPT-13B on eight H100s at the server defaults: 1 (its GPU cache tier)', () => {
    const c = chooseGpus(serverDefaults, presetConfig('opt-13b')!, 'NVIDIA-H100-80GB-HBM3', 8, 2048);
    expect(c.gpus).toBe(1);
    expect(c.reason).toMatch(/1 of 8 visible GPU\(s\): no pipeline beats one GPU/);
  });

  test('one visible GPU needs no planning; none, or an unknown product, is a clear error', () => {
    expect(chooseGpus(serverDefaults, presetConfig('opt-13b')!, 'whatever', 1, 2048)).toEqual({ gpus: 1, reason: 'auto: one GPU visible' });
    expect(() => chooseGpus(serverDefaults, presetConfig('opt-13b')!, 'NVIDIA-H200', 0, 2048)).toThrow(/no GPU is visible/);
    expect(() => chooseGpus(serverDefaults, presetConfig('opt-13b')!, 'NVIDIA-B9000', 2, 2048)).toThrow(
      /no hardware profile for 'NVIDIA-B9000' to plan with; pass --gpus N/,
    );
  });

  test('the workload shape fits the window', () => {
    expect(startWorkload(2048)).toEqual({ promptTokens: 512, genTokens: 128 });
    expect(startWorkload(100)).toEqual({ promptTokens: 80, genTokens: 20 });
  });
});
