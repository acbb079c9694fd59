// Schemas shared by the OpenAI routes. Unknown request fields are accepted and ignored, as the
// OpenAI API clients send optional fields we do not implement; fields we do read are typed strictly.
import { Type, type Static } from '@sinclair/typebox';

export const ErrorResponse = Type.Object({
  error: Type.Object({
    message: Type.String(),
    type: Type.String(),
    param: Type.Union([Type.String(), Type.Null()]),
    code: Type.Union([Type.String(), Type.Null()]),
  }),
});

/** Sampling and length controls common to completions and chat completions. */
export const SamplingFields = {
  model: Type.String({ minLength: 1, maxLength: 256 }),
  max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()])),
  top_p: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1 }), Type.Null()])),
  /** Extension (vLLM-style): 0 or absent = no top-k cut. */
  top_k: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])),
  seed: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
  n: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
  stop: Type.Optional(Type.Union([
    Type.String({ minLength: 1 }),
    Type.Array(Type.String({ minLength: 1 }), { maxItems: 4 }),
    Type.Null(),
  ])),
  stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  stream_options: Type.Optional(Type.Union([
    Type.Object({ include_usage: Type.Optional(Type.Boolean()) }),
    Type.Null(),
  ])),
  /** Extension (vLLM-style): keep generating past the end-of-sequence token (benchmarks, tests). */
  ignore_eos: Type.Optional(Type.Boolean()),
  user: Type.Optional(Type.String()),
};

export const Usage = Type.Object({
  prompt_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
  total_tokens: Type.Integer(),
});
export type UsageT = Static<typeof Usage>;

export const FinishReason = Type.Union([Type.Literal('stop'), Type.Literal('length'), Type.Null()]);
