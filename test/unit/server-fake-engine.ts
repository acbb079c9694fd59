// A stand-in for the native engine, for the scheduler's unit tests only (the acceptance tests in
// test/integration drive the real engine). It keeps real block accounting (KV/ACT pools, blocks
// per sequence) and generates a deterministic token from each sequence's own history and seed,
// so batch composition never changes results, like the real engine's per-sequence RNG. Like the
// addon, it defers the removal of a sequence that the running step holds until that step returns
// (test/integration/engine-contract.test.ts runs the same checks against both). With `slots` it
// keeps that many steps in flight at once on disjoint sequences, and refuses a sequence that is in
// another step in flight, as the addon does.
import type {
  NativeCounters,
  NativeEngine,
  NativeEngineInfo,
  NativePoolStats,
  NativeSequenceInfo,
  NativeSequenceOptions,
  NativeStepOptions,
  NativeStepResult,
} from '../../native/ts/addon-types.js';
import type { NativeErrorCode } from '../../native/ts/addon-types.js';
import { accumulateCounters, zeroCounters as zero } from '../../native/ts/counters.js';

/** Errors carry the addon's typed code, as the real engine's do. */
const coded = <E extends Error>(err: E, code: NativeErrorCode): E => Object.assign(err, { code });

interface FakeSeq {
  tokens: number[];
  cached: number;
  kv: number;
  act: number;
  seed: number;
}

export class FakeEngine implements NativeEngine {
  private seqs = new Map<number, FakeSeq>();
  private nextId = 1;
  private fraction: number;
  private kvFree: number;
  private actFree: number;
  private busySlots = new Set<number>();
  /** Sequences of the running steps, and those of them removed while one runs (freed when it returns). */
  private inStep = new Set<number>();
  private removeAfterStep = new Set<number>();
  private total = zero();
  stepLog: number[][] = [];
  /** The slot of each step of stepLog. */
  stepSlots: number[] = [];
  /** Every step's start and end, in order: [slot, 'start' | 'end', sequence ids]. */
  events: Array<[number, 'start' | 'end', number[]]> = [];
  /** The most steps that were in flight at once. */
  maxInFlight = 0;
  /** When set, every step fails with this addon error after its delay (a lost pipeline rank: HS_PEER_LOST). */
  failSteps: { code: NativeErrorCode; message: string } | null = null;

  constructor(
    private readonly opts: {
      kvBlocks: number;
      actBlocks: number;
      blockTokens?: number;
      vocab?: number;
      actFraction?: number;
      stepDelayMs?: number;
      /** Steps in flight at once (info().maxStepsInFlight); without it one slot and no such field, as before. */
      slots?: number;
      /** Per slot, a step time that replaces stepDelayMs. */
      slotDelayMs?: number[];
    },
  ) {
    this.kvFree = opts.kvBlocks;
    this.actFree = opts.actBlocks;
    this.fraction = opts.actFraction ?? 0;
  }

  private get bt(): number {
    return this.opts.blockTokens ?? 4;
  }

  info(): NativeEngineInfo {
    const slots = this.opts.slots;
    return {
      device: 'cpu',
      deviceName: 'fake',
      weightBytes: 0,
      elementBytes: 4,
      ...(slots !== undefined ? { maxStepsInFlight: slots } : {}),
    };
  }

  /** Takes one block; ACT when the fraction says so (falls back to the other pool). */
  private take(s: FakeSeq): boolean {
    const i = s.kv + s.act;
    const wantAct = Math.floor((i + 1) * this.fraction) > Math.floor(i * this.fraction);
    if (wantAct && this.actFree > 0) {
      this.actFree--;
      s.act++;
      return true;
    }
    if (this.kvFree > 0) {
      this.kvFree--;
      s.kv++;
      return true;
    }
    if (this.actFree > 0) {
      this.actFree--;
      s.act++;
      return true;
    }
    return false;
  }

  addSequence(tokens: Int32Array, options: NativeSequenceOptions): number {
    if (tokens.length === 0) throw coded(new TypeError('empty token list'), 'HS_INVALID_ARGUMENT');
    const need = Math.ceil(tokens.length / this.bt);
    if (need > this.kvFree + this.actFree)
      throw coded(
        new RangeError(`out of cache blocks: need ${need} blocks, KV free ${this.kvFree}, ACT free ${this.actFree}`),
        'HS_OUT_OF_BLOCKS',
      );
    const s: FakeSeq = { tokens: Array.from(tokens), cached: 0, kv: 0, act: 0, seed: options.sampling.seed };
    for (let i = 0; i < need; i++) this.take(s);
    const id = this.nextId++;
    this.seqs.set(id, s);
    return id;
  }

  /** A live sequence (one removed during the running step is already unknown, as in the addon). */
  private find(id: number): FakeSeq {
    const s = this.seqs.get(id);
    if (!s || this.removeAfterStep.has(id)) throw coded(new RangeError(`unknown sequence ${id}`), 'HS_UNKNOWN_SEQUENCE');
    return s;
  }

