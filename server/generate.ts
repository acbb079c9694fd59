// Drives one completion request through the scheduler and answers it, streamed (SSE) or whole.
// Streams are written to reply.raw after hijacking; a client that goes away cancels its sequence.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServingContext } from './context.js';
import { ApiError, toApiError } from './errors.js';
import { deltaChunk, deltaEventWriter, fullResponse, newId, openAIFinish, sseData, SSE_DONE, usage, usageChunk, type Endpoint, type ResponseMeta } from './format.js';
import type { GenerationRequest } from './request.js';
import { logRequest, noteUsage } from './request-log.js';
import type { FinishReason, SequenceHandle } from './scheduler/scheduler.js';
import { TextStream } from './text-stream.js';

interface Outcome { reason: FinishReason; error?: Error; text: string; completionTokens: number }

function submit(ctx: ServingContext, gen: GenerationRequest, onText: (delta: string, first: boolean) => void): { handle: SequenceHandle; done: Promise<Outcome> } {
  const tok = ctx.tokenizer;
  const text = new TextStream((ids) => tok.decode(ids), gen.stop, tok.decodeToken ? (id) => tok.decodeToken!(id) : undefined);
  let sent = false;
  let all = '';
  let completionTokens = 0;
  let resolve!: (o: Outcome) => void;
  const done = new Promise<Outcome>((r) => { resolve = r; });
  // Outside the promise executor on purpose: a refusal at admission (queue full, prompt larger
  // than the pools, shutting down) throws here, before any response byte, so it gets its status.
  const handle = ctx.scheduler.submit({
    prompt: gen.promptTokens,
    maxTokens: gen.maxTokens,
    sampling: gen.sampling,
    ignoreEos: gen.ignoreEos,
    deadline: Date.now() + ctx.limits.requestTimeoutMs,
    onToken(token) {
      completionTokens++;
      // The end-of-sequence token ends the text; it is counted but not decoded.
      if (token === ctx.tokenizer.eosTokenId && !gen.ignoreEos) return false;
      const delta = text.push(token);
      if (delta) { all += delta; onText(delta, !sent); sent = true; }
      return text.stopped;
    },
    onDone(reason, error) {
      if (reason === 'length' || reason === 'stop') {
        const tail = text.finish();
        if (tail) { all += tail; onText(tail, !sent); sent = true; }
      }
      resolve({ reason, error, text: all, completionTokens });
    },
  });
  return { handle, done };
}

function record(ctx: ServingContext, ep: Endpoint, outcome: string, promptTokens: number, completionTokens: number, startedAt: number): void {
  ctx.metrics.requests.inc({ endpoint: ep, outcome });
  ctx.metrics.generatedTokens.inc(completionTokens);
  ctx.metrics.promptTokens.inc(promptTokens);
  ctx.metrics.e2e.observe((Date.now() - startedAt) / 1000);
  ctx.totals.requests++;
  ctx.totals.generatedTokens += completionTokens;
  ctx.totals.promptTokens += promptTokens;
}

function outcomeError(o: Outcome): ApiError | null {
  if (o.reason === 'timeout') return new ApiError(408, `request timed out after ${o.completionTokens} tokens`, 'timeout_error', null, 'request_timeout');
  if (o.reason === 'error') {
    const api = toApiError(o.error);
    api.cause ??= o.error;
    return api;
  }
  if (o.reason === 'cancelled') return new ApiError(503, 'request cancelled: server is shutting down', 'service_unavailable', null, 'cancelled');
  return null;
}

function outcomeName(o: Outcome, err: ApiError | null, clientGone = false): string {
  if (clientGone) return 'cancelled';
  return err ? (o.reason === 'cancelled' ? 'cancelled' : o.reason === 'timeout' ? 'timeout' : 'error') : 'ok';
}

export async function respond(ctx: ServingContext, ep: Endpoint, gen: GenerationRequest, req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const startedAt = Date.now();
  // Tokenising may have awaited a worker thread: a client gone meanwhile gets no sequence.
  if (req.raw.socket?.destroyed) throw new ApiError(400, 'the client closed the request', 'invalid_request_error', null, 'client_closed');
  const meta: ResponseMeta = { id: newId(ep), created: Math.floor(startedAt / 1000), model: ctx.modelName };
  if (!gen.stream) {
    const { handle, done } = submit(ctx, gen, () => {});
    // The response closes before we answer only when the client went away.
    const onClose = () => { if (!reply.raw.writableEnded) handle.cancel(); };
    reply.raw.once('close', onClose);
    const o = await done;
    reply.raw.off('close', onClose);
    const err = outcomeError(o);
    record(ctx, ep, err ? (o.reason === 'cancelled' ? 'cancelled' : 'error') : 'ok', gen.promptTokens.length, o.completionTokens, startedAt);
    noteUsage(req, { promptTokens: gen.promptTokens.length, completionTokens: o.completionTokens, outcome: outcomeName(o, err) });
    if (err) { err.counted = true; throw err; }
    return fullResponse(ep, meta, o.text, openAIFinish(o.reason), usage(gen.promptTokens.length, o.completionTokens));
  }

  // Streaming: errors before the first byte are thrown (proper status); later ones go in-band.
  const raw = reply.raw;
  let closed = false;
  const write = (s: string) => { if (!closed) raw.write(s); };
  const event = deltaEventWriter(ep, meta);
  let firstTextMs: number | undefined;
  // Throws before hijack() when admission refuses: the error handler answers with its status.
  const { handle, done } = submit(ctx, gen, (delta, first) => {
    if (first) firstTextMs = Math.round(reply.elapsedTime);
    write(event(delta, first));
  });
  reply.hijack();
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  raw.flushHeaders();
  // The response's close event fires when the client disconnects (or after we end it).
  raw.on('close', () => { if (!closed) { closed = true; handle.cancel(); } });
  const o = await done;
  const err = outcomeError(o);
  const clientGone = closed;
  record(ctx, ep, clientGone ? 'cancelled' : err ? 'error' : 'ok', gen.promptTokens.length, o.completionTokens, startedAt);
  noteUsage(req, { promptTokens: gen.promptTokens.length, completionTokens: o.completionTokens, outcome: outcomeName(o, err, clientGone), firstTextMs });
  // Only failures after the first byte reach here (admission refusals were thrown above); our own faults are logged with their cause.
  if (err && err.statusCode >= 500 && o.reason === 'error') req.log.error({ err: o.error ?? err }, 'stream failed after it started');
  logRequest(req, 200, reply.elapsedTime);
  if (!clientGone) {
    if (err) write(sseData(err.body()));
    else {
      write(sseData(deltaChunk(ep, meta, '', openAIFinish(o.reason), false)));
      if (gen.includeUsage) write(sseData(usageChunk(ep, meta, usage(gen.promptTokens.length, o.completionTokens))));
    }
    write(SSE_DONE);
    closed = true;
    raw.end();
  }
  return reply;
}
