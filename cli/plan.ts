// `hybridserve plan`: prints the tiered cache plan for a model on a GPU (planning/planNode), human
// readable by default, one JSON object with --json. The only I/O is reading a checkpoint's config.json.
import { parseCli, parseSize, parseIntOption, parseNumberOption } from './args.js';
import { CliError } from './errors.js';
import { parseModelSpec } from '../model/spec.js';
import { readHfConfig } from '../model/config.js';
import { ModelError } from '../model/errors.js';
import type { ModelConfig } from '../model/types.js';
import {
  KNOWN_PRODUCTS,
  PlanError,
  hardwareProfile,
  parseWeightDtype,
  withMeasured,
  type MeasuredValues,
  type Plan,
} from '../planning/index.js';
import { nodeStagePlanner, planPodStages, type PodStagesPlan, type StageRange } from '../planning/stage-plan.js';
import { predictPipeline, type PipelinePrediction } from '../planning/pipeline-predict.js';
import { chooseGpuCount, type GpuCountChoice } from '../planning/gpu-count.js';

/** Default pod host memory when --host-memory is not given: a common 2-socket GPU server share. */
export const DEFAULT_HOST_MEMORY = '256GiB';

const USAGE = `usage: hybridserve plan --model SPEC --gpu PRODUCT [options]

Prints the cache plan: resident layers and GPU KV blocks (the GPU tier), ACT fraction, host memory,
host KV/ACT pool sizes, batch, predicted speed.

options:
  --model SPEC            synthetic:<preset> or a Hugging Face checkpoint directory (config.json is read)
  --gpu PRODUCT           nvidia.com/gpu.product label value, e.g. NVIDIA-H100-80GB-HBM3
  --host-memory SIZE      pod host memory budget: weights + cache + runtime (default ${DEFAULT_HOST_MEMORY})
  --gpu-memory SIZE       GPU memory budget (default: the GPU's memory)
  --act-fraction X        'auto' (default) or a number in [0, 1]
  --prompt N              prompt tokens per request (default 512)
  --gen N                 generated tokens per request (default 128)
  --block-tokens N        tokens per cache block (default 16)
  --max-batch N           upper bound on the batch (default 1024)
  --slo-tpot SECONDS      target time per output token: maximise throughput with the predicted decode step ≤ it
  --weight-dtype D        layer weight format: fp16 (default), fp8, int8 or int4
  --gpus N|auto           pipeline stages in the pod, one per GPU (default 1); --host-memory is the pod's.
                          With N > 1 the pipeline's own prediction (N groups in flight) is printed too.
                          auto: the count of 1..--visible-gpus with the most predicted tokens/s
                          (a prediction only: not yet checked against a 2-GPU measurement)
  --visible-gpus N        GPUs to choose from with --gpus auto
  --nodes N               pods of one replica (a LeaderWorkerSet of N pods, one GPU each; default 1)
  --h2d-gbps X            measured pinned host-to-device bandwidth, GB/s (overrides the table)
  --d2h-gbps X            measured pinned device-to-host bandwidth, GB/s
  --gemm-tflops X         measured fp16 GEMM rate, TFLOP/s
  --json                  print one JSON object
  -h, --help              this help`;

