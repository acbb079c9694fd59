// Issue 15, acceptance 1: the CPU pipeline. With the layers split over 2 and 3 stages (uneven: 5
// layers) the engine gives the same greedy tokens as one stage, for OPT and Llama, at ACT fractions
// 0, 0.5 and 1, over a batched prefill of prompts of different lengths and the decode steps after
// it; also with the driver that keeps several steps in flight (each group of sequences in its own
// slot, so that the stages run different groups' steps at once).
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { presetConfig } from '../../model/presets.js';
import { runInFlight, splitGroups } from '../../bench/in-flight.js';
import { createEngine, toNativeConfig, type NativeEngine } from '../../native/ts/engine.js';
import { greedy, prompt, relError } from './engine-helpers.js';
import { builtCli, runCli } from '../fixtures/helpers.js';

const LAYERS = 5;
const STEPS = 6;
const PROMPT_LENGTHS = [9, 3, 14, 6];

async function engineOf(preset: string, stages: number, actFraction: number): Promise<NativeEngine> {
  const cfg = { ...presetConfig(preset)!, numLayers: LAYERS };
  return createEngine({
    device: 'cpu',
    config: toNativeConfig(cfg),
    weights: { kind: 'synthetic', seed: 3 },
    blockTokens: 4,
    kvBlocks: 64,
    actBlocks: 64,
    actFraction,
    threads: 2,
    stages,
  });
}

interface Run {
  tokens: number[][]; // [sequence][step]
  logits: Float32Array[]; // per step, [batch, vocab]
  weightBytes: number;
  recomputed: number;
}

function addAll(e: NativeEngine, vocab: number): number[] {
  return PROMPT_LENGTHS.map((n, i) => e.addSequence(Int32Array.from(prompt(n, i + 1, vocab)), { sampling: greedy }));
}

/** One step in flight: the whole batch in every step (prefill, then decode). */
async function runBatch(e: NativeEngine, vocab: number): Promise<Run> {
  const ids = Int32Array.from(addAll(e, vocab));
  const run: Run = { tokens: PROMPT_LENGTHS.map(() => []), logits: [], weightBytes: 0, recomputed: 0 };
  for (let s = 0; s < STEPS; s++) {
    const r = await e.step(ids, { logits: true });
    r.tokens.forEach((t, i) => run.tokens[i].push(t));
    run.logits.push(r.logits!);
    run.weightBytes += r.counters.weightBytesH2D;
  }
  run.recomputed = e.counters().recomputedTokens;
  for (const id of ids) e.removeSequence(id);
  return run;
}

/** Two groups of sequences, each in its own slot, both in flight. */
async function runGroups(e: NativeEngine, vocab: number): Promise<number[][]> {
  const ids = addAll(e, vocab);
  const groups = splitGroups(ids, 2);
  const { results } = await runInFlight(e, groups, STEPS);
  const tokens: number[][] = [];
  results.forEach((steps) => steps[0].tokens.forEach((_, i) => tokens.push(steps.map((r) => r.tokens[i]))));
  for (const id of ids) e.removeSequence(id);
  return tokens;
}

describe.each([['opt-tiny'], ['llama-tiny-gqa']])('%s, 5 layers', (preset) => {
  const vocab = presetConfig(preset)!.vocabSize;
  const engines: NativeEngine[] = [];
  afterAll(async () => {
    for (const e of engines) await e.close();
  });
  const make = async (stages: number, f: number): Promise<NativeEngine> => {
    const e = await engineOf(preset, stages, f);
    engines.push(e);
    return e;
  };

  describe.each([0, 0.5, 1])('ACT fraction %p', (f) => {
    let ref: Run;
    test('one stage: the reference generates varied tokens', async () => {
      ref = await runBatch(await make(1, f), vocab);
      expect(new Set(ref.tokens.flat()).size).toBeGreaterThan(3);
      if (f > 0) expect(ref.recomputed).toBeGreaterThan(0); // the ACT path ran
    });

    test.each([2, 3])('%p stages: same tokens and logits as one stage, same weight bytes', async (stages) => {
      const e = await make(stages, f);
      expect(e.info().deviceName).toContain(`${stages} pipeline stages`);
      const run = await runBatch(e, vocab);
      expect(run.tokens).toEqual(ref.tokens);
      for (let s = 0; s < STEPS; s++) expect(relError(run.logits[s], ref.logits[s])).toBeLessThan(1e-6);
      // Each stage counts only its own layers (and the last one the head): no double counting.
      expect(run.weightBytes).toBe(ref.weightBytes);
      expect(run.recomputed).toBe(ref.recomputed);
    });

    test.each([1, 2, 3])('%p stages, two groups in flight: same tokens as one batch', async (stages) => {
      const e = await make(stages, f);
      expect(await runGroups(e, vocab)).toEqual(ref.tokens);
    });
  });
});

