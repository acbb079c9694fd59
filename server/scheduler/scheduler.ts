// Continuous batching over the native engine. Requests wait in a FIFO queue, join the running set
// between engine steps when the pools can hold them, leave it as soon as they finish or their
// client goes away, and are preempted (blocks freed, recomputed from their tokens later) when the
// pools run dry. Removing a sequence that the step in flight is running is the engine's to defer
// (it frees the blocks when that step returns; native/ts/addon-types.ts removeSequence): the
// scheduler simply removes it.
// A burst onto an idle engine is admitted whole before the first step (gatherBurst), so that step
// prefills every request of the burst at once and the rest are decode steps of the whole batch, as
// bench:engine runs them: about 1 + max_tokens steps, not one extra step per arrival wave.
// engine.step() is async (an AsyncWorker), so the event loop keeps serving HTTP while it runs, and
// the tokens of one step reach their requests (SSE writes) while the next step computes.
// Steps in flight (issue 15): the running sequences are split over L lanes, each owning one engine
// slot and looping on its own (step its sequences, process the result, step again). On a pipeline
// engine lane g's step runs on stage s while lane g+1's runs on stage s-1; there is no barrier
// between lanes, since one would leave a pipeline bubble every iteration. A sequence belongs to
// one lane at a time, so two steps in flight never share a sequence. L = 1 is the single loop.
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import {
  isNativeError,
  NativeErrorCode,
  stepLogprob,
  type NativeCounters,
  type NativeEngine,
  type NativeStepResult,
  type TokenLogprob,
} from '../../native/ts/addon-types.js';
import { ApiError } from '../errors.js';
import type { SamplingRequest } from '../request.js';
import {
  canAdmit,
  chooseLanes,
  fitsEmptyPools,
  formBatches,
  laneCap,
  needsPreemption,
  nextAdmissible,
  pickLane,
  pipelineStagesOf,
  preemptionVictim,
  retryAfterSeconds,
  type MiniBatcher,
  type StepTokenCap,
} from './policy.js';

const STATUS_OK = 0; // NativeSeqStatus.Ok (a const enum, so not importable at runtime)

export type FinishReason = 'length' | 'stop' | 'cancelled' | 'timeout' | 'error';

export interface SequenceRequest {
  prompt: number[];
  maxTokens: number;
  sampling: SamplingRequest;
  ignoreEos: boolean;
  /** Called for each generated token, in order. Returning true stops generation ('stop'). */
  onToken(token: number, index: number, logprob?: TokenLogprob): boolean | void;
  onDone(reason: FinishReason, error?: Error): void;
  /** Called when the engine takes the sequence: how many prompt tokens' cache came from the prefix cache. */
  onAdmitted?(cachedPromptTokens: number): void;
  /** Absolute deadline (ms since epoch); undefined = none. */
  deadline?: number;
  /**
   * Not admitted before this sequence (a handle of this scheduler) has computed its prompt, i.e.
   * the first step that ran it has returned, or has ended: the other samples of a prompt then take
   * its blocks from the prefix cache instead of computing the same prompt in the same step. While
   * held the sequence waits in the queue (counted, cancellable, with its deadline) but does not
   * block those behind it.
   */
  after?: SequenceHandle;
}

export interface SequenceHandle {
  /** Ends the request now; its blocks are freed after the engine step in flight, if any. */
  cancel(): void;
}

export interface StepReport {
  batchSize: number;
  tokens: number;
  result: NativeStepResult;
  /** Seconds the whole iteration took on our side, engine step included. */
  loopSeconds: number;
}

export interface SchedulerHooks {
  onStep?(r: StepReport): void;
  onFirstToken?(secondsSinceEnqueue: number): void;
  onTokenInterval?(seconds: number): void;
  onPreempt?(): void;
  /** A cancelled sequence's blocks were freed, this many engine steps after cancel() (0 or 1). */
  onCancelReleased?(steps: number): void;
  onFinish?(reason: FinishReason, promptTokens: number, generatedTokens: number): void;
  /** The engine can never step again (a pipeline rank is gone): the process should exit so that it restarts. Called once. */
  onFatal?(err: Error): void;
  log?: { info(msg: string): void; warn(msg: string): void; error(msg: string): void };
}

