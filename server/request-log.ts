// One structured log line per request (Fastify's pino logger): id, method, path, status, outcome,
// token counts and timings. Never the body (prompts) or the headers (the API key).
import type { FastifyRequest } from 'fastify';
import { OPEN_PATHS } from './auth.js';

export interface RequestUsage {
  promptTokens: number;
  completionTokens: number;
  /** ok, cancelled (client gone or shutdown), timeout, error. */
  outcome: string;
  /** Milliseconds from the request's arrival to the first generated text, streams only. */
  firstTextMs?: number;
}

const usages = new WeakMap<FastifyRequest, RequestUsage>();
const logged = new WeakSet<FastifyRequest>();

/** Records what a generation did, for the request's log line. */
export function noteUsage(req: FastifyRequest, usage: RequestUsage): void {
  usages.set(req, usage);
}

/** Writes the request's line once (onResponse for ordinary replies, generate.ts for streams). */
export function logRequest(req: FastifyRequest, status: number, elapsedMs: number): void {
  if (logged.has(req)) return;
  logged.add(req);
  const path = req.url.split('?')[0];
  // The child logger already carries reqId.
  const line = { method: req.method, path, status, ms: Math.round(elapsedMs * 10) / 10, ...usages.get(req) };
  // Probes and scrapes come every few seconds: keep them out of the info level.
  if (OPEN_PATHS.has(path) && status < 400) req.log.debug(line, 'request');
  else req.log.info(line, 'request');
}
