// One owner per concept (issue 17): the plan.json type and its strict parser (planning/plan-file.ts)
// serve both the operator that writes it and the server that reads it; the CPU start plan
// (planning/start-plan.ts) sizes the server's own pools and the operator's CPU groups alike.
import { describe, test, expect } from '@jest/globals';
import { parsePlan, planFileOf, serializePlan, validatePlan } from '../../planning/plan-file.js';
import { parsePlan as serverParsePlan } from '../../server/plan-file.js';
import { cpuStartFraction, cpuStartPlan, engineElementBytes, startPools } from '../../planning/start-plan.js';
import { choosePools, chooseStepTokens, chooseTiers } from '../../planning/server-start.js';
import { presetConfig } from '../../model/presets.js';
import { planGroup } from '../../operator/desired/plan.js';
import { groupNodes } from '../../operator/desired/node-groups.js';

describe('plan.json: one strict parser', () => {
  test("the server uses planning's parser; what the operator writes parses back", () => {
    expect(serverParsePlan).toBe(parsePlan);
    const p = { actFraction: 0.25, kvBlocks: 10, actBlocks: 4, blockTokens: 16, maxBatch: 8, generation: 3, reason: 'r' };
    expect(parsePlan(serializePlan(p))).toEqual({ ok: true, plan: p });
  });

  test('bad fields are errors that name the field and never echo the file', () => {
    const secret = 'sk-live-0123456789';
    for (const [raw, why] of [
      [{ actFraction: secret }, /actFraction must be a number in \[0, 1\], got a string of 18 characters/],
      [{ actFraction: 0.5, reason: 7 }, /reason must be a string/],
      [{ actFraction: 0.5, kvBlocks: -1 }, /kvBlocks must be an integer >= 0/],
      [{ actFraction: 0.5, weightDtype: secret }, /weightDtype must be one of fp16, fp8, int8, int4, got a string of 18 characters/],
      [{}, /actFraction .* got nothing/],
    ] as const) {
      const r = validatePlan(raw);
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.error).toMatch(why);
        expect(r.error).not.toContain(secret);
      }
    }
    const r = parsePlan(`{"actFraction": "${secret}"`);
    expect(r).toEqual({ ok: false, error: 'not valid JSON' });
  });

  test('weightDtype (issue 14) round-trips; fp16, the default, is left out of the file', () => {
    const plan = { actFraction: 0, kvBlocks: 1, actBlocks: 0, blockTokens: 16, maxBatch: 1, reason: 'r' };
    const fp8 = planFileOf({ ...plan, weightDtype: 'fp8' });
    expect(fp8.weightDtype).toBe('fp8');
    expect(parsePlan(serializePlan(fp8))).toEqual({ ok: true, plan: fp8 });
    expect(planFileOf({ ...plan, weightDtype: 'fp16' })).not.toHaveProperty('weightDtype');
  });
});

describe('CPU start plan: one function for server and operator', () => {
  test('CPU means ACT fraction 0 and fp32; CUDA fp16', () => {
    expect(cpuStartFraction().fraction).toBe(0);
    expect(engineElementBytes('cpu')).toBe(4);
    expect(engineElementBytes('cuda')).toBe(2);
  });

  test("the server's own CPU pools equal the operator's CPU group plan for the same budget", () => {
    const cfg = presetConfig('opt-1.3b')!;
    const [group] = groupNodes(
      [{ metadata: { name: 'c' }, status: { allocatable: { memory: '64Gi' }, conditions: [{ type: 'Ready', status: 'True' }] } }],
      { gpusPerPod: 0 },
    );
    const op = planGroup(
      { model: { uri: 'synthetic:opt-1.3b' }, gpusPerPod: 0, cache: { hostMemory: '16Gi' }, engine: { promptTokens: 256, genTokens: 256 } },
      group,
    );
    if (!op.ok) throw new Error(op.message);
    const direct = cpuStartPlan({
      model: cfg,
      hostMemoryBytes: 16 * 2 ** 30,
      blockTokens: 16,
      promptTokens: 256,
      genTokens: 256,
      gpuProduct: 'cpu',
    });
    expect(op.plan).toEqual(direct);
    expect(op.file.actFraction).toBe(0);
    const server = choosePools({ device: 'cpu', actFraction: 0, hostMemoryBytes: 16 * 2 ** 30, maxBatch: 64, maxTotalTokens: 512 }, cfg, 0);
    // A hand-started server's --host-memory is weights + cache (no runtime reserve): the same split
    // as the operator's, over the budget without the reserve.
    const { split } = startPools({
      model: cfg,
      device: 'cpu',
      hostMemoryBytes: 16 * 2 ** 30,
      actFraction: 0,
      blockTokens: 16,
      seqTokens: 512,
      runtimeReserve: false,
    });
    expect({ kv: server.kvBlocks, act: server.actBlocks }).toEqual({ kv: split.kvBlocks, act: split.actBlocks });
    expect(server.kvBlocks).toBeGreaterThan(direct.kvBlocks); // the operator's pod keeps the reserve back
  });
});

