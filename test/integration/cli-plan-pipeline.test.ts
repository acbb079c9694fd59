// `hybridserve plan --gpus N` prints the pipeline's own prediction, and `--gpus auto` the planner's
// GPU count and why (issue 15), through run() with real presets and the real hardware table.
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { run } from '../../cli/plan.js';
import { captureConsoleLog } from '../fixtures/helpers.js';
import { CliError } from '../../cli/errors.js';
import { presetConfig } from '../../model/presets.js';
import { hardwareProfile, planNode } from '../../planning/index.js';
import { planPodStages } from '../../planning/stage-plan.js';
import { predictPipeline } from '../../planning/pipeline-predict.js';

const out = captureConsoleLog();

async function planJson(...argv: string[]): Promise<Record<string, unknown>> {
  out.length = 0;
  expect(await run([...argv, '--json'])).toBe(0);
  expect(out).toHaveLength(1);
  return JSON.parse(out[0]) as Record<string, unknown>;
}

const GiB = 2 ** 30;
// OPT-66B with an 80 GiB GPU share: one H200 streams about 26 of its 64 layers every step.
const OPT66 = ['--model', 'synthetic:opt-66b', '--gpu', 'NVIDIA-H200', '--host-memory', '400GiB', '--gpu-memory', '80GiB'];

describe('plan --gpus N: the pipeline block', () => {
  test('JSON: pipeline { groups, roundSeconds, tokensPerSecond, decodeTokensPerSecond, prefillSeconds } beside the stage fields', async () => {
    const p = await planJson(...OPT66, '--gpus', '2');
    expect(p.stages).toHaveLength(2);
    expect(p).toHaveProperty('predictedTokensPerSecond');
    const pipe = p.pipeline as Record<string, number>;
    expect(Object.keys(pipe).sort()).toEqual([
      'bubble',
      'decodeTokensPerSecond',
      'groups',
      'prefillSeconds',
      'roundSeconds',
      'tokensPerSecond',
    ]);
    expect(pipe.groups).toBe(2);
    expect(pipe.bubble).toBe(0);
    // The same figures as predictPipeline on the same stage plan.
    const model = presetConfig('opt-66b')!;
    const hardware = hardwareProfile('NVIDIA-H200')!;
    const plan = planPodStages({
      model,
      pods: 1,
      stagesPerPod: 2,
      podHostMemoryBytes: 400 * GiB,
      planStage: (m, bytes, placement) =>
        planNode({ ...placement, model: m, hardware, hostMemoryBytes: bytes, gpuMemoryBytes: 80 * GiB, actFraction: 'auto' }),
    });
    const want = predictPipeline({ model, hardware, plan });
    expect(pipe.roundSeconds).toBeCloseTo(want.roundSeconds, 12);
    expect(pipe.tokensPerSecond).toBeCloseTo(want.tokensPerSecond, 9);
    expect(pipe.prefillSeconds).toBeCloseTo(want.prefillSeconds, 12);
    // Two groups of half the batch in flight: each stage works two group-steps per round.
    expect(pipe.decodeTokensPerSecond).toBeCloseTo((p.maxBatch as number) / pipe.roundSeconds, 9);
    // Text: the stage's figures and the pipeline's.
    out.length = 0;
    expect(await run([...OPT66, '--gpus', '2'])).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/stage throughput\s+[\d.]+ generated tokens\/s/);
    expect(text).toMatch(
      /pipeline\s+[\d.]+ generated tokens\/s incl\. prefill \([\d.]+ during decode\): 2 group\(s\) of [\d.]+ in flight, round /,
    );
    // One GPU: no pipeline block.
    expect(await planJson(...OPT66)).not.toHaveProperty('pipeline');
  });
});

describe('plan --gpus auto --visible-gpus N', () => {
  test('OPT-66B on two H200s with its weights on the host: 2, and why', async () => {
    const p = await planJson(...OPT66, '--gpus', 'auto', '--visible-gpus', '2');
    const c = p.gpuChoice as { gpus: number; reason: string; candidates: { gpus: number; tokensPerSecond: number }[] };
    expect(c.gpus).toBe(2);
    expect(c.candidates.map((x) => x.gpus)).toEqual([1, 2]);
    expect(c.candidates[1].tokensPerSecond).toBeGreaterThan(c.candidates[0].tokensPerSecond);
    expect(c.reason).toContain(`2 GPU(s) ${c.candidates[1].tokensPerSecond.toFixed(1)} tokens/s`);
    expect(p.stages).toHaveLength(2);
    expect((p.pipeline as { tokensPerSecond: number }).tokensPerSecond).toBeCloseTo(c.candidates[1].tokensPerSecond, 9);
    out.length = 0;
    expect(await run([...OPT66, '--gpus', 'auto', '--visible-gpus', '2'])).toBe(0);
    expect(out.join('\n')).toMatch(/GPUs\s+2 of 2 visible GPU\(s\): the most predicted tokens\/s/);
  });

  test('OPT-13B on eight H100s: 1 (its GPU cache tier beats any pipeline), no pipeline block', async () => {
    const p = await planJson('--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-H100-80GB-HBM3', '--gpus', 'auto', '--visible-gpus', '8');
    const c = p.gpuChoice as { gpus: number; reason: string; candidates: unknown[] };
    expect(c.gpus).toBe(1);
    expect(c.candidates).toHaveLength(8);
    expect(c.reason).toMatch(/^1 of 8 visible GPU\(s\): no pipeline beats one GPU/);
    expect(p).not.toHaveProperty('stages');
    expect(p).not.toHaveProperty('pipeline');
    expect(p.gpuKvBlocks as number).toBeGreaterThan(0);
  });

  test.each([
    [['--gpus', 'auto'], /--gpus auto needs --visible-gpus N/],
    [['--visible-gpus', '2'], /--visible-gpus is for --gpus auto/],
    [['--gpus', 'auto', '--visible-gpus', '0'], /--visible-gpus must be between 1 and 64/],
    [['--gpus', 'auto', '--visible-gpus', '2', '--nodes', '2'], /--nodes > 1 runs one GPU per pod/],
  ])('%p is a CliError (exit 2)', async (extra, re) => {
    const err = await run([...OPT66, ...extra]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(2);
    expect((err as CliError).message).toMatch(re);
  });
});

// The built bin (npm run build first): `serve --gpus auto` on cpu stops at once with one clear line.
describe('serve / generate --gpus auto --device cpu', () => {
  test.each([
    [['serve', '--device', 'cpu', '--gpus', 'auto', '--port', '0'], 'serve'],
    [['generate', '--prompt', 'hi', '--gpus', 'auto'], 'generate'],
  ])('%p exits 2 with one line', (argv, command) => {
    const r = spawnSync(process.execPath, [path.resolve('dist/cli/main.js'), ...argv], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toEqual([`hybridserve: ${command}: --gpus auto counts the visible GPUs: it is for --device cuda`]);
  });
});

// The count --gpus auto starts from (build/hybridserve.node): cudaGetDeviceCount in a CUDA build, 0 without.
describe('addon gpuCount()', () => {
  test('a non-negative integer; 0 where the build has no usable CUDA device', async () => {
    const { loadAddon, visibleGpuCount } = await import('../../native/ts/engine.js');
    const addon = loadAddon();
    const n = addon.gpuCount();
    expect(Number.isInteger(n) && n >= 0).toBe(true);
    expect(visibleGpuCount()).toBe(n);
    if (!addon.devices().includes('cuda')) expect(n).toBe(0);
    else expect(n).toBeGreaterThan(0);
  });
});
