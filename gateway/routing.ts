// The gateway's routing decisions, as pure functions: block-aligned prefix hashes of a prompt, the
// choice of a pod (prefix affinity, then rendezvous hashing with bounded load, load as the
// tie-breaker) and per-pod outlier ejection. The proxy (gateway/proxy.ts) only applies them.

/** What the gateway knows about one pod when it routes. */
export interface EndpointView {
  /** Stable id of the pod (its name, else ip:port). */
  id: string;
  ready: boolean;
  /** Requests this gateway has sent to the pod that have not finished. */
  inFlight: number;
  /** From the pod's /v1/hybridserve/stats, when the last poll succeeded. */
  queueDepth?: number;
  freeBlocks?: number;
  /** Until when (ms since epoch) outlier ejection keeps the pod out. */
  ejectedUntil?: number;
}

export interface RoutingOptions {
  policy: 'prefix' | 'round-robin';
  /** Bounded load: no pod takes more than ceil((1 + epsilon) * average in-flight). */
  loadEpsilon: number;
  /** A pod whose queue is at least this long counts as saturated. */
  saturatedQueueDepth: number;
  /** A remembered prefix shorter than this share of the prompt's blocks does not pin the request. */
  minMatchFraction: number;
}

export const DEFAULT_ROUTING: RoutingOptions = { policy: 'prefix', loadEpsilon: 0.25, saturatedQueueDepth: 16, minMatchFraction: 0.5 };

export interface RouteDecision {
  id: string;
  /** Full blocks of the prompt whose prefix was last sent to the chosen pod. */
  matchedBlocks: number;
  reason: 'affinity' | 'hash' | 'load' | 'round-robin';
}

// ---- prefix hashes ----

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a over the UTF-16 units of s[from, to), continuing from `h` (so hashes chain block to block). */
function fnvString(h: number, s: string, from: number, to: number): number {
  for (let i = from; i < to; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

function fnvInts(h: number, v: readonly number[], from: number, to: number): number {
  for (let i = from; i < to; i++) {
    const x = v[i] | 0;
    for (let b = 0; b < 32; b += 8) {
      h ^= (x >>> b) & 0xff;
      h = Math.imul(h, FNV_PRIME);
    }
  }
  return h >>> 0;
}

/**
 * Chained hashes of the prompt's full blocks: hashes[i] identifies the prefix of (i + 1) blocks,
 * so two prompts share hashes exactly as far as they share whole blocks. A partial last block is
 * left out (an engine caches full blocks only). Text is cut every `blockChars` characters, token
 * id arrays every `blockTokens` ids.
 */
export function prefixHashes(prompt: string | readonly number[], blockChars: number, blockTokens: number): number[] {
  const out: number[] = [];
  let h = FNV_OFFSET;
  if (typeof prompt === 'string') {
    for (let end = blockChars; end <= prompt.length; end += blockChars) {
      h = fnvString(h, prompt, end - blockChars, end);
      out.push(h);
    }
  } else {
    for (let end = blockTokens; end <= prompt.length; end += blockTokens) {
      h = fnvInts(h ^ 0x9e3779b9, prompt, end - blockTokens, end);
      out.push(h);
    }
  }
  return out;
}

/**
 * The text (or token ids) a request's prompt is made of, as the pods will see it: `prompt` of
 * /v1/completions, or the chat messages joined role by role. A batch of prompts goes to one pod
 * whole, so its first prompt stands for it. Undefined when the body names neither (the pod answers
 * 400 itself; a malformed prompt is routed by whatever it hashes to, and refused there too).
 */
export function promptOf(body: unknown): string | readonly number[] | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const b = body as { prompt?: unknown; messages?: unknown };
  if (typeof b.prompt === 'string') return b.prompt;
  if (Array.isArray(b.prompt) && b.prompt.length > 0) {
    const first = b.prompt[0];
    if (typeof first === 'string') return first;
    if (typeof first === 'number') return b.prompt as number[];
    if (Array.isArray(first)) return first as number[];
  }
  if (Array.isArray(b.messages)) {
    let s = '';
    for (const m of b.messages as { role?: unknown; content?: unknown }[]) {
      s += `${String(m?.role ?? '')}\u0000${contentText(m?.content)}\u0001`;
    }
    return s;
  }
  return undefined;
}

function contentText(c: unknown): string {
  if (typeof c === 'string') return c;
  if (Array.isArray(c))
    return c
      .map((p) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : ''))
      .join('');
  return '';
}

// ---- choosing a pod ----

