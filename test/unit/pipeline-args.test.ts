// The pipeline flags of serve and generate (issue 15): defaults, flags over environment, and clear
// errors for combinations that cannot run.
import { describe, expect, test } from '@jest/globals';
import { parsePipelineArgs } from '../../cli/pipeline-args.js';
import { parseServeArgs } from '../../cli/serve.js';
import { parseGenerateArgs } from '../../cli/generate.js';
import { CliError } from '../../cli/errors.js';

const msg = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return 'no error';
};

describe('parsePipelineArgs', () => {
  test('defaults: one stage, rank 0 of 1, no leader', () => {
    expect(parsePipelineArgs({}, {}, 'cuda', 'serve')).toEqual({ gpus: 1, stages: 1, rank: 0, worldSize: 1 });
  });

  test('flags, and the environment where a flag is absent; flags win', () => {
    const env = { HYBRIDSERVE_RANK: '1', HYBRIDSERVE_WORLD_SIZE: '2', HYBRIDSERVE_LEADER_ADDRESS: 'lead.ns.svc:29500' };
    expect(parsePipelineArgs({}, env, 'cuda', 'serve')).toEqual({
      gpus: 1,
      stages: 1,
      rank: 1,
      worldSize: 2,
      leaderAddress: 'lead.ns.svc:29500',
    });
    expect(parsePipelineArgs({ rank: '0', 'leader-address': '[::1]:7000' }, env, 'cuda', 'serve')).toMatchObject({
      rank: 0,
      worldSize: 2,
      leaderAddress: '[::1]:7000',
    });
    expect(parsePipelineArgs({ stages: '3' }, {}, 'cpu', 'serve').stages).toBe(3);
    // CPU stages over processes talk TCP (native/src/pipeline/socket_transport.h).
    expect(parsePipelineArgs({ 'world-size': '2', 'leader-address': 'a:1' }, {}, 'cpu', 'serve')).toMatchObject({ worldSize: 2 });
    // The group's token comes from the environment only, and only for a pipeline over processes.
    const secret = { HYBRIDSERVE_PIPELINE_TOKEN: 'tok-123' };
    expect(parsePipelineArgs({ 'world-size': '2', 'leader-address': 'a:1' }, secret, 'cpu', 'serve').token).toBe('tok-123');
    expect(parsePipelineArgs({}, secret, 'cpu', 'serve').token).toBeUndefined();
    const long = { HYBRIDSERVE_PIPELINE_TOKEN: 'x'.repeat(257) };
    expect(msg(() => parsePipelineArgs({ 'world-size': '2', 'leader-address': 'a:1' }, long, 'cpu', 'serve'))).toMatch(
      /HYBRIDSERVE_PIPELINE_TOKEN is longer than 256 bytes/,
    );
    expect(parsePipelineArgs({ gpus: '2' }, {}, 'cuda', 'serve').gpus).toBe(2);
  });

  test.each([
    [{ gpus: '2' }, {}, 'cpu', /--gpus is for --device cuda/],
    [{ stages: '2' }, {}, 'cuda', /--stages is for --device cpu/],
    [{ gpus: '0' }, {}, 'cuda', /--gpus must be between 1 and 64/],
    [{ rank: '2', 'world-size': '2', 'leader-address': 'a:1' }, {}, 'cuda', /--rank 2 must be below --world-size 2/],
    [{ 'world-size': '2' }, {}, 'cuda', /needs --leader-address/],
    [{ 'leader-address': 'no-port' }, {}, 'cuda', /HOST:PORT/],
    [{ 'leader-address': 'h:70000' }, {}, 'cuda', /HOST:PORT/],
    [{}, { HYBRIDSERVE_RANK: 'x' }, 'cuda', /--rank must be an integer/],
    [{ 'world-size': '2', 'leader-address': 'a:1', stages: '2' }, {}, 'cpu', /one stage per process/],
    [{ 'world-size': '2', 'leader-address': 'a:1', gpus: '2' }, {}, 'cuda', /one GPU per process/],
  ])('%p %p on %s is refused', (v, env, device, re) => {
    expect(msg(() => parsePipelineArgs(v, env as NodeJS.ProcessEnv, device, 'serve'))).toMatch(re);
  });
});

describe('serve and generate carry the flags', () => {
  test('serve --device cuda --gpus 2; a rank from the environment', () => {
    const one = parseServeArgs(['--device', 'cuda', '--gpus', '2'], {});
    expect(one !== 'help' && one.pipeline).toEqual({ gpus: 2, stages: 1, rank: 0, worldSize: 1 });
    const cfg = parseServeArgs(['--device', 'cuda', '--leader-address', 'l:29500'], { HYBRIDSERVE_RANK: '1', HYBRIDSERVE_WORLD_SIZE: '2' });
    expect(cfg !== 'help' && cfg.pipeline).toEqual({ gpus: 1, stages: 1, rank: 1, worldSize: 2, leaderAddress: 'l:29500' });
  });

  test('generate --stages 2 on cpu; --gpus on cpu is an error', () => {
    const cmd = parseGenerateArgs(['--prompt', 'hi', '--stages', '2']);
    expect(cmd !== 'help' && [cmd.stages, cmd.gpus]).toEqual([2, 1]);
    expect(msg(() => parseGenerateArgs(['--prompt', 'hi', '--gpus', '2']))).toMatch(/generate: --gpus is for --device cuda/);
  });

  test('--gpus auto (cuda only): serve and generate carry it; the count is chosen at start', () => {
    const serve = parseServeArgs(['--device', 'cuda', '--gpus', 'auto'], {});
    expect(serve !== 'help' && serve.pipeline).toEqual({ gpus: 'auto', stages: 1, rank: 0, worldSize: 1 });
    const gen = parseGenerateArgs(['--prompt', 'hi', '--device', 'cuda', '--gpus', 'AUTO']);
    expect(gen !== 'help' && gen.gpus).toBe('auto');
    // The default stays one GPU.
    const one = parseServeArgs(['--device', 'cuda'], {});
    expect(one !== 'help' && one.pipeline.gpus).toBe(1);
  });
});

describe('--gpus auto', () => {
  test.each([
    [{ gpus: 'auto' }, {}, 'cpu', /^serve: --gpus auto counts the visible GPUs: it is for --device cuda$/],
    [{ gpus: 'auto', 'world-size': '2', 'leader-address': 'a:1' }, {}, 'cuda', /one GPU per process: drop --gpus/],
    [{ gpus: 'some' }, {}, 'cuda', /--gpus must be an integer/],
  ])('%p %p on %s is refused', (v, env, device, re) => {
    expect(msg(() => parsePipelineArgs(v, env as NodeJS.ProcessEnv, device, 'serve'))).toMatch(re);
  });

  test('on cpu: a CliError with exit code 2 from serve and generate', () => {
    for (const parse of [
      () => parseServeArgs(['--device', 'cpu', '--gpus', 'auto'], {}),
      () => parseGenerateArgs(['--prompt', 'hi', '--gpus', 'auto']),
    ]) {
      let err: unknown;
      try {
        parse();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CliError);
      expect((err as CliError).exitCode).toBe(2);
      expect((err as CliError).message).toMatch(/--gpus auto counts the visible GPUs: it is for --device cuda/);
    }
  });
});
