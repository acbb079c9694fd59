// Turns a validated OpenAI request into what the scheduler needs, rejecting what the schema
// cannot express (n > 1, prompt too long, max_tokens beyond the window). Pure: no I/O.
import { ChatTemplateError } from '../model/tokenizer.js';
import { badRequest } from './errors.js';
import type { ServerLimits } from './options.js';
import type { CompletionRequestT } from './schemas/completions.js';
import type { ChatRequestT } from './schemas/chat.js';

export interface ChatTurn { role: string; content: string }

/** The slice of a tokenizer the server uses; server/runtime.ts adapts model/tokenizer.ts to it. */
export interface ServerTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** Only for concatenative tokenizers (byte-level BPE, bytes): one token's text, cached. */
  decodeToken?(id: number): string;
  eosTokenId: number;
  vocabSize: number;
  /** Prompt ids of a conversation ending with the assistant's turn to generate. */
  encodeChat(messages: ChatTurn[]): number[];
  /** The same as encode / encodeChat, computed off the event loop (a worker thread), if available. */
  encodeAsync?(text: string): Promise<number[]>;
  encodeChatAsync?(messages: ChatTurn[]): Promise<number[]>;
}

/**
 * Prompts longer than this (characters) are tokenised off the event loop when the tokenizer can:
 * BPE on text without spaces costs microseconds per character, and the event loop serves every
 * other request, /healthz included.
 */
export const OFF_LOOP_CHARS = 8192;

export interface SamplingRequest { temperature: number; topP: number; topK: number; seed: number }

export interface GenerationRequest {
  promptTokens: number[];
  maxTokens: number;
  sampling: SamplingRequest;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  ignoreEos: boolean;
}

type Common = Pick<CompletionRequestT, 'max_tokens' | 'temperature' | 'top_p' | 'top_k' | 'seed' | 'n' | 'stop' | 'stream' | 'stream_options' | 'ignore_eos'>;

export function randomSeed(): number {
  return Math.floor(Math.random() * 0x7fffffff);
}

function common(req: Common, promptTokens: number[], limits: ServerLimits, maxTokensField: string, maxTokens?: number | null): GenerationRequest {
  if (req.n != null && req.n !== 1) throw badRequest(`only n = 1 is supported, got n = ${req.n}`, 'n', 'unsupported_value');
  if (promptTokens.length === 0) throw badRequest('the prompt is empty after tokenization', 'prompt', 'empty_prompt');
  if (promptTokens.length > limits.maxPromptTokens) {
    throw badRequest(`prompt is ${promptTokens.length} tokens; this server accepts at most ${limits.maxPromptTokens}`, 'prompt', 'context_length_exceeded');
  }
  const room = limits.maxTotalTokens - promptTokens.length;
  if (maxTokens != null && maxTokens > room) {
    throw badRequest(`${maxTokensField} = ${maxTokens} plus the ${promptTokens.length} prompt tokens exceeds the ${limits.maxTotalTokens}-token window`,
      maxTokensField, 'context_length_exceeded');
  }
  const stop = req.stop == null ? [] : typeof req.stop === 'string' ? [req.stop] : req.stop;
  return {
    promptTokens,
    maxTokens: maxTokens ?? Math.min(limits.defaultMaxTokens, room),
    sampling: {
      temperature: req.temperature ?? 1,
      topP: req.top_p ?? 1,
      topK: req.top_k ?? 0,
      seed: req.seed ?? randomSeed(),
    },
    stop,
    stream: req.stream === true,
    includeUsage: req.stream_options?.include_usage === true,
    ignoreEos: req.ignore_eos === true,
  };
}

/** Refuses text longer than the character limit before any of it is tokenised (tokenising costs time). */
function checkPromptChars(chars: number, limits: ServerLimits, param: string): void {
  if (chars > limits.maxPromptChars) {
    throw badRequest(`prompt is ${chars} characters; this server accepts at most ${limits.maxPromptChars} (at most ${limits.maxPromptTokens} tokens)`,
      param, 'context_length_exceeded');
  }
}

function promptText(req: CompletionRequestT): string | undefined {
  return typeof req.prompt === 'string' ? req.prompt : typeof req.prompt[0] === 'string' ? req.prompt[0] as string : undefined;
}

/** `encoded`: the prompt's ids when they were computed elsewhere (off the event loop). */
export function completionToGeneration(req: CompletionRequestT, tok: ServerTokenizer, limits: ServerLimits, encoded?: number[]): GenerationRequest {
  if (req.echo) throw badRequest('echo is not supported', 'echo', 'unsupported_value');
  let ids: number[];
  const text = promptText(req);
  if (text !== undefined) {
    checkPromptChars(text.length, limits, 'prompt');
    ids = encoded ?? tok.encode(text);
  } else {
    ids = req.prompt as number[];
    const bad = ids.find((t) => t >= tok.vocabSize);
    if (bad !== undefined) throw badRequest(`token id ${bad} is outside the vocabulary (size ${tok.vocabSize})`, 'prompt', 'invalid_value');
  }
  return common(req, ids, limits, 'max_tokens', req.max_tokens);
}

/** Text of a message: a string, or the concatenated text parts. */
function messageText(content: ChatRequestT['messages'][number]['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text).join('');
}

function chatTurns(req: ChatRequestT, limits: ServerLimits): ChatTurn[] {
  const turns = req.messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: messageText(m.content) }));
  if (turns.every((t) => t.content.trim() === '')) throw badRequest('messages have no content', 'messages', 'empty_messages');
  checkPromptChars(turns.reduce((n, t) => n + t.content.length, 0), limits, 'messages');
  return turns;
}

/** The template refused these messages (its raise_exception): the request's fault, not ours. */
function templateRefusal(err: unknown): unknown {
  return err instanceof ChatTemplateError ? badRequest(err.message, 'messages', 'chat_template_error') : err;
}

export function chatToGeneration(req: ChatRequestT, tok: ServerTokenizer, limits: ServerLimits, encoded?: number[]): GenerationRequest {
  const turns = chatTurns(req, limits);
  let ids: number[];
  try { ids = encoded ?? tok.encodeChat(turns); } catch (err) { throw templateRefusal(err); }
  const field = req.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  return common(req, ids, limits, field, req.max_completion_tokens ?? req.max_tokens);
}

/** completionToGeneration, with a long prompt tokenised off the event loop when the tokenizer can. */
export async function completionToGenerationAsync(req: CompletionRequestT, tok: ServerTokenizer, limits: ServerLimits): Promise<GenerationRequest> {
  const text = promptText(req);
  if (text === undefined || text.length <= OFF_LOOP_CHARS || !tok.encodeAsync || req.echo || text.length > limits.maxPromptChars) {
    return completionToGeneration(req, tok, limits);
  }
  return completionToGeneration(req, tok, limits, await tok.encodeAsync(text));
}

/** chatToGeneration, with long conversations tokenised off the event loop when the tokenizer can. */
export async function chatToGenerationAsync(req: ChatRequestT, tok: ServerTokenizer, limits: ServerLimits): Promise<GenerationRequest> {
  const turns = chatTurns(req, limits);
  if (turns.reduce((n, t) => n + t.content.length, 0) <= OFF_LOOP_CHARS || !tok.encodeChatAsync) return chatToGeneration(req, tok, limits);
  let ids: number[];
  try { ids = await tok.encodeChatAsync(turns); } catch (err) { throw templateRefusal(err); }
  return chatToGeneration(req, tok, limits, ids);
}