describe('plan.json carries the GPU placement to the pods', () => {
  test("a GPU group's file holds residentLayers and gpuKvBlocks, and the server applies them on cuda", () => {
    const [group] = groupNodes(
      [
        {
          metadata: { name: 'g', labels: { 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3', 'nvidia.com/gpu.count': '1' } },
          status: { allocatable: { memory: '256Gi', 'nvidia.com/gpu': '1' }, conditions: [{ type: 'Ready', status: 'True' }] },
        },
      ],
      { gpusPerPod: 1 },
    );
    const op = planGroup({ model: { uri: 'synthetic:opt-13b' }, gpusPerPod: 1 }, group);
    if (!op.ok) throw new Error(op.message);
    expect(op.file.residentLayers).toBe(op.plan.residentLayers);
    expect(op.file.gpuKvBlocks).toBeGreaterThan(0);
    // The in-step mini-batch size the plan sized the engine's GPU workspace for.
    expect(op.file.miniBatchTokens).toBe(op.plan.miniBatchTokens);
    expect(op.file.miniBatchTokens).toBeGreaterThan(0);
    const parsed = serverParsePlan(serializePlan(op.file));
    if (!parsed.ok) throw new Error(parsed.error);
    expect(chooseTiers({ device: 'cuda', plan: parsed.plan })).toEqual({
      residentLayers: op.plan.residentLayers,
      gpuKvBlocks: op.file.gpuKvBlocks,
      miniBatchTokens: op.plan.miniBatchTokens,
    });
    // The GPU placement is for the GPU it was planned for: a CPU engine given the same file ignores it.
    expect(chooseTiers({ device: 'cpu', plan: parsed.plan })).toEqual({});
    // The step rows its workspace holds (batch × the planned prompt): the server caps its steps there.
    expect(op.file.maxStepTokens).toBe(op.plan.maxStepTokens);
    expect(op.file.maxStepTokens).toBeGreaterThanOrEqual(op.plan.maxBatch * op.plan.promptTokens);
    expect(parsed.plan.maxStepTokens).toBe(op.file.maxStepTokens);
    expect(chooseStepTokens({ device: 'cuda', plan: parsed.plan, maxBatch: op.plan.maxBatch })).toEqual({
      maxStepTokens: op.file.maxStepTokens,
      source: 'the plan file',
    });
    expect(serverParsePlan(JSON.stringify({ actFraction: 0, maxStepTokens: -1 })).ok).toBe(false);
    // The pod's server takes prompts up to its window: the plan reserves one such prompt alone, so
    // the window is a planning input (a different window plans again).
    const shorter = planGroup({ model: { uri: 'synthetic:opt-13b' }, gpusPerPod: 1, limits: { maxTotalTokens: 600 } }, group);
    if (!shorter.ok) throw new Error(shorter.message);
    expect(shorter.inputHash).not.toBe(op.inputHash);
  });
});
