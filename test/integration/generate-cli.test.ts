// `hybridserve generate` as users run it: the built CLI (dist/, rebuilt by the helper when stale),
// its JSON output, and one-line errors with a non-zero exit for bad input, never a stack trace.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test, beforeAll } from '@jest/globals';
import { run } from '../../cli/generate.js';
import { CliError } from '../../cli/errors.js';
import { OPT_REF, builtCli, runCli } from '../fixtures/helpers.js';

beforeAll(() => {
  builtCli();
}, 300_000);

interface GenerateJson {
  model: string;
  tokens: number[];
  text: string;
  actFraction: number;
  promptTokens: number;
  generatedTokens: number;
  finishReason: string;
  timings: Record<string, number>;
  counters: Record<string, number>;
  gpuCacheBlocks: number;
}

function json(args: string[]): GenerateJson {
  const r = runCli(['generate', ...args, '--json']);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]) as GenerateJson;
}

describe('hybridserve generate --json', () => {
  test('--gpu-cache-blocks and --resident-layers apply on cpu (the tier is emulated): same tokens', () => {
    const base = [
      '--model',
      'synthetic:opt-tiny',
      '--prompt',
      'Placement flags',
      '--max-tokens',
      '5',
      '--block-tokens',
      '4',
      '--threads',
      '1',
    ];
    const host = json(base);
    const tiered = json([...base, '--gpu-cache-blocks', '3', '--resident-layers', '0']);
    expect(host.gpuCacheBlocks).toBe(0);
    expect(tiered.gpuCacheBlocks).toBe(3);
    expect(tiered.tokens).toEqual(host.tokens);
  });

  test('synthetic Llama at ACT fractions 0 and 1: one JSON object, same tokens', () => {
    const base = [
      '--model',
      'synthetic:llama-tiny',
      '--prompt',
      'Hello, HybridServe ✓',
      '--max-tokens',
      '6',
      '--temperature',
      '0',
      '--block-tokens',
      '4',
      '--threads',
      '1',
    ];
    const kv = json([...base, '--act-fraction', '0']);
    const act = json([...base, '--act-fraction', '1']);
    expect(kv.tokens).toHaveLength(6);
    expect(act.tokens).toEqual(kv.tokens);
    expect(kv.actFraction).toBe(0);
    expect(act.actFraction).toBe(1);
    expect(kv.promptTokens).toBe(1 + Buffer.byteLength('Hello, HybridServe ✓'));
    expect(kv.generatedTokens).toBe(6);
    expect(typeof kv.text).toBe('string');
    expect(kv.finishReason).toBe('length');
    expect(kv.timings.totalSeconds).toBeGreaterThan(0);
    expect(act.counters.recomputedTokens).toBeGreaterThan(0);
    expect(kv.counters.recomputedTokens).toBe(0);
  });

  test('a checkpoint directory with its own tokenizer, and --stop-token', () => {
    const base = ['--model', OPT_REF, '--prompt', 'the theory', '--max-tokens', '8', '--threads', '1'];
    const full = json(base);
    expect(full.promptTokens).toBe(7); // </s> the Ġ the o r y: no merge (Ġ, the) in the fixture's merges
    const stop = full.tokens[2];
    const stopped = json([...base, '--stop-token', String(stop)]);
    expect(stopped.finishReason).toBe('stop');
    expect(stopped.tokens).toEqual(full.tokens.slice(0, full.tokens.indexOf(stop) + 1));
  });

  test('--seed with --temperature 1: the same seed gives the same tokens, another seed others', () => {
    const sample = (seed: string) =>
      json(['--model', 'synthetic:opt-tiny', '--prompt', 'hi', '--max-tokens', '8', '--temperature', '1', '--seed', seed]).tokens;
    const a = sample('1');
    expect(a).toHaveLength(8);
    expect(sample('1')).toEqual(a);
    expect(sample('2')).not.toEqual(a);
  });

  test('plain output streams the text and prints a summary on stderr', () => {
    const r = runCli(['generate', '--model', 'synthetic:opt-tiny', '--prompt', 'Hi', '--max-tokens', '4', '--threads', '1']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\[opt-tiny: 1 prompt \+ 4 generated tokens, .* tokens\/s decode, ACT fraction 0, length\]/);
  });
});