describe('pipeline options and slots', () => {
  const engines: NativeEngine[] = [];
  afterAll(async () => {
    for (const e of engines) await e.close();
  });

  test('more stages than layers is a RangeError', async () => {
    const err = await engineOf('opt-tiny', LAYERS + 1, 0).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.name).toBe('RangeError');
    expect(err?.message).toMatch(/stages/);
  });

  test('stages over processes: one stage each, with a leader address, without prefix caching', async () => {
    const base = {
      device: 'cuda' as const,
      config: toNativeConfig(presetConfig('opt-tiny')!),
      weights: { kind: 'synthetic' as const, seed: 1 },
    };
    const pools = { blockTokens: 4, kvBlocks: 4, actBlocks: 4, actFraction: 0 };
    const failure = (over: object): Promise<Error | null> =>
      createEngine({ ...base, ...pools, ...over }).then(
        () => null,
        (e: Error) => e,
      );
    expect((await failure({ device: 'cpu', stages: 2, worldSize: 2, leaderAddress: 'h:1' }))?.message).toMatch(/one stage per process/);
    expect((await failure({ worldSize: 2 }))?.message).toMatch(/needs leaderAddress/);
    expect((await failure({ worldSize: 2, leaderAddress: 'h:1', prefixCaching: true }))?.message).toMatch(/prefixCaching/);
    expect((await failure({ worldSize: 2, rank: 2, leaderAddress: 'h:1' }))?.message).toMatch(/options.rank must be in \[0, 1\]/);
  });

  test('a sequence cannot be in two steps in flight; slots are bounded', async () => {
    const e = await engineOf('opt-tiny', 2, 0);
    engines.push(e);
    const id = e.addSequence(Int32Array.from(prompt(5, 1, 100)), { sampling: greedy });
    const first = e.step(Int32Array.of(id), { slot: 0 });
    const twice = await e.step(Int32Array.of(id), { slot: 1 }).then(
      () => null,
      (err: Error) => err,
    );
    expect(twice?.name).toBe('RangeError');
    expect(twice?.message).toMatch(/another step in flight/);
    await first;
    const bad = await e.step(Int32Array.of(id), { slot: e.info().maxStepsInFlight! }).then(
      () => null,
      (err: Error) => err,
    );
    expect(bad?.message).toMatch(/slot/);
    e.removeSequence(id);
    expect(e.pools().kvBlocksFree).toBe(e.pools().kvBlocksTotal);
  });
});

// The flag through the built CLI: `generate --stages 2` gives one stage's tokens.
describe('hybridserve generate --stages', () => {
  beforeAll(() => {
    builtCli();
  }, 300_000);

  test('2 stages: the same greedy tokens as 1', () => {
    const run = (stages: string): number[] => {
      const r = runCli([
        'generate',
        '--model',
        'synthetic:opt-tiny',
        '--prompt',
        'pipeline',
        '--max-tokens',
        '6',
        '--stages',
        stages,
        '--json',
      ]);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      return (JSON.parse(r.stdout) as { tokens: number[] }).tokens;
    };
    const one = run('1');
    expect(one).toHaveLength(6);
    expect(run('2')).toEqual(one);
  });
});

// A rank >= 1 without a GPU pipeline in this build (CI: no CUDA, no NCCL) fails at once with a clear,
// one-line error and a non-zero exit, never a hang or a stack trace.
describe('hybridserve serve --rank 1', () => {
  test('refused clearly where the engine cannot run stages over processes', () => {
    const r = runCli(['serve', '--device', 'cuda', '--port', '0', '--host', '127.0.0.1'], {
      HYBRIDSERVE_RANK: '1',
      HYBRIDSERVE_WORLD_SIZE: '2',
      HYBRIDSERVE_LEADER_ADDRESS: '127.0.0.1:1',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/serve: pipeline rank 1: .*(cuda|NCCL)/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  }, 60_000);
});
