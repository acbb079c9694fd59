import { describe, expect, test } from '@jest/globals';
import { parseServeArgs } from '../../cli/serve.js';
import { CliError } from '../../cli/errors.js';
import { chooseFraction } from '../../planning/server-start.js';
import { presetConfig } from '../../model/presets.js';

describe('hybridserve serve options', () => {
  test('defaults: synthetic:opt-tiny on CPU, 0.0.0.0:8000, auto fraction', () => {
    const c = parseServeArgs([], {});
    expect(c).toMatchObject({ model: 'synthetic:opt-tiny', host: '0.0.0.0', port: 8000, device: 'cpu', actFraction: 'auto', maxBatch: 64 });
  });
  test('a bad PORT in the environment is named as PORT, a bad --port as --port', () => {
    expect(() => parseServeArgs([], { PORT: 'abc' })).toThrow(/^PORT must be an integer, got 'abc'/);
    expect(() => parseServeArgs(['--port', '70000'], { PORT: '1' })).toThrow(/^--port must be between 0 and 65535/);
  });

  test('PORT / HOST / HYBRIDSERVE_PLAN_FILE from the environment; flags win', () => {
    expect(parseServeArgs([], { PORT: '9001', HOST: '127.0.0.1', HYBRIDSERVE_PLAN_FILE: '/etc/plan/plan.json' })).toMatchObject({
      port: 9001,
      host: '127.0.0.1',
      planFile: '/etc/plan/plan.json',
    });
    expect(parseServeArgs(['--port', '7000', '--plan', 'p.json'], { PORT: '9001', HYBRIDSERVE_PLAN_FILE: 'x' })).toMatchObject({
      port: 7000,
      planFile: 'p.json',
    });
  });
  test('values are parsed and checked', () => {
    const c = parseServeArgs(
      [
        '--act-fraction',
        '0.25',
        '--host-memory',
        '2GiB',
        '--device',
        'cuda',
        '--max-queue',
        '3',
        '--request-timeout',
        '1.5',
        '--body-limit',
        '64KiB',
      ],
      {},
    );
    expect(c).toMatchObject({ actFraction: 0.25, hostMemoryBytes: 2 * 2 ** 30, device: 'cuda' });
    if (c !== 'help') expect(c.limits).toMatchObject({ maxQueue: 3, requestTimeoutMs: 1500, bodyLimitBytes: 65536 });
    for (const bad of [['--act-fraction', '1.5'], ['--device', 'tpu'], ['--port', '70000'], ['--host-memory', 'lots'], ['--nope']]) {
      expect(() => parseServeArgs(bad, {})).toThrow(CliError);
    }
    expect(parseServeArgs(['--help'], {})).toBe('help');
  });
  test('--max-sequences-per-request: prompts × n one request may create, 1..1024', () => {
    const c = parseServeArgs(['--max-sequences-per-request', '32'], {});
    if (c !== 'help') expect(c.limits).toEqual({ maxSequencesPerRequest: 32 });
    for (const bad of ['0', '1025', '2.5']) expect(() => parseServeArgs(['--max-sequences-per-request', bad], {})).toThrow(CliError);
  });
  test('--max-step-tokens: 0 or at least --max-batch (a decode step holds one token per sequence)', () => {
    expect(parseServeArgs(['--max-step-tokens', '16384', '--max-batch', '128'], {})).toMatchObject({ maxStepTokens: 16384, maxBatch: 128 });
    expect(parseServeArgs(['--max-step-tokens', '0'], {})).toMatchObject({ maxStepTokens: 0 }); // the cap off, even with a plan file's
    expect(parseServeArgs([], {})).not.toHaveProperty('maxStepTokens');
    expect(() => parseServeArgs(['--max-step-tokens', '100', '--max-batch', '128'], {})).toThrow(/below --max-batch 128/);
    expect(() => parseServeArgs(['--max-step-tokens', 'many'], {})).toThrow(CliError);
  });
});

describe('ACT fraction at start', () => {
  const cfg = presetConfig('opt-tiny')!;
  test('auto on CPU is 0, with the reason', () => {
    const r = chooseFraction({ actFraction: 'auto', device: 'cpu' }, cfg, '');
    expect(r.fraction).toBe(0);
    expect(r.reason).toMatch(/CPU/);
  });
  test('the plan file wins over the flag; the flag over auto', () => {
    expect(chooseFraction({ actFraction: 0.3, device: 'cpu', plan: { actFraction: 0.6 } }, cfg, '').fraction).toBe(0.6);
    expect(chooseFraction({ actFraction: 0.3, device: 'cpu' }, cfg, '').fraction).toBe(0.3);
  });
  test('auto on a known GPU asks the planner', () => {
    const r = chooseFraction(
      { actFraction: 'auto', device: 'cuda', hostMemoryBytes: 256 * 2 ** 30 },
      presetConfig('opt-30b')!,
      'NVIDIA-H100-80GB-HBM3',
    );
    expect(r.fraction).toBeGreaterThanOrEqual(0);
    expect(r.fraction).toBeLessThanOrEqual(1);
    expect(r.reason).toMatch(/planning/);
  });
});
