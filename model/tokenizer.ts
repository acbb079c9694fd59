// Tokenizers: one interface, four sources.
//  - GPT-2 byte-level BPE (js-tiktoken r50k_base): synthetic OPT presets and the embedded default.
//    Synthetic models therefore use GPT-2 ids (not the re-indexed ids of real OPT checkpoints).
//  - A byte tokenizer for synthetic Llama presets: byte b → id b + 3, like Llama's <0xNN> byte
//    tokens; ids 0/1/2 are unk/bos/eos. Ids above 258 have no text and decode to nothing.
//  - A checkpoint's tokenizer.json, through @huggingface/tokenizers.
//  - An OPT checkpoint's vocab.json + merges.txt, turned into the equivalent tokenizer.json object.
// Chat templates come from tokenizer_config.json's chat_template (rendered with @huggingface/jinja),
// else the plain template "<role>: <content>\n" per message, then "assistant:".
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { Tiktoken } from 'js-tiktoken/lite';
import r50kBase from 'js-tiktoken/ranks/r50k_base';
import { Detokenizer } from './detokenizer.js';
import { ModelError, describeError, describeJsonError } from './errors.js';
import type { ModelConfig } from './types.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatEncodeOptions {
  /** Open the assistant's turn at the end. Default true. */
  addGenerationPrompt?: boolean;
  /** Add the model's special tokens on top of the template's. Default: only without a Jinja template. */
  addSpecialTokens?: boolean;
}

export interface EncodeOptions {
  /** Add the model's special tokens (its BOS), as Hugging Face tokenizers do by default. Default true. */
  addSpecialTokens?: boolean;
}

/** Turns a stream of ids into text pieces that never end in the middle of a UTF-8 character. */
export interface IncrementalDecoder {
  /** Adds one id; returns the text that became complete (often '', never a broken character). */
  push(id: number): string;
  /** Returns whatever is left (a truly broken tail comes out as U+FFFD). */
  flush(): string;
}

export interface DecodeOptions {
  /** Leave special tokens (BOS, EOS, …) out of the text. Default true, as vLLM's skip_special_tokens. */
  skipSpecialTokens?: boolean;
}

export interface Tokenizer {
  /** Which implementation: 'gpt2', 'bytes', 'tokenizer.json', 'vocab.json+merges.txt'. */
  readonly kind: string;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number;
  /** The Jinja chat template, if the checkpoint has one. */
  readonly chatTemplate: string | undefined;
  encode(text: string, options?: EncodeOptions): number[];
  /** Text of the ids, special tokens left out unless options.skipSpecialTokens is false. */
  decode(ids: readonly number[], options?: DecodeOptions): string;
  decoder(): IncrementalDecoder;
  /** The prompt text for a conversation (with the assistant's turn opened). */
  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
  /**
   * The prompt ids for a conversation: a Jinja template's output carries its own special tokens, so
   * only the plain template's prompt gets the BOS, unless options.addSpecialTokens says otherwise.
   */
  encodeChat(messages: readonly ChatMessage[], options?: ChatEncodeOptions): number[];
}

/**
 * Longest run of non-whitespace characters encoded as one piece. BPE merging (js-tiktoken, and
 * the Hugging Face BPE) costs time quadratic in the length of one pre-token: 20K letters without a
 * space take seconds. Longer runs are encoded in pieces of this many characters, which keeps
 * encoding linear; the ids differ from an unbounded encoder only inside such runs.
 */
export const MAX_WORD_CHARS = 64;

/**
 * Splits text so that no piece holds a run of more than `maxWord` non-whitespace characters: the
 * text is cut inside such runs only (never between a surrogate pair). Text without long runs is
 * returned whole, so ordinary prompts encode exactly as before. Pure.
 */