const OPTIONS = {
  model: { type: 'string' },
  gpu: { type: 'string' },
  'host-memory': { type: 'string' },
  'gpu-memory': { type: 'string' },
  'act-fraction': { type: 'string' },
  prompt: { type: 'string' },
  gen: { type: 'string' },
  'block-tokens': { type: 'string' },
  'max-batch': { type: 'string' },
  'slo-tpot': { type: 'string' },
  'weight-dtype': { type: 'string' },
  gpus: { type: 'string' },
  'visible-gpus': { type: 'string' },
  nodes: { type: 'string' },
  'h2d-gbps': { type: 'string' },
  'd2h-gbps': { type: 'string' },
  'gemm-tflops': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function loadModel(spec: string): Promise<ModelConfig> {
  try {
    const parsed = parseModelSpec(spec);
    return parsed.kind === 'synthetic' ? parsed.config : await readHfConfig(parsed.dir);
  } catch (err) {
    if (err instanceof ModelError) throw new CliError(`plan: ${err.message}`);
    throw err;
  }
}

function parseFraction(text: string | undefined): number | 'auto' {
  if (text === undefined || text.trim().toLowerCase() === 'auto') return 'auto';
  return parseNumberOption(text, '--act-fraction', 0, 1, 0);
}

export async function run(argv: string[]): Promise<number> {
  const o = parseCli(argv, OPTIONS, 'plan');
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  if (!o.model) throw new CliError(`plan: --model is required\n\n${USAGE}`);
  if (!o.gpu) throw new CliError(`plan: --gpu is required (known products: ${KNOWN_PRODUCTS.join(', ')})`);

  let hardware = hardwareProfile(o.gpu);
  if (!hardware) {
    throw new CliError(
      `plan: unknown GPU product '${o.gpu}'; known products (nvidia.com/gpu.product values):\n  ${KNOWN_PRODUCTS.join('\n  ')}`,
    );
  }
  const measured: MeasuredValues = {};
  if (o['h2d-gbps'] !== undefined) measured.h2dBytesPerSecond = parseNumberOption(o['h2d-gbps'], '--h2d-gbps', 0.001, 1e4, 0) * 1e9;
  if (o['d2h-gbps'] !== undefined) measured.d2hBytesPerSecond = parseNumberOption(o['d2h-gbps'], '--d2h-gbps', 0.001, 1e4, 0) * 1e9;
  if (o['gemm-tflops'] !== undefined) measured.gemmFlops = parseNumberOption(o['gemm-tflops'], '--gemm-tflops', 0.001, 1e5, 0) * 1e12;
  hardware = withMeasured(hardware, measured);

  const hostMemoryBytes = parseSize(o['host-memory'] ?? DEFAULT_HOST_MEMORY, '--host-memory');
  const gpuMemoryBytes = o['gpu-memory'] !== undefined ? parseSize(o['gpu-memory'], '--gpu-memory') : undefined;
  const actFraction = parseFraction(o['act-fraction']);
  const promptTokens = parseIntOption(o.prompt, '--prompt', 1, 1 << 20, 512);
  const genTokens = parseIntOption(o.gen, '--gen', 1, 1 << 20, 128);
  const blockTokens = parseIntOption(o['block-tokens'], '--block-tokens', 1, 4096, 16);
  const maxBatchCap = parseIntOption(o['max-batch'], '--max-batch', 1, 1 << 20, 1024);
  const sloTpotSeconds = o['slo-tpot'] !== undefined ? parseNumberOption(o['slo-tpot'], '--slo-tpot', 1e-6, 3600, 0) : undefined;
  const gpus = parseGpus(o.gpus, o['visible-gpus']);
  const pods = parseIntOption(o.nodes, '--nodes', 1, 64, 1);
  // The operator's rule (CRD): stages over several pods run one GPU per pod.
  if (pods > 1 && gpus !== 1) throw new CliError('plan: --nodes > 1 runs one GPU per pod: drop --gpus');
  const model = await loadModel(o.model);

  let pipeline: PodStagesPlan;
  let predicted: PipelinePrediction | undefined;
  let choice: GpuCountChoice | undefined;
  try {
    const weightDtype = parseWeightDtype(o['weight-dtype'] ?? 'fp16', '--weight-dtype');
    // One stage, or each stage of a pipeline planned as a model of its own layers, as the operator does.
    const planFor = (stagesPerPod: number) =>
      planPodStages({
        model,
        pods,
        stagesPerPod,
        podHostMemoryBytes: hostMemoryBytes,
        planStage: nodeStagePlanner({
          hardware,
          gpuMemoryBytes,
          actFraction,
          promptTokens,
          genTokens,
          blockTokens,
          maxBatchCap,
          sloTpotSeconds,
          weightDtype,
        }),
      });
    if (typeof gpus === 'number') {
      pipeline = planFor(gpus);
      if (pipeline.ranges.length > 1) predicted = predictPipeline({ model, hardware, plan: pipeline, groups: groupsOf(pipeline) });
    } else {
      choice = chooseGpuCount({ visible: gpus.visible, model, hardware, planFor });
      pipeline = choice.plan;
      if (choice.gpus > 1) predicted = choice.prediction;
    }
  } catch (err) {
    if (err instanceof PlanError) throw new CliError(`plan: ${err.message}`);
    throw err;
  }
  const plan = pipeline.pod;
  const stages = pipeline.ranges;
  // `stages` and `pipeline` only for a pipeline, so that a one-GPU plan's JSON stays as it was.
  const shape = stages.length > 1 ? { pods, stagesPerPod: stages.length / pods, stages } : {};
  const pipe = predicted ? { pipeline: pipelineFigures(predicted) } : {};
  const chosen = choice ? { gpuChoice: choiceFigures(choice) } : {};
  console.log(o.json ? JSON.stringify({ ...plan, hardware, ...shape, ...pipe, ...chosen }) : formatPlan(plan, stages, predicted, choice));
  return 0;
}

/** --gpus N, or auto with the --visible-gpus to choose from. */
function parseGpus(text: string | undefined, visible: string | undefined): number | { visible: number } {
  if (text?.trim().toLowerCase() === 'auto') {
    if (visible === undefined) throw new CliError('plan: --gpus auto needs --visible-gpus N (the GPUs to choose from)');
    return { visible: parseIntOption(visible, '--visible-gpus', 1, 64, 1) };
  }
  if (visible !== undefined) throw new CliError('plan: --visible-gpus is for --gpus auto');
  return parseIntOption(text, '--gpus', 1, 64, 1);
}

/** One group in flight per stage, as the server's lanes; fewer when the batch is smaller. */
function groupsOf(p: PodStagesPlan): number {
  return Math.min(p.ranges.length, Math.max(1, Math.floor(p.stage.maxBatch)));
}

function pipelineFigures(p: PipelinePrediction) {
  return {
    groups: p.groups,
    roundSeconds: p.roundSeconds,
    tokensPerSecond: p.tokensPerSecond,
    decodeTokensPerSecond: p.decodeTokensPerSecond,
    prefillSeconds: p.prefillSeconds,
    bubble: p.bubble,
  };
}

function choiceFigures(c: GpuCountChoice) {
  return {
    gpus: c.gpus,
    reason: c.reason,
    candidates: c.candidates.map((x) =>
      x.prediction ? { gpus: x.gpus, tokensPerSecond: x.prediction.tokensPerSecond } : { gpus: x.gpus, error: x.error },
    ),
  };
}

const GiB = 2 ** 30;
const gib = (b: number) => `${(b / GiB).toFixed(1)} GiB`;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const secs = (s: number) => (s < 1 ? `${(s * 1e3).toFixed(1)} ms` : `${s.toFixed(2)} s`);

const stageRow = (r: StageRange) => `    stage ${r.stage}: layers ${r.firstLayer}..${r.firstLayer + r.layerCount - 1}`;

/** The human-readable plan (with the layer split of a pipeline's stages, when there are several). */
export function formatPlan(p: Plan, stages: readonly StageRange[] = [], pipeline?: PipelinePrediction, choice?: GpuCountChoice): string {
  const row = (k: string, v: string) => `  ${k.padEnd(20)}${v}`;
  const lines = [
    `plan for ${p.model} on ${p.gpuProduct}`,
    row('ACT fraction', p.actFraction.toFixed(2)),
    row('reason', p.reason),
    row(
      'host memory',
      `${gib(p.hostMemoryBytes)} = weights ${gib(p.weightBytes)} (${p.weightDtype ?? 'fp16'}) + cache ${gib(p.cacheBytes)} + runtime ${gib(p.runtimeBytes)}`,
    ),
    row('pod memory', `request ${p.memoryRequestBytes} B, limit ${p.memoryLimitBytes} B`),
    row('KV pool', `${p.kvBlocks} blocks × ${p.blockTokens} tokens (${mib(p.kvBlockBytes)} each)`),
    row('ACT pool', `${p.actBlocks} blocks × ${p.blockTokens} tokens (${mib(p.actBlockBytes)} each)`),
    row('max batch', `${p.maxBatch} sequences of ${p.promptTokens} + ${p.genTokens} tokens`),
    row(
      'GPU memory',
      `${gib(p.gpuMemoryBytes)}: ${p.residentLayers}/${p.numLayers} layers resident, mini-batches up to ${p.miniBatchTokens} staged tokens` +
        (p.gpuWorkspaceBytes !== undefined ? `, engine workspace ${gib(p.gpuWorkspaceBytes)}` : ''),
    ),
    row('GPU KV tier', `${p.gpuKvBlocks ?? 0} blocks × ${p.blockTokens} tokens (${mib(p.gpuKvBlockBytes ?? 0)} each), read in place`),
    row('placement', p.placementReason ?? ''),
    ...(p.sloTpotSeconds !== undefined ? [row('TPOT target', secs(p.sloTpotSeconds))] : []),
    row(
      'decode step',
      `${secs(p.predictedStepSeconds)} (transfer ${secs(p.predictedPhases.transferSeconds)}, compute ` +
        `${secs(p.predictedPhases.computeSeconds)}, recompute ${secs(p.predictedPhases.recomputeSeconds)}; ${p.bound}-bound)`,
    ),
    row('prefill', secs(p.predictedPrefillSeconds)),
    row(
      // A pipeline's plan figures are one stage's with one group of sequences in flight; the
      // 'pipeline' row is the whole pipeline's with its groups in flight (planning/pipeline-predict.ts).
      stages.length > 1 ? 'stage throughput' : 'throughput',
      `${p.predictedTokensPerSecond.toFixed(1)} generated tokens/s incl. prefill ` +
        `(${p.predictedDecodeTokensPerSecond.toFixed(1)} during decode)`,
    ),
    ...(pipeline
      ? [
          row(
            'pipeline',
            `${pipeline.tokensPerSecond.toFixed(1)} generated tokens/s incl. prefill (${pipeline.decodeTokensPerSecond.toFixed(1)} ` +
              `during decode): ${pipeline.groups} group(s) of ${pipeline.groupBatch.toFixed(1)} in flight, round ` +
              `${secs(pipeline.roundSeconds)}, prefill ${secs(pipeline.prefillSeconds)}` +
              (pipeline.bubble > 0 ? `, ${(pipeline.bubble * 100).toFixed(0)}% bubble` : ''),
          ),
        ]
      : []),
    ...(choice ? [row('GPUs', choice.reason)] : []),
    ...(stages.length > 1 ? [`  pipeline stages (each planned alone; pools per stage, memory per pod):`, ...stages.map(stageRow)] : []),
    '  sweep (fraction: batch, tokens/s):',
    ...p.sweep.map((s) => `    ${s.actFraction.toFixed(1)}: ${String(s.maxBatch).padStart(5)}  ${s.predictedTokensPerSecond.toFixed(1)}`),
  ];
  return lines.join('\n');
}
