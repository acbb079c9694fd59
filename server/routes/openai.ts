// The OpenAI-compatible routes: completions, chat completions and the model list.
import type { TypedPlugin } from '../type-provider.js';
import type { ServingContext } from '../context.js';
import { ApiError } from '../errors.js';
import { respond } from '../generate.js';
import { chatToGenerationAsync, completionToGenerationAsync } from '../request.js';
import { ChatRequest, ChatResponse, type ChatResponseT } from '../schemas/chat.js';
import { ErrorResponse } from '../schemas/common.js';
import { CompletionRequest, CompletionResponse, type CompletionResponseT } from '../schemas/completions.js';
import { ModelList } from '../schemas/ops.js';

const errors = { 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 408: ErrorResponse, 413: ErrorResponse, 429: ErrorResponse, 500: ErrorResponse, 503: ErrorResponse };

function checkModel(ctx: ServingContext, model: string): void {
  if (model !== ctx.modelName && !ctx.modelAliases.includes(model)) {
    throw new ApiError(404, `the model '${model}' does not exist; this server serves '${ctx.modelName}'`, 'not_found_error', 'model', 'model_not_found');
  }
}

export const openaiRoutes: TypedPlugin<{ ctx: ServingContext }> = async (app, { ctx }) => {
  app.post('/v1/completions', { schema: { body: CompletionRequest, response: { 200: CompletionResponse, ...errors } } }, async (req, reply) => {
    checkModel(ctx, req.body.model);
    // respond() builds the body for this endpoint, or streams and returns the hijacked reply.
    return await respond(ctx, 'completions', await completionToGenerationAsync(req.body, ctx.tokenizer, ctx.limits), req, reply) as CompletionResponseT;
  });

  app.post('/v1/chat/completions', { schema: { body: ChatRequest, response: { 200: ChatResponse, ...errors } } }, async (req, reply) => {
    checkModel(ctx, req.body.model);
    return await respond(ctx, 'chat', await chatToGenerationAsync(req.body, ctx.tokenizer, ctx.limits), req, reply) as ChatResponseT;
  });

  app.get('/v1/models', { schema: { response: { 200: ModelList, ...errors } } }, async () => ({
    object: 'list' as const,
    data: [{ id: ctx.modelName, object: 'model' as const, created: Math.floor(ctx.startedAt / 1000), owned_by: 'hybridserve' }],
  }));
};
