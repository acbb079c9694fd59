import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { presetConfig } from '../../model/presets.js';
import {
  DEFAULT_RETUNE_OPTIONS,
  PlanError,
  decodeStepCost,
  gpuLayout,
  hardwareProfile,
  initialRetuneState,
  modelProfile,
  planNode,
  retune,
  type PhaseTimes,
  type RetuneOptions,
  type RetuneState,
} from '../../planning/index.js';

const GiB = 2 ** 30;

/** A deterministic PRNG (mulberry32) so that noisy runs are reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BEST = new Map<string, { a: number; t: number }>();
const PLANS = new Map<string, ReturnType<typeof planNode>>();

/** A simulated engine: the cost model at a fixed batch, each phase with ±noise multiplicative noise. */
function simulatedEngine(model: string, gpu: string, hostGiB: number, noise: number, seed: number) {
  const cfg = presetConfig(model)!;
  const hw = hardwareProfile(gpu)!;
  const mp = modelProfile(cfg);
  const key = `${model}/${gpu}/${hostGiB}`;
  const plan = PLANS.get(key) ?? planNode({ model: cfg, hardware: hw, hostMemoryBytes: hostGiB * GiB, actFraction: 'auto' });
  PLANS.set(key, plan);
  const layout = gpuLayout(mp, hw.hbmBytes, plan.promptTokens + plan.genTokens);
  const batch = plan.maxBatch;
  const context = plan.promptTokens + plan.genTokens / 2;
  const rand = rng(seed);
  const jitter = () => 1 + noise * (2 * rand() - 1);
  const exact = (a: number) => decodeStepCost(mp, hw, layout, { actFraction: a, batch, contextTokens: context });
  const measure = (a: number, steps = 8): PhaseTimes => {
    const c = exact(a);
    return {
      transferSeconds: c.transferSeconds * steps * jitter(),
      computeSeconds: c.computeSeconds * steps * jitter(),
      recomputeSeconds: c.recomputeSeconds * steps * jitter(),
      idleSeconds: c.idleSeconds * steps * jitter(),
      steps,
    };
  };
  // The best fraction at this batch, by the noise-free model (cached: it does not depend on the seed).
  let best = BEST.get(key);
  if (!best) {
    best = { a: 0, t: Infinity };
    for (let i = 0; i <= 1000; i++) {
      const t = exact(i / 1000).stepSeconds;
      if (t < best.t) best = { a: i / 1000, t };
    }
    BEST.set(key, best);
  }
  return { measure, exact, best };
}

function runLoop(sim: ReturnType<typeof simulatedEngine>, start: number, cycles: number, opts: RetuneOptions = DEFAULT_RETUNE_OPTIONS) {
  let state: RetuneState = initialRetuneState(start);
  const path = [start];
  for (let i = 0; i < cycles; i++) {
    state = retune(state, sim.measure(state.actFraction), opts).state;
    path.push(state.actFraction);
  }
  return path;
}

const SETUPS: Array<[string, string, number]> = [
  ['opt-30b', 'NVIDIA-H100-80GB-HBM3', 256],
  ['opt-66b', 'NVIDIA-H100-80GB-HBM3', 256],
  ['opt-13b', 'NVIDIA-GeForce-RTX-4090', 256],
  ['opt-30b', 'NVIDIA-GeForce-RTX-4090', 256],
  ['opt-66b', 'NVIDIA-GeForce-RTX-4090', 800],
  ['opt-6.7b', 'Tesla-T4', 200],
  ['opt-13b', 'NVIDIA-A100-SXM4-40GB', 128],
];