interface Seq {
  req: SequenceRequest;
  generated: number[];
  engineId: number | null;
  /** The lane (engine slot) that steps it while it runs; -1 while it waits. */
  lane: number;
  admittedRank: number;
  enqueuedAt: number;
  lastTokenAt: number;
  done: boolean;
  contextTokens: number;
  /** A sampled token not yet handed to req.onToken (-1: none), and its index in `generated`. */
  pendingToken: number;
  pendingIndex: number;
  pendingLogprob?: TokenLogprob;
  /** The sequence it waits for (req.after) until admitted; null when none (or after admission). */
  after: Seq | null;
  /** A step that ran its prompt has returned (those waiting `after` it may join). */
  promptComputed: boolean;
}

export interface SchedulerOptions {
  maxBatch: number;
  maxQueue: number;
  eosTokenId: number;
  miniBatcher?: MiniBatcher;
  /**
   * New tokens one engine step may compute (0 or absent: no cap): a burst of prompts then prefills
   * over several steps of at most this many tokens; a longer prompt runs in a step of its own.
   */
  maxStepTokens?: number;
  /**
   * How long (ms) the first step after an idle spell may wait for a burst of requests to finish
   * arriving (default 200, stretched to the engine's recent step time when that is longer; 0 turns
   * gathering off). It waits only while requests keep arriving: a
   * gap with no new request ends it. That gap is the engine's recent step time (a late arrival
   * would cost everyone about one extra step), at least burstQuietMs (default 10) and at most the
   * window; so a lone request loses at most that much time to first token, and a burst is
   * prefilled in one step instead of one step per arrival wave (each of which, on a GPU, streams
   * the cache and weights once more).
   */
  burstWindowMs?: number;
  burstQuietMs?: number;
  /**
   * Lanes: steps kept in flight at once, each in its own engine slot (policy.ts chooseLanes: in
   * [1, maxStepsInFlight]; default one per pipeline stage of the engine when it can run steps
   * concurrently, else 1).
   */
  lanes?: number;
}

/** One lane: an engine slot, the sequences of its step in flight, and how to wake it when idle. */
interface Lane {
  slot: number;
  inStep: Set<Seq>;
  wake: (() => void) | null;
  /** Sequences it preempted out of other lanes' steps in flight: their blocks come back when those steps end. */
  awaitedVictims: Seq[];
}

const fatalMessage = (cause: Error) => `the engine cannot serve any more (${cause.message}); the server is restarting`;

/** What a request gets once the engine cannot step again (a fresh error each time: metrics mark it counted). */
function fatalApiError(cause: Error): ApiError {
  const api = new ApiError(503, fatalMessage(cause), 'service_unavailable', null, 'engine_unavailable');
  api.cause = cause;
  return api;
}

export class Scheduler {
  private readonly waiting: Seq[] = [];
  /** The sequence behind each handle submit() gave, for SequenceRequest.after. */
  private readonly handles = new WeakMap<SequenceHandle, Seq>();
  /** Running sequences of every lane, in admission order. */
  private readonly running: Seq[] = [];
  private readonly lanes: Lane[];
  /** Requests submitted so far (gatherBurst watches it grow). */
  private submitted = 0;
  /** Moving average of the engine's step wall time (ms): what one more step would cost. */
  private stepMsAverage = 0;
  /** Sequences whose last token goes to its request once the next step is queued (see step()). */
  private pending: Seq[] = [];
  private loopPromise: Promise<void> | null = null;
  /** The burst gathering in progress: no lane steps before it ends. */
  private gathering: Promise<void> | null = null;
  /** The first lane failure: every lane stops, then every request ends with it. */
  private failure: unknown = null;
  /** Set when a step failed in a way the engine cannot recover from (HS_PEER_LOST): every request is refused. */
  private fatal: Error | null = null;
  /** Lanes waiting for another lane's step to end (they need blocks its sequences give back). */
  private stepEndWaiters: Array<() => void> = [];
  /** busySeconds counts the union of the lanes' busy spells: lanes busy now, since when, last end. */
  private busyLanes = 0;
  private busyFrom = 0;
  private busyEnd = 0;
  private stopped = false;
  private draining = false;
  private rank = 0;
  private finishedTimes: number[] = [];
  maxBatch: number;
  /** Totals for the overhead figure: our loop time vs the engine's own step wall time. */
  /** overlapSeconds: token delivery done while a step computes (part of awaitSeconds, not of the overhead). */
  readonly totals = {
    steps: 0,
    tokens: 0,
    loopSeconds: 0,
    engineSeconds: 0,
    awaitSeconds: 0,
    busySeconds: 0,
    preemptions: 0,
    overlapSeconds: 0,
    /** Steps per lane (index = engine slot); they sum to `steps`. */
    laneSteps: [] as number[],
  };

