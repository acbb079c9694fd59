import { describe, expect, test } from '@jest/globals';
import { parseHfConfig } from '../../model/config.js';
import { canonicalTensors, mapTensors } from '../../model/names.js';
import { presetConfig } from '../../model/presets.js';
import { readCheckpointTensors, type SafetensorsTensor } from '../../model/safetensors.js';
import { LLAMA_REF, OPT_REF } from '../fixtures/helpers.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const cfgOf = (dir: string) => parseHfConfig(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')), path.basename(dir));

function fake(names: Array<[string, number[]]>): SafetensorsTensor[] {
  return names.map(([name, shape], i) => ({
    name,
    path: '/x',
    offset: i * 10,
    byteLength: 4 * shape.reduce((a, b) => a * b, 1),
    dtype: 'F32',
    shape,
  }));
}

describe('canonical tensor names', () => {
  test('OPT: tied (no lm_head), biases everywhere, positions with the offset of 2', () => {
    const names = canonicalTensors(presetConfig('opt-tiny')!).map((t) => t.name);
    expect(names).toContain('embed_positions.weight');
    expect(names).toContain('layers.1.o_proj.bias');
    expect(names).toContain('layers.0.fc2.bias');
    expect(names).not.toContain('lm_head.weight');
    expect(names.length).toBe(4 + 2 * 16);
    expect(canonicalTensors(presetConfig('opt-tiny')!).find((t) => t.name === 'embed_positions.weight')!.shape).toEqual([2050, 64]);
  });

  test('Llama GQA: k/v shapes from kv heads, untied lm_head', () => {
    const t = canonicalTensors(presetConfig('llama-tiny-gqa')!);
    expect(t.find((x) => x.name === 'layers.0.k_proj.weight')!.shape).toEqual([32, 64]);
    expect(t.find((x) => x.name === 'layers.0.o_proj.weight')!.shape).toEqual([64, 64]);
    expect(t.find((x) => x.name === 'lm_head.weight')!.shape).toEqual([32000, 64]);
    expect(t.map((x) => x.name)).not.toContain('layers.0.q_proj.bias');
  });
});

describe('mapTensors on the fixtures', () => {
  test('OPT: every checkpoint tensor mapped once', async () => {
    const refs = mapTensors(cfgOf(OPT_REF), await readCheckpointTensors(OPT_REF));
    expect(refs.length).toBe(36);
    expect(new Set(refs.map((r) => r.name)).size).toBe(36);
    expect(refs.find((r) => r.name === 'layers.1.ffn_norm.bias')).toMatchObject({ shape: [64], dtype: 'F32' });
  });

  test('Llama: sharded, lm_head kept', async () => {
    const refs = mapTensors(cfgOf(LLAMA_REF), await readCheckpointTensors(LLAMA_REF));
    expect(refs.map((r) => r.name).sort()).toEqual(
      canonicalTensors(cfgOf(LLAMA_REF))
        .map((t) => t.name)
        .sort(),
    );
    expect(refs.find((r) => r.name === 'layers.0.v_proj.weight')!.shape).toEqual([32, 64]);
  });

  test('OPT without the "model." prefix is accepted; unknown tensors ignored', async () => {
    const cfg = cfgOf(OPT_REF);
    const ts = (await readCheckpointTensors(OPT_REF)).map((t) => ({ ...t, name: t.name.replace(/^model\./, '') }));
    const refs = mapTensors(cfg, [...ts, ...fake([['decoder.version', [1]]])]);
    expect(refs.length).toBe(36);
  });

  test('missing tensor and wrong shape are ModelErrors naming the checkpoint tensor', async () => {
    const cfg = cfgOf(LLAMA_REF);
    const ts = await readCheckpointTensors(LLAMA_REF);
    expect(() =>
      mapTensors(
        cfg,
        ts.filter((t) => t.name !== 'model.layers.1.mlp.up_proj.weight'),
      ),
    ).toThrow(/missing tensor 'model.layers.1.mlp.up_proj.weight' \(layers.1.up_proj.weight, shape \[96, 64\]\)/);
    expect(() => mapTensors({ ...cfg, numKvHeads: 4 }, ts)).toThrow(
      /'model.layers.0.self_attn.k_proj.weight' has shape \[32, 64\] but config.json implies \[64, 64\]/,
    );
    expect(() =>
      mapTensors(
        { ...cfg, tieEmbeddings: false },
        ts.filter((t) => t.name !== 'lm_head.weight'),
      ),
    ).toThrow(/missing tensor 'lm_head.weight'/);
  });
});
