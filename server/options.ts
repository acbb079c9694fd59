// Server limits and their defaults. One place, so the CLI, the tests and the docs agree.

export interface ServerLimits {
  /** Longest prompt accepted, in tokens. */
  maxPromptTokens: number;
  /** Prompt + generated tokens of one request (the context window we serve). */
  maxTotalTokens: number;
  /** max_tokens when the request omits it (capped by what the window leaves). */
  defaultMaxTokens: number;
  /** Largest request body, in bytes. */
  bodyLimitBytes: number;
  /** Requests waiting for admission beyond this get 429 with Retry-After. */
  maxQueue: number;
  /** A request still generating after this long is ended (streams get an error event). */
  requestTimeoutMs: number;
  /** On SIGTERM, how long in-flight requests may take to finish before they are cut off. */
  shutdownGraceMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxPromptTokens: 1536,
  maxTotalTokens: 2048,
  defaultMaxTokens: 256,
  bodyLimitBytes: 1 << 20,
  maxQueue: 256,
  requestTimeoutMs: 600_000,
  shutdownGraceMs: 25_000,
};

/** Fills in defaults and keeps the limits consistent with the model's window. Pure. */
export function resolveLimits(partial: Partial<ServerLimits>, modelMaxPositions: number): ServerLimits {
  const l = { ...DEFAULT_LIMITS, ...partial };
  const window = Math.min(l.maxTotalTokens, modelMaxPositions);
  return { ...l, maxTotalTokens: window, maxPromptTokens: Math.min(l.maxPromptTokens, window - 1) };
}