describe('bad input: one line on stderr, non-zero exit, no stack trace', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-cli-'));
  const noConfig = path.join(dir, 'no-config');
  const badConfig = path.join(dir, 'bad-config');
  const truncated = path.join(dir, 'truncated');
  beforeAll(() => {
    for (const d of [noConfig, badConfig, truncated]) {
      mkdirSync(d);
    }
    copyFileSync(path.join(OPT_REF, 'model.safetensors'), path.join(noConfig, 'model.safetensors'));
    writeFileSync(path.join(badConfig, 'config.json'), '{"model_type": "opt", "hidden_size": ');
    for (const f of ['config.json', 'vocab.json', 'merges.txt']) copyFileSync(path.join(OPT_REF, f), path.join(truncated, f));
    const st = readFileSync(path.join(OPT_REF, 'model.safetensors'));
    writeFileSync(path.join(truncated, 'model.safetensors'), st.subarray(0, st.length - 1000));
  });

  // Acceptance 6's list, through the real process.
  const spawned: Array<[string, string[], RegExp]> = [
    ['empty prompt', ['--prompt', ''], /--prompt is empty/],
    ['max tokens 0', ['--prompt', 'x', '--max-tokens', '0'], /--max-tokens must be between 1 and 65536, got 0/],
    ['negative max tokens', ['--prompt', 'x', '--max-tokens=-5'], /--max-tokens must be between 1 and 65536, got -5/],
    ['huge max tokens', ['--prompt', 'x', '--max-tokens', '99999999999'], /--max-tokens must be between/],
    ['unknown preset', ['--prompt', 'x', '--model', 'synthetic:opt-9000'], /unknown synthetic preset 'opt-9000' \(known: opt-tiny, /],
    ['missing config.json', ['--prompt', 'x', '--model', noConfig], /no config.json/],
    ['malformed config.json', ['--prompt', 'x', '--model', badConfig], /config.json: malformed JSON/],
    [
      'truncated safetensors',
      ['--prompt', 'x', '--model', truncated],
      /model.safetensors: invalid safetensors header: tensor '.*' ends at data byte/,
    ],
    ['ACT fraction above 1', ['--prompt', 'x', '--act-fraction', '1.5'], /--act-fraction must be between 0 and 1, got 1.5/],
    ['ACT fraction below 0', ['--prompt', 'x', '--act-fraction=-0.1'], /--act-fraction must be between 0 and 1, got -0.1/],
  ];
  test.each(spawned)('%s', (_name, args, message) => {
    const r = runCli(['generate', ...args]);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^hybridserve: generate: /);
    expect(lines[0]).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  // More cases in-process (run() throws the CliError that main.ts prints as one line).
  const inProcess: Array<[string, string[], RegExp]> = [
    ['missing prompt', [], /--prompt is required/],
    ['max tokens past the context', ['--prompt', 'x', '--max-tokens', '4000'], /exceeds the model's context of 2048/],
    ['non-numeric max tokens', ['--prompt', 'x', '--max-tokens', 'many'], /--max-tokens must be an integer/],
    ['missing directory', ['--prompt', 'x', '--model', '/nonexistent/model'], /model directory \/nonexistent\/model does not exist/],
    ['ACT fraction not a number', ['--prompt', 'x', '--act-fraction', 'auto'], /--act-fraction must be a number/],
    ['top-p 0', ['--prompt', 'x', '--top-p', '0'], /--top-p must be in \(0, 1\]/],
    ['bad device', ['--prompt', 'x', '--device', 'tpu'], /--device must be cpu or cuda/],
    ['unknown option', ['--prompt', 'x', '--frobnicate'], /Unknown option '--frobnicate'/],
    [
      'stop token outside the vocabulary',
      ['--prompt', 'x', '--stop-token', '99999999'],
      /stop token id 99999999 is outside the vocabulary/,
    ],
    ['bad pvc claim', ['--prompt', 'x', '--model', 'pvc://UPPER/x'], /not a valid PersistentVolumeClaim name/],
    ['negative resident layers', ['--prompt', 'x', '--resident-layers=-1'], /--resident-layers must be between 0 and/],
    [
      'resident layers past the model',
      ['--prompt', 'x', '--resident-layers', '3'],
      /--resident-layers must be an integer between 0 and 2, got 3/,
    ],
    ['fractional GPU cache blocks', ['--prompt', 'x', '--gpu-cache-blocks', '1.5'], /--gpu-cache-blocks must be an integer, got '1.5'/],
  ];
  test.each(inProcess)('%s (in-process)', async (_name, args, message) => {
    const err = await run(args).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).message).toMatch(/^generate: /);
    expect((err as CliError).message).toMatch(message);
    expect((err as CliError).message).not.toContain('\n');
  });
});
