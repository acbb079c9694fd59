// Server limits and their defaults. One place, so the CLI, the tests and the docs agree.

export interface ServerLimits {
  /** Longest prompt accepted, in tokens (default: the window less one). */
  maxPromptTokens: number;
  /** Prompt + generated tokens of one request (default: the model's context window, maxPositions). */
  maxTotalTokens: number;
  /**
   * Longest prompt text accepted before tokenising, in characters (chat: all message contents).
   * Default maxPromptTokens × CHARS_PER_TOKEN_LIMIT: tokenising costs time, so text that cannot fit
   * is refused before any of it is encoded.
   */
  maxPromptChars: number;
  /** max_tokens when the request omits it (capped by what the window leaves). */
  defaultMaxTokens: number;
  /** Largest request body, in bytes. */
  bodyLimitBytes: number;
  /** Requests waiting for admission beyond this get 429 with Retry-After. */
  maxQueue: number;
  /**
   * Engine sequences one request may create: its prompts × n (each sample is its own sequence).
   * More is a 400 before anything is tokenised. Never above maxQueue (at least 1): a request's
   * sequences all wait in the queue at once, so more than it holds could never be admitted and
   * would get a 429 that no retry can cure.
   */
  maxSequencesPerRequest: number;
  /** A request still generating after this long is ended (streams get an error event). */
  requestTimeoutMs: number;
  /** On SIGTERM, how long in-flight requests may take to finish before they are cut off. */
  shutdownGraceMs: number;
  /** Time to receive a request's headers. */
  headersTimeoutMs: number;
  /** Time to receive a whole request (headers and body); generation afterwards is not limited by it. */
  bodyTimeoutMs: number;
  /** How long an idle keep-alive connection stays open. */
  keepAliveTimeoutMs: number;
  /** Requests served on one keep-alive connection before it is closed. */
  maxRequestsPerSocket: number;
  /** Open connections at once; more are refused by the socket layer. */
  maxConnections: number;
}

/** The most maxSequencesPerRequest may be set to; also the schema's bound on a prompt batch's length. */
export const SEQUENCES_PER_REQUEST_CAP = 1024;

/** A token of any tokenizer we serve covers far fewer characters; the cap only stops abuse. */
export const CHARS_PER_TOKEN_LIMIT = 32;

/** Defaults that do not depend on the model (the token limits come from its window). */
export const DEFAULT_LIMITS: Omit<ServerLimits, 'maxPromptTokens' | 'maxTotalTokens' | 'maxPromptChars'> = {
  defaultMaxTokens: 256,
  bodyLimitBytes: 1 << 20,
  maxQueue: 256,
  // OpenAI accepts n up to 128; a request's sequences take batch slots and cache from everyone else.
  maxSequencesPerRequest: 16,
  requestTimeoutMs: 600_000,
  shutdownGraceMs: 25_000,
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  // Longer than the usual load balancer idle timeout (60 s), so the balancer closes first.
  keepAliveTimeoutMs: 75_000,
  maxRequestsPerSocket: 1000,
  maxConnections: 1024,
};

/**
 * Fills in defaults and keeps the limits consistent with the model's window: the window is the
 * model's maxPositions unless maxTotalTokens is smaller; prompts default to the window less one;
 * a request's sequences never outnumber the queue. Pure.
 */
export function resolveLimits(partial: Partial<ServerLimits>, modelMaxPositions: number): ServerLimits {
  const defined = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) as Partial<ServerLimits>;
  const window = Math.min(defined.maxTotalTokens ?? modelMaxPositions, modelMaxPositions);
  const maxPromptTokens = Math.min(defined.maxPromptTokens ?? window - 1, window - 1);
  const maxQueue = defined.maxQueue ?? DEFAULT_LIMITS.maxQueue;
  return {
    ...DEFAULT_LIMITS,
    ...defined,
    maxTotalTokens: window,
    maxPromptTokens,
    maxPromptChars: defined.maxPromptChars ?? maxPromptTokens * CHARS_PER_TOKEN_LIMIT,
    maxSequencesPerRequest: Math.min(defined.maxSequencesPerRequest ?? DEFAULT_LIMITS.maxSequencesPerRequest, Math.max(1, maxQueue)),
  };
}
