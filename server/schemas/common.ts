// Schemas shared by the OpenAI routes. Every parameter of the OpenAI and vLLM APIs is declared:
// the honoured ones strictly typed and bounded (a bad value is a 400 naming it before anything is
// generated), the refused ones as Refused (server/request.ts answers 400 naming them when they ask
// for something other than the default). Fields nobody declared are accepted and logged once per
// name (server/routes/openai.ts). docs/server.md has the table.
import { Type, type Static, type TSchema } from '@sinclair/typebox';

export const INT32_MAX = 2147483647;
/** vLLM's max_logprobs default: top alternatives per token. */
export const MAX_LOGPROBS = 20;

export const ErrorResponse = Type.Object({
  error: Type.Object({
    message: Type.String(),
    type: Type.String(),
    param: Type.Union([Type.String(), Type.Null()]),
    code: Type.Union([Type.String(), Type.Null()]),
  }),
});

const Nullable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));

/** A parameter this server does not implement: 400 naming it unless null or its default. */
export const Refused = (description: string) => Type.Optional(Type.Unknown({ description: `Refused (400) unless ${description}` }));

/** Sampling and length controls common to completions and chat completions. */
export const SamplingFields = {
  model: Type.String({ minLength: 1, maxLength: 256 }),
  max_tokens: Nullable(Type.Integer({ minimum: 1, maximum: INT32_MAX, description: 'Default: the rest of the context window' })),
  temperature: Nullable(Type.Number({ minimum: 0, maximum: 2 })),
  top_p: Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
  /** Extension (vLLM): -1 or 0 = no top-k cut. */
  top_k: Nullable(Type.Integer({ minimum: -1, maximum: INT32_MAX })),
  /** Extension (vLLM): drop tokens below min_p × the best one's probability. */
  min_p: Nullable(Type.Number({ minimum: 0, maximum: 1 })),
  /** Any 64-bit integer, negative ones included (as vLLM). */
  // ±2^63: the int64 range as far as a JSON number (a double) can tell.
  seed: Nullable(Type.Integer({ minimum: -(2 ** 63), maximum: 2 ** 63 })),
  /** Samples per prompt, each its own sequence (choice index prompt × n + sample); the server caps prompts × n. */
  n: Nullable(Type.Integer({ minimum: 1, maximum: 128, description: 'Default 1' })),
  stop: Type.Optional(
    Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { maxItems: 16 }), Type.Null()]),
  ),
  /** Extension (vLLM): token ids that end the completion. */
  stop_token_ids: Nullable(Type.Array(Type.Integer({ minimum: 0, maximum: INT32_MAX }), { maxItems: 64 })),
  stream: Nullable(Type.Boolean()),
  stream_options: Nullable(
    Type.Object({
      include_usage: Nullable(Type.Boolean()),
      continuous_usage_stats: Nullable(Type.Boolean({ description: 'Only false' })),
    }),
  ),
  /** Extension (vLLM): keep generating past the end-of-sequence token (benchmarks, tests). */
  ignore_eos: Nullable(Type.Boolean()),
  /** Token id (as a string) → bias in [-100, 100] added to its logit; -100 bans it. */
  logit_bias: Nullable(
    Type.Record(Type.String({ pattern: '^[0-9]{1,10}$' }), Type.Number({ minimum: -100, maximum: 100 }), { maxProperties: 1024 }),
  ),
  presence_penalty: Nullable(Type.Number({ minimum: -2, maximum: 2 })),
  frequency_penalty: Nullable(Type.Number({ minimum: -2, maximum: 2 })),
  /** Extension (vLLM): > 1 discourages tokens already in the prompt or output. */
  repetition_penalty: Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
  /** Extension (vLLM): EOS and stop_token_ids cannot end the completion before this many tokens. */
  min_tokens: Nullable(Type.Integer({ minimum: 0, maximum: INT32_MAX })),
  /** Extension (vLLM): keep the stop string (or stop token's text) in the output. */
  include_stop_str_in_output: Nullable(Type.Boolean()),
  /** Extension (vLLM): leave special tokens out of the text (default true). */
  skip_special_tokens: Nullable(Type.Boolean()),
  user: Nullable(Type.String({ maxLength: 256, description: 'An end-user identifier; not used' })),
  response_format: Nullable(
    Type.Object(
      { type: Type.String() },
      { additionalProperties: true, description: "Only {type: 'text'}: json_object / json_schema are refused (no constrained decoding)" },
    ),
  ),
  // Refused: not implemented.
  // Every sample is returned; none is generated only to be ranked away.
  best_of: Refused('null or equal to n'),
  use_beam_search: Refused('null or false'),
  length_penalty: Refused('null or 1'),
  prompt_logprobs: Refused('null'),
  allowed_token_ids: Refused('null'),
  bad_words: Refused('null or empty'),
  truncate_prompt_tokens: Refused('null'),
  guided_json: Refused('null'),
  guided_regex: Refused('null'),
  guided_choice: Refused('null'),
  guided_grammar: Refused('null'),
  structured_outputs: Refused('null'),
  spaces_between_special_tokens: Refused('null or true'),
  return_tokens_as_token_ids: Refused('null or false'),
  priority: Refused('null or 0'),
  guided_decoding_backend: Refused('null'),
  guided_whitespace_pattern: Refused('null'),
  logits_processors: Refused('null or empty'),
  // Salting the prefix cache isolates tenants; ignoring it would share their cached prefixes silently.
  cache_salt: Refused('null'),
  kv_transfer_params: Refused('null'),
  vllm_xargs: Refused('null'),
};

export const Usage = Type.Object({
  prompt_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
  total_tokens: Type.Integer(),
  /** Present when part of the prompt came from the prefix cache. */
  prompt_tokens_details: Type.Optional(Type.Object({ cached_tokens: Type.Integer() })),
});
export type UsageT = Static<typeof Usage>;

export const FinishReason = Type.Union([Type.Literal('stop'), Type.Literal('length'), Type.Null()]);