/** Rendezvous (highest random weight) score of a key on a pod: consistent hashing without a ring. */
export function rendezvousScore(key: number, id: string): number {
  let h = fnvString(key ^ FNV_OFFSET, id, 0, id.length);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Pods that may take a request now: ready and not ejected; if ejection would leave none, the ready ones. */
export function candidates(endpoints: readonly EndpointView[], now: number): EndpointView[] {
  const ready = endpoints.filter((e) => e.ready);
  const healthy = ready.filter((e) => (e.ejectedUntil ?? 0) <= now);
  return healthy.length > 0 ? healthy : ready;
}

/** The in-flight cap of "consistent hashing with bounded loads" (Mirrokni et al.) for the next request. */
export function loadCap(pods: readonly EndpointView[], epsilon: number): number {
  const total = pods.reduce((a, e) => a + e.inFlight, 0) + 1;
  return Math.ceil(((1 + epsilon) * total) / Math.max(1, pods.length));
}

/** Load as the gateway sees it: its own in-flight requests plus the pod's reported queue. */
export function loadOf(e: EndpointView): number {
  return e.inFlight + (e.queueDepth ?? 0);
}

function saturated(e: EndpointView, o: RoutingOptions): boolean {
  return (e.queueDepth ?? 0) >= o.saturatedQueueDepth || e.freeBlocks === 0;
}

/**
 * Chooses a pod for a request (pure). `affinity` maps a prefix hash to the pod it was last sent
 * to; `exclude` holds pods already tried for this request; `rrCounter` drives round-robin.
 * Prefix policy: (1) the pod that last saw the longest remembered prefix, if that prefix covers at
 * least minMatchFraction of the prompt's blocks and the pod is neither over the bounded-load cap
 * nor saturated; (2) else rendezvous hashing on the longest prefix hash, skipping pods over the cap
 * or saturated; (3) else (no full block, or every pod busy) the least loaded pod. Undefined: none.
 */
export function choosePod(
  endpoints: readonly EndpointView[],
  hashes: readonly number[],
  affinity: ReadonlyMap<number, string>,
  o: RoutingOptions,
  now: number,
  exclude: ReadonlySet<string> = new Set(),
  rrCounter = 0,
): RouteDecision | undefined {
  const pods = candidates(endpoints, now).filter((e) => !exclude.has(e.id));
  if (pods.length === 0) return undefined;
  if (o.policy === 'round-robin') {
    const sorted = [...pods].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const pick = sorted[rrCounter % sorted.length];
    return { id: pick.id, matchedBlocks: matchedOn(pick.id, hashes, affinity), reason: 'round-robin' };
  }
  const cap = loadCap(pods, o.loadEpsilon);
  const open = pods.filter((e) => e.inFlight < cap && !saturated(e, o));
  const byId = new Map(open.map((e) => [e.id, e]));
  for (let i = hashes.length - 1; i >= 0; i--) {
    const id = affinity.get(hashes[i]);
    if (id === undefined) continue;
    if ((i + 1) / hashes.length < o.minMatchFraction) break;
    if (byId.has(id)) return { id, matchedBlocks: i + 1, reason: 'affinity' };
  }
  if (hashes.length > 0 && open.length > 0) {
    const key = hashes[hashes.length - 1];
    let best = open[0];
    let bestScore = -1;
    for (const e of open) {
      const s = rendezvousScore(key, e.id);
      if (s > bestScore) {
        best = e;
        bestScore = s;
      }
    }
    return { id: best.id, matchedBlocks: matchedOn(best.id, hashes, affinity), reason: 'hash' };
  }
  const pool = open.length > 0 ? open : pods;
  let best = pool[0];
  for (const e of pool) if (loadOf(e) < loadOf(best) || (loadOf(e) === loadOf(best) && e.id < best.id)) best = e;
  return { id: best.id, matchedBlocks: matchedOn(best.id, hashes, affinity), reason: 'load' };
}

/** Blocks of the prompt whose longest remembered prefix lies on pod `id` (0 when it lies elsewhere). */
export function matchedOn(id: string, hashes: readonly number[], affinity: ReadonlyMap<number, string>): number {
  for (let i = hashes.length - 1; i >= 0; i--) {
    const at = affinity.get(hashes[i]);
    if (at !== undefined) return at === id ? i + 1 : 0;
  }
  return 0;
}

// ---- outlier ejection ----

export interface OutlierState {
  consecutiveFailures: number;
  ejections: number;
  ejectedUntil: number;
}
export interface EjectionOptions {
  consecutiveFailures: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
}
export const DEFAULT_EJECTION: EjectionOptions = { consecutiveFailures: 3, baseEjectionMs: 5_000, maxEjectionMs: 60_000 };
export const HEALTHY: OutlierState = { consecutiveFailures: 0, ejections: 0, ejectedUntil: 0 };

/**
 * Next outlier state after one request's outcome (pure), as Envoy does it: `consecutiveFailures`
 * connection failures in a row eject the pod for base * 2^(ejections) ms (capped); a success
 * resets the run of failures, and a pod that served well since its last ejection is forgiven.
 */
export function recordOutcome(s: OutlierState, ok: boolean, now: number, o: EjectionOptions = DEFAULT_EJECTION): OutlierState {
  if (ok)
    return { consecutiveFailures: 0, ejections: s.ejectedUntil + o.maxEjectionMs < now ? 0 : s.ejections, ejectedUntil: s.ejectedUntil };
  const failures = s.consecutiveFailures + 1;
  if (failures < o.consecutiveFailures) return { ...s, consecutiveFailures: failures };
  const ms = Math.min(o.maxEjectionMs, o.baseEjectionMs * 2 ** s.ejections);
  return { consecutiveFailures: 0, ejections: s.ejections + 1, ejectedUntil: now + ms };
}
