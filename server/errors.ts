// OpenAI-shaped errors: every failure a client sees is `{ error: { message, type, param, code } }`
// with a 4xx status for bad input (DESIGN.md §4) and a 5xx only for our own faults.

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable'
  | 'timeout_error';

export interface OpenAIErrorBody {
  error: { message: string; type: OpenAIErrorType; param: string | null; code: string | null };
}

/** An error we raise on purpose; the app's error handler turns it into its status and body. */
export class ApiError extends Error {
  /** Set once the request was already counted in hybridserve_requests_total. */
  counted = false;

  constructor(
    readonly statusCode: number,
    message: string,
    readonly type: OpenAIErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers, e.g. Retry-After on 429. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new ApiError(400, message, 'invalid_request_error', param, code);

interface FastifyLikeError {
  statusCode?: number;
  code?: string;
  message: string;
  validation?: Array<{ instancePath?: string; message?: string; params?: Record<string, unknown>; keyword?: string }>;
  validationContext?: string;
}

/** Maps any error thrown in a request (ours, Fastify's, or a bug) to an ApiError. Pure. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = (err ?? {}) as FastifyLikeError;
  if (Array.isArray(e.validation) && e.validation.length > 0) {
    const v = e.validation[0];
    const missing = v.keyword === 'required' ? String(v.params?.missingProperty ?? '') : '';
    const path = (v.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
    const param = [path, missing].filter(Boolean).join('.') || null;
    const where = param ? `'${param}'` : (e.validationContext ?? 'body');
    return badRequest(`invalid value for ${where}: ${v.message ?? 'does not match the schema'}`, param, 'invalid_value');
  }
  switch (e.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return badRequest(`request body is not valid JSON: ${e.message}`, null, 'invalid_json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, 'request body is too large', 'invalid_request_error', null, 'body_too_large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, 'unsupported content type: send application/json', 'invalid_request_error', null, 'unsupported_media_type');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return badRequest('request body length does not match Content-Length', null, 'invalid_content_length');
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) return new ApiError(status, e.message || 'bad request', 'invalid_request_error');
  // Never leak internals of our own faults to clients; the log has them (the cause).
  const api = new ApiError(status >= 500 && status < 600 ? status : 500, 'internal server error', 'server_error', null, 'internal_error');
  api.cause = err;
  return api;
}
