// Prefix caching through the addon (CPU): 32 requests that share a 1,024-token prefix prefill far
// fewer tokens with caching on, and give the same greedy tokens as with caching off; ACT blocks of
// the prefix are shared too.
import { describe, expect, test } from '@jest/globals';
import type { NativeEngine } from '../../native/ts/engine.js';
import { greedy, presetEngine, prompt } from './engine-helpers.js';

const PREFIX = 1024;
const REQUESTS = 32;
const GEN = 4;

async function serve(e: NativeEngine, prompts: number[][]): Promise<{ tokens: number[][]; prefill: number; hits: number[] }> {
  const before = e.counters().prefillTokens;
  const tokens: number[][] = [];
  const hits: number[] = [];
  // Requests arrive one after another (as a chat workload does): each runs to the end alone.
  for (const p of prompts) {
    const id = e.addSequence(Int32Array.from(p), { sampling: greedy });
    hits.push(e.sequence(id).prefixHitTokens ?? 0);
    const out: number[] = [];
    for (let s = 0; s < GEN; s++) out.push((await e.step(Int32Array.of(id))).tokens[0]);
    e.removeSequence(id);
    tokens.push(out);
  }
  return { tokens, prefill: e.counters().prefillTokens - before, hits };
}

describe('prefix caching (CPU engine)', () => {
  const shared = prompt(PREFIX, 1, 50272);
  const prompts = Array.from({ length: REQUESTS }, (_, r) => [...shared, ...prompt(8 + (r % 5), 100 + r, 50272)]);

  test.each([0, 0.5, 1])('32 requests sharing a 1,024-token prefix, ACT %s: ≥ 90% fewer prefill tokens, same tokens', async (act) => {
    const opts = { blockTokens: 16, kvBlocks: 160, actBlocks: 160, actFraction: act };
    const off = await presetEngine('opt-tiny', { ...opts, prefixCaching: false });
    const on = await presetEngine('opt-tiny', { ...opts, prefixCaching: true });
    try {
      const a = await serve(off, prompts);
      const b = await serve(on, prompts);
      expect(b.tokens).toEqual(a.tokens);
      expect(a.hits.every((h) => h === 0)).toBe(true);
      expect(b.hits[0]).toBe(0);
      expect(b.hits.slice(1).every((h) => h === PREFIX)).toBe(true);
      expect(b.prefill).toBeLessThanOrEqual(0.1 * a.prefill);
      const pools = on.pools();
      expect(pools.prefixHitTokens).toBe(PREFIX * (REQUESTS - 1));
      expect(pools.prefixQueryTokens).toBe(prompts.reduce((n, p) => n + p.length, 0));
      // Every block is free or idle-cached again; idle ones hold the prefix (ACT ones too at act > 0).
      expect(pools.kvBlocksFree).toBe(pools.kvBlocksTotal);
      expect(pools.actBlocksFree).toBe(pools.actBlocksTotal);
      if (act > 0) expect(pools.actBlocksCachedIdle).toBeGreaterThan(0);
      else expect(pools.actBlocksCachedIdle).toBe(0);
    } finally {
      await off.close();
      await on.close();
    }
  });
});
