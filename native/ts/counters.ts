// The one owner of NativeCounters arithmetic: the zero value and the field-wise sum. Model
// generation, the benches, the server's metrics and the test engine sum per-step counters with
// these, so a field added to the addon's counters is added here once.
import type { NativeCounters } from './addon-types.js';

// Typed as NativeCounters, so the compiler refuses this literal when the interface gains a field.
const ZERO: Readonly<NativeCounters> = {
  steps: 0,
  prefillTokens: 0,
  decodeTokens: 0,
  weightBytesH2D: 0,
  kvBytesH2D: 0,
  actBytesH2D: 0,
  kvBytesD2H: 0,
  actBytesD2H: 0,
  transferSeconds: 0,
  computeSeconds: 0,
  recomputeSeconds: 0,
  idleSeconds: 0,
  wallSeconds: 0,
  recomputedTokens: 0,
};

/** Every counter field, in the addon's order (native/src/addon/convert.cc). */
export const COUNTER_FIELDS = Object.keys(ZERO) as ReadonlyArray<keyof NativeCounters>;

/** All counters zero (a fresh object each call). */
export function zeroCounters(): NativeCounters {
  return { ...ZERO };
}

/** a + b, field by field (a new object; a missing field counts as 0). */
export function addCounters(a: NativeCounters, b: Partial<NativeCounters>): NativeCounters {
  const out = {} as NativeCounters;
  for (const k of COUNTER_FIELDS) out[k] = (a[k] ?? 0) + (b[k] ?? 0);
  return out;
}

/** Adds b into a in place (for running totals kept across many steps). */
export function accumulateCounters(a: NativeCounters, b: Partial<NativeCounters>): void {
  for (const k of COUNTER_FIELDS) a[k] = (a[k] ?? 0) + (b[k] ?? 0);
}