  constructor(
    private readonly engine: NativeEngine,
    private readonly opts: SchedulerOptions,
    private readonly hooks: SchedulerHooks = {},
  ) {
    this.maxBatch = opts.maxBatch;
    const info = engine.info();
    const count = chooseLanes(info, pipelineStagesOf(info.deviceName), opts.lanes);
    this.lanes = Array.from({ length: count }, (_, slot) => ({ slot, inStep: new Set<Seq>(), wake: null, awaitedVictims: [] }));
    this.totals.laneSteps = this.lanes.map(() => 0);
  }

  /** Steps kept in flight at once. */
  get laneCount(): number {
    return this.lanes.length;
  }

  get queueDepth(): number {
    return this.waiting.length;
  }
  get runningCount(): number {
    return this.running.length;
  }
  get idle(): boolean {
    return this.waiting.length === 0 && this.running.length === 0;
  }
  /** Why the engine cannot serve any more (null while it can). */
  get fatalReason(): string | null {
    return this.fatal ? fatalMessage(this.fatal) : null;
  }

  /** Queues a request. Throws ApiError 429 when the queue is full and 503 while draining. */
  submit(req: SequenceRequest): SequenceHandle {
    if (this.fatal) throw fatalApiError(this.fatal);
    if (this.draining || this.stopped) throw new ApiError(503, 'server is shutting down', 'service_unavailable', null, 'shutting_down');
    if (this.waiting.length >= this.opts.maxQueue) {
      const retry = retryAfterSeconds(this.waiting.length, this.recentFinishRate());
      throw new ApiError(
        429,
        `too many queued requests (${this.waiting.length}); retry in ${retry} s`,
        'rate_limit_error',
        null,
        'queue_full',
        { 'retry-after': String(retry) },
      );
    }
    const pools = this.engine.pools();
    if (!fitsEmptyPools(pools, req.prompt.length)) {
      throw new ApiError(
        400,
        `prompt of ${req.prompt.length} tokens needs more cache blocks than this server has`,
        'invalid_request_error',
        'prompt',
        'context_length_exceeded',
      );
    }
    const now = performance.now(); // monotonic: latencies only
    const seq: Seq = {
      req,
      generated: [],
      engineId: null,
      lane: -1,
      admittedRank: 0,
      enqueuedAt: now,
      lastTokenAt: now,
      done: false,
      contextTokens: req.prompt.length,
      pendingToken: -1,
      pendingIndex: -1,
      // A handle of another scheduler (or none) holds nothing back.
      after: (req.after && this.handles.get(req.after)) ?? null,
      promptComputed: false,
    };
    this.waiting.push(seq);
    this.submitted++;
    this.ensureLoop();
    const handle: SequenceHandle = { cancel: () => this.cancel(seq) };
    this.handles.set(handle, seq);
    return handle;
  }

  /** Stops taking requests; resolves when in-flight ones finish or after timeoutMs (then cancels them). */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    const until = Date.now() + timeoutMs;
    while (!this.idle && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    for (const s of [...this.waiting, ...this.running]) this.cancel(s);
    await this.stop();
  }

  /** Ends the loop (after the step in flight). Requests still queued are cancelled. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of [...this.waiting, ...this.running]) this.cancel(s);
    this.wakeAll();
    await this.loopPromise;
  }

  private recentFinishRate(): number {
    const now = Date.now();
    this.finishedTimes = this.finishedTimes.filter((t) => now - t < 10_000);
    return this.finishedTimes.length / 10;
  }

  private cancel(seq: Seq): void {
    if (seq.done) return;
    const wasRunning = seq.engineId !== null;
    // In a step being computed, the engine frees its blocks when that step returns.
    const stepsToRelease = this.lanes.some((l) => l.inStep.has(seq)) ? 1 : 0;
    this.finish(seq, 'cancelled');
    if (wasRunning) this.hooks.onCancelReleased?.(stepsToRelease);
  }

  /** Removes a sequence everywhere, frees its blocks and reports the outcome once. */
  private finish(seq: Seq, reason: FinishReason, error?: Error): void {
    if (seq.done) return;
    // A token already sampled reaches its request before the end (unless the request is gone).
    if (reason !== 'cancelled') this.deliver(seq);
    if (seq.done) return; // the delivered token ended it ('stop')
    seq.done = true;
    this.release(seq);
    const wi = this.waiting.indexOf(seq);
    if (wi >= 0) this.waiting.splice(wi, 1);
    this.finishedTimes.push(Date.now());
    this.releaseHeld(seq);
    this.hooks.onFinish?.(reason, seq.req.prompt.length, seq.generated.length);
    try {
      seq.req.onDone(reason, error);
    } catch (err) {
      this.hooks.log?.error(`onDone handler failed: ${String(err)}`);
    }
  }

