// Turns a validated OpenAI request into what the scheduler needs (one GenerationRequest per prompt,
// each sampled n times), refusing what this server does not implement (400 naming the parameter)
// and what the schema cannot express (more sequences than the server allows one request, a prompt
// too long, max_tokens beyond the window, stream_options without stream). Pure: no I/O.
import { ChatTemplateError } from '../model/tokenizer.js';
import type { NativeSamplingParams } from '../native/ts/addon-types.js';
import { badRequest } from './errors.js';
import type { ServerLimits } from './options.js';
import type { CompletionRequestT } from './schemas/completions.js';
import type { ChatRequestT } from './schemas/chat.js';
import { ChatRequest } from './schemas/chat.js';
import { CompletionRequest } from './schemas/completions.js';
import type { TokenizeRequestT } from './schemas/ops.js';

export interface ChatTurn {
  role: string;
  content: string;
}

/** The slice of a tokenizer the server uses; server/runtime.ts adapts model/tokenizer.ts to it. */
export interface ServerTokenizer {
  /** addSpecialTokens (default true): the model's BOS, as Hugging Face tokenizers add it. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Only for concatenative tokenizers (byte-level BPE, bytes): one token's text, cached. */
  decodeToken?(id: number): string;
  eosTokenId: number;
  vocabSize: number;
  /** Prompt ids of a conversation ending with the assistant's turn to generate (model/tokenizer.ts ChatEncodeOptions). */
  encodeChat(messages: ChatTurn[], options?: { addGenerationPrompt?: boolean; addSpecialTokens?: boolean }): number[];
  /** encode / encodeChat with their defaults, computed off the event loop (a worker thread), if available. */
  encodeAsync?(text: string): Promise<number[]>;
  encodeChatAsync?(messages: ChatTurn[]): Promise<number[]>;
}

/**
 * Prompts longer than this (characters) are tokenised off the event loop when the tokenizer can:
 * BPE on text without spaces costs microseconds per character, and the event loop serves every
 * other request, /healthz included.
 */
export const OFF_LOOP_CHARS = 8192;

/** What the native sampler gets for the sequence (temperature … logprobs), as the addon types it. */
export type SamplingRequest = NativeSamplingParams;

/**
 * How errors name a prompt: the request's only one, or prompt[i] of a completions batch (its param
 * `prompt.i`, as the schema's validation errors name elements).
 */
export interface PromptName {
  text: string;
  param: string;
}
export const THE_PROMPT: PromptName = { text: 'prompt', param: 'prompt' };
const batchPrompt = (i: number): PromptName => ({ text: `prompt[${i}]`, param: `prompt.${i}` });

/** One prompt of a request and how to generate from it; its n samples are sequences of their own. */
export interface GenerationRequest {
  promptTokens: number[];
  promptName: PromptName;
  maxTokens: number;
  /** Sample 0's; sample j differs only in its seed (sampleSeed). */
  sampling: SamplingRequest;
  /** Samples of this prompt: for prompt p of the request, choices p·n … p·n + n − 1. */
  n: number;
  stop: string[];
  /** The request's stop_token_ids (EOS is handled by the scheduler unless ignoreEos). */
  stopTokenIds: number[];
  includeStop: boolean;
  skipSpecialTokens: boolean;
  /** Alternatives per token in the response's logprobs; null: no logprobs. */
  logprobs: number | null;
  stream: boolean;
  includeUsage: boolean;
  ignoreEos: boolean;
}

type Common = Pick<
  CompletionRequestT,
  | 'max_tokens'
  | 'temperature'
  | 'top_p'
  | 'top_k'
  | 'min_p'
  | 'seed'
  | 'n'
  | 'stop'
  | 'stream'
  | 'stream_options'
  | 'ignore_eos'
  | 'stop_token_ids'
  | 'logit_bias'
  | 'presence_penalty'
  | 'frequency_penalty'
  | 'repetition_penalty'
  | 'min_tokens'
  | 'include_stop_str_in_output'
  | 'skip_special_tokens'
  | 'response_format'
>;

export function randomSeed(): number {
  return Math.floor(Math.random() * 0x7fffffff);
}

