// POST /v1/chat/completions request and response (n = 1; text content only).
import { Type, type Static } from '@sinclair/typebox';
import { FinishReason, SamplingFields, Usage } from './common.js';

const TextPart = Type.Object({ type: Type.Literal('text'), text: Type.String() });

export const ChatMessage = Type.Object({
  role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant'), Type.Literal('tool')]),
  content: Type.Union([Type.String(), Type.Array(TextPart, { minItems: 1 }), Type.Null()]),
  name: Type.Optional(Type.String()),
}, { additionalProperties: true });

export const ChatRequest = Type.Object({
  ...SamplingFields,
  messages: Type.Array(ChatMessage, { minItems: 1 }),
  max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
}, { additionalProperties: true });
export type ChatRequestT = Static<typeof ChatRequest>;

export const ChatResponse = Type.Object({
  id: Type.String(),
  object: Type.Literal('chat.completion'),
  created: Type.Integer(),
  model: Type.String(),
  choices: Type.Array(Type.Object({
    index: Type.Integer(),
    message: Type.Object({ role: Type.Literal('assistant'), content: Type.String() }),
    logprobs: Type.Null(),
    finish_reason: FinishReason,
  })),
  usage: Usage,
});
export type ChatResponseT = Static<typeof ChatResponse>;
