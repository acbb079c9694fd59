// The one placement rule (planning/start-plan.ts startPlacement) that `serve`, `generate` and the
// plan file feed: the plan file wins per field, a flag fills in, bad flags name themselves.
import { describe, expect, test } from '@jest/globals';
import { parseServeArgs } from '../../cli/serve.js';
import { CliError } from '../../cli/errors.js';
import { startPlacement } from '../../planning/start-plan.js';
import { chooseTiers } from '../../planning/server-start.js';

describe('startPlacement', () => {
  test('flags apply when no plan file carries the field; the plan file wins per field', () => {
    expect(startPlacement({ numLayers: 40, flags: { residentLayers: 0, gpuKvBlocks: 0 } })).toMatchObject({
      residentLayers: 0,
      gpuKvBlocks: 0,
      source: 'resident layers: flag; GPU cache blocks: flag; mini-batch tokens: engine default',
    });
    const both = startPlacement({ numLayers: 40, flags: { residentLayers: 0, gpuKvBlocks: 7 }, plan: { residentLayers: 40 } });
    expect(both).toEqual({
      residentLayers: 40,
      gpuKvBlocks: 7,
      source: 'resident layers: plan file; GPU cache blocks: flag; mini-batch tokens: engine default',
    });
    expect(startPlacement({ numLayers: 40 })).toEqual({
      source: 'resident layers: engine default; GPU cache blocks: engine default; mini-batch tokens: engine default',
    });
    // The plan's mini-batch size (what its GPU workspace was sized for) wins over the flag.
    expect(startPlacement({ numLayers: 40, flags: { miniBatchTokens: 4096 }, plan: { miniBatchTokens: 8704 } }).miniBatchTokens).toBe(8704);
    expect(startPlacement({ numLayers: 40, flags: { miniBatchTokens: 4096 } }).miniBatchTokens).toBe(4096);
  });

  test('bad flag values are RangeErrors naming the flag', () => {
    expect(() => startPlacement({ numLayers: 40, flags: { residentLayers: 41 } })).toThrow(/--resident-layers .* between 0 and 40, got 41/);
    expect(() => startPlacement({ numLayers: 40, flags: { gpuKvBlocks: -1 } })).toThrow(/--gpu-cache-blocks/);
    expect(() => startPlacement({ numLayers: 40, flags: { gpuKvBlocks: 0.5 } })).toThrow(RangeError);
    expect(() => startPlacement({ numLayers: 40, flags: { miniBatchTokens: -8 } })).toThrow(/--mini-batch-tokens/);
  });

  test('the server passes the same placement to both devices; --gpu-memory is cuda only', () => {
    const o = { plan: null, residentLayers: 0, gpuKvBlocks: 12, gpuMemoryBytes: 2 ** 30 };
    expect(chooseTiers({ ...o, device: 'cuda' }, 40)).toEqual({ residentLayers: 0, gpuKvBlocks: 12, gpuMemoryBytes: 2 ** 30 });
    expect(chooseTiers({ ...o, device: 'cpu' }, 40)).toEqual({ residentLayers: 0, gpuKvBlocks: 12 });
    expect(() => chooseTiers({ ...o, device: 'cuda', residentLayers: 41 }, 40)).toThrow(/--resident-layers/);
  });
});

describe('serve --resident-layers / --gpu-cache-blocks', () => {
  test('parsed as whole counts; absent stays absent', () => {
    expect(parseServeArgs(['--resident-layers', '0', '--gpu-cache-blocks', '128'], {})).toMatchObject({
      residentLayers: 0,
      gpuKvBlocks: 128,
    });
    expect(parseServeArgs(['--mini-batch-tokens', '8704'], {})).toMatchObject({ miniBatchTokens: 8704 });
    expect(parseServeArgs([], {})).not.toHaveProperty('miniBatchTokens');
    expect(() => parseServeArgs(['--mini-batch-tokens', 'lots'], {})).toThrow(/--mini-batch-tokens/);
    const c = parseServeArgs([], {});
    expect(c !== 'help' && 'residentLayers' in c).toBe(false);
  });

  test.each([
    [['--resident-layers', 'all'], /serve: --resident-layers must be an integer, got 'all'/],
    [['--resident-layers=-2'], /serve: --resident-layers must be between 0 and/],
    [['--gpu-cache-blocks', '2.5'], /serve: --gpu-cache-blocks must be an integer, got '2.5'/],
  ])('%j is refused naming the flag', (args, message) => {
    expect(() => parseServeArgs(args, {})).toThrow(CliError);
    expect(() => parseServeArgs(args, {})).toThrow(message);
  });
});