export function splitLongWords(text: string, maxWord = MAX_WORD_CHARS): string[] {
  const long = new RegExp(`\\S{${maxWord + 1},}`, 'gu');
  if (!long.test(text)) return [text];
  long.lastIndex = 0;
  const pieces: string[] = [];
  let start = 0;
  for (let m = long.exec(text); m !== null; m = long.exec(text)) {
    const chars = Array.from(m[0]);
    // The text before the run joins its first chunk, so the run's leading boundary is kept.
    let piece = text.slice(start, m.index);
    for (let i = 0; i < chars.length; i += maxWord) {
      pieces.push(piece + chars.slice(i, i + maxWord).join(''));
      piece = '';
    }
    start = m.index + m[0].length;
  }
  if (start < text.length) pieces.push(text.slice(start));
  return pieces;
}

/** A chat template that raised (its own raise_exception, or a render failure): the request's fault. */
export class ChatTemplateError extends ModelError {
  constructor(message: string) {
    super(message);
    this.name = 'ChatTemplateError';
  }
}

/** The documented fallback template: "<role>: <content>\n" per message, then "assistant:". */
export function plainChatPrompt(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join('') + (addGenerationPrompt ? 'assistant:' : '');
}

export function renderChatTemplate(template: string, messages: readonly ChatMessage[], vars: Record<string, unknown>): string {
  let compiled: Template;
  try {
    compiled = new Template(template);
  } catch (err) {
    throw new ModelError(`chat template cannot be parsed: ${describeError(err)}`);
  }
  try {
    return compiled.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      ...vars,
    });
  } catch (err) {
    // Includes the template's own raise_exception('...') (a jinja built-in).
    throw new ChatTemplateError(`chat template failed: ${describeError(err)}`);
  }
}

abstract class BaseTokenizer implements Tokenizer {
  abstract readonly kind: string;
  abstract readonly bosTokenId: number | undefined;
  abstract readonly eosTokenId: number;
  readonly chatTemplate: string | undefined = undefined;
  abstract encode(text: string, options?: EncodeOptions): number[];
  abstract decode(ids: readonly number[], options?: DecodeOptions): string;

  decoder(): IncrementalDecoder {
    return new Detokenizer({ decode: (ids) => this.decode(ids) });
  }

  protected templateVars(): Record<string, unknown> {
    return {};
  }

  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    const add = options.addGenerationPrompt ?? true;
    if (!this.chatTemplate) return plainChatPrompt(messages, add);
    return renderChatTemplate(this.chatTemplate, messages, { add_generation_prompt: add, ...this.templateVars() });
  }

  encodeChat(messages: readonly ChatMessage[], options: ChatEncodeOptions = {}): number[] {
    const text = this.applyChatTemplate(messages, options);
    return this.encode(text, { addSpecialTokens: options.addSpecialTokens ?? !this.chatTemplate });
  }
}

/** GPT-2 byte-level BPE (r50k_base: 50,257 ids, <|endoftext|> = 50256). No BOS, as in GPT-2. */
export class Gpt2Tokenizer extends BaseTokenizer {
  readonly kind = 'gpt2';
  readonly bosTokenId = undefined;
  readonly eosTokenId = 50256;
  static readonly VOCAB_SIZE = 50257;
  private static shared: Tiktoken | undefined;
  private readonly tk: Tiktoken;

  constructor() {
    super();
    Gpt2Tokenizer.shared ??= new Tiktoken(r50kBase);
    this.tk = Gpt2Tokenizer.shared;
  }

  encode(text: string): number[] {
    // Special-token text in a prompt is ordinary text, never a control token.
    const pieces = splitLongWords(text);
    if (pieces.length === 1) return this.tk.encode(text, [], []);
    return pieces.flatMap((p) => this.tk.encode(p, [], []));
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    // Ids beyond GPT-2's vocabulary (a synthetic model may sample them) have no text; EOS has
    // "<|endoftext|>" only when special tokens are kept.
    const last = options.skipSpecialTokens === false ? this.eosTokenId : this.eosTokenId - 1;
    const kept = ids.filter((id) => Number.isInteger(id) && id >= 0 && id <= last);
    const parts: string[] = [];
    let run: number[] = [];
    for (const id of kept) {
      if (id !== this.eosTokenId) {
        run.push(id);
        continue;
      }
      parts.push(this.tk.decode(run), '<|endoftext|>');
      run = [];
    }
    parts.push(this.tk.decode(run));
    return parts.join('');
  }
}

