// Drives one completion request through the scheduler and answers it, streamed (SSE) or whole.
// Each choice (sample j of prompt p is choice p·n + j) is an engine sequence of its own; all are
// submitted at once so that they batch together, and the request succeeds or fails as a whole.
// Streams are written to reply.raw after hijacking; a client that goes away cancels every sequence.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServingContext } from './context.js';
import { ApiError, toApiError } from './errors.js';
import {
  deltaChunk,
  deltaEventWriter,
  fullResponse,
  type ChoiceResult,
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
import { sampleSeed, type GenerationRequest, type PromptName, type SamplingRequest } from './request.js';
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

/** Sample j of a prompt: its own seed, everything else shared. */
function sampleSampling(gen: GenerationRequest, j: number): SamplingRequest {
  return j === 0 ? gen.sampling : { ...gen.sampling, seed: sampleSeed(gen.sampling.seed, j) };
}

const finishedWell = (reason: FinishReason): reason is 'length' | 'stop' => reason === 'length' || reason === 'stop';

/** Sample j of the prompt `gen` as one engine sequence, admitted only once `after` has computed its prompt (if given). */
function submit(
  ctx: ServingContext,
  gen: GenerationRequest,
  j: number,
  onText: OnText,
  after?: SequenceHandle,
): { handle: SequenceHandle; done: Promise<Outcome> } {
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
    sampling: sampleSampling(gen, j),
    ignoreEos: gen.ignoreEos,
    deadline: Date.now() + ctx.limits.requestTimeoutMs,
    ...(after ? { after } : {}),
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
      if (finishedWell(reason)) emit(text.flush());
      resolve({ reason, error, text: all, completionTokens, logprobs, stopReason: stopReasonOf(text.stoppedBy, eos), cachedTokens });
    },
  });
  return { handle, done };
}

/** One choice of the request: its prompt and its sequence. */
interface Choice {
  gen: GenerationRequest;
  handle: SequenceHandle;
  done: Promise<Outcome>;
}

const cancelAll = (choices: readonly Choice[]) => {
  for (const c of choices) c.handle.cancel();
};

/** A text delta of choice `index` (OnText's arguments after it). */
type OnChoiceText = (index: number, delta: string, first: boolean, logprobs: LogprobEntry[]) => void;

/**
 * Whether the samples of `gen` after the first should wait for it to compute the prompt: they then
 * take its full blocks from the prefix cache instead of computing the same prompt n times in one
 * step. Only with prefix caching on and a prompt of at least one full block (else nothing is
 * shared, and waiting would only cost them a step).
 */
function sharesPrefill(ctx: ServingContext, gen: GenerationRequest): boolean {
  return gen.n > 1 && ctx.prefixCaching && gen.promptTokens.length >= ctx.engine.pools().blockTokens;
}

/**
 * Submits every sequence of the request, prompt-major, in one go so that they batch together (the
 * later samples of a prompt join one step after its first: sharesPrefill). A refusal at admission
 * (queue full, a prompt larger than the pools, shutting down) cancels those already submitted and
 * is thrown, before any response byte, so the request gets its status and leaves nothing queued.
 */
function submitAll(ctx: ServingContext, gens: readonly GenerationRequest[], onText: OnChoiceText): Choice[] {
  const choices: Choice[] = [];
  for (const gen of gens) {
    const share = sharesPrefill(ctx, gen);
    let sample0: SequenceHandle | undefined;
    for (let j = 0; j < gen.n; j++) {
      const index = choices.length;
      try {
        const c = submit(ctx, gen, j, (delta, first, lps) => onText(index, delta, first, lps), share ? sample0 : undefined);
        sample0 ??= c.handle;
        choices.push({ gen, ...c });
      } catch (err) {
        cancelAll(choices);
        throw promptRefusal(err, gen.promptName);
      }
    }
  }
  return choices;
}

/** The scheduler names the prompt `prompt`; for one of a batch, say which. */
function promptRefusal(err: unknown, at: PromptName): unknown {
  if (!(err instanceof ApiError) || err.param !== 'prompt' || at.param === 'prompt') return err;
  return new ApiError(err.statusCode, `${at.text}: ${err.message}`, err.type, at.param, err.code, err.headers);
}

/**
 * Waits for every choice. The first that fails (engine error, timeout, shutdown, client gone) cancels
 * the others, so the request fails as a whole, as a one-sequence request does; `onEnd` sees each
 * choice that finished (stop or length) before that.
 */
async function settle(
  choices: readonly Choice[],
  onEnd: (index: number, o: Outcome) => void = () => {},
): Promise<{ outcomes: Outcome[]; failed: Outcome | null }> {
  let failed = null as Outcome | null;
  const outcomes = await Promise.all(
    choices.map(async (c, i) => {
      const o = await c.done;
      if (failed) return o;
      if (finishedWell(o.reason)) onEnd(i, o);
      else {
        failed = o;
        cancelAll(choices);
      }
      return o;
    }),
  );
  return { outcomes, failed };
}

/** The outcome that stands for the request (its metrics, error and log): the failure, else one cut by length, else any. */
function decisive(outcomes: readonly Outcome[], failed: Outcome | null): Outcome {
  return failed ?? outcomes.find((o) => o.reason === 'length') ?? outcomes[0];
}

/**
 * The request's token counts, as vLLM counts them: each prompt's tokens once however many samples
 * it has, every choice's completion tokens; cached: those of each prompt's first sample (what the
 * request with n = 1 would report, and never more than the prompt).
 */
