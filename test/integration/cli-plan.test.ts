// `hybridserve plan` end to end through its run() (the dispatcher in cli/main.ts only maps a
// CliError to its exit code): real presets, real hardware table, real checkpoint config.json.
import { describe, expect, test } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../../cli/plan.js';
import { captureConsoleLog } from '../fixtures/helpers.js';
import { CliError } from '../../cli/errors.js';

const out = captureConsoleLog();

async function planJson(...argv: string[]): Promise<Record<string, unknown>> {
  const code = await run([...argv, '--json']);
  expect(code).toBe(0);
  expect(out).toHaveLength(1);
  return JSON.parse(out[0]) as Record<string, unknown>;
}

describe('hybridserve plan', () => {
  test('synthetic:opt-30b on a 24GiB share of NVIDIA-H100-80GB-HBM3 with 256GiB --json (the offload regime)', async () => {
    const p = await planJson(
      '--model',
      'synthetic:opt-30b',
      '--gpu',
      'NVIDIA-H100-80GB-HBM3',
      '--host-memory',
      '256GiB',
      '--gpu-memory',
      '24GiB',
    );
    for (const k of [
      'actFraction',
      'hostMemoryBytes',
      'kvBlocks',
      'actBlocks',
      'maxBatch',
      'predictedStepSeconds',
      'predictedTokensPerSecond',
      'reason',
    ]) {
      expect(p).toHaveProperty(k);
    }
    expect(p.hostMemoryBytes).toBe(256 * 2 ** 30);
    expect(p.actFraction).toBeGreaterThan(0);
    expect(p.actFraction).toBeLessThanOrEqual(1);
    expect(p.actBlocks as number).toBeGreaterThan(0);
    expect(p.maxBatch as number).toBeGreaterThan(0);
    expect(p.predictedTokensPerSecond as number).toBeGreaterThan(0);
    // Near the balance the solver aims for, either side may bound the step.
    expect(String(p.reason)).toMatch(/^(transfer|recompute)-bound: /);
    expect(p.model).toBe('opt-30b');
  });

  // Issue 10, acceptance 7: the GPU tier. OPT-13B fits an H100 with room for cache; an L4 does not hold it.
  test('opt-13b on an H100: all 40 layers resident and a GPU KV tier; on an L4 fewer layers, and why', async () => {
    const h100 = await planJson('--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-H100-80GB-HBM3', '--host-memory', '256GiB');
    expect(h100.residentLayers).toBe(40);
    expect(h100.numLayers).toBe(40);
    expect(h100.gpuKvBlocks as number).toBeGreaterThan(0);
    expect(String(h100.placementReason)).toMatch(/all 40 layers resident/);
    out.length = 0;
    const l4 = await planJson('--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-L4', '--host-memory', '256GiB');
    expect(l4.residentLayers as number).toBeLessThan(40);
    expect(String(l4.placementReason)).toMatch(/stream over PCIe each step because all 40 layers \([\d.]+ GiB\) do not fit/);
    out.length = 0;
    expect(await run(['--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-H100-80GB-HBM3'])).toBe(0);
    expect(out.join('\n')).toMatch(/GPU KV tier\s+\d+ blocks × 16 tokens/);
  });

  test('--slo-tpot bounds the predicted decode step and is carried in the JSON; an impossible target is a CliError', async () => {
    const free = await planJson('--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-H200', '--host-memory', '120GiB', '--gen', '32');
    out.length = 0;
    const slo = await planJson(
      '--model',
      'synthetic:opt-13b',
      '--gpu',
      'NVIDIA-H200',
      '--host-memory',
      '120GiB',
      '--gen',
      '32',
      '--slo-tpot',
      '0.02',
    );
    expect(slo.sloTpotSeconds).toBe(0.02);
    expect(slo.predictedStepSeconds as number).toBeLessThanOrEqual(0.02);
    expect(free.predictedStepSeconds as number).toBeGreaterThan(0.02);
    expect(slo.predictedTokensPerSecond as number).toBeLessThanOrEqual(free.predictedTokensPerSecond as number);
    await expect(run(['--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-H200', '--slo-tpot', '0.00001'])).rejects.toThrow(/TPOT target/);
    await expect(run(['--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-H200', '--slo-tpot', 'soon'])).rejects.toThrow(CliError);
  });

  test('synthetic:llama3-8b: fraction 0 with the grouped-query reason', async () => {
    const p = await planJson('--model', 'synthetic:llama3-8b', '--gpu', 'NVIDIA-H100-80GB-HBM3', '--host-memory', '256GiB');
    expect(p.actFraction).toBe(0);
    expect(p.actBlocks).toBe(0);
    expect(p.reason).toBe('grouped-query attention: ACT (8192 B/token/layer) is not smaller than KV (4096 B/token/layer), fraction 0');
  });

  test('other product spellings and options work; the human format names the essentials', async () => {
    for (const gpu of [
      'NVIDIA-A100-SXM4-40GB',
      'nvidia a100 80gb pcie',
      'Tesla-T4',
      'NVIDIA-L40S',
      'NVIDIA-H200',
      'NVIDIA-GeForce-RTX-4090',
    ]) {
      out.length = 0;
      const p = await planJson('--model', 'synthetic:opt-13b', '--gpu', gpu, '--host-memory', '128GiB', '--prompt', '256', '--gen', '64');
      expect(p.promptTokens).toBe(256);
      expect(p.genTokens).toBe(64);
      expect(p.maxBatch as number).toBeGreaterThan(0);
    }
    out.length = 0;
    expect(await run(['--model', 'synthetic:opt-6.7b', '--gpu', 'NVIDIA-L4', '--act-fraction', '0.5', '--host-memory', '64GiB'])).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/ACT fraction\s+0\.50/);
    expect(text).toMatch(/reason\s+fixed: fraction 0\.5/);
    expect(text).toMatch(/max batch\s+\d+ sequences/);
    expect(text).toMatch(/KV pool\s+\d+ blocks/);
    expect(text).toMatch(/throughput\s+[\d.]+ generated tokens\/s/);
  });

  test('measured bandwidth overrides the table and lowers the fraction when faster', async () => {
    const base = ['--model', 'synthetic:opt-30b', '--gpu', 'NVIDIA-A100-SXM4-80GB', '--gpu-memory', '24GiB'];
    const slow = await planJson(...base, '--h2d-gbps', '10', '--d2h-gbps', '10');
    out.length = 0;
    const fast = await planJson(...base, '--h2d-gbps', '200', '--d2h-gbps', '200');
    expect((fast.hardware as { measured: string[] }).measured).toEqual(['h2dBytesPerSecond', 'd2hBytesPerSecond']);
    expect(fast.actFraction as number).toBeLessThan(slow.actFraction as number);
  });

  test('reads a checkpoint directory config.json', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'hs-plan-'));
    try {
      await writeFile(
        path.join(dir, 'config.json'),
        JSON.stringify({
          model_type: 'opt',
          architectures: ['OPTForCausalLM'],
          hidden_size: 5120,
          num_hidden_layers: 40,
          num_attention_heads: 40,
          ffn_dim: 20480,
          vocab_size: 50272,
          max_position_embeddings: 2048,
          word_embed_proj_dim: 5120,
          do_layer_norm_before: true,
          activation_function: 'relu',
          torch_dtype: 'float16',
          bos_token_id: 2,
          eos_token_id: 2,
          pad_token_id: 1,
        }),
      );
      const p = await planJson('--model', dir, '--gpu', 'NVIDIA-A100-SXM4-40GB', '--host-memory', '128GiB');
      expect(p.numLayers).toBe(40);
      expect(p.weightBytes as number).toBeGreaterThan(25e9);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // Issue 15: a plan for G GPUs. OPT-66B's 131 GB of fp16 weights need the two-H200 host's memory.
  test('--gpus 2: the layers split into two stages, each planned alone, the pod sized for both, no GPU cache tier', async () => {
    const args = ['--model', 'synthetic:opt-66b', '--gpu', 'NVIDIA-H200', '--host-memory', '240GiB', '--prompt', '512', '--gen', '32'];
    const p = await planJson(...args, '--gpus', '2', '--max-batch', '64');
    expect(p.stages).toEqual([
      { stage: 0, firstLayer: 0, layerCount: 32 },
      { stage: 1, firstLayer: 32, layerCount: 32 },
    ]);
    expect({ pods: p.pods, stagesPerPod: p.stagesPerPod }).toEqual({ pods: 1, stagesPerPod: 2 });
    // Each stage holds half the layers; the pod holds both stages' weights and the whole budget.
    expect(p.numLayers).toBe(32);
    expect(p.weightBytes as number).toBeGreaterThan(130e9);
    expect(p.hostMemoryBytes as number).toBeLessThanOrEqual(240 * 2 ** 30);
    expect(p.hostMemoryBytes as number).toBeGreaterThan(200 * 2 ** 30);
    // A stage that is not the whole model runs no GPU cache tier (the engine would refuse the plan).
    expect(p.gpuKvBlocks).toBe(0);
    expect(String(p.reason)).toMatch(/^pipeline of 2 stages \(1 pod\(s\) × 2\), up to 32 of 64 layers/);
    expect(String(p.reason)).toMatch(/no GPU cache tier/);
    out.length = 0;
    expect(await run([...args, '--gpus', '2'])).toBe(0);
    expect(out.join('\n')).toMatch(/stage 1: layers 32\.\.63/);
    expect(out.join('\n')).toMatch(/stage throughput\s+[\d.]+ generated tokens\/s/);
    // One GPU: the plan as before (no pipeline keys), all 64 layers in one stage.
    out.length = 0;
    const whole = await planJson(...args, '--max-batch', '64');
    expect(whole).not.toHaveProperty('stages');
    expect(whole.numLayers).toBe(64);
    expect(Math.abs((whole.weightBytes as number) - (p.weightBytes as number)) / (p.weightBytes as number)).toBeLessThan(0.02);
    out.length = 0;
    const one = await planJson('--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-H200', '--host-memory', '120GiB');
    expect(one).not.toHaveProperty('stages');
    expect(one.gpuKvBlocks as number).toBeGreaterThan(0);
    await expect(run([...args, '--gpus', '2', '--nodes', '2'])).rejects.toThrow(/--nodes > 1 runs one GPU per pod/);
    await expect(run([...args, '--gpus', '0'])).rejects.toThrow(CliError);
  });

  test('errors: unknown GPU lists the known products (exit 2); bad input is a clear CliError', async () => {
    const err = await run(['--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-B9000']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(2);
    expect((err as CliError).message).toMatch(/unknown GPU product 'NVIDIA-B9000'/);
    expect((err as CliError).message).toMatch(/NVIDIA-H100-80GB-HBM3/);
    expect((err as CliError).message).toMatch(/Tesla-T4/);
    await expect(run(['--gpu', 'NVIDIA-L4'])).rejects.toThrow(/--model is required/);
    await expect(run(['--model', 'synthetic:opt-13b'])).rejects.toThrow(/--gpu is required/);
    await expect(run(['--model', 'synthetic:nope', '--gpu', 'NVIDIA-L4'])).rejects.toThrow(/unknown synthetic preset/);
    await expect(run(['--model', 'synthetic:opt-66b', '--gpu', 'NVIDIA-L4', '--host-memory', '64GiB'])).rejects.toThrow(
      /cannot hold opt-66b/,
    );
    await expect(run(['--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-L4', '--act-fraction', '2'])).rejects.toThrow(/between 0 and 1/);
    await expect(run(['--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-L4', '--host-memory', 'lots'])).rejects.toThrow(CliError);
    await expect(run(['--model', 'synthetic:opt-13b', '--gpu', 'NVIDIA-L4', '--bogus'])).rejects.toThrow(CliError);
    expect(await run(['--help'])).toBe(0);
    expect(out.join('\n')).toMatch(/usage: hybridserve plan/);
  });
});
