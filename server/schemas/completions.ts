// POST /v1/completions request and response (OpenAI legacy completions; a batch of prompts, n
// samples of each).
import { Type, type Static } from '@sinclair/typebox';
import { SEQUENCES_PER_REQUEST_CAP } from '../options.js';
import { FinishReason, INT32_MAX, MAX_LOGPROBS, Refused, SamplingFields, Usage } from './common.js';

const TokenIds = Type.Array(Type.Integer({ minimum: 0, maximum: INT32_MAX }), { minItems: 1 });

export const CompletionRequest = Type.Object(
  {
    ...SamplingFields,
    // A string, token ids, or a batch: a list of strings or of token-id lists (the OpenAI clients
    // send even one prompt of ids as a batch of one). The server's limit on prompts × n
    // (ServerLimits.maxSequencesPerRequest) is checked before any prompt is tokenised.
    prompt: Type.Union([
      Type.String(),
      Type.Array(Type.String(), { minItems: 1, maxItems: SEQUENCES_PER_REQUEST_CAP }),
      TokenIds,
      Type.Array(TokenIds, { minItems: 1, maxItems: SEQUENCES_PER_REQUEST_CAP }),
    ]),
    /** The sampled token's logprob and the top N alternatives per token (0 = only the sampled one's). */
    logprobs: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_LOGPROBS }), Type.Null()])),
    echo: Refused('null or false'),
    suffix: Refused('null or empty'),
    prompt_embeds: Refused('null'),
    /** Extension (vLLM): add the model's special tokens (its BOS) to the prompt text. */
    add_special_tokens: Type.Optional(Type.Union([Type.Boolean({ description: 'Default true' }), Type.Null()])),
  },
  { additionalProperties: true },
);
export type CompletionRequestT = Static<typeof CompletionRequest>;

const CompletionLogprobs = Type.Object({
  tokens: Type.Array(Type.String()),
  token_logprobs: Type.Array(Type.Number()),
  top_logprobs: Type.Array(Type.Record(Type.String(), Type.Number())),
  text_offset: Type.Array(Type.Integer()),
});

export const CompletionResponse = Type.Object({
  id: Type.String(),
  object: Type.Literal('text_completion'),
  created: Type.Integer(),
  model: Type.String(),
  choices: Type.Array(
    Type.Object({
      index: Type.Integer(),
      text: Type.String(),
      logprobs: Type.Union([CompletionLogprobs, Type.Null()]),
      finish_reason: FinishReason,
      stop_reason: Type.Optional(Type.Union([Type.String(), Type.Integer(), Type.Null()])),
    }),
  ),
  usage: Usage,
});
export type CompletionResponseT = Static<typeof CompletionResponse>;