  removeSequence(id: number): void {
    this.find(id);
    if (this.inStep.has(id)) {
      this.removeAfterStep.add(id);
      return;
    }
    this.free(id);
  }

  private free(id: number): void {
    const s = this.seqs.get(id)!;
    this.kvFree += s.kv;
    this.actFree += s.act;
    this.seqs.delete(id);
  }

  sequence(id: number): NativeSequenceInfo {
    const s = this.find(id);
    return { id, length: s.tokens.length, cachedTokens: s.cached, kvBlocks: s.kv, actBlocks: s.act };
  }

  async step(ids: Int32Array, options: NativeStepOptions = {}): Promise<NativeStepResult> {
    const slot = options.slot ?? 0;
    const slots = this.opts.slots ?? 1;
    if (!Number.isInteger(slot) || slot < 0 || slot >= slots)
      throw coded(new RangeError(`step slot must be in [0, ${slots}), got ${slot}`), 'HS_INVALID_ARGUMENT');
    if (this.busySlots.has(slot)) throw coded(new Error('engine busy'), 'HS_BUSY');
    // Like PrepareStep: every id checked before the step starts.
    for (const id of ids) {
      this.find(id);
      if (this.inStep.has(id)) throw coded(new RangeError(`sequence ${id} is in another step in flight`), 'HS_INVALID_ARGUMENT');
    }
    this.busySlots.add(slot);
    this.maxInFlight = Math.max(this.maxInFlight, this.busySlots.size);
    for (const id of ids) this.inStep.add(id);
    this.stepLog.push(Array.from(ids));
    this.stepSlots.push(slot);
    this.events.push([slot, 'start', Array.from(ids)]);
    try {
      const delayMs = this.opts.slotDelayMs?.[slot] ?? this.opts.stepDelayMs ?? 0;
      await new Promise((r) => setTimeout(r, delayMs));
      if (this.failSteps) throw coded(new Error(this.failSteps.message), this.failSteps.code);
      const tokens = new Int32Array(ids.length);
      const status = new Int32Array(ids.length);
      const c = zero();
      c.steps = 1;
      ids.forEach((id, i) => {
        const s = this.seqs.get(id)!;
        // The new token needs a slot: a block when the sequence's blocks are full.
        if (s.tokens.length + 1 > (s.kv + s.act) * this.bt && !this.take(s)) {
          status[i] = 1;
          tokens[i] = -1;
          return;
        }
        const fresh = s.tokens.length - s.cached;
        if (s.cached === 0 || fresh > 1) c.prefillTokens += fresh;
        else c.decodeTokens += fresh;
        s.cached = s.tokens.length;
        let h = s.seed >>> 0;
        for (const t of s.tokens) h = (Math.imul(h ^ t, 2654435761) + 0x9e3779b9) >>> 0;
        const tok = 3 + (h % ((this.opts.vocab ?? 256) - 3));
        s.tokens.push(tok);
        tokens[i] = tok;
      });
      c.wallSeconds = delayMs / 1000;
      c.computeSeconds = c.wallSeconds;
      accumulateCounters(this.total, c);
      return { tokens, status, counters: c };
    } finally {
      this.busySlots.delete(slot);
      this.events.push([slot, 'end', Array.from(ids)]);
      for (const id of ids) {
        this.inStep.delete(id);
        if (this.removeAfterStep.delete(id)) this.free(id);
      }
    }
  }

  setActFraction(f: number): void {
    if (!(f >= 0 && f <= 1)) throw new RangeError('fraction outside [0, 1]');
    this.fraction = f;
  }

  actFraction(): number {
    return this.fraction;
  }

  pools(): NativePoolStats {
    return {
      blockTokens: this.bt,
      kvBlocksTotal: this.opts.kvBlocks,
      kvBlocksFree: this.kvFree,
      actBlocksTotal: this.opts.actBlocks,
      actBlocksFree: this.actFree,
      kvBlockBytes: 1,
      actBlockBytes: 1,
    };
  }

  counters(): NativeCounters {
    return { ...this.total };
  }

  async close(): Promise<void> {
    this.seqs.clear();
  }
}

/** Byte-level tokenizer for the fake engine: byte b → id b + 3 (0/1/2 = unk/bos/eos), like the synthetic Llama one. */
export const byteTokenizer: import('../../server/request.js').ServerTokenizer = {
  eosTokenId: 2,
  vocabSize: 259,
  encode: (text: string) => Array.from(Buffer.from(text, 'utf8'), (b) => b + 3),
  decode: (ids: readonly number[]) => Buffer.from(ids.filter((t) => t >= 3).map((t) => t - 3)).toString('utf8'),
  encodeChat: (msgs: Array<{ role: string; content: string }>) =>
    byteTokenizer.encode(msgs.map((m) => `${m.role}: ${m.content}\n`).join('') + 'assistant:'),
};
