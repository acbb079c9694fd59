// plan.json: the file the operator writes into each node group's ConfigMap and the server reads at
// start and whenever it changes. ONE type and ONE strict parser for both sides, so the writer
// and the reader can never disagree on what a valid plan is. Pure.

import { WEIGHT_DTYPES, type WeightDtype } from './model-profile.js';

/** The plan the server applies (shared contract; unknown keys are ignored for forward compatibility). */
export interface PlanFile {
  actFraction: number;
  kvBlocks?: number;
  actBlocks?: number;
  blockTokens?: number;
  maxBatch?: number;
  /** GPU placement (cuda pods): layers kept in GPU memory and blocks of the GPU KV cache tier. */
  residentLayers?: number;
  gpuKvBlocks?: number;
  /** Staged tokens per in-step mini-batch: the engine's GPU workspace was planned for it (planning/engine-workspace.ts). */
  miniBatchTokens?: number;
  /**
   * New tokens one step may compute: the GPU workspace holds that many rows (engine-workspace.ts
   * workspaceStepRows), so the server splits larger steps (serve --max-step-tokens wins).
   */
  maxStepTokens?: number;
  /**
   * The layer weight format the placement was sized for (absent: fp16). The server loads the format
   * its --weight-dtype names (a load-time choice, never reloaded live); this records what the plan counted.
   */
  weightDtype?: WeightDtype;
  generation?: number;
  reason?: string;
}

export type PlanParse = { ok: true; plan: PlanFile } | { ok: false; error: string };

/** Integer fields with their lower bounds. */
const INT_FIELDS = [
  ['kvBlocks', 0],
  ['actBlocks', 0],
  ['blockTokens', 1],
  ['maxBatch', 1],
  ['residentLayers', 0],
  ['gpuKvBlocks', 0],
  ['miniBatchTokens', 0],
  ['maxStepTokens', 0],
  ['generation', 0],
] as const;
/** Longest reason kept: it is logged and published in status, never a place for large text. */
export const MAX_REASON_CHARS = 4096;

function optInt(o: Record<string, unknown>, key: string, min: number): number | undefined | string {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) return `${key} must be an integer >= ${min}, got ${describe(v)}`;
  return v;
}

/** A short description of a bad value: its type, or a number itself (never a long string's content). */
function describe(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (typeof v === 'string') return `a string of ${v.length} characters`;
  return Array.isArray(v) ? 'an array' : typeof v;
}

/** Validates decoded JSON as a plan. */
export function validatePlan(raw: unknown): PlanParse {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, error: 'the plan must be a JSON object' };
  const o = raw as Record<string, unknown>;
  const f = o.actFraction;
  if (typeof f !== 'number' || !Number.isFinite(f) || f < 0 || f > 1) {
    return { ok: false, error: `actFraction must be a number in [0, 1], got ${f === undefined ? 'nothing' : describe(f)}` };
  }
  const plan: PlanFile = { actFraction: f };
  for (const [key, min] of INT_FIELDS) {
    const v = optInt(o, key, min);
    if (typeof v === 'string') return { ok: false, error: v };
    if (v !== undefined) plan[key] = v;
  }
  if (o.weightDtype !== undefined && !(WEIGHT_DTYPES as readonly unknown[]).includes(o.weightDtype))
    return { ok: false, error: `weightDtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${describe(o.weightDtype)}` };
  if (o.weightDtype !== undefined) plan.weightDtype = o.weightDtype as WeightDtype;
  if (o.reason !== undefined && typeof o.reason !== 'string')
    return { ok: false, error: `reason must be a string, got ${describe(o.reason)}` };
  if (typeof o.reason === 'string') plan.reason = o.reason.slice(0, MAX_REASON_CHARS);
  return { ok: true, plan };
}

/** Parses a plan file's text: JSON, then validatePlan. Errors say what is wrong, never echo the file. */
export function parsePlan(text: string): PlanParse {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not valid JSON' };
  }
  return validatePlan(raw);
}

/** The file for a plan, at generation 1 (what a node group's ConfigMap carries first). */
export function planFileOf(plan: {
  actFraction: number;
  kvBlocks: number;
  actBlocks: number;
  blockTokens: number;
  maxBatch: number;
  residentLayers?: number;
  gpuKvBlocks?: number;
  miniBatchTokens?: number;
  maxStepTokens?: number;
  weightDtype?: WeightDtype;
  reason: string;
}): PlanFile {
  const file: PlanFile = {
    actFraction: plan.actFraction,
    kvBlocks: plan.kvBlocks,
    actBlocks: plan.actBlocks,
    blockTokens: plan.blockTokens,
    maxBatch: plan.maxBatch,
    generation: 1,
    reason: plan.reason,
  };
  if (plan.residentLayers !== undefined) file.residentLayers = plan.residentLayers;
  if (plan.gpuKvBlocks !== undefined) file.gpuKvBlocks = plan.gpuKvBlocks;
  // 0 (the CPU start plan): one mini-batch per step, the engine's default; left out.
  if (plan.miniBatchTokens) file.miniBatchTokens = plan.miniBatchTokens;
  if (plan.maxStepTokens) file.maxStepTokens = plan.maxStepTokens;
  // fp16 is the default: its files stay as they were (no ConfigMap change for existing deployments).
  if (plan.weightDtype !== undefined && plan.weightDtype !== 'fp16') file.weightDtype = plan.weightDtype;
  return file;
}

/** The plan file's text (what the operator writes; parsePlan(serializePlan(p)) round-trips). */
export function serializePlan(plan: PlanFile): string {
  return JSON.stringify(plan);
}
