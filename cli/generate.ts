// `hybridserve generate --model SPEC --prompt TEXT [...] [--json]`: one prompt through the engine.
// Bad input (options, model, files) ends as a one-line CliError; the sequence and engine are
// always released.
import { availableParallelism } from 'node:os';
import { capThreads, parseCli, parseIntOption, parseNumberOption, parsePlacementFlags, parseSize } from './args.js';
import { CliError } from './errors.js';
import { PIPELINE_OPTIONS, parsePipelineArgs } from './pipeline-args.js';
import { ModelError } from '../model/errors.js';
import { checkRequest, generate, type GenerateParams } from '../model/generate.js';
import { loadModel, openEngine } from '../model/load.js';
import type { NativeDevice } from '../native/ts/addon-types.js';
import { visibleGpuCount } from '../native/ts/engine.js';
import type { ModelConfig } from '../model/types.js';
import { chooseGpus } from '../planning/server-start.js';
import { cudaDeviceName } from '../server/runtime.js';
import { parseWeightDtype, type WeightDtype } from '../planning/model-profile.js';
import { startPlacement } from '../planning/start-plan.js';

const USAGE = `usage: hybridserve generate --model SPEC --prompt TEXT [options]

  --model SPEC          synthetic:<preset>[?seed=N], a checkpoint directory, or pvc://<claim>/<path>
                        (default synthetic:opt-tiny)
  --prompt TEXT         the prompt (required, not empty)
  --max-tokens N        tokens to generate, 1..65536 (default 32)
  --act-fraction X      share of cache blocks kept as activations, 0..1 (default 0)
  --temperature T       0 = greedy (default 0)
  --top-p P             nucleus cut, (0, 1] (default 1)
  --top-k K             top-k cut, 0 = none (default 0)
  --seed N              sampling seed (default 0)
  --stop-token ID       stop at this token id (repeatable); the tokenizer's EOS always stops
  --ignore-eos          do not stop at EOS
  --block-tokens N      tokens per cache block, 1..1024 (default 16)
  --device cpu|cuda     engine backend (default cpu)
  --threads N           CPU worker threads (default: all cores)
  --gpu-memory SIZE     cap on the GPU memory the engine uses (cuda; default: the free memory)
  --resident-layers N   decoder layers kept in GPU memory, 0..layers (cuda default: as many as fit;
                        cpu: accepted, every layer is in memory)
  --gpu-cache-blocks N  cache blocks of the GPU tier, the rest in host memory (default 0; the cpu
                        backend emulates the tier)
  --weight-dtype D      layer weight format: fp16 (default), fp8, int8 or int4
  --gpus N|auto         cuda: pipeline stages, one per GPU (default 1); auto: the planner's count of
                        the visible GPUs for this one request (a prediction, opt-in)
  --stages N            cpu: pipeline stages in this process (default 1)
  --json                print one JSON object: tokens, text, actFraction, promptTokens, timings, ...`;