const SEED_RANGE = 2n ** 53n;
/** A request seed (any 64-bit integer, as vLLM) as the engine's seed in [0, 2^53). */
export function engineSeed(seed: number): number {
  return Number(((BigInt(seed) % SEED_RANGE) + SEED_RANGE) % SEED_RANGE);
}

/**
 * Sample j's engine seed: the prompt's seed + j (as vLLM's parallel sampling), so that the n samples
 * differ while a repeated request repeats them, and sample 0 is what the request with n = 1 gives.
 * The engine seeds its RNG through splitmix64, so neighbouring seeds give unrelated streams.
 */
export function sampleSeed(seed: number, j: number): number {
  return Number((BigInt(seed) + BigInt(j)) % SEED_RANGE);
}

// ---- refused parameters -------------------------------------------------------------------------
const isNull = (v: unknown) => v === undefined || v === null;
/** For each refused parameter, the values that mean "not asked for" (anything else is a 400). */
const ACCEPTED: Record<string, (v: unknown, body?: Record<string, unknown>) => boolean> = {
  // Every sample is returned: none is generated only to be ranked away.
  best_of: (v, body) => isNull(v) || v === (body?.n ?? 1),
  use_beam_search: (v) => isNull(v) || v === false,
  length_penalty: (v) => isNull(v) || v === 1,
  prompt_logprobs: isNull,
  allowed_token_ids: isNull,
  bad_words: (v) => isNull(v) || (Array.isArray(v) && v.length === 0),
  truncate_prompt_tokens: isNull,
  guided_json: isNull,
  guided_regex: isNull,
  guided_choice: isNull,
  guided_grammar: isNull,
  structured_outputs: isNull,
  spaces_between_special_tokens: (v) => isNull(v) || v === true,
  return_tokens_as_token_ids: (v) => isNull(v) || v === false,
  priority: (v) => isNull(v) || v === 0,
  guided_decoding_backend: isNull,
  guided_whitespace_pattern: isNull,
  logits_processors: (v) => isNull(v) || (Array.isArray(v) && v.length === 0),
  cache_salt: isNull,
  kv_transfer_params: isNull,
  vllm_xargs: isNull,
  prompt_embeds: isNull,
  structural_tag: isNull,
  mm_processor_kwargs: isNull,
  echo: (v) => isNull(v) || v === false,
  suffix: (v) => isNull(v) || v === '',
  tools: (v) => isNull(v) || (Array.isArray(v) && v.length === 0),
  tool_choice: (v) => isNull(v) || v === 'none',
  functions: isNull,
  function_call: (v) => isNull(v) || v === 'none',
  parallel_tool_calls: isNull,
  add_generation_prompt: (v) => isNull(v) || v === true,
  continue_final_message: (v) => isNull(v) || v === false,
  chat_template: isNull,
  chat_template_kwargs: isNull,
  documents: isNull,
  modalities: (v) => isNull(v) || (Array.isArray(v) && v.length === 1 && v[0] === 'text'),
  audio: isNull,
  prediction: isNull,
  reasoning_effort: isNull,
  web_search_options: isNull,
  store: (v) => isNull(v) || v === false,
  metadata: isNull,
  service_tier: (v) => isNull(v) || v === 'auto' || v === 'default',
};

/** Why a refused parameter's accepted values are what they are, where the name alone does not say. */
const REFUSAL_DETAIL: Record<string, string> = {
  best_of: ': best_of must be null or equal to n (every sample is returned; none is ranked)',
};

/** Throws a 400 naming the first refused parameter the body asks for. Pure. */
export function refuseUnsupported(body: Record<string, unknown>): void {
  for (const [name, accepted] of Object.entries(ACCEPTED)) {
    if (name in body && !accepted(body[name], body)) {
      throw badRequest(`'${name}' is not supported by this server${REFUSAL_DETAIL[name] ?? ''}`, name, 'unsupported_parameter');
    }
  }
}

/**
 * Refuses a request that would create more engine sequences (prompts × n) than the server allows
 * one request, before any prompt is tokenised. The param is the factor to lower: prompt when the
 * batch alone is too long, else n. Pure.
 */
