// POST /v1/completions request and response (OpenAI legacy completions; n = 1).
import { Type, type Static } from '@sinclair/typebox';
import { FinishReason, INT32_MAX, MAX_LOGPROBS, Refused, SamplingFields, Usage } from './common.js';

const TokenIds = Type.Array(Type.Integer({ minimum: 0, maximum: INT32_MAX }), { minItems: 1 });

export const CompletionRequest = Type.Object(
  {
    ...SamplingFields,
    // A string, a list of one string, token ids, or a list of one list of token ids (one prompt per
    // request: the OpenAI clients send a batch of one as a nested list).
    prompt: Type.Union([
      Type.String(),
      Type.Array(Type.String(), { minItems: 1, maxItems: 1 }),
      TokenIds,
      Type.Array(TokenIds, { minItems: 1, maxItems: 1 }),
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