  /**
   * Sequences held `after` one that just ended may join now: wake the lanes so that an idle one
   * admits them (a lane still stepping admits them at its next iteration anyway).
   */
  private releaseHeld(ended: Seq): void {
    if (this.waiting.some((w) => w.after === ended)) for (const l of this.lanes) this.wakeLane(l);
  }

  /** Frees the engine sequence (its blocks) and takes it out of the running set. */
  private release(seq: Seq): void {
    const ri = this.running.indexOf(seq);
    if (ri >= 0) this.running.splice(ri, 1);
    seq.lane = -1;
    if (seq.engineId === null) return;
    // Also for a sequence in the step being computed: the engine defers its removal to that step's end.
    try {
      this.engine.removeSequence(seq.engineId);
    } catch (err) {
      this.hooks.log?.warn(`removeSequence failed: ${String(err)}`);
    }
    seq.engineId = null;
  }

  /** Wakes a lane waiting for work. */
  private wakeLane(lane: Lane): void {
    const w = lane.wake;
    lane.wake = null;
    w?.();
  }

  /** Wakes every idle lane, and every lane waiting for another's step to end. */
  private wakeAll(): void {
    for (const l of this.lanes) this.wakeLane(l);
    this.signalStepEnd();
  }

  private signalStepEnd(): void {
    const list = this.stepEndWaiters;
    this.stepEndWaiters = [];
    for (const w of list) w();
  }

