// vLLM's tokenizer routes: POST /tokenize (a prompt, or chat messages through the chat template)
// and POST /detokenize. They use the served model's tokenizer and need the API key like generation.
import type { TypedPlugin } from '../type-provider.js';
import type { ServingContext } from '../context.js';
import { badRequest } from '../errors.js';
import { tokenizeIds, tokenizeInput } from '../request.js';
import { DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse } from '../schemas/ops.js';
import { checkModel, errors } from './openai.js';

export const tokenRoutes: TypedPlugin<{ ctx: ServingContext }> = async (app, { ctx }) => {
  app.post('/tokenize', { schema: { body: TokenizeRequest, response: { 200: TokenizeResponse, ...errors } } }, async (req) => {
    if (req.body.model !== undefined) checkModel(ctx, req.body.model);
    const tokens = await tokenizeIds(tokenizeInput(req.body), ctx.tokenizer);
    return { count: tokens.length, max_model_len: ctx.limits.maxTotalTokens, tokens };
  });

  app.post('/detokenize', { schema: { body: DetokenizeRequest, response: { 200: DetokenizeResponse, ...errors } } }, async (req) => {
    if (req.body.model !== undefined) checkModel(ctx, req.body.model);
    const bad = req.body.tokens.find((t) => t >= ctx.tokenizer.vocabSize);
    if (bad !== undefined)
      throw badRequest(`token id ${bad} is outside the vocabulary (size ${ctx.tokenizer.vocabSize})`, 'tokens', 'invalid_value');
    return { prompt: ctx.tokenizer.decode(req.body.tokens) };
  });
};
