// OpenAI response and stream-chunk shapes for completions and chat completions. Pure.
import { randomUUID } from 'node:crypto';
import type { FinishReason as SchedFinish } from './scheduler/scheduler.js';

export type Endpoint = 'completions' | 'chat';
export type OpenAIFinish = 'stop' | 'length' | null;

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Present when part of the prompt's cache came from the prefix cache (vLLM and OpenAI name it so). */
  prompt_tokens_details?: { cached_tokens: number };
}

export function usage(prompt: number, completion: number, cachedPromptTokens = 0): Usage {
  const u: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (cachedPromptTokens > 0) u.prompt_tokens_details = { cached_tokens: cachedPromptTokens };
  return u;
}

export function openAIFinish(reason: SchedFinish): OpenAIFinish {
  return reason === 'length' ? 'length' : reason === 'stop' ? 'stop' : null;
}

export function newId(endpoint: Endpoint): string {
  return `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
}

export interface ResponseMeta {
  id: string;
  created: number;
  model: string;
}

/** One generated token's logprob, its text and its top alternatives (text, logprob), best first. */
export interface LogprobEntry {
  token: string;
  logprob: number;
  top: Array<[string, number]>;
}

/** The OpenAI logprobs object of one choice, for the endpoint. `offset`: text_offset of the first token. */
export function logprobsObject(ep: Endpoint, entries: readonly LogprobEntry[], offset = 0) {
  if (ep === 'chat') {
    const bytes = (t: string) => Array.from(Buffer.from(t, 'utf8'));
    return {
      content: entries.map((e) => ({
        token: e.token,
        logprob: e.logprob,
        bytes: bytes(e.token),
        top_logprobs: e.top.map(([token, logprob]) => ({ token, logprob, bytes: bytes(token) })),
      })),
    };
  }
  const textOffset: number[] = [];
  let at = offset;
  for (const e of entries) {
    textOffset.push(at);
    at += e.token.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    // One object per token; tokens with the same text keep the best logprob (a JSON object has one key per text).
    // The sampled token is always in it, so it has up to N + 1 entries (OpenAI's legacy API, as vLLM).
    top_logprobs: entries.map((e) => {
      const o: Record<string, number> = {};
      for (const [t, lp] of e.top) if (!(t in o)) o[t] = lp;
      if (!(e.token in o)) o[e.token] = e.logprob;
      return o;
    }),
    text_offset: textOffset,
  };
}

type Logprobs = ReturnType<typeof logprobsObject> | null;

/** vLLM's stop_reason: the stop string or stop token id that ended the text (null otherwise). */
export type StopReason = string | number | null;

/** One choice of a whole response; its index is its place in the response's list. */
export interface ChoiceResult {
  text: string;
  finish: OpenAIFinish;
  logprobs: Logprobs;
  stopReason: StopReason;
}

export function fullResponse(ep: Endpoint, m: ResponseMeta, choices: readonly ChoiceResult[], u: Usage) {
  if (ep === 'chat') {
    return {
      id: m.id,
      object: 'chat.completion' as const,
      created: m.created,
      model: m.model,
      choices: choices.map((c, index) => ({
        index,
        message: { role: 'assistant' as const, content: c.text },
        logprobs: c.logprobs,
        finish_reason: c.finish,
        stop_reason: c.stopReason,
      })),
      usage: u,
    };
  }
  return {
    id: m.id,
    object: 'text_completion' as const,
    created: m.created,
    model: m.model,
    choices: choices.map((c, index) => ({ index, text: c.text, logprobs: c.logprobs, finish_reason: c.finish, stop_reason: c.stopReason })),
    usage: u,
  };
}

/**
 * One stream chunk carrying a text delta of choice `index` (and, for its last one, the finish reason
 * and vLLM's stop_reason). `first`: the choice's first chunk, which names the chat role.
 */
export function deltaChunk(
  ep: Endpoint,
  m: ResponseMeta,
  text: string,
  finish: OpenAIFinish,
  first: boolean,
  logprobs: Logprobs = null,
  stopReason: StopReason = null,
  index = 0,
) {
  const end = finish === null ? {} : { stop_reason: stopReason };
  if (ep === 'chat') {
    const delta: { role?: 'assistant'; content?: string } = first
      ? { role: 'assistant', content: text }
      : text || finish === null
        ? { content: text }
        : {};
    return {
      id: m.id,
      object: 'chat.completion.chunk',
      created: m.created,
      model: m.model,
      choices: [{ index, delta, logprobs, finish_reason: finish, ...end }],
    };
  }
  return {
    id: m.id,
    object: 'text_completion',
    created: m.created,
    model: m.model,
    choices: [{ index, text, logprobs, finish_reason: finish, ...end }],
  };
}

/** The usage-only chunk sent before [DONE] when stream_options.include_usage is set. */
export function usageChunk(ep: Endpoint, m: ResponseMeta, u: Usage) {
  return {
    id: m.id,
    object: ep === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    created: m.created,
    model: m.model,
    choices: [],
    usage: u,
  };
}

export function sseData(obj: unknown): string {
  return `data: ${JSON.stringify(obj)}\n\n`;
}

export const SSE_DONE = 'data: [DONE]\n\n';

/**
 * The SSE event for a text delta of choice `index`, built from pre-serialised parts: the hot path of
 * streaming (one call per generated token per stream) then only escapes the text. Same bytes as
 * sseData(deltaChunk(ep, m, text, null, first, null, null, index)).
 */
export function deltaEventWriter(ep: Endpoint, m: ResponseMeta): (text: string, first: boolean, index?: number) => string {
  const head = `data: {"id":${JSON.stringify(m.id)},"object":${ep === 'chat' ? '"chat.completion.chunk"' : '"text_completion"'},"created":${m.created},"model":${JSON.stringify(m.model)},"choices":[{"index":`;
  const tail = ',"logprobs":null,"finish_reason":null}]}\n\n';
  if (ep === 'chat') {
    return (text, first, index = 0) =>
      `${head}${index},"delta":{${first ? '"role":"assistant",' : ''}"content":${JSON.stringify(text)}}${tail}`;
  }
  return (text, _first, index = 0) => `${head}${index},"text":${JSON.stringify(text)}${tail}`;
}
