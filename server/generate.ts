// Drives one completion request through the scheduler and answers it, streamed (SSE) or whole.
// Streams are written to reply.raw after hijacking; a client that goes away cancels its sequence.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServingContext } from './context.js';
import { ApiError, toApiError } from './errors.js';
import {
  deltaChunk,
  deltaEventWriter,
  fullResponse,
  logprobsObject,
  newId,
  openAIFinish,
  sseData,
  SSE_DONE,
  usage,
  usageChunk,
  type Endpoint,
  type LogprobEntry,
  type ResponseMeta,
  type StopReason,
} from './format.js';
import type { GenerationRequest } from './request.js';
import { logRequest, noteUsage } from './request-log.js';
import type { FinishReason, SequenceHandle } from './scheduler/scheduler.js';
import { Detokenizer, type StopCause } from '../model/detokenizer.js';

interface Outcome {
  reason: FinishReason;
  error?: Error;
  text: string;
  completionTokens: number;
  logprobs: LogprobEntry[];
  stopReason: StopReason;
  cachedTokens: number;
}

/** A text delta and the logprobs of the tokens it completes (empty unless asked). */
type OnText = (delta: string, first: boolean, logprobs: LogprobEntry[]) => void;

/** vLLM's stop_reason: the stop string or stop token id that ended the text; null for EOS or none. */
function stopReasonOf(by: StopCause | null, eos: number[]): StopReason {
  if (by === null) return null;
  if (by.kind === 'string') return by.text;
  return eos.includes(by.tokenId) ? null : by.tokenId;
}

function submit(ctx: ServingContext, gen: GenerationRequest, onText: OnText): { handle: SequenceHandle; done: Promise<Outcome> } {
  const tok = ctx.tokenizer;
  const eos = gen.ignoreEos ? [] : [tok.eosTokenId];
  const skipSpecialTokens = gen.skipSpecialTokens;
  const text = new Detokenizer({
    decode: (ids) => tok.decode(ids, { skipSpecialTokens }),
    ...(tok.decodeToken && skipSpecialTokens ? { decodeToken: (id: number) => tok.decodeToken!(id) } : {}),
    stopTokenIds: [...gen.stopTokenIds, ...eos],
    stopStrings: gen.stop,
    includeStop: gen.includeStop,
  });
  const tokenText = (id: number) => tok.decode([id], { skipSpecialTokens: false });
  let sent = false;
  let all = '';
  let completionTokens = 0;
  let cachedTokens = 0;
  const logprobs: LogprobEntry[] = [];
  let unsent = 0; // logprob entries not yet sent with a delta
  const emit = (delta: string) => {
    if (!delta && unsent === logprobs.length) return; // the flush may carry only held logprobs
    all += delta;
    onText(delta, !sent, logprobs.slice(unsent));
    unsent = logprobs.length;
    sent = true;
  };
  let resolve!: (o: Outcome) => void;
  const done = new Promise<Outcome>((r) => {
    resolve = r;
  });
  // Outside the promise executor on purpose: a refusal at admission (queue full, prompt larger
  // than the pools, shutting down) throws here, before any response byte, so it gets its status.
  const handle = ctx.scheduler.submit({
    prompt: gen.promptTokens,
    maxTokens: gen.maxTokens,
    sampling: gen.sampling,
    ignoreEos: gen.ignoreEos,
    deadline: Date.now() + ctx.limits.requestTimeoutMs,
    onAdmitted(cached) {
      cachedTokens = cached;
      ctx.metrics.prefixCache(gen.promptTokens.length, cached);
    },
    onToken(token, _index, lp) {
      completionTokens++;
      if (lp && gen.logprobs !== null)
        logprobs.push({ token: tokenText(token), logprob: lp.logprob, top: lp.top.map(([id, l]) => [tokenText(id), l]) });
      const delta = text.push(token);
      if (delta) emit(delta);
      return text.stopped;
    },
    onDone(reason, error) {
      if (reason === 'length' || reason === 'stop') emit(text.flush());
      resolve({ reason, error, text: all, completionTokens, logprobs, stopReason: stopReasonOf(text.stoppedBy, eos), cachedTokens });
    },
  });
  return { handle, done };
}

function record(
  ctx: ServingContext,
  ep: Endpoint,
  outcome: string,
  promptTokens: number,
  completionTokens: number,
  startedAt: number,
  reason: FinishReason,
): void {
  ctx.metrics.requests.inc({ endpoint: ep, outcome });
  ctx.metrics.generatedTokens.inc(completionTokens);
  ctx.metrics.promptTokens.inc(promptTokens);
  ctx.metrics.e2e.observe((performance.now() - startedAt) / 1000);
  ctx.metrics.finished(outcome === 'ok' && (reason === 'stop' || reason === 'length') ? reason : 'abort');
  ctx.totals.requests++;
  ctx.totals.generatedTokens += completionTokens;
  ctx.totals.promptTokens += promptTokens;
}

