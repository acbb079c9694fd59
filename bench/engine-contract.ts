// `node dist/bench/engine-contract.js [--model synthetic:opt-125m] [--devices cpu,cuda]`: the token-count
// contract of the counters (bench/engine-contract-steps.ts) on each device, at ACT fractions 0, 0.5
// and 1 with prefix caching on, and the devices compared with each other. For the GPU host, which
// has no jest (scripts/gpu-run.sh stage `contract`). Prints one JSON summary line; exits 1 on any
// mismatch (each also on stderr), 2 when a device cannot be opened.
import { parseArgs } from 'node:util';
import { parseModelSpec } from '../model/spec.js';
import { createEngine, loadAddon, toNativeConfig } from '../native/ts/engine.js';
import type { NativeDevice } from '../native/ts/addon-types.js';
import { checkTokenContract, compareTokenCounts, countsOf, runTokenContract, type ContractRun } from './engine-contract-steps.js';
import { runIfEntryPoint } from './run-main.js';

const FRACTIONS = [0, 0.5, 1];
const BLOCK_TOKENS = 16;
const BLOCKS = 64;

async function runDevice(model: string, device: NativeDevice): Promise<ContractRun[]> {
  const spec = parseModelSpec(model);
  if (spec.kind !== 'synthetic') throw new Error('engine-contract runs synthetic:<preset> models only');
  const runs: ContractRun[] = [];
  for (const actFraction of FRACTIONS) {
    // A fresh engine per fraction: the prefix cache starts empty, so every run sees the same hits.
    const e = await createEngine({
      device,
      config: toNativeConfig(spec.config),
      weights: { kind: 'synthetic', seed: spec.seed },
      blockTokens: BLOCK_TOKENS,
      kvBlocks: BLOCKS,
      actBlocks: BLOCKS,
      actFraction,
      prefixCaching: true,
      ...(device === 'cuda' ? { gpuMemoryBytes: 8 * 2 ** 30 } : { threads: 0 }),
    });
    try {
      runs.push(await runTokenContract(e, { blockTokens: BLOCK_TOKENS, vocab: spec.config.vocabSize, actFraction, prefixCaching: true }));
    } finally {
      await e.close();
    }
  }
  return runs;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { model: { type: 'string', default: 'synthetic:opt-125m' }, devices: { type: 'string' } },
    strict: true,
  });
  const devices = (values.devices ?? loadAddon().devices().join(',')).split(',').filter(Boolean) as NativeDevice[];
  for (const d of devices) if (d !== 'cpu' && d !== 'cuda') throw new Error(`--devices: unknown device '${d}'`);
  const byDevice = new Map<NativeDevice, ContractRun[]>();
  for (const d of devices) {
    try {
      byDevice.set(d, await runDevice(values.model!, d));
    } catch (err) {
      process.stderr.write(`engine-contract: cannot run on ${d}: ${err instanceof Error ? err.message : String(err)}\n`);
      return 2;
    }
  }
  const mismatches: string[] = [];
  for (const [d, runs] of byDevice)
    for (const r of runs)
      mismatches.push(...checkTokenContract(r, { blockTokens: BLOCK_TOKENS, prefixCaching: true }).map((m) => `${d}: ${m}`));
  const [first, ...rest] = devices;
  for (const d of rest) {
    byDevice.get(first)!.forEach((r, i) => mismatches.push(...compareTokenCounts(r, byDevice.get(d)![i], [first, d])));
  }
  for (const m of mismatches) process.stderr.write(`engine-contract: MISMATCH ${m}\n`);
  console.log(
    JSON.stringify({
      contract: 'token counts',
      model: values.model,
      devices,
      fractions: FRACTIONS,
      ok: mismatches.length === 0,
      mismatches: mismatches.length,
      runs: Object.fromEntries([...byDevice].map(([d, runs]) => [d, runs.map((r) => ({ actFraction: r.actFraction, ...countsOf(r) }))])),
      devicesAgree: rest.every((d) =>
        byDevice.get(first)!.every((r, i) => compareTokenCounts(r, byDevice.get(d)![i], [first, d]).length === 0),
      ),
    }),
  );
  return mismatches.length === 0 ? 0 : 1;
}

runIfEntryPoint(import.meta.url, 'engine-contract', main);
