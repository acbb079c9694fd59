// The OpenAI-compatible routes: completions, chat completions and the models.
import { Type } from '@sinclair/typebox';
import type { FastifyBaseLogger } from 'fastify';
import type { TypedPlugin } from '../type-provider.js';
import type { ServingContext } from '../context.js';
import { ApiError } from '../errors.js';
import { respond } from '../generate.js';
import { chatToGenerationAsync, completionToGenerationsAsync, unknownFields } from '../request.js';
import { ChatRequest, ChatResponse, type ChatResponseT } from '../schemas/chat.js';
import { ErrorResponse } from '../schemas/common.js';
import { CompletionRequest, CompletionResponse, type CompletionResponseT } from '../schemas/completions.js';
import { ModelCard, ModelList } from '../schemas/ops.js';

export const errors = {
  400: ErrorResponse,
  401: ErrorResponse,
  404: ErrorResponse,
  408: ErrorResponse,
  413: ErrorResponse,
  429: ErrorResponse,
  500: ErrorResponse,
  503: ErrorResponse,
};

export function checkModel(ctx: ServingContext, model: string): void {
  if (model !== ctx.modelName && !ctx.modelAliases.includes(model)) {
    throw new ApiError(
      404,
      `the model '${model}' does not exist; this server serves '${ctx.modelName}'`,
      'not_found_error',
      'model',
      'model_not_found',
    );
  }
}

function modelCard(ctx: ServingContext) {
  return {
    id: ctx.modelName,
    object: 'model' as const,
    created: Math.floor(ctx.startedAt / 1000),
    owned_by: 'hybridserve',
    root: ctx.modelName,
    max_model_len: ctx.limits.maxTotalTokens,
  };
}

export const openaiRoutes: TypedPlugin<{ ctx: ServingContext }> = async (app, { ctx }) => {
  // Fields no schema declares are accepted (clients send optional fields of newer API versions)
  // and logged once per name, so an operator sees what clients expect.
  const logged = new Set<string>();
  const logUnknown = (body: object, ep: 'completions' | 'chat', log: FastifyBaseLogger) => {
    for (const name of unknownFields(body as Record<string, unknown>, ep)) {
      if (logged.has(name)) continue;
      logged.add(name);
      log.warn({ param: name, endpoint: ep }, `unknown request field '${name}' ignored (logged once)`);
    }
  };

  app.post(
    '/v1/completions',
    { schema: { body: CompletionRequest, response: { 200: CompletionResponse, ...errors } } },
    async (req, reply) => {
      checkModel(ctx, req.body.model);
      logUnknown(req.body, 'completions', req.log);
      // respond() builds the body for this endpoint, or streams and returns the hijacked reply.
      return (await respond(
        ctx,
        'completions',
        await completionToGenerationsAsync(req.body, ctx.tokenizer, ctx.limits),
        req,
        reply,
      )) as CompletionResponseT;
    },
  );

  app.post('/v1/chat/completions', { schema: { body: ChatRequest, response: { 200: ChatResponse, ...errors } } }, async (req, reply) => {
    checkModel(ctx, req.body.model);
    logUnknown(req.body, 'chat', req.log);
    // A conversation is one prompt (its n samples are the choices).
    const gen = await chatToGenerationAsync(req.body, ctx.tokenizer, ctx.limits);
    return (await respond(ctx, 'chat', [gen], req, reply)) as ChatResponseT;
  });

  app.get('/v1/models', { schema: { response: { 200: ModelList, ...errors } } }, async () => ({
    object: 'list' as const,
    data: [modelCard(ctx)],
  }));

  // A wildcard: model ids may hold slashes ("facebook/opt-125m").
  app.get(
    '/v1/models/*',
    { schema: { params: Type.Object({ '*': Type.String({ minLength: 1 }) }), response: { 200: ModelCard, ...errors } } },
    async (req) => {
      checkModel(ctx, req.params['*']);
      return modelCard(ctx);
    },
  );
};