  private ensureLoop(): void {
    // Idle lanes admit the newcomer at once (one of them takes it; the others go back to sleep).
    for (const l of this.lanes) this.wakeLane(l);
    if (!this.loopPromise) {
      this.loopPromise = this.runLanes()
        .catch((err) => {
          this.hooks.log?.error(`engine loop failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
          if (isNativeError(err, NativeErrorCode.PeerLost)) this.fatal = err;
          for (const s of [...this.waiting, ...this.running])
            this.finish(s, 'error', this.fatal ? fatalApiError(this.fatal) : (err as Error));
          if (this.fatal) this.hooks.onFatal?.(this.fatal); // after every request got its answer
        })
        .finally(() => {
          this.loopPromise = null;
        });
    }
  }

  /** Runs every lane's loop; the first failure stops them all (after their steps in flight) and is thrown. */
  private async runLanes(): Promise<void> {
    this.failure = null;
    this.busyLanes = 0;
    await Promise.all(
      this.lanes.map((lane) =>
        this.laneLoop(lane).catch((err: unknown) => {
          this.failure ??= err;
          this.wakeAll();
        }),
      ),
    );
    if (this.failure !== null) throw this.failure;
  }

  /** The running sequences of one lane, in admission order. */
  private laneSequences(lane: Lane): Seq[] {
    return this.running.filter((s) => s.lane === lane.slot);
  }

  private async laneLoop(lane: Lane): Promise<void> {
    while (!this.stopped && this.failure === null) {
      const t0 = performance.now();
      this.expire();
      const wasIdle = this.running.length === 0;
      this.admit();
      // The first step after an idle spell waits for the burst, in every lane.
      if (wasIdle && this.running.length > 0) {
        this.gathering = this.gatherBurst().finally(() => {
          this.gathering = null;
        });
      }
      if (this.gathering) await this.gathering;
      if (this.laneSequences(lane).length === 0) {
        // Requests that came while this lane awaited the burst of another: take them now rather
        // than after that lane's step (with one lane, nothing can have come: a no-op).
        this.admit();
        if (this.laneSequences(lane).length > 0) continue;
        this.deliverPending();
        if (this.stopped || this.failure !== null) break;
        await new Promise<void>((r) => {
          lane.wake = r;
        });
        continue;
      }
      this.busyBegin(t0);
      try {
        await this.laneIteration(lane);
      } finally {
        this.busyFinish();
      }
    }
  }

  /** The --max-step-tokens cap with each sequence's uncached tokens (undefined: no cap). */
  private stepTokenCap(): StepTokenCap<Seq> | undefined {
    const maxTokens = this.opts.maxStepTokens ?? 0;
    if (maxTokens <= 0) return undefined;
    return {
      maxTokens,
      newTokens: (s) => {
        if (s.engineId === null) return s.contextTokens;
        const info = this.engine.sequence(s.engineId);
        return info.length - info.cachedTokens;
      },
    };
  }

  /** One pass of a lane: its sequences' steps (one per mini-batch), then whatever they left to wait for. */
  private async laneIteration(lane: Lane): Promise<void> {
    let stepped = false;
    const cap = laneCap(this.maxBatch, this.lanes.length);
    for (const batch of formBatches(this.laneSequences(lane), cap, this.opts.miniBatcher, this.stepTokenCap())) {
      if (this.failure !== null) return; // another lane failed: stop after the step in flight
      if (await this.step(batch, lane)) stepped = true;
    }
    // No explicit yield between steps: awaiting a step already hands the event loop a full turn
    // (new requests, disconnects, timers) while the engine computes, and the SSE writes of a
    // step's tokens (http flushes them on process.nextTick) go out once the next step is queued,
    // so the engine does not sit idle while the server talks to sockets. Yield only when no step
    // was awaited, so the loop can never spin on microtasks alone.
    if (!stepped) {
      this.deliverPending();
      await yieldToEventLoop();
    }
    // Victims taken out of another lane's running step free their blocks when that step ends:
    // stepping before then would find the pools still short and preempt again.
    const victims = lane.awaitedVictims;
    lane.awaitedVictims = [];
    while (!this.stopped && this.failure === null && victims.some((v) => this.inFlight(v))) {
      await new Promise<void>((r) => this.stepEndWaiters.push(r));
    }
  }

  /**
   * Wall time while there was work (busySeconds): engine steps plus everything the server did
   * around them (expiry and admission included), counted once while several lanes are busy.
   */
  private busyBegin(t0: number): void {
    if (this.busyLanes++ === 0) this.busyFrom = Math.max(t0, this.busyEnd);
  }

  private busyFinish(): void {
    if (--this.busyLanes > 0) return;
    this.busyEnd = performance.now();
    this.totals.busySeconds += (this.busyEnd - this.busyFrom) / 1000;
  }

  /**
   * After an idle spell, lets the rest of a burst arrive and admits it before the first step: waits
   * a millisecond at a time while requests keep coming, there is room, and the window lasts.
   */
  private async gatherBurst(): Promise<void> {
    const baseMs = this.opts.burstWindowMs ?? 200;
    if (baseMs <= 0) return;
    const quietMs = Math.min(baseMs, Math.max(this.opts.burstQuietMs ?? 10, this.stepMsAverage));
    // While arrivals keep coming (each within the quiet gap), gather for up to one engine step: a
    // straggler left out costs everyone about a step (its prefill is a step of its own, and with
    // layers streamed from host memory every step re-reads all the weights: ~1 s for OPT-13B), so
    // waiting longer than that never pays, and a lone request still waits only the quiet gap.
    const windowMs = Math.max(baseMs, this.stepMsAverage);
    const until = performance.now() + windowMs;
    let seen = this.submitted;
    // Held sequences (SequenceRequest.after) cannot join yet: they do not end the gathering.
    while (!this.stopped && this.running.length < this.maxBatch && nextAdmissible(this.waiting) < 0) {
      const left = until - performance.now();
      if (left <= 0) return;
      await sleep(Math.min(quietMs, left));
      // Timers run before the poll phase: a sleep that ended late (a busy host) must not call the
      // burst over before the requests that reached the sockets meanwhile are read.
      await yieldToEventLoop();
      if (this.submitted === seen) return; // quiet: the burst is in
      seen = this.submitted;
      this.admit();
    }
  }

  private expire(): void {
    const now = Date.now();
    for (const s of [...this.waiting, ...this.running]) {
      if (s.req.deadline !== undefined && now > s.req.deadline) this.finish(s, 'timeout');
    }
  }

  /** Sequences and context tokens per lane, for pickLane. */
  private laneLoads(): Array<{ sequences: number; tokens: number }> {
    const loads = this.lanes.map(() => ({ sequences: 0, tokens: 0 }));
    for (const s of this.running) {
      loads[s.lane].sequences++;
      loads[s.lane].tokens += s.contextTokens;
    }
    return loads;
  }

  private admit(): void {
    while (this.running.length < this.maxBatch) {
      // FIFO, except that a held sequence (SequenceRequest.after) is passed over, not waited for.
      const next = nextAdmissible(this.waiting);
      if (next < 0) return;
      const lane = pickLane(this.laneLoads(), laneCap(this.maxBatch, this.lanes.length));
      if (lane < 0) return;
      const seq = this.waiting[next];
      const tokens = seq.req.prompt.length + seq.generated.length;
      if (!canAdmit(this.engine.pools(), tokens, this.running.length)) return;
      const all = Int32Array.from(seq.generated.length ? seq.req.prompt.concat(seq.generated) : seq.req.prompt);
      const s = seq.req.sampling;
      try {
        seq.engineId = this.engine.addSequence(all, { sampling: s, promptTokens: seq.req.prompt.length });
      } catch (err) {
        if (isNativeError(err, NativeErrorCode.OutOfBlocks)) {
          if (this.running.length > 0) return; // wait for others to finish
          this.waiting.splice(next, 1);
          this.finish(
            seq,
            'error',
            new ApiError(
              400,
              `prompt does not fit the cache: ${err.message}`,
              'invalid_request_error',
              'prompt',
              'context_length_exceeded',
            ),
          );
          continue;
        }
        this.waiting.splice(next, 1);
        this.finish(
          seq,
          'error',
          isNativeError(err, NativeErrorCode.InvalidArgument)
            ? new ApiError(400, err.message, 'invalid_request_error', 'prompt')
            : (err as Error),
        );
        continue;
      }
      this.waiting.splice(next, 1);
      // Admitted: nothing to wait for any more, even if preempted and queued again later.
      seq.after = null;
      // Only the first admission counts: a preempted sequence re-added later hits its own blocks.
      if (seq.generated.length === 0)
        seq.req.onAdmitted?.(Math.min(this.engine.sequence(seq.engineId).prefixHitTokens ?? 0, seq.req.prompt.length));
      seq.admittedRank = ++this.rank;
      seq.contextTokens = tokens;
      seq.lane = lane;
      this.running.push(seq);
      this.wakeLane(this.lanes[lane]);
    }
  }

  /** Runs one engine step for the batch in the lane's slot; false when nothing in it could run (no step awaited). */
  private async step(batch: Seq[], lane: Lane): Promise<boolean> {
    // A sequence may have left the lane (preempted by another lane) since the batch was formed.
    const live = batch.filter((s) => !s.done && s.engineId !== null && s.lane === lane.slot);
    if (live.length === 0) return false;
    const t0 = performance.now();
    const ids = Int32Array.from(live.map((s) => s.engineId as number));
    lane.inStep = new Set(live);
    let result: NativeStepResult;
    const a0 = performance.now();
    try {
      // One lane: the call is exactly the single loop's (slot 0 is the default).
      const stepped = this.lanes.length === 1 ? this.engine.step(ids) : this.engine.step(ids, { slot: lane.slot });
      // The previous step's tokens go to their requests (detokenizing, SSE chunks, socket writes)
      // while this step computes: only what decides the next step's batch (end of sequence,
      // max_tokens, blocks) is done between steps. A stop string seen now ends its sequence after
      // this step (one token computed in vain); the text sent is the same.
      const d0 = performance.now();
      this.deliverPending();
      this.totals.overlapSeconds += (performance.now() - d0) / 1000;
      result = await stepped;
    } finally {
      lane.inStep = new Set();
    }
    // Time the event loop waited for the step (engine work plus the addon's thread hand-off).
    this.totals.awaitSeconds += (performance.now() - a0) / 1000;
    const now = performance.now(); // monotonic: latencies only
    let tokens = 0;
    const needy: Seq[] = [];
    for (let i = 0; i < live.length; i++) {
      const seq = live[i];
      if (seq.done) continue; // ended while the step ran (cancelled, a stop string): its token is dropped
      if (seq.engineId !== ids[i]) continue; // left the engine while the step ran: its token is dropped
      // Normally delivered while this step ran; if not, it goes first so onToken stays in order.
      if (seq.pendingToken >= 0) {
        this.deliver(seq);
        if (seq.done) continue;
      }
      if (result.status[i] !== STATUS_OK) {
        needy.push(seq);
        continue;
      }
      // Its prompt's full blocks are in the prefix cache now: sequences held after it may join.
      seq.promptComputed = true;
      const token = result.tokens[i];
      tokens++;
      seq.generated.push(token);
      seq.contextTokens++;
      if (seq.generated.length === 1) this.hooks.onFirstToken?.((now - seq.enqueuedAt) / 1000);
      else this.hooks.onTokenInterval?.((now - seq.lastTokenAt) / 1000);
      seq.lastTokenAt = now;
      seq.pendingToken = token;
      seq.pendingIndex = seq.generated.length - 1;
      seq.pendingLogprob = stepLogprob(result, i);
      if (!seq.req.ignoreEos && token === this.opts.eosTokenId) this.finish(seq, 'stop');
      else if (seq.generated.length >= seq.req.maxTokens) this.finish(seq, 'length');
      // A first token goes out at once: time to first token is the latency users feel most, and a
      // step has few of them (only newly admitted sequences).
      else if (seq.generated.length === 1) this.deliver(seq);
      else this.pending.push(seq);
    }
    if (needy.length > 0) this.preempt(needy, lane);
    const loopSeconds = (performance.now() - t0) / 1000;
    this.totals.steps++;
    this.totals.laneSteps[lane.slot]++;
    this.totals.tokens += tokens;
    this.totals.loopSeconds += loopSeconds;
    this.totals.engineSeconds += result.counters.wallSeconds;
    const stepMs = result.counters.wallSeconds * 1000;
    this.stepMsAverage = this.stepMsAverage === 0 ? stepMs : 0.8 * this.stepMsAverage + 0.2 * stepMs;
    this.hooks.onStep?.({ batchSize: live.length, tokens, result, loopSeconds });
    this.signalStepEnd();
    return true;
  }

  /** Hands every pending token to its request. */
  private deliverPending(): void {
    if (this.pending.length === 0) return;
    const list = this.pending;
    this.pending = [];
    for (const seq of list) this.deliver(seq);
  }

  /** Hands seq's pending token to req.onToken; a true return or a throw ends the sequence. */
  private deliver(seq: Seq): void {
    const token = seq.pendingToken;
    if (token < 0 || seq.done) return;
    seq.pendingToken = -1;
    let stop = false;
    try {
      stop = seq.req.onToken(token, seq.pendingIndex, seq.pendingLogprob) === true;
    } catch (err) {
      this.finish(seq, 'error', err as Error);
      return;
    }
    if (stop) this.finish(seq, 'stop');
  }

  /** Whether a sequence is in a step in flight (of any lane). */
  private inFlight(seq: Seq): boolean {
    return this.lanes.some((l) => l.inStep.has(seq));
  }

  /**
   * Frees blocks for sequences that could not grow: preempt the newest until they fit. A victim in
   * another lane's step in flight gives its blocks back when that step ends (the engine defers the
   * removal): they are counted as free now, and `lane` waits for that step before stepping again.
   */
  private preempt(needy: Seq[], lane: Lane): void {
    const stillNeedy = new Set(needy.filter((s) => !s.done));
    let deferredBlocks = 0;
    const free = () => {
      const p = this.engine.pools();
      return p.kvBlocksFree + p.actBlocksFree + deferredBlocks;
    };
    while (needsPreemption(free(), stillNeedy.size, this.running.length)) {
      const victim = this.running[preemptionVictim(this.running)];
      if (this.inFlight(victim) && victim.engineId !== null) {
        const held = this.engine.sequence(victim.engineId);
        deferredBlocks += held.kvBlocks + held.actBlocks;
        lane.awaitedVictims.push(victim);
      }
      this.release(victim);
      stillNeedy.delete(victim);
      // Back to the front of the queue: it resumes by recomputing its prompt and generated tokens.
      this.waiting.unshift(victim);
      this.totals.preemptions++;
      this.hooks.onPreempt?.();
    }
    if (stillNeedy.size > 0 && this.running.length === 1 && free() === 0) {
      // Alone and still no room: the pools are too small for this sequence to continue.
      for (const s of stillNeedy) this.finish(s, 'length');
    }
  }

  /** Counters for /v1/hybridserve/stats. */
  engineCounters(): NativeCounters {
    return this.engine.counters();
  }
}