function checkSequences(prompts: number, n: number, limits: ServerLimits): void {
  const max = limits.maxSequencesPerRequest;
  if (prompts * n <= max) return;
  const asked = prompts > 1 ? `${prompts} prompts × n = ${n}` : `n = ${n}`;
  throw badRequest(
    `${asked} asks for ${prompts * n} sequences; this server generates at most ${max} per request`,
    prompts > max ? 'prompt' : 'n',
    'too_many_sequences',
  );
}

/** What is refused before any prompt is tokenised (tokenising costs time). Pure. */
function checkRequest(req: Common, prompts: number, limits: ServerLimits): void {
  refuseUnsupported(req as Record<string, unknown>);
  checkSequences(prompts, req.n ?? 1, limits);
}

/** Body fields neither schema declares (logged once per name by the routes). Pure. */
export function unknownFields(body: Record<string, unknown>, endpoint: 'completions' | 'chat'): string[] {
  const known = endpoint === 'chat' ? ChatRequest.properties : CompletionRequest.properties;
  return Object.keys(body).filter((k) => !(k in known));
}

// ---- sampling ------------------------------------------------------------------------------------
function tokenIdsInVocab(ids: number[], vocab: number, param: string): void {
  const bad = ids.find((t) => t >= vocab);
  if (bad !== undefined) throw badRequest(`token id ${bad} in ${param} is outside the vocabulary (size ${vocab})`, param, 'invalid_value');
}

function logitBias(req: Common, vocab: number): Array<[number, number]> {
  const pairs = Object.entries(req.logit_bias ?? {}).map(([k, v]): [number, number] => [Number(k), v]);
  tokenIdsInVocab(
    pairs.map(([id]) => id),
    vocab,
    'logit_bias',
  );
  return pairs;
}

/** The native sampler's parameters for a request. Pure. */
export function samplingOf(req: Common, tok: ServerTokenizer, logprobs: number | null): SamplingRequest {
  const stopIds = req.stop_token_ids ?? [];
  tokenIdsInVocab(stopIds, tok.vocabSize, 'stop_token_ids');
  const minTokens = req.min_tokens ?? 0;
  const s: SamplingRequest = {
    temperature: req.temperature ?? 1,
    topP: req.top_p ?? 1,
    topK: Math.max(0, req.top_k ?? 0),
    seed: engineSeed(req.seed ?? randomSeed()),
  };
  if (req.min_p) s.minP = req.min_p;
  if (req.presence_penalty) s.presencePenalty = req.presence_penalty;
  if (req.frequency_penalty) s.frequencyPenalty = req.frequency_penalty;
  if (req.repetition_penalty != null && req.repetition_penalty !== 1) s.repetitionPenalty = req.repetition_penalty;
  const bias = logitBias(req, tok.vocabSize);
  if (bias.length > 0) s.logitBias = bias;
  if (minTokens > 0) {
    s.minTokens = minTokens;
    // Before min_tokens, neither EOS (unless ignored) nor a stop token id may be sampled (vLLM).
    s.stopTokenIds = [...new Set([...stopIds, ...(req.ignore_eos ? [] : [tok.eosTokenId])])];
  }
  if (logprobs !== null) s.logprobs = logprobs;
  return s;
}