describe('retune on a simulated engine (cost model ± 10% noise)', () => {
  test('converges within 10 cycles from any start and stays there, without swinging between extremes', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...SETUPS),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 2 ** 30 }),
        ([model, gpu, host], start, seed) => {
          const sim = simulatedEngine(model, gpu, host, 0.1, seed);
          const path = runLoop(sim, Math.round(start * 100) / 100, 30);
          // From cycle 10 on, the (noise-free) step time stays near the best fraction's at this batch:
          // on average within 6%, and never more than 20% off (±10% noise on each phase can fake a
          // balanced reading up to ~20% away from balance; the dead band then holds).
          const ratios = path.slice(10).map((a) => sim.exact(a).stepSeconds / sim.best.t);
          for (const r of ratios) expect(r).toBeLessThanOrEqual(1.2);
          expect(ratios.reduce((x, y) => x + y, 0) / ratios.length).toBeLessThanOrEqual(1.06);
          // Never swings between extremes: moves are bounded by maxStep, and the path goes
          // between the lower and the upper third of [0, 1] at most once (the initial approach).
          let crossings = 0;
          let side = 0;
          for (let i = 1; i < path.length; i++) {
            const d = Math.abs(path[i] - path[i - 1]);
            expect(d).toBeLessThanOrEqual(DEFAULT_RETUNE_OPTIONS.maxStep + 1e-9);
          }
          for (const a of path) {
            const s = a < 1 / 3 ? -1 : a > 2 / 3 ? 1 : 0;
            if (s !== 0 && side !== 0 && s !== side) crossings++;
            if (s !== 0) side = s;
          }
          expect(crossings).toBeLessThanOrEqual(1);
          // Settled: the last 10 cycles stay within a narrow band.
          const tail = path.slice(-10);
          expect(Math.max(...tail) - Math.min(...tail)).toBeLessThanOrEqual(0.1);
        },
      ),
      { numRuns: 100 },
    );
  });

  test('from the far side (fraction 0, strongly transfer-bound) it climbs monotonically at first', () => {
    const sim = simulatedEngine('opt-30b', 'NVIDIA-H100-80GB-HBM3', 256, 0, 1);
    const path = runLoop(sim, 0, 10);
    expect(path[1]).toBeGreaterThan(0);
    expect(path[1]).toBeLessThanOrEqual(DEFAULT_RETUNE_OPTIONS.maxStep);
    expect(path[2]).toBeGreaterThan(path[1]);
    expect(Math.abs(path[10] - sim.best.a)).toBeLessThan(0.1);
  });
});

describe('retune rules', () => {
  const opts = DEFAULT_RETUNE_OPTIONS;
  const phases = (t: number, c: number, r: number): PhaseTimes => ({
    transferSeconds: t,
    computeSeconds: c,
    recomputeSeconds: r,
    idleSeconds: 0,
    steps: 1,
  });

  test('transfer-bound raises, recompute-bound lowers, balanced holds (dead band)', () => {
    const up = retune(initialRetuneState(0.5), phases(2, 0.2, 0.5), opts);
    expect(up.changed).toBe(true);
    expect(up.state.actFraction).toBeGreaterThan(0.5);
    expect(up.reason).toMatch(/^transfer-bound: /);
    const down = retune(initialRetuneState(0.5), phases(0.5, 0.2, 2), opts);
    expect(down.state.actFraction).toBeLessThan(0.5);
    expect(down.reason).toMatch(/^recompute-bound: /);
    const computeBound = retune(initialRetuneState(0.5), phases(0.5, 2, 0.1), opts);
    expect(computeBound.reason).toMatch(/^compute-bound: /);
    const hold = retune({ actFraction: 0.5, lastDirection: 1, stableCycles: 2 }, phases(1, 0.5, 0.45), opts);
    expect(hold.changed).toBe(false);
    expect(hold.state.actFraction).toBe(0.5);
    expect(hold.state.stableCycles).toBe(3);
    expect(hold.reason).toMatch(/^balanced: /);
  });

  test('bounds and maxStep are respected; a reversal halves the gain', () => {
    const o = { ...opts, min: 0.2, max: 0.6, maxStep: 0.05 };
    const r = retune(initialRetuneState(0.58), phases(10, 0.1, 0.1), o);
    expect(r.state.actFraction).toBe(0.6);
    const atMax = retune(r.state, phases(10, 0.1, 0.1), o);
    expect(atMax.changed).toBe(false);
    expect(atMax.reason).toMatch(/maximum/);
    const s1 = retune({ actFraction: 0.5, lastDirection: 1, stableCycles: 0, gain: 1 }, phases(0.5, 0.1, 1.5), opts);
    expect(s1.state.lastDirection).toBe(-1);
    expect(s1.state.gain).toBe(0.5);
    const big = retune(initialRetuneState(0.4), phases(100, 0.1, 0.1), opts);
    expect(big.state.actFraction - 0.4).toBeCloseTo(opts.maxStep, 9);
  });

  test('on the CPU backend (no transfer) the fraction moves toward the minimum and stays', () => {
    let s = initialRetuneState(0.7);
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      s = retune(s, phases(0, 1, 0.3 * s.actFraction), opts).state;
      seen.push(s.actFraction);
    }
    expect(seen[0]).toBeCloseTo(0.5, 9);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeLessThanOrEqual(seen[i - 1]);
    expect(seen.at(-1)).toBe(0);
  });

  test('empty or junk measurements keep the fraction; bad options are PlanErrors', () => {
    const r = retune(initialRetuneState(0.3), { ...phases(1, 1, 1), steps: 0 }, opts);
    expect(r.changed).toBe(false);
    expect(r.state.actFraction).toBe(0.3);
    expect(retune(initialRetuneState(0.3), phases(Number.NaN, 1, 1), opts).changed).toBe(false);
    expect(() => retune(initialRetuneState(0.3), phases(1, 1, 1), { ...opts, min: 0.8, max: 0.2 })).toThrow(PlanError);
  });
});