/** Byte tokenizer for synthetic Llama presets: byte b ↔ id b + 3; 0 = unk, 1 = bos, 2 = eos. */
export class ByteTokenizer extends BaseTokenizer {
  readonly kind = 'bytes';
  readonly bosTokenId = 1;
  readonly eosTokenId = 2;
  static readonly OFFSET = 3;
  static readonly VOCAB_SIZE = 259;

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = Array.from(Buffer.from(text, 'utf8'), (b) => b + ByteTokenizer.OFFSET);
    return (options.addSpecialTokens ?? true) ? [this.bosTokenId, ...ids] : ids;
  }

  static readonly SPECIALS = ['<unk>', '<s>', '</s>'];

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const bytes: number[] = [];
    for (const id of ids) {
      if (id >= ByteTokenizer.OFFSET && id < ByteTokenizer.VOCAB_SIZE) bytes.push(id - ByteTokenizer.OFFSET);
      else if (options.skipSpecialTokens === false && id >= 0 && id < ByteTokenizer.OFFSET)
        bytes.push(...Buffer.from(ByteTokenizer.SPECIALS[id]));
    }
    return new TextDecoder('utf-8').decode(Uint8Array.from(bytes));
  }
}

interface HfOptions {
  kind: string;
  eosTokenId: number;
  bosTokenId: number | undefined;
  /** Prepend BOS ourselves (vocab.json+merges.txt has no post-processor). */
  prependBos: boolean;
  chatTemplate: string | undefined;
  bosToken: string | undefined;
  eosToken: string | undefined;
}

/** A tokenizer.json (or an equivalent object) through @huggingface/tokenizers. */
export class HfTokenizer extends BaseTokenizer {
  readonly kind: string;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number;
  override readonly chatTemplate: string | undefined;

  constructor(
    private readonly tk: HfTokenizerImpl,
    private readonly opts: HfOptions,
  ) {
    super();
    this.kind = opts.kind;
    this.bosTokenId = opts.bosTokenId;
    this.eosTokenId = opts.eosTokenId;
    this.chatTemplate = opts.chatTemplate;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const add = options.addSpecialTokens ?? true;
    const pieces = splitLongWords(text);
    if (pieces.length > 1) {
      // Long runs: the pieces without special tokens, after what the empty text gets (its BOS, if any).
      const ids = pieces.flatMap((p) => this.tk.encode(p, { add_special_tokens: false }).ids);
      return add ? [...this.encode('', options), ...ids] : ids;
    }
    const ids = this.tk.encode(text, { add_special_tokens: add }).ids;
    if (add && this.opts.prependBos && this.bosTokenId !== undefined && ids[0] !== this.bosTokenId) return [this.bosTokenId, ...ids];
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    // Ids the vocabulary lacks (a model may be wider than its tokenizer) have no text.
    const known = ids.filter((id) => this.tk.id_to_token(id) !== undefined);
    if (known.length === 0) return '';
    return this.tk.decode(known, { skip_special_tokens: options.skipSpecialTokens !== false, clean_up_tokenization_spaces: false });
  }

  protected override templateVars(): Record<string, unknown> {
    return { bos_token: this.opts.bosToken ?? '', eos_token: this.opts.eosToken ?? '' };
  }
}

/** The tokenizer for a synthetic preset (see the header comment). */
export function syntheticTokenizer(cfg: ModelConfig): Tokenizer {
  if (cfg.arch === 'opt') {
    if (cfg.vocabSize < Gpt2Tokenizer.VOCAB_SIZE)
      throw new ModelError(`synthetic OPT preset '${cfg.name}' has vocab ${cfg.vocabSize} < GPT-2's ${Gpt2Tokenizer.VOCAB_SIZE}`);
    return new Gpt2Tokenizer();
  }
  if (cfg.vocabSize < ByteTokenizer.VOCAB_SIZE)
    throw new ModelError(`synthetic preset '${cfg.name}' has vocab ${cfg.vocabSize} < the byte tokenizer's ${ByteTokenizer.VOCAB_SIZE}`);
  return new ByteTokenizer();
}

