// bench:serving as CI runs it (issue 11, acceptance 4): the built bench starts the real server
// (synthetic:opt-tiny on CPU) and drives it over HTTP; its JSON line must carry every figure.
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { SUMMARY_FIELDS } from '../../bench/serving-workload.js';
import { ROOT, builtCli } from '../fixtures/helpers.js';

function newest(dir: string): number {
  return Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true }).map((e) => {
      const p = path.join(dir, e.name);
      return e.isDirectory() ? newest(p) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0;
    }),
  );
}

/** dist/bench/serving.js, rebuilt when bench/ or server/ sources are newer (builtCli checks cli/, model/, native/ts). */
function builtBench(): string {
  builtCli();
  const bench = path.join(ROOT, 'dist', 'bench', 'serving.js');
  let built = 0;
  try {
    built = statSync(bench).mtimeMs;
  } catch {
    built = 0;
  }
  if (built < Math.max(newest(path.join(ROOT, 'bench')), newest(path.join(ROOT, 'server')))) {
    spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
      cwd: ROOT,
      stdio: 'ignore',
    });
  }
  return bench;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function runBench(args: string[]): { code: number | null; json: Record<string, any>; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [builtBench(), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 90_000,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  let json = {};
  try {
    json = JSON.parse(last);
  } catch {
    /* checked below */
  }
  return { code: r.status, json, stdout: r.stdout, stderr: r.stderr };
}

describe('bench:serving', () => {
  test('quick mode against synthetic:opt-tiny: a table, one JSON line with every figure, progress on stderr', () => {
    const r = runBench(['--quick', '--server-args=--threads 2']);
    expect(r.stderr).toMatch(/\[bench:serving\] level 4 clients/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/clients\s+done\s+fail\s+req\/s\s+out tok\/s\s+ttft p50/);
    const j = r.json;
    expect(j).toMatchObject({ bench: 'serving', model: 'synthetic:opt-tiny', device: 'cpu', mode: 'closed', stream: true, maxTokens: 4 });
    expect(j.levels).toHaveLength(1);
    const level = j.levels[0];
    for (const f of SUMMARY_FIELDS) expect(typeof level[f]).toBe('number');
    expect(level).toMatchObject({
      concurrency: 4,
      requests: 8,
      completed: 8,
      failed: 0,
      total_input_tokens: 8 * 16,
      total_output_tokens: 8 * 4,
    });
    expect(level.p99_ttft_ms).toBeGreaterThanOrEqual(level.median_ttft_ms);
    expect(level.median_tpot_ms).toBeGreaterThan(0);
    // What the engine did, from /v1/hybridserve/stats: every prompt token prefilled once, 3 decode tokens per request.
    expect(level.server).toMatchObject({ prefillTokens: 8 * 16, decodeTokens: 8 * 3, preemptions: 0 });
    expect(level.server.engineSteps).toBeGreaterThanOrEqual(4);
    expect(level.server.engineSteps).toBeLessThanOrEqual(8 * 4);
    // Every field of the JSON line, top level and per level, is there with its type.
    expect(Object.keys(j).sort()).toEqual(
      [
        'bench',
        'model',
        'device',
        'serverArgs',
        'mode',
        'stream',
        'promptTokens',
        'maxTokens',
        'n',
        'ignoreEos',
        'actFraction',
        'pools',
        'serverStartSeconds',
        'levels',
      ].sort(),
    );
    expect(j).toMatchObject({ serverArgs: ['--threads', '2'], ignoreEos: true, actFraction: 0, n: 1 });
    expect(j.promptTokens).toEqual({ min: 16, max: 16, kind: 'ids', sharedPrefix: 0 });
    expect(j.pools.kvBlocksTotal).toBeGreaterThan(0);
    expect(j.serverStartSeconds).toBeGreaterThan(0);
    expect(Object.keys(level).sort()).toEqual([...SUMMARY_FIELDS, 'concurrency', 'requests', 'server'].sort());
    expect(Object.keys(level.server).sort()).toEqual(
      ['engineSteps', 'prefillTokens', 'decodeTokens', 'meanBatch', 'preemptions', 'engineBusyFraction'].sort(),
    );
    expect(level.server.meanBatch).toBeCloseTo((8 * 4) / level.server.engineSteps, 6);
    expect(level.server.engineBusyFraction).toBeGreaterThan(0);
    expect(level.server.engineBusyFraction).toBeLessThanOrEqual(1.05);
  });

  test('--n 3: three samples per request, counted in the output; the prompt prefilled about once, not three times', () => {
    const r = runBench(['--quick', '--n', '3', '--prompt-tokens', '32', '--server-args=--threads 2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/× n = 3 samples per request/);
    expect(r.json.n).toBe(3);
    const level = r.json.levels[0];
    expect(level).toMatchObject({ requests: 8, completed: 8, failed: 0, total_input_tokens: 8 * 32, total_output_tokens: 8 * 3 * 4 });
    // Samples 1 and 2 take sample 0's two full blocks from the prefix cache (3 × 8 × 32 = 768 without).
    expect(level.server.prefillTokens).toBeGreaterThanOrEqual(8 * 32);
    expect(level.server.prefillTokens).toBeLessThan(8 * 32 * 1.5);
    expect(level.median_tpot_ms).toBeGreaterThan(0);
  });

  test('open loop (a burst at rate inf), not streaming, text prompts sharing a prefix', () => {
    const r = runBench([
      '--quick',
      '--rates',
      'inf',
      '--requests',
      '6',
      '--stream',
      'false',
      '--prompt-kind',
      'text',
      '--prompt-tokens',
      '12',
      '--shared-prefix',
      '6',
      '--server-args=--threads 2',
    ]);
    expect(r.code).toBe(0);
    const level = r.json.levels[0];
    expect(level).toMatchObject({ rate: 'inf', requests: 6, completed: 6, failed: 0, total_output_tokens: 6 * 4 });
    // Not streaming: the first token is seen with the whole response, and there are no chunk gaps.
    expect(level.median_ttft_ms).toBe(level.median_e2el_ms);
    expect(level.mean_itl_ms).toBeNull();
    expect(r.json.promptTokens).toEqual({ min: 12, max: 12, kind: 'text', sharedPrefix: 6 });
  });
});