function tally(choices: readonly Choice[], outcomes: readonly Outcome[]): { prompt: number; completion: number; cached: number } {
  const t = { prompt: 0, completion: 0, cached: 0 };
  choices.forEach((c, i) => {
    t.completion += outcomes[i].completionTokens;
    if (i > 0 && choices[i - 1].gen === c.gen) return;
    t.prompt += c.gen.promptTokens.length;
    t.cached += outcomes[i].cachedTokens;
  });
  return t;
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
  ctx.metrics.finished(outcome === 'ok' && finishedWell(reason) ? reason : 'abort');
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

/** One request being answered, whole or streamed. */
interface Answer {
  ctx: ServingContext;
  ep: Endpoint;
  gens: readonly GenerationRequest[];
  req: FastifyRequest;
  reply: FastifyReply;
  meta: ResponseMeta;
  /** performance.now() at arrival: monotonic, latencies only. */
  startedAt: number;
}

export async function respond(
  ctx: ServingContext,
  ep: Endpoint,
  gens: readonly GenerationRequest[],
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<unknown> {
  const startedAt = performance.now();
  // Tokenising may have awaited a worker thread: a client gone meanwhile gets no sequence.
  if (req.raw.socket?.destroyed) throw clientClosed();
  const meta: ResponseMeta = { id: newId(ep), created: Math.floor(Date.now() / 1000), model: ctx.modelName };
  const a: Answer = { ctx, ep, gens, req, reply, meta, startedAt };
  // stream, includeUsage and logprobs are the request's: every prompt has the same.
  return gens[0].stream ? respondStream(a) : respondWhole(a);
}

async function respondWhole({ ctx, ep, gens, req, reply, meta, startedAt }: Answer): Promise<unknown> {
  const choices = submitAll(ctx, gens, () => {});
  // The response closes before we answer only when the client went away.
  let clientGone = false;
  const onClose = () => {
    if (reply.raw.writableEnded) return;
    clientGone = true;
    cancelAll(choices);
  };
  reply.raw.once('close', onClose);
  const { outcomes, failed } = await settle(choices);
  reply.raw.off('close', onClose);
  const o = decisive(outcomes, failed);
  const t = tally(choices, outcomes);
  // A client that left is not the server shutting down (nor a 5xx to log as our fault).
  const err = clientGone && o.reason === 'cancelled' ? clientClosed() : outcomeError(o);
  record(ctx, ep, err ? (o.reason === 'cancelled' ? 'cancelled' : 'error') : 'ok', t.prompt, t.completion, startedAt, o.reason);
  noteUsage(req, { promptTokens: t.prompt, completionTokens: t.completion, outcome: outcomeName(o, err) });
  // No response will finish on a closed connection, so onResponse never writes this request's line.
  if (clientGone && err) logRequest(req, err.statusCode, reply.elapsedTime);
  if (err) {
    err.counted = true;
    throw err;
  }
  const results = choices.map((c, i): ChoiceResult => ({
    text: outcomes[i].text,
    finish: openAIFinish(outcomes[i].reason),
    logprobs: c.gen.logprobs === null ? null : logprobsObject(ep, outcomes[i].logprobs),
    stopReason: outcomes[i].stopReason,
  }));
  return fullResponse(ep, meta, results, usage(t.prompt, t.completion, t.cached));
}

async function respondStream({ ctx, ep, gens, req, reply, meta, startedAt }: Answer): Promise<unknown> {
  // Errors before the first byte are thrown (proper status); later ones go in-band.
  const raw = reply.raw;
  let closed = false;
  const write = (s: string) => {
    if (!closed) raw.write(s);
  };
  const event = deltaEventWriter(ep, meta);
  const withLogprobs = gens[0].logprobs !== null;
  let firstTextMs: number | undefined;
  // Per choice: whether a text chunk went out (if not, its finish chunk is its first and names the
  // role: clients that rebuild the message from the deltas, like the openai client's stream helpers,
  // need it), and the text_offset of its next chunk's first token.
  const sent = gens.flatMap((g) => Array.from({ length: g.n }, () => ({ chunk: false, offset: 0 })));
  // Throws before hijack() when admission refuses: the error handler answers with its status.
  const choices = submitAll(ctx, gens, (index, delta, first, lps) => {
    if (first) firstTextMs ??= Math.round(reply.elapsedTime);
    const s = sent[index];
    s.chunk = true;
    if (!withLogprobs) {
      write(event(delta, first, index));
      return;
    }
    write(sseData(deltaChunk(ep, meta, delta, null, first, logprobsObject(ep, lps, s.offset), null, index)));
    s.offset += lps.reduce((n, e) => n + e.token.length, 0);
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
      cancelAll(choices);
    }
  });
  // Each choice's finish chunk goes out as it finishes.
  const { outcomes, failed } = await settle(choices, (i, o) =>
    write(sseData(deltaChunk(ep, meta, '', openAIFinish(o.reason), !sent[i].chunk, null, o.stopReason, i))),
  );
  const o = decisive(outcomes, failed);
  const t = tally(choices, outcomes);
  const err = outcomeError(o);
  const clientGone = closed;
  record(ctx, ep, clientGone ? 'cancelled' : err ? 'error' : 'ok', t.prompt, t.completion, startedAt, o.reason);
  noteUsage(req, { promptTokens: t.prompt, completionTokens: t.completion, outcome: outcomeName(o, err, clientGone), firstTextMs });
  // Only failures after the first byte reach here (admission refusals were thrown above); our own faults are logged with their cause.
  if (err && err.statusCode >= 500 && o.reason === 'error') req.log.error({ err: o.error ?? err }, 'stream failed after it started');
  logRequest(req, 200, reply.elapsedTime);
  if (!clientGone) {
    if (err) write(sseData(err.body()));
    else if (gens[0].includeUsage) write(sseData(usageChunk(ep, meta, usage(t.prompt, t.completion, t.cached))));
    write(SSE_DONE);
    closed = true;
    raw.end();
  }
  return reply;
}
