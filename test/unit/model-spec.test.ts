import { describe, expect, test } from '@jest/globals';
import { ModelError } from '../../model/errors.js';
import { PRESET_NAMES, presetConfig } from '../../model/presets.js';
import { parseModelSpec } from '../../model/spec.js';

describe('parseModelSpec', () => {
  test('the presets DESIGN.md names exist, with their architecture and attention kind', () => {
    const opt = ['opt-tiny', 'opt-125m', 'opt-1.3b', 'opt-6.7b', 'opt-13b', 'opt-30b', 'opt-66b'];
    for (const p of opt) expect(parseModelSpec(`synthetic:${p}`)).toMatchObject({ kind: 'synthetic', preset: p, config: { arch: 'opt' } });
    for (const p of ['llama-tiny', 'llama-7b', 'llama3-8b']) expect(presetConfig(p)).toMatchObject({ arch: 'llama' });
    const mha = presetConfig('llama-7b')!;
    expect(mha.numKvHeads).toBe(mha.numHeads);
    // Grouped-query attention below half the heads: ACT is larger than KV there (the planner's case).
    const gqa = presetConfig('llama3-8b')!;
    expect(gqa.numKvHeads).toBeLessThan(gqa.numHeads / 2);
  });

  test('synthetic presets, with and without a seed', () => {
    const a = parseModelSpec('synthetic:opt-125m');
    expect(a).toMatchObject({ kind: 'synthetic', preset: 'opt-125m', seed: 0 });
    if (a.kind !== 'synthetic') throw new Error('unreachable');
    expect(a.config).toMatchObject({ arch: 'opt', hiddenSize: 768, numLayers: 12 });
    expect(parseModelSpec('synthetic:llama-tiny?seed=42')).toMatchObject({ preset: 'llama-tiny', seed: 42 });
  });

  test('unknown preset lists the known ones', () => {
    expect(() => parseModelSpec('synthetic:gpt-5')).toThrow(ModelError);
    expect(() => parseModelSpec('synthetic:gpt-5')).toThrow(new RegExp(`unknown synthetic preset 'gpt-5'.*${PRESET_NAMES[0]}.*llama3-8b`));
  });

  test('bad seeds and parameters', () => {
    for (const s of [
      'synthetic:opt-tiny?seed=-1',
      'synthetic:opt-tiny?seed=x',
      'synthetic:opt-tiny?seed=1.5',
      'synthetic:opt-tiny?seed=99999999999',
    ]) {
      expect(() => parseModelSpec(s)).toThrow(/seed must be an integer/);
    }
    expect(() => parseModelSpec('synthetic:opt-tiny?temp=1')).toThrow(/unknown parameter 'temp'/);
  });

  test('checkpoint paths resolve to absolute directories', () => {
    const s = parseModelSpec('test/fixtures/opt-ref');
    expect(s.kind).toBe('checkpoint');
    if (s.kind !== 'checkpoint') throw new Error('unreachable');
    expect(s.dir.startsWith('/')).toBe(true);
    expect(s.dir.endsWith('test/fixtures/opt-ref')).toBe(true);
  });

  test('pvc:// resolves under HYBRIDSERVE_MODEL_ROOT (default /models)', () => {
    expect(parseModelSpec('pvc://weights/opt/13b', {})).toMatchObject({ kind: 'checkpoint', dir: '/models/weights/opt/13b' });
    expect(parseModelSpec('pvc://weights/opt', { HYBRIDSERVE_MODEL_ROOT: '/mnt/m' })).toMatchObject({ dir: '/mnt/m/weights/opt' });
    expect(parseModelSpec('pvc://weights', {})).toMatchObject({ dir: '/models/weights' });
    expect(() => parseModelSpec('pvc://Bad_Claim/x', {})).toThrow(/not a valid PersistentVolumeClaim name/);
    expect(() => parseModelSpec('pvc://c/../../etc', {})).toThrow(/must not contain '\.\.'/);
  });

  test('empty specs and other schemes are refused', () => {
    expect(() => parseModelSpec('  ')).toThrow(/empty/);
    expect(() => parseModelSpec('s3://bucket/model')).toThrow(/unsupported scheme/);
  });
});