function outcomeError(o: Outcome): ApiError | null {
  if (o.reason === 'timeout')
    return new ApiError(408, `request timed out after ${o.completionTokens} tokens`, 'timeout_error', null, 'request_timeout');
  if (o.reason === 'error') {
    const api = toApiError(o.error);
    api.cause ??= o.error;
    return api;
  }
  if (o.reason === 'cancelled')
    return new ApiError(503, 'request cancelled: server is shutting down', 'service_unavailable', null, 'cancelled');
  return null;
}

function clientClosed(): ApiError {
  return new ApiError(400, 'the client closed the request', 'invalid_request_error', null, 'client_closed');
}

function outcomeName(o: Outcome, err: ApiError | null, clientGone = false): string {
  if (clientGone) return 'cancelled';
  return err ? (o.reason === 'cancelled' ? 'cancelled' : o.reason === 'timeout' ? 'timeout' : 'error') : 'ok';
}

export async function respond(
  ctx: ServingContext,
  ep: Endpoint,
  gen: GenerationRequest,
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<unknown> {
  const startedAt = performance.now(); // monotonic: latencies only
  // Tokenising may have awaited a worker thread: a client gone meanwhile gets no sequence.
  if (req.raw.socket?.destroyed) throw clientClosed();
  const meta: ResponseMeta = { id: newId(ep), created: Math.floor(Date.now() / 1000), model: ctx.modelName };
  if (!gen.stream) {
    const { handle, done } = submit(ctx, gen, () => {});
    // The response closes before we answer only when the client went away.
    let clientGone = false;
    const onClose = () => {
      if (reply.raw.writableEnded) return;
      clientGone = true;
      handle.cancel();
    };
    reply.raw.once('close', onClose);
    const o = await done;
    reply.raw.off('close', onClose);
    // A client that left is not the server shutting down (nor a 5xx to log as our fault).
    const err = clientGone && o.reason === 'cancelled' ? clientClosed() : outcomeError(o);
    record(
      ctx,
      ep,
      err ? (o.reason === 'cancelled' ? 'cancelled' : 'error') : 'ok',
      gen.promptTokens.length,
      o.completionTokens,
      startedAt,
      o.reason,
    );
    noteUsage(req, { promptTokens: gen.promptTokens.length, completionTokens: o.completionTokens, outcome: outcomeName(o, err) });
    // No response will finish on a closed connection, so onResponse never writes this request's line.
    if (clientGone && err) logRequest(req, err.statusCode, reply.elapsedTime);
    if (err) {
      err.counted = true;
      throw err;
    }
    const lps = gen.logprobs === null ? null : logprobsObject(ep, o.logprobs);
    return fullResponse(
      ep,
      meta,
      o.text,
      openAIFinish(o.reason),
      usage(gen.promptTokens.length, o.completionTokens, o.cachedTokens),
      lps,
      o.stopReason,
    );
  }

  // Streaming: errors before the first byte are thrown (proper status); later ones go in-band.
  const raw = reply.raw;
  let closed = false;
  const write = (s: string) => {
    if (!closed) raw.write(s);
  };
  const event = deltaEventWriter(ep, meta);
  let firstTextMs: number | undefined;
  // No text chunk yet: then the finish chunk is the first and names the role (clients that rebuild
  // the message from the deltas, like the openai client's stream helpers, need it).
  let noChunkYet = true;
  let offset = 0; // text_offset of the next chunk's first token
  // Throws before hijack() when admission refuses: the error handler answers with its status.
  const { handle, done } = submit(ctx, gen, (delta, first, lps) => {
    if (first) firstTextMs = Math.round(reply.elapsedTime);
    noChunkYet = false;
    if (gen.logprobs === null) {
      write(event(delta, first));
      return;
    }
    write(sseData(deltaChunk(ep, meta, delta, null, first, logprobsObject(ep, lps, offset))));
    offset += lps.reduce((n, e) => n + e.token.length, 0);
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
  raw.on('close', () => {
    if (!closed) {
      closed = true;
      handle.cancel();
    }
  });
  const o = await done;
  const err = outcomeError(o);
  const clientGone = closed;
  record(ctx, ep, clientGone ? 'cancelled' : err ? 'error' : 'ok', gen.promptTokens.length, o.completionTokens, startedAt, o.reason);
  noteUsage(req, {
    promptTokens: gen.promptTokens.length,
    completionTokens: o.completionTokens,
    outcome: outcomeName(o, err, clientGone),
    firstTextMs,
  });
  // Only failures after the first byte reach here (admission refusals were thrown above); our own faults are logged with their cause.
  if (err && err.statusCode >= 500 && o.reason === 'error') req.log.error({ err: o.error ?? err }, 'stream failed after it started');
  logRequest(req, 200, reply.elapsedTime);
  if (!clientGone) {
    if (err) write(sseData(err.body()));
    else {
      write(sseData(deltaChunk(ep, meta, '', openAIFinish(o.reason), noChunkYet, null, o.stopReason)));
      if (gen.includeUsage) write(sseData(usageChunk(ep, meta, usage(gen.promptTokens.length, o.completionTokens, o.cachedTokens))));
    }
    write(SSE_DONE);
    closed = true;
    raw.end();
  }
  return reply;
}
