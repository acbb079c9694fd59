// Step formation on a GPU with planning's mini-batch function. The engine streams every layer once
// per step and runs the step's sequences against it, so the server keeps all running sequences in
// ONE step whenever their cache working set fits the GPU's cache buffer (planning opens more
// mini-batches only when bytes do not fit); only then does it split, each group becoming its own
// step. On CPU nothing is streamed and no such limit exists: one step (capped by maxBatch).
import type { NativeEngine } from '../../native/ts/addon-types.js';
import type { ModelConfig } from '../../model/types.js';
import { formMiniBatches, gpuLayout, modelProfile } from '../../planning/index.js';
import type { MiniBatcher } from './policy.js';

export function planningMiniBatcher(
  engine: Pick<NativeEngine, 'sequence' | 'pools'>,
  cfg: ModelConfig,
  gpuBudgetBytes: number,
  seqTokens: number,
): MiniBatcher {
  const mp = modelProfile(cfg, 2);
  const layout = gpuLayout(mp, gpuBudgetBytes, seqTokens);
  // The buffer is double-buffered: one mini-batch's cache of one layer gets half of it.
  const maxBytes = layout.cacheBufferBytes / 2;
  return (seqs) => {
    const bt = engine.pools().blockTokens;
    const running = seqs.map((s, i) => {
      const info = s.engineId === null ? null : engine.sequence(s.engineId);
      const actTokens = info ? Math.min(info.cachedTokens, info.actBlocks * bt) : 0;
      return { id: i, contextTokens: Math.max(s.contextTokens, actTokens), actTokens };
    });
    return formMiniBatches(running, { kvBytesPerToken: mp.kvBytesPerToken, actBytesPerToken: mp.actBytesPerToken, maxBytes }).map(
      (b) => b.ids,
    );
  };
}
