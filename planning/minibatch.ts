// Mini-batch formation. The engine walks the layers once per step and, per layer, runs every
// mini-batch (FlexGen's zig-zag order): while mini-batch k recomputes K/V from its ACT, the copies of
// mini-batch k+1's cache are in flight. So every mini-batch should carry about the same ACT tokens
// (recompute) and the same cache bytes (transfer), and each must fit the GPU's cache working buffer.
import { PlanError } from './errors.js';

export interface RunningSequence {
  id: number;
  /** Cached tokens (KV + ACT) of this sequence. */
  contextTokens: number;
  /** Of which cached as ACT. */
  actTokens: number;
}

export interface MiniBatchOptions {
  /** Per-layer bytes of one token: KV and ACT (ModelProfile.kvBytesPerToken / actBytesPerToken). */
  kvBytesPerToken: number;
  actBytesPerToken: number;
  /** GPU working memory for one mini-batch's cache of one layer (GpuLayout.cacheBufferBytes / 2). */
  maxBytes: number;
  /** At least this many mini-batches (default 1); more are opened when the bytes do not fit. */
  minBatches?: number;
}

export interface MiniBatch {
  ids: number[];
  actTokens: number;
  /** Bytes this mini-batch occupies in the working buffer for one layer. */
  bytes: number;
}

/**
 * Bytes a sequence needs in the working buffer for one layer: its KV tokens as KV, its ACT tokens
 * as ACT (loaded) plus the KV they are rebuilt into.
 */
export function sequenceWorkingBytes(s: RunningSequence, o: Pick<MiniBatchOptions, 'kvBytesPerToken' | 'actBytesPerToken'>): number {
  return s.contextTokens * o.kvBytesPerToken + s.actTokens * o.actBytesPerToken;
}

/**
 * Splits sequences into mini-batches: as few as the byte limit allows (at least minBatches), then a
 * greedy largest-first assignment that puts each sequence where the sum of squared normalised loads
 * (ACT tokens, bytes) grows least. Ties go to the earlier mini-batch: deterministic.
 */
export function formMiniBatches(seqs: readonly RunningSequence[], o: MiniBatchOptions): MiniBatch[] {
  if (!(o.maxBytes > 0)) throw new PlanError(`mini-batch byte limit must be positive, got ${o.maxBytes}`);
  const items = seqs.map((s) => {
    if (!(s.actTokens >= 0 && s.contextTokens >= s.actTokens)) {
      throw new PlanError(`sequence ${s.id}: ACT tokens (${s.actTokens}) must be within 0..contextTokens (${s.contextTokens})`);
    }
    const bytes = sequenceWorkingBytes(s, o);
    if (bytes > o.maxBytes) {
      throw new PlanError(
        `sequence ${s.id} needs ${bytes} B of GPU working memory per layer, more than the mini-batch limit of ${o.maxBytes} B`,
      );
    }
    return { s, bytes };
  });
  if (items.length === 0) return [];
  const totalBytes = items.reduce((t, i) => t + i.bytes, 0);
  const totalAct = items.reduce((t, i) => t + i.s.actTokens, 0);
  let k = Math.min(items.length, Math.max(o.minBatches ?? 1, Math.ceil(totalBytes / o.maxBytes)));

  // Normalise each dimension by its per-mini-batch target so the two are comparable.
  for (;;) {
    const actUnit = totalAct > 0 ? totalAct / k : 1;
    const byteUnit = totalBytes / k;
    const size = (act: number, bytes: number) => Math.max(act / actUnit, bytes / byteUnit);
    const order = [...items].sort((x, y) => size(y.s.actTokens, y.bytes) - size(x.s.actTokens, x.bytes) || x.s.id - y.s.id);
    const batches: MiniBatch[] = Array.from({ length: k }, () => ({ ids: [], actTokens: 0, bytes: 0 }));
    let ok = true;
    for (const it of order) {
      let bestIdx = -1;
      let bestScore = Infinity;
      for (let i = 0; i < k; i++) {
        const b = batches[i];
        if (b.bytes + it.bytes > o.maxBytes) continue;
        // Σ over the two dimensions of (normalised load)² grows by 2·load·item + item²; picking the
        // smallest growth is longest-processing-time in each dimension alone and trades them off
        // when both matter (a sequence without ACT goes where bytes are lowest).
        const score = (b.actTokens * it.s.actTokens) / (actUnit * actUnit) + (b.bytes * it.bytes) / (byteUnit * byteUnit);
        if (score < bestScore - 1e-12) {
          bestScore = score;
          bestIdx = i;
        }
      }
      if (bestIdx < 0) {
        ok = false;
        break;
      }
      const b = batches[bestIdx];
      b.ids.push(it.s.id);
      b.actTokens += it.s.actTokens;
      b.bytes += it.bytes;
    }
    if (ok) return batches.filter((b) => b.ids.length > 0);
    k += 1; // bin packing missed by the greedy pass: one more mini-batch always terminates (k ≤ n)
  }
}