function common(
  req: Common,
  tok: ServerTokenizer,
  promptTokens: number[],
  at: PromptName,
  limits: ServerLimits,
  maxTokensField: string,
  maxTokens: number | null | undefined,
  logprobs: number | null,
): GenerationRequest {
  if (req.response_format != null && req.response_format.type !== 'text') {
    throw badRequest(
      `response_format '${req.response_format.type}' is not supported (no constrained decoding); only 'text'`,
      'response_format',
      'unsupported_value',
    );
  }
  if (req.stream_options != null && req.stream !== true) {
    throw badRequest('stream_options is only allowed with stream: true', 'stream_options', 'invalid_value');
  }
  if (req.stream_options?.continuous_usage_stats === true) {
    throw badRequest(
      'stream_options.continuous_usage_stats is not supported',
      'stream_options.continuous_usage_stats',
      'unsupported_value',
    );
  }
  const batched = at !== THE_PROMPT;
  if (promptTokens.length === 0)
    throw badRequest(`${batched ? at.text : 'the prompt'} is empty after tokenization`, at.param, 'empty_prompt');
  if (promptTokens.length > limits.maxPromptTokens) {
    throw badRequest(
      `${at.text} is ${promptTokens.length} tokens; this server accepts at most ${limits.maxPromptTokens}`,
      at.param,
      'context_length_exceeded',
    );
  }
  const room = limits.maxTotalTokens - promptTokens.length;
  if (maxTokens != null && maxTokens > room) {
    throw badRequest(
      `${maxTokensField} = ${maxTokens} plus the ${promptTokens.length} prompt tokens${batched ? ` of ${at.text}` : ''} exceeds the ${limits.maxTotalTokens}-token window`,
      maxTokensField,
      'context_length_exceeded',
    );
  }
  // As vLLM: without max_tokens, generate up to the rest of the context window.
  const max = maxTokens ?? room;
  if (req.min_tokens != null && req.min_tokens > max) {
    throw badRequest(`min_tokens = ${req.min_tokens} exceeds ${maxTokensField} = ${max}`, 'min_tokens', 'invalid_value');
  }
  const stop = req.stop == null ? [] : typeof req.stop === 'string' ? [req.stop] : req.stop;
  return {
    promptTokens,
    promptName: at,
    maxTokens: max,
    sampling: samplingOf(req, tok, logprobs),
    n: req.n ?? 1,
    stop,
    stopTokenIds: req.stop_token_ids ?? [],
    includeStop: req.include_stop_str_in_output === true,
    skipSpecialTokens: req.skip_special_tokens !== false,
    logprobs,
    stream: req.stream === true,
    includeUsage: req.stream_options?.include_usage === true,
    ignoreEos: req.ignore_eos === true,
  };
}

/** Refuses text longer than the character limit before any of it is tokenised (tokenising costs time). */
function checkPromptChars(chars: number, limits: ServerLimits, at: PromptName): void {
  if (chars > limits.maxPromptChars) {
    throw badRequest(
      `${at.text} is ${chars} characters; this server accepts at most ${limits.maxPromptChars} (at most ${limits.maxPromptTokens} tokens)`,
      at.param,
      'context_length_exceeded',
    );
  }
}

/** A chat conversation is one prompt; its text is the messages'. */
const MESSAGES: PromptName = { text: 'prompt', param: 'messages' };

/** One prompt of a completions request: text or token ids. */
type OnePrompt = string | number[];

/** The prompts of a completions request, in order: its only one, or each of a batch. Pure. */
function promptsOf(prompt: CompletionRequestT['prompt']): OnePrompt[] {
  if (typeof prompt === 'string') return [prompt];
  return typeof prompt[0] === 'number' ? [prompt as number[]] : (prompt as string[] | number[][]);
}

/** add_special_tokens as encoder options: absent or null leaves the encoder's default. Pure. */
function specialTokens(add: boolean | null | undefined): { addSpecialTokens: boolean } | undefined {
  return add == null ? undefined : { addSpecialTokens: add };
}

/** One prompt of a completions request as a generation. `encoded`: its ids when computed elsewhere (off the event loop). */
function promptGeneration(
  req: CompletionRequestT,
  prompt: OnePrompt,
  at: PromptName,
  tok: ServerTokenizer,
  limits: ServerLimits,
  encoded: number[] | undefined,
): GenerationRequest {
  let ids: number[];
  if (typeof prompt === 'string') {
    checkPromptChars(prompt.length, limits, at);
    ids = encoded ?? tok.encode(prompt, specialTokens(req.add_special_tokens));
  } else {
    ids = prompt;
    const bad = ids.find((t) => t >= tok.vocabSize);
    if (bad !== undefined) {
      const where = at === THE_PROMPT ? '' : ` in ${at.text}`;
      throw badRequest(`token id ${bad}${where} is outside the vocabulary (size ${tok.vocabSize})`, at.param, 'invalid_value');
    }
  }
  return common(req, tok, ids, at, limits, 'max_tokens', req.max_tokens, req.logprobs ?? null);
}

/**
 * Every prompt of a completions request as a generation, in the request's order (its choices are
 * prompt-major). `encoded[i]`: prompt i's ids when they were computed elsewhere (off the event loop).
 */
export function completionToGenerations(
  req: CompletionRequestT,
  tok: ServerTokenizer,
  limits: ServerLimits,
  encoded: ReadonlyArray<number[] | undefined> = [],
): GenerationRequest[] {
  const prompts = promptsOf(req.prompt);
  checkRequest(req, prompts.length, limits);
  return generationsOf(req, prompts, tok, limits, encoded);
}

