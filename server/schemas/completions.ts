// POST /v1/completions request and response (OpenAI legacy completions; n = 1).
import { Type, type Static } from '@sinclair/typebox';
import { FinishReason, SamplingFields, Usage } from './common.js';

export const CompletionRequest = Type.Object({
  ...SamplingFields,
  // A string, a list of one string, or token ids (one prompt per request).
  prompt: Type.Union([
    Type.String(),
    Type.Array(Type.String(), { minItems: 1, maxItems: 1 }),
    Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 }),
  ]),
  echo: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
}, { additionalProperties: true });
export type CompletionRequestT = Static<typeof CompletionRequest>;

export const CompletionResponse = Type.Object({
  id: Type.String(),
  object: Type.Literal('text_completion'),
  created: Type.Integer(),
  model: Type.String(),
  choices: Type.Array(Type.Object({
    index: Type.Integer(),
    text: Type.String(),
    logprobs: Type.Null(),
    finish_reason: FinishReason,
  })),
  usage: Usage,
});
export type CompletionResponseT = Static<typeof CompletionResponse>;