const OPTIONS = {
  model: { type: 'string' },
  prompt: { type: 'string' },
  'max-tokens': { type: 'string' },
  'act-fraction': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  seed: { type: 'string' },
  'stop-token': { type: 'string', multiple: true },
  'ignore-eos': { type: 'boolean' },
  device: { type: 'string' },
  'block-tokens': { type: 'string' },
  threads: { type: 'string' },
  'gpu-memory': { type: 'string' },
  'resident-layers': { type: 'string' },
  'gpu-cache-blocks': { type: 'string' },
  'weight-dtype': { type: 'string' },
  gpus: PIPELINE_OPTIONS.gpus,
  stages: PIPELINE_OPTIONS.stages,
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const MAX_TOKENS_LIMIT = 65536;

export interface GenerateCommand {
  model: string;
  prompt: string;
  device: NativeDevice;
  actFraction: number;
  blockTokens: number;
  threads: number | undefined;
  gpuMemoryBytes?: number;
  /** --resident-layers / --gpu-cache-blocks, applied through planning/start-plan.ts startPlacement. */
  residentLayers?: number;
  gpuKvBlocks?: number;
  weightDtype: WeightDtype;
  /** Pipeline stages (issue 15): one per GPU on cuda ('auto': chosen at start), in-process stages on cpu. */
  gpus: number | 'auto';
  stages: number;
  json: boolean;
  params: Omit<GenerateParams, 'actFraction'>;
}

/** Parses and checks the options (pure); throws CliError. */
export function parseGenerateArgs(argv: string[]): GenerateCommand | 'help' {
  const v = parseCli(argv, OPTIONS, 'generate');
  if (v.help) return 'help';
  if (v.prompt === undefined) throw new CliError('generate: --prompt is required');
  if (v.prompt.trim() === '') throw new CliError('generate: --prompt is empty');
  const device = v.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new CliError(`generate: --device must be cpu or cuda, got '${device}'`);
  let weightDtype: WeightDtype;
  try {
    weightDtype = parseWeightDtype(v['weight-dtype'] ?? 'fp16', '--weight-dtype');
  } catch (err) {
    throw new CliError(`generate: ${(err as Error).message}`);
  }
  const stopTokenIds = (v['stop-token'] ?? []).map((s) => parseIntOption(s, 'generate: --stop-token', 0, 2 ** 31 - 1, 0));
  return {
    model: v.model ?? 'synthetic:opt-tiny',
    prompt: v.prompt,
    device,
    actFraction: parseNumberOption(v['act-fraction'], 'generate: --act-fraction', 0, 1, 0),
    blockTokens: parseIntOption(v['block-tokens'], 'generate: --block-tokens', 1, 1024, 16),
    threads: v.threads === undefined ? undefined : parseIntOption(v.threads, 'generate: --threads', 0, 1024, 0),
    ...(v['gpu-memory'] !== undefined ? { gpuMemoryBytes: parseSize(v['gpu-memory'], 'generate: --gpu-memory') } : {}),
    ...parsePlacementFlags(v['resident-layers'], v['gpu-cache-blocks'], 'generate'),
    weightDtype,
    ...pipelineStages(v, device),
    json: v.json ?? false,
    params: {
      maxTokens: parseIntOption(v['max-tokens'], 'generate: --max-tokens', 1, MAX_TOKENS_LIMIT, 32),
      temperature: parseNumberOption(v.temperature, 'generate: --temperature', 0, 100, 0),
      topP: topP(v['top-p']),
      topK: parseIntOption(v['top-k'], 'generate: --top-k', 0, 2 ** 31 - 1, 0),
      seed: parseIntOption(v.seed, 'generate: --seed', 0, 2 ** 32 - 1, 0),
      stopTokenIds,
      ignoreEos: v['ignore-eos'] ?? false,
    },
  };
}

function pipelineStages(v: { gpus?: string; stages?: string }, device: string): { gpus: number | 'auto'; stages: number } {
  const p = parsePipelineArgs({ gpus: v.gpus, stages: v.stages }, {}, device, 'generate');
  return { gpus: p.gpus, stages: p.stages };
}

function topP(text: string | undefined): number {
  const p = parseNumberOption(text, 'generate: --top-p', 0, 1, 1);
  if (p === 0) throw new CliError('generate: --top-p must be in (0, 1], got 0');
  return p;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = parseGenerateArgs(argv);
  if (cmd === 'help') {
    console.log(USAGE);
    return 0;
  }
  try {
    return await execute(cmd);
  } catch (err) {
    if (err instanceof ModelError) throw new CliError(`generate: ${err.message}`, 1);
    throw err;
  }
}

/** The flags through the one placement rule (no plan file here); a bad count is a CliError naming the flag. */
function placementFor(cmd: GenerateCommand, numLayers: number) {
  const flags = {
    ...(cmd.residentLayers !== undefined ? { residentLayers: cmd.residentLayers } : {}),
    ...(cmd.gpuKvBlocks !== undefined ? { gpuKvBlocks: cmd.gpuKvBlocks } : {}),
  };
  try {
    return startPlacement({ numLayers, flags });
  } catch (err) {
    throw new CliError(`generate: ${(err as Error).message}`);
  }
}

/** --gpus auto: the planner's count for this one request (planning/server-start.ts chooseGpus); the reason goes to stderr. */
async function autoGpus(cmd: GenerateCommand, cfg: ModelConfig, totalTokens: number): Promise<number> {
  const product = process.env.HYBRIDSERVE_GPU_PRODUCT || (await cudaDeviceName());
  try {
    const c = chooseGpus({ ...cmd, maxBatch: 1 }, cfg, product, visibleGpuCount(), totalTokens);
    console.error(`hybridserve: generate: GPUs: ${c.gpus} (${c.reason})`);
    return c.gpus;
  } catch (err) {
    throw new CliError(`generate: ${(err as Error).message}`, 1);
  }
}

async function execute(cmd: GenerateCommand): Promise<number> {
  const t0 = performance.now();
  const model = await loadModel(cmd.model);
  const promptIds = model.tokenizer.encode(cmd.prompt);
  // Check limits before paying for the engine.
  checkRequest(model.config, promptIds, cmd.params);
  const threads = capThreads(cmd.threads, availableParallelism());
  if (threads.note) console.error(`hybridserve: generate: ${threads.note}`);
  const placement = placementFor(cmd, model.config.numLayers);
  const gpus = cmd.gpus === 'auto' ? await autoGpus(cmd, model.config, promptIds.length + cmd.params.maxTokens) : cmd.gpus;
  const engine = await openEngine(model, {
    device: cmd.device,
    actFraction: cmd.actFraction,
    blockTokens: cmd.blockTokens,
    tokenBudget: promptIds.length + cmd.params.maxTokens,
    ...(threads.threads !== undefined ? { threads: threads.threads } : {}),
    ...(cmd.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: cmd.gpuMemoryBytes } : {}),
    ...(placement.residentLayers !== undefined ? { residentLayers: placement.residentLayers } : {}),
    ...(placement.gpuKvBlocks !== undefined ? { gpuKvBlocks: placement.gpuKvBlocks } : {}),
    weightDtype: cmd.weightDtype,
    ...(gpus > 1 ? { gpus } : {}),
    ...(cmd.stages > 1 ? { stages: cmd.stages } : {}),
  });
  const loadSeconds = (performance.now() - t0) / 1000;
  try {
    const stream = cmd.json ? undefined : (piece: string) => process.stdout.write(piece);
    const r = await generate(engine, model.tokenizer, model.config, promptIds, { ...cmd.params, actFraction: cmd.actFraction }, stream);
    if (cmd.json) {
      console.log(
        JSON.stringify({
          model: model.spec,
          device: cmd.device,
          weightDtype: cmd.weightDtype,
          tokens: r.tokens,
          text: r.text,
          actFraction: cmd.actFraction,
          promptTokens: r.promptTokens,
          generatedTokens: r.tokens.length,
          finishReason: r.finishReason,
          timings: { loadSeconds, ...r.timings },
          counters: r.counters,
          gpuCacheBlocks: engine.pools().gpuKvBlocksTotal ?? 0,
        }),
      );
    } else {
      process.stdout.write('\n');
      console.error(
        `[${model.name}: ${r.promptTokens} prompt + ${r.tokens.length} generated tokens, ` +
          `${r.timings.decodeTokensPerSecond.toFixed(1)} tokens/s decode, ACT fraction ${cmd.actFraction}, ${r.finishReason}]`,
      );
    }
    return 0;
  } finally {
    await engine.close();
  }
}