/** The prompts as generations, once checkRequest has passed. */
function generationsOf(
  req: CompletionRequestT,
  prompts: readonly OnePrompt[],
  tok: ServerTokenizer,
  limits: ServerLimits,
  encoded: ReadonlyArray<number[] | undefined>,
): GenerationRequest[] {
  // A batch of one is the request's prompt, named as such (the openai clients send ids that way).
  const name = (i: number) => (prompts.length === 1 ? THE_PROMPT : batchPrompt(i));
  return prompts.map((p, i) => promptGeneration(req, p, name(i), tok, limits, encoded[i]));
}

/** Text of a message: a string, or the concatenated text parts. */
function messageText(content: ChatRequestT['messages'][number]['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text).join('');
}

/** The conversation as the template sees it: developer messages are system messages; text parts joined. Pure. */
function turnsOf(messages: ChatRequestT['messages']): ChatTurn[] {
  return messages.map((m, i) => {
    refuseToolCalls(m as Record<string, unknown>, i);
    return { role: m.role === 'developer' ? 'system' : m.role, content: messageText(m.content) };
  });
}

/**
 * An assistant turn that called tools cannot be rendered without tool support (the turn would
 * silently lose its calls), so it is refused like `tools` itself. Empty lists and null are no calls.
 */
function refuseToolCalls(m: Record<string, unknown>, i: number): void {
  for (const name of ['tool_calls', 'function_call']) {
    const v = m[name];
    if (v == null || (Array.isArray(v) && v.length === 0)) continue;
    throw badRequest(
      `'messages[${i}].${name}' is not supported by this server (no tool calling)`,
      `messages.${i}.${name}`,
      'unsupported_parameter',
    );
  }
}

function chatTurns(req: ChatRequestT, limits: ServerLimits): ChatTurn[] {
  checkRequest(req, 1, limits);
  if (req.top_logprobs != null && req.logprobs !== true) {
    throw badRequest('top_logprobs needs logprobs: true', 'top_logprobs', 'invalid_value');
  }
  const turns = turnsOf(req.messages);
  if (turns.every((t) => t.content.trim() === '')) throw badRequest('messages have no content', 'messages', 'empty_messages');
  checkPromptChars(
    turns.reduce((n, t) => n + t.content.length, 0),
    limits,
    MESSAGES,
  );
  return turns;
}

/** The template refused these messages (its raise_exception): the request's fault, not ours. */
function templateRefusal(err: unknown): unknown {
  return err instanceof ChatTemplateError ? badRequest(err.message, 'messages', 'chat_template_error') : err;
}

export function chatToGeneration(req: ChatRequestT, tok: ServerTokenizer, limits: ServerLimits, encoded?: number[]): GenerationRequest {
  const turns = chatTurns(req, limits);
  let ids: number[];
  try {
    ids = encoded ?? tok.encodeChat(turns, specialTokens(req.add_special_tokens));
  } catch (err) {
    throw templateRefusal(err);
  }
  const field = req.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  return common(
    req,
    tok,
    ids,
    THE_PROMPT,
    limits,
    field,
    req.max_completion_tokens ?? req.max_tokens,
    req.logprobs === true ? (req.top_logprobs ?? 0) : null,
  );
}

/** completionToGenerations, with long prompts tokenised off the event loop when the tokenizer can. */
export async function completionToGenerationsAsync(
  req: CompletionRequestT,
  tok: ServerTokenizer,
  limits: ServerLimits,
): Promise<GenerationRequest[]> {
  const prompts = promptsOf(req.prompt);
  // Refused parameters and too many sequences cost no tokenising.
  checkRequest(req, prompts.length, limits);
  const encodeAsync = tok.encodeAsync?.bind(tok);
  // The thread encodes with the defaults: an explicit add_special_tokens is encoded here; text over
  // the character limit is refused there, unread.
  const offLoop = (p: OnePrompt): p is string =>
    typeof p === 'string' && p.length > OFF_LOOP_CHARS && p.length <= limits.maxPromptChars && req.add_special_tokens == null;
  const encoded = encodeAsync ? await Promise.all(prompts.map(async (p) => (offLoop(p) ? encodeAsync(p) : undefined))) : [];
  return generationsOf(req, prompts, tok, limits, encoded);
}

/** chatToGeneration, with long conversations tokenised off the event loop when the tokenizer can. */
export async function chatToGenerationAsync(req: ChatRequestT, tok: ServerTokenizer, limits: ServerLimits): Promise<GenerationRequest> {
  const turns = chatTurns(req, limits);
  const short = turns.reduce((n, t) => n + t.content.length, 0) <= OFF_LOOP_CHARS;
  if (short || !tok.encodeChatAsync || req.add_special_tokens != null) return chatToGeneration(req, tok, limits);
  let ids: number[];
  try {
    ids = await tok.encodeChatAsync(turns);
  } catch (err) {
    throw templateRefusal(err);
  }
  return chatToGeneration(req, tok, limits, ids);
}

// ---- /tokenize ------------------------------------------------------------------------------------
/** What POST /tokenize is asked to encode: a prompt, or a conversation through the chat template. */
export type TokenizeInput =
  | { kind: 'prompt'; text: string; addSpecialTokens: boolean }
  | { kind: 'chat'; turns: ChatTurn[]; addGenerationPrompt: boolean; addSpecialTokens?: boolean };

/** vLLM's tokenize parameters this server does not implement, with the values that mean "not asked for". */
const TOKENIZE_ACCEPTED: Record<string, (v: unknown) => boolean> = {
  // vLLM returns the vocabulary's own token strings; this server's tokenizer interface has no such lookup.
  return_token_strs: (v) => isNull(v) || v === false,
  continue_final_message: ACCEPTED.continue_final_message!,
  chat_template: ACCEPTED.chat_template!,
  chat_template_kwargs: ACCEPTED.chat_template_kwargs!,
  tools: ACCEPTED.tools!,
  mm_processor_kwargs: isNull,
};

/** Checks a /tokenize body (exactly one of prompt and messages; refused fields) and says what to encode. Pure. */
export function tokenizeInput(body: TokenizeRequestT): TokenizeInput {
  for (const [name, accepted] of Object.entries(TOKENIZE_ACCEPTED)) {
    if (name in body && !accepted((body as Record<string, unknown>)[name])) {
      throw badRequest(`'${name}' is not supported by this server`, name, 'unsupported_parameter');
    }
  }
  if ((body.prompt === undefined) === (body.messages === undefined)) {
    throw badRequest('send either prompt or messages', body.prompt === undefined ? 'prompt' : 'messages', 'invalid_value');
  }
  if (body.prompt !== undefined) {
    if (body.add_generation_prompt != null)
      throw badRequest('add_generation_prompt applies to messages', 'add_generation_prompt', 'invalid_value');
    return { kind: 'prompt', text: body.prompt, addSpecialTokens: body.add_special_tokens !== false };
  }
  // The chat template's output carries its own special tokens (vLLM's default for chat is false).
  return {
    kind: 'chat',
    turns: turnsOf(body.messages!),
    addGenerationPrompt: body.add_generation_prompt !== false,
    ...specialTokens(body.add_special_tokens),
  };
}

/**
 * The ids of a /tokenize request; a chat template's refusal is a 400. Long text is tokenised off
 * the event loop, as for generation, when the tokenizer can and the defaults apply (the thread
 * encodes with them).
 */
export async function tokenizeIds(input: TokenizeInput, tok: ServerTokenizer): Promise<number[]> {
  if (input.kind === 'prompt') {
    if (input.text.length > OFF_LOOP_CHARS && tok.encodeAsync && input.addSpecialTokens) return tok.encodeAsync(input.text);
    return tok.encode(input.text, { addSpecialTokens: input.addSpecialTokens });
  }
  const chars = input.turns.reduce((n, t) => n + t.content.length, 0);
  try {
    const defaults = input.addGenerationPrompt && input.addSpecialTokens === undefined;
    if (chars > OFF_LOOP_CHARS && tok.encodeChatAsync && defaults) return await tok.encodeChatAsync(input.turns);
    return tok.encodeChat(input.turns, { addGenerationPrompt: input.addGenerationPrompt, addSpecialTokens: input.addSpecialTokens });
  } catch (err) {
    throw templateRefusal(err);
  }
}
