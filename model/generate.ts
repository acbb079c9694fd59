// One prompt through the engine, step by step: the policy half of generation (stop conditions,
// limits, streaming text) over the engine's mechanism (prefill/decode steps, sampling).
import { ModelError } from './errors.js';
import type { Tokenizer } from './tokenizer.js';
import type { ModelConfig } from './types.js';
import { isNativeError, NativeErrorCode, type NativeCounters, type NativeEngine } from '../native/ts/addon-types.js';
import { addCounters, zeroCounters } from '../native/ts/counters.js';

export interface GenerateParams {
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  /** 0 = no cut. */
  topK: number;
  seed: number;
  /** Extra ids that end generation (the tokenizer's EOS does too unless ignoreEos). */
  stopTokenIds: readonly number[];
  ignoreEos?: boolean;
  /** This sequence's ACT fraction (default: the engine's). */
  actFraction?: number;
  /** Keep each step's last-position logits (for tests). */
  keepLogits?: boolean;
}

export type FinishReason = 'length' | 'stop';

export interface GenerateResult {
  /** Generated ids, the stop token (if any) included. */
  tokens: number[];
  /** Text of the generated ids, stop token and special tokens left out. */
  text: string;
  promptTokens: number;
  finishReason: FinishReason;
  timings: {
    /** The first step: prefill of the prompt and the first sampled token. */
    prefillSeconds: number;
    decodeSeconds: number;
    totalSeconds: number;
    /** Generated tokens after the first, per second of decode. */
    decodeTokensPerSecond: number;
  };
  /** Sum of the engine's per-step counters for this generation. */
  counters: NativeCounters;
  logits?: Float32Array[];
}

/** Checks request limits against the model (pure); throws ModelError with a user-facing message. */
export function checkRequest(
  cfg: ModelConfig,
  promptIds: readonly number[],
  params: Pick<GenerateParams, 'maxTokens' | 'stopTokenIds'>,
): void {
  if (promptIds.length === 0) throw new ModelError('the prompt is empty (it must have at least one token)');
  if (!Number.isInteger(params.maxTokens) || params.maxTokens < 1) {
    throw new ModelError(`max tokens must be a positive integer, got ${params.maxTokens}`);
  }
  const bad = promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= cfg.vocabSize);
  if (bad !== undefined) throw new ModelError(`prompt token id ${bad} is outside the vocabulary [0, ${cfg.vocabSize})`);
  const badStop = params.stopTokenIds.find((id) => !Number.isInteger(id) || id < 0 || id >= cfg.vocabSize);
  if (badStop !== undefined) throw new ModelError(`stop token id ${badStop} is outside the vocabulary [0, ${cfg.vocabSize})`);
  if (promptIds.length + params.maxTokens > cfg.maxPositions) {
    throw new ModelError(
      `prompt (${promptIds.length} tokens) + max tokens (${params.maxTokens}) exceeds the model's context of ${cfg.maxPositions} positions`,
    );
  }
}

const OK = 0;

/**
 * Generates for one prompt. `onText` receives text pieces as they become complete (never a broken
 * UTF-8 character). The sequence is always removed from the engine, also on errors.
 */
export async function generate(
  engine: NativeEngine,
  tokenizer: Tokenizer,
  cfg: ModelConfig,
  promptIds: readonly number[],
  params: GenerateParams,
  onText?: (piece: string) => void,
): Promise<GenerateResult> {
  checkRequest(cfg, promptIds, params);
  const stops = new Set(params.stopTokenIds);
  if (!params.ignoreEos) stops.add(tokenizer.eosTokenId);
  const start = performance.now();
  let id: number;
  try {
    id = engine.addSequence(Int32Array.from(promptIds), {
      sampling: { temperature: params.temperature, topK: params.topK, topP: params.topP, seed: params.seed },
      ...(params.actFraction !== undefined ? { actFraction: params.actFraction } : {}),
    });
  } catch (err) {
    // By code, not instanceof: the addon's error may come from another realm (jest's VM contexts).
    if (isNativeError(err, NativeErrorCode.InvalidArgument) || isNativeError(err, NativeErrorCode.OutOfBlocks)) {
      throw new ModelError(`cannot start the sequence: ${err.message}`);
    }
    throw err;
  }
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  const decoder = tokenizer.decoder();
  const textParts: string[] = [];
  let counters = zeroCounters();
  let finishReason: FinishReason = 'length';
  let firstStepEnd = start;
  try {
    const ids = Int32Array.of(id);
    while (tokens.length < params.maxTokens) {
      const r = await engine.step(ids, { logits: params.keepLogits ?? false });
      counters = addCounters(counters, r.counters);
      if (tokens.length === 0) firstStepEnd = performance.now();
      if (r.status[0] !== OK) {
        throw new ModelError(`out of cache blocks after ${tokens.length} generated tokens (the pools are too small for this request)`);
      }
      const tok = r.tokens[0];
      tokens.push(tok);
      if (params.keepLogits && r.logits) logits.push(r.logits.slice(0, cfg.vocabSize));
      if (stops.has(tok)) {
        finishReason = 'stop';
        break;
      }
      const piece = decoder.push(tok);
      if (piece) {
        textParts.push(piece);
        onText?.(piece);
      }
    }
    const tail = decoder.flush();
    if (tail) {
      textParts.push(tail);
      onText?.(tail);
    }
  } finally {
    engine.removeSequence(id);
  }
  const end = performance.now();
  const decodeSeconds = (end - firstStepEnd) / 1000;
  return {
    tokens,
    text: textParts.join(''),
    promptTokens: promptIds.length,
    finishReason,
    timings: {
      prefillSeconds: (firstStepEnd - start) / 1000,
      decodeSeconds,
      totalSeconds: (end - start) / 1000,
      decodeTokensPerSecond: tokens.length > 1 && decodeSeconds > 0 ? (tokens.length - 1) / decodeSeconds : 0,
    },
    counters,
    ...(params.keepLogits ? { logits } : {}),
  };
}
