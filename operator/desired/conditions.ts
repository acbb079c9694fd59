// metav1.Condition bookkeeping (pure): lastTransitionTime changes only when the status flips.
import type { Condition } from '../api/types.js';

export type ConditionInput = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

export function setConditions(
  previous: readonly Condition[] | undefined,
  next: readonly ConditionInput[],
  now: string,
  generation: number,
): Condition[] {
  const prev = new Map((previous ?? []).map((c) => [c.type, c]));
  return next.map((c) => {
    const old = prev.get(c.type);
    const lastTransitionTime = old && old.status === c.status ? old.lastTransitionTime : now;
    return { ...c, lastTransitionTime, observedGeneration: generation };
  });
}

export function condition(conds: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conds?.find((c) => c.type === type);
}