/** GPT-2's byte → printable-character map used by byte-level BPE vocabularies. */
export function byteLevelAlphabet(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable(b) ? b : 256 + n++);
  return out;
}

/** The tokenizer.json object equivalent to a GPT-2-style vocab.json + merges.txt (pure). */
export function byteLevelBpeJson(vocab: Record<string, number>, mergesText: string, specials: string[]): object {
  const merges = mergesText
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l !== '' && !l.startsWith('#version'));
  for (const m of merges) {
    if (m.split(' ').length !== 2) throw new ModelError(`merges.txt: malformed line '${m.slice(0, 40)}' (expected two tokens)`);
  }
  const addedTokens = specials
    .filter((s) => vocab[s] !== undefined)
    .map((s) => ({
      id: vocab[s],
      content: s,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

async function readJsonIfExists(file: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ModelError(`cannot read ${file}: ${describeError(err)}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelError(`${file}: ${describeJsonError(err)}`);
  }
}

function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

function pickChatTemplate(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.filter((t): t is { name: string; template: string } => typeof t?.template === 'string');
    return (named.find((t) => t.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}

/**
 * The tokenizer shipped with a checkpoint: tokenizer.json, else vocab.json + merges.txt.
 * tokenizer_config.json (optional) gives the chat template and the special-token strings.
 */
export async function loadCheckpointTokenizer(dir: string, cfg: ModelConfig): Promise<Tokenizer> {
  const tcRaw = await readJsonIfExists(path.join(dir, 'tokenizer_config.json'));
  const tc = (typeof tcRaw === 'object' && tcRaw !== null ? tcRaw : {}) as Record<string, unknown>;
  let chatTemplate = pickChatTemplate(tc.chat_template);
  if (!chatTemplate) {
    // Newer checkpoints keep the template in its own file.
    try {
      chatTemplate = await readFile(path.join(dir, 'chat_template.jinja'), 'utf8');
    } catch {
      chatTemplate = undefined;
    }
  }
  const tjFile = path.join(dir, 'tokenizer.json');
  let json = await readJsonIfExists(tjFile);
  let kind = 'tokenizer.json';
  let prependBos = false;
  if (json === undefined) {
    const vocab = await readJsonIfExists(path.join(dir, 'vocab.json'));
    let merges: string | undefined;
    try {
      merges = await readFile(path.join(dir, 'merges.txt'), 'utf8');
    } catch {
      merges = undefined;
    }
    if (vocab === undefined || merges === undefined) {
      throw new ModelError(`${dir}: no tokenizer (expected tokenizer.json, or vocab.json + merges.txt)`);
    }
    if (typeof vocab !== 'object' || vocab === null || !Object.values(vocab).every((v) => Number.isInteger(v))) {
      throw new ModelError(`${path.join(dir, 'vocab.json')}: must map token strings to integer ids`);
    }
    const specials = ['<s>', '<pad>', '</s>', '<unk>', '<|endoftext|>'];
    for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const t = tokenText(tc[k]);
      if (t && !specials.includes(t)) specials.push(t);
    }
    json = byteLevelBpeJson(vocab as Record<string, number>, merges, specials);
    kind = 'vocab.json+merges.txt';
    // Hugging Face's OPT tokenizer starts every text with its BOS (</s>, id 2).
    prependBos = cfg.arch === 'opt' && tc.add_bos_token !== false;
  }
  let tk: HfTokenizerImpl;
  try {
    tk = new HfTokenizerImpl(json as object, tc);
  } catch (err) {
    throw new ModelError(`${kind === 'tokenizer.json' ? tjFile : dir}: cannot build the tokenizer (${describeError(err)})`);
  }
  const bosToken = tokenText(tc.bos_token) ?? tk.id_to_token(cfg.bosTokenId);
  const eosToken = tokenText(tc.eos_token) ?? tk.id_to_token(cfg.eosTokenId);
  return new HfTokenizer(tk, {
    kind,
    eosTokenId: cfg.eosTokenId,
    bosTokenId: cfg.bosTokenId,
    prependBos,
    chatTemplate,
    bosToken,
    eosToken,
  });
}
