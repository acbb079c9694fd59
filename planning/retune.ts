// Online retuning of the ACT fraction from measured phase times (deltas of the engine's counters
// between two scrapes). On a GPU the fraction should sit where copies and GPU work take equally
// long: transfer-bound → raise it (ACT moves half the bytes), recompute/compute-bound → lower it.
// On the CPU backend nothing is transferred, so ACT only costs recompute → move toward the minimum.
//
// Stability: a dead band (hysteresis) around balance, a proportional step scaled by damping and
// capped at maxStep, and a gain that halves whenever the direction reverses (an overshoot) and
// recovers only on a clear imbalance; balanced readings shrink it too, so the fraction settles
// instead of oscillating and noise near balance only nudges it.
import { PlanError } from './errors.js';

export interface PhaseTimes {
  transferSeconds: number;
  computeSeconds: number;
  recomputeSeconds: number;
  idleSeconds: number;
  steps: number;
}

export interface RetuneState {
  actFraction: number;
  /** Direction of the last change (0 before the first change). */
  lastDirection: -1 | 0 | 1;
  /** Consecutive cycles without a change. */
  stableCycles: number;
  /** Step gain in (0, 1]; halves on a reversal. Absent means 1. */
  gain?: number;
}

export interface RetuneOptions {
  min: number;
  max: number;
  /** Fraction of the measured relative imbalance applied per cycle (0..1]. */
  damping: number;
  /** Dead band: no change while |transfer − gpu| / max(transfer, gpu) ≤ hysteresis. */
  hysteresis: number;
  /** Largest change of the fraction per cycle. */
  maxStep: number;
}

export const DEFAULT_RETUNE_OPTIONS: RetuneOptions = { min: 0, max: 1, damping: 0.5, hysteresis: 0.1, maxStep: 0.2 };

const MIN_GAIN = 0.125;
/** Smallest change worth making (and the granularity of the fraction). */
const MIN_STEP = 0.01;

function checkOptions(o: RetuneOptions): void {
  const ok =
    o.min >= 0 &&
    o.max <= 1 &&
    o.min <= o.max &&
    o.damping > 0 &&
    o.damping <= 1 &&
    o.hysteresis >= 0 &&
    o.hysteresis < 1 &&
    o.maxStep > 0 &&
    o.maxStep <= 1;
  if (!ok)
    throw new PlanError(
      `invalid retune options ${JSON.stringify(o)}: need 0 ≤ min ≤ max ≤ 1, damping in (0, 1], hysteresis in [0, 1), maxStep in (0, 1]`,
    );
}

export function initialRetuneState(actFraction: number): RetuneState {
  return { actFraction, lastDirection: 0, stableCycles: 0, gain: 1 };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function retune(
  state: RetuneState,
  measured: PhaseTimes,
  opts: RetuneOptions = DEFAULT_RETUNE_OPTIONS,
): { state: RetuneState; changed: boolean; reason: string } {
  checkOptions(opts);
  const { min, max } = opts;
  const a = Math.min(max, Math.max(min, state.actFraction));
  const gain = state.gain ?? 1;
  const keep = (reason: string, nextGain = gain) => ({
    state: { ...state, actFraction: a, stableCycles: state.stableCycles + 1, gain: nextGain },
    changed: a !== state.actFraction,
    reason,
  });
  const vals = [measured.transferSeconds, measured.computeSeconds, measured.recomputeSeconds, measured.idleSeconds];
  if (!(measured.steps > 0) || vals.some((v) => !(Number.isFinite(v) && v >= 0))) {
    return keep('no steps measured: fraction kept');
  }
  const T = measured.transferSeconds / measured.steps;
  const C = measured.computeSeconds / measured.steps;
  const R = measured.recomputeSeconds / measured.steps;
  const G = C + R;
  const ms = (s: number) => `${(s * 1e3).toFixed(2)} ms`;
  // The gain halves on a reversal (an overshoot) and recovers only on a clear imbalance (beyond twice
  // the dead band), so noise near balance keeps the steps small while a real shift speeds them up.
  const move = (dir: -1 | 1, size: number, why: string, clear: boolean) => {
    const nextGain =
      state.lastDirection !== 0 && dir !== state.lastDirection ? Math.max(MIN_GAIN, gain / 2) : clear ? Math.min(1, gain * 1.5) : gain;
    const target = round3(Math.min(max, Math.max(min, a + dir * size)));
    if (target === a) return keep(`${why}; fraction already at its ${dir > 0 ? 'maximum' : 'minimum'} ${a}`);
    return {
      state: { actFraction: target, lastDirection: dir, stableCycles: 0, gain: nextGain },
      changed: true,
      reason: `${why}; fraction ${a} → ${target}`,
    };
  };

  if (T === 0) {
    if (R === 0 || a <= min) return keep(`no transfer measured (CPU backend): ACT only costs recompute; fraction stays at ${a}`);
    return move(-1, Math.min(opts.maxStep, a - min), `no transfer measured (CPU backend): ACT only costs recompute (${ms(R)}/step)`, true);
  }
  if (G === 0) return move(1, opts.maxStep, `transfer-bound: ${ms(T)}/step of transfer and no GPU work measured`, true);

  const e = (T - G) / Math.max(T, G);
  if (Math.abs(e) <= opts.hysteresis) {
    // Each balanced reading makes the next move smaller: once settled, a single noisy reading
    // outside the band only nudges the fraction.
    return keep(
      `balanced: transfer ${ms(T)} vs GPU ${ms(G)} per step, within the ${(opts.hysteresis * 100).toFixed(0)}% dead band; fraction stays at ${a}`,
      Math.max(MIN_GAIN, gain * 0.75),
    );
  }
  const dir: -1 | 1 = e > 0 ? 1 : -1;
  const effGain = state.lastDirection !== 0 && dir !== state.lastDirection ? Math.max(MIN_GAIN, gain / 2) : gain;
  const size = Math.min(opts.maxStep, Math.max(MIN_STEP, opts.damping * effGain * Math.abs(e) * (max - min)));
  const why =
    dir > 0
      ? `transfer-bound: transfer ${ms(T)} vs GPU ${ms(G)} per step (${(e * 100).toFixed(0)}% imbalance)`
      : `${R > C ? 'recompute' : 'compute'}-bound: GPU ${ms(G)} (recompute ${ms(R)}) vs transfer ${ms(T)} per step (${(-e * 100).toFixed(0)}% imbalance)`;
  return move(dir, size, why, Math.abs(e) > 2 * opts.hysteresis);
}
