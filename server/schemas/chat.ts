// POST /v1/chat/completions request and response (n samples of the conversation; text content only).
import { Type, type Static } from '@sinclair/typebox';
import { FinishReason, INT32_MAX, MAX_LOGPROBS, Refused, SamplingFields, Usage } from './common.js';

const TextPart = Type.Object({ type: Type.Literal('text'), text: Type.String() });

export const ChatMessage = Type.Object(
  {
    role: Type.Union([
      Type.Literal('system'),
      Type.Literal('developer'),
      Type.Literal('user'),
      Type.Literal('assistant'),
      Type.Literal('tool'),
    ]),
    content: Type.Union([Type.String(), Type.Array(TextPart, { minItems: 1 }), Type.Null()]),
    name: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);

export const ChatRequest = Type.Object(
  {
    ...SamplingFields,
    messages: Type.Array(ChatMessage, { minItems: 1 }),
    max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: INT32_MAX }), Type.Null()])),
    logprobs: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    /** Alternatives per token; needs logprobs: true. */
    top_logprobs: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_LOGPROBS }), Type.Null()])),
    tools: Refused('null or empty'),
    tool_choice: Refused("null or 'none'"),
    functions: Refused('null'),
    function_call: Refused("null or 'none'"),
    parallel_tool_calls: Refused('null'),
    echo: Refused('null or false'),
    add_generation_prompt: Refused('null or true'),
    continue_final_message: Refused('null or false'),
    /** Extension (vLLM): add the model's special tokens on top of the template's output. */
    add_special_tokens: Type.Optional(
      Type.Union([
        Type.Boolean({ description: "Default: false with the checkpoint's chat template, true with the plain one" }),
        Type.Null(),
      ]),
    ),
    chat_template: Refused('null'),
    chat_template_kwargs: Refused('null'),
    documents: Refused('null'),
    structural_tag: Refused('null'),
    mm_processor_kwargs: Refused('null'),
    modalities: Refused("null or ['text']"),
    audio: Refused('null'),
    prediction: Refused('null'),
    reasoning_effort: Refused('null'),
    web_search_options: Refused('null'),
    store: Refused('null or false'),
    metadata: Refused('null'),
    service_tier: Refused("null, 'auto' or 'default'"),
  },
  { additionalProperties: true },
);
export type ChatRequestT = Static<typeof ChatRequest>;

const TopLogprob = Type.Object({ token: Type.String(), logprob: Type.Number(), bytes: Type.Array(Type.Integer()) });
const ChatLogprobs = Type.Object({
  content: Type.Array(
    Type.Object({ token: Type.String(), logprob: Type.Number(), bytes: Type.Array(Type.Integer()), top_logprobs: Type.Array(TopLogprob) }),
  ),
});

export const ChatResponse = Type.Object({
  id: Type.String(),
  object: Type.Literal('chat.completion'),
  created: Type.Integer(),
  model: Type.String(),
  choices: Type.Array(
    Type.Object({
      index: Type.Integer(),
      message: Type.Object({ role: Type.Literal('assistant'), content: Type.String() }),
      logprobs: Type.Union([ChatLogprobs, Type.Null()]),
      finish_reason: FinishReason,
      stop_reason: Type.Optional(Type.Union([Type.String(), Type.Integer(), Type.Null()])),
    }),
  ),
  usage: Usage,
});
export type ChatResponseT = Static<typeof ChatResponse>;
