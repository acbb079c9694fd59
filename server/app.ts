// The Fastify app: plugins, hooks and routes over a ServingContext. It never listens (that is
// server/server.ts), so tests can build it and use inject() or listen on port 0 themselves.
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import type { TypeBoxProvider } from './type-provider.js';
import { authorized, OPEN_PATHS } from './auth.js';
import type { ServingContext } from './context.js';
import { ApiError, toApiError } from './errors.js';
import { openaiRoutes } from './routes/openai.js';
import { opsRoutes } from './routes/ops.js';
import { logRequest } from './request-log.js';
import { tokenRoutes } from './routes/tokens.js';
import { packageVersion } from './version.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });
const ENDPOINTS: Record<string, string> = { '/v1/completions': 'completions', '/v1/chat/completions': 'chat' };

export interface AppOptions {
  logger?: FastifyServerOptions['logger'];
  /** Origins allowed to call the API from a browser (CORS); empty or absent: CORS off. '*' allows any. */
  corsOrigins?: readonly string[];
}

export function buildApp(ctx: ServingContext, opts: AppOptions = {}): FastifyInstance {
  const corsOrigins = opts.corsOrigins ?? [];
  const app = Fastify({
    logger: opts.logger ?? false,
    // One line per request from server/request-log.ts instead of Fastify's two (which log the URL only).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: ctx.limits.bodyLimitBytes,
    // The socket-level limits (server/options.ts): slow headers and bodies end, idle connections close.
    connectionTimeout: 0,
    keepAliveTimeout: ctx.limits.keepAliveTimeoutMs,
    requestTimeout: ctx.limits.bodyTimeoutMs,
    maxRequestsPerSocket: ctx.limits.maxRequestsPerSocket,
    // Node checks those timeouts every connectionsCheckingInterval (default 30 s): check each second.
    http: { headersTimeout: ctx.limits.headersTimeoutMs, connectionsCheckingInterval: 1000 },
    // By the time the app closes, scheduler.drain() has let in-flight requests finish or be
    // cancelled: what is left (a body still trickling in, idle keep-alives) must not hold the exit.
    forceCloseConnections: true,
    // Wrong types are errors, not silently coerced ("5" is not an integer).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } },
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxProvider>();

  // JSON bodies must be valid UTF-8: Fastify's default parser would turn bad bytes into U+FFFD.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => {
    const buf = body as Buffer;
    let text: string;
    try {
      text = utf8.decode(buf);
    } catch {
      done(new ApiError(400, 'request body is not valid UTF-8', 'invalid_request_error', null, 'invalid_utf8'), undefined);
      return;
    }
    if (text.trim() === '') {
      done(new ApiError(400, 'request body is empty', 'invalid_request_error', null, 'invalid_json'), undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(
        new ApiError(400, `request body is not valid JSON: ${(err as Error).message}`, 'invalid_request_error', null, 'invalid_json'),
        undefined,
      );
    }
  });

  app.addHook('onRequest', async (req) => {
    const url = req.url.split('?')[0];
    // CORS preflights carry no credentials; @fastify/cors answers them.
    if (corsOrigins.length > 0 && req.method === 'OPTIONS') return;
    if (ctx.draining && !OPEN_PATHS.has(url))
      throw new ApiError(503, 'server is shutting down', 'service_unavailable', null, 'shutting_down');
    if (!OPEN_PATHS.has(url) && !authorized(req.headers.authorization, ctx.apiKeys)) {
      throw new ApiError(
        401,
        'missing or invalid API key (send Authorization: Bearer <key>)',
        'authentication_error',
        null,
        'invalid_api_key',
      );
    }
  });

  app.setErrorHandler((err, req, reply) => {
    const api = toApiError(err);
    const endpoint = ENDPOINTS[req.url.split('?')[0]];
    // Requests refused before generation (bad input, limits, auth) count too; served ones are counted in generate.ts.
    if (endpoint && !api.counted && !reply.raw.headersSent)
      ctx.metrics.requests.inc({ endpoint, outcome: api.statusCode === 429 ? 'rate_limited' : 'rejected' });
    // Our own faults are always logged with their cause (clients only see "internal server error").
    if (api.statusCode >= 500) req.log.error({ err: api.cause ?? err, status: api.statusCode }, 'request failed');
    if (reply.sent || reply.raw.headersSent) return;
    reply.code(api.statusCode).headers(api.headers).send(api.body());
  });

  app.addHook('onResponse', async (req, reply) => {
    logRequest(req, reply.statusCode, reply.elapsedTime);
  });

  app.setNotFoundHandler((req, reply) => {
    const api = new ApiError(404, `no route ${req.method} ${req.url.split('?')[0]}`, 'not_found_error', null, 'not_found');
    reply.code(404).send(api.body());
  });

  if (corsOrigins.length > 0) {
    app.register(cors, {
      origin: corsOrigins.includes('*') ? '*' : [...corsOrigins],
      methods: ['GET', 'POST', 'OPTIONS'],
      allowedHeaders: ['Authorization', 'Content-Type'],
    });
  }
  // The OpenAPI document is generated from the routes' TypeBox schemas (GET /openapi.json).
  app.register(swagger, { openapi: { info: { title: 'HybridServe', version: packageVersion() } } });
  app.register(opsRoutes, { ctx });
  app.register(openaiRoutes, { ctx });
  app.register(tokenRoutes, { ctx });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
