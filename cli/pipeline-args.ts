// The pipeline flags of `serve` and `generate` (issue 15), one parser for both. Pure.
//   --gpus N|auto            cuda: pipeline stages, one per GPU of this process (default 1); auto:
//                            the planner's count of the visible GPUs (planning/gpu-count.ts)
//   --stages N               cpu: pipeline stages in this process (default 1; tests, NUMA hosts)
//   --rank R --world-size W --leader-address HOST:PORT
//                            stages in several processes, one each (env HYBRIDSERVE_RANK,
//                            HYBRIDSERVE_WORLD_SIZE, HYBRIDSERVE_LEADER_ADDRESS); rank 0 leads: it owns
//                            the engine core. cuda: NCCL between the GPUs; cpu: TCP between the processes
import { parseIntOption } from './args.js';
import { CliError } from './errors.js';

export const PIPELINE_OPTIONS = {
  gpus: { type: 'string' },
  stages: { type: 'string' },
  rank: { type: 'string' },
  'world-size': { type: 'string' },
  'leader-address': { type: 'string' },
} as const;

export const PIPELINE_USAGE = `  --gpus N|auto            cuda: pipeline stages, one per GPU (default 1). auto: as many of the
                           visible GPUs as the planner predicts best (a prediction not yet
                           checked against a 2-GPU measurement, so opt-in)
  --stages N               cpu: pipeline stages in this process (default 1)
  --rank R                 this process's stage when stages span processes (default $HYBRIDSERVE_RANK or 0)
  --world-size W           processes in the pipeline (default $HYBRIDSERVE_WORLD_SIZE or 1)
  --leader-address H:P     rank 0's rendezvous address (default $HYBRIDSERVE_LEADER_ADDRESS)`;

export interface PipelineConfig {
  /** 'auto': chosen at start from the visible GPUs (planning/server-start.ts chooseGpus). */
  gpus: number | 'auto';
  stages: number;
  rank: number;
  worldSize: number;
  leaderAddress?: string;
  /** HYBRIDSERVE_PIPELINE_TOKEN (env only: never in a process's argv): the group's shared secret. */
  token?: string;
}

type PipelineValues = { [K in keyof typeof PIPELINE_OPTIONS]?: string };

/** Flags win over the environment; `command` prefixes the messages. Throws CliError. */
export function parsePipelineArgs(v: PipelineValues, env: NodeJS.ProcessEnv, device: string, command: string): PipelineConfig {
  const gpus = parseGpus(v.gpus, device, command);
  const stages = parseIntOption(v.stages, `${command}: --stages`, 1, 1024, 1);
  if (stages > 1 && device !== 'cpu') throw new CliError(`${command}: --stages is for --device cpu (use --gpus on cuda)`);
  const worldSize = parseIntOption(v['world-size'] ?? (env.HYBRIDSERVE_WORLD_SIZE || undefined), `${command}: --world-size`, 1, 1024, 1);
  const rank = parseIntOption(v.rank ?? (env.HYBRIDSERVE_RANK || undefined), `${command}: --rank`, 0, 1023, 0);
  if (rank >= worldSize) throw new CliError(`${command}: --rank ${rank} must be below --world-size ${worldSize}`);
  const leaderAddress = v['leader-address'] ?? (env.HYBRIDSERVE_LEADER_ADDRESS || undefined);
  if (leaderAddress !== undefined) checkHostPort(leaderAddress, command);
  if (worldSize > 1 && leaderAddress === undefined)
    throw new CliError(`${command}: --world-size ${worldSize} needs --leader-address HOST:PORT (or HYBRIDSERVE_LEADER_ADDRESS)`);
  if (worldSize > 1 && gpus !== 1) throw new CliError(`${command}: --world-size ${worldSize} runs one GPU per process: drop --gpus`);
  if (worldSize > 1 && stages !== 1) throw new CliError(`${command}: --world-size ${worldSize} runs one stage per process: drop --stages`);
  const token = worldSize > 1 ? pipelineToken(env, command) : undefined;
  return { gpus, stages, rank, worldSize, ...(leaderAddress !== undefined ? { leaderAddress } : {}), ...(token ? { token } : {}) };
}

/** The group's shared secret from HYBRIDSERVE_PIPELINE_TOKEN; its value never appears in a message. */
function pipelineToken(env: NodeJS.ProcessEnv, command: string): string | undefined {
  const token = env.HYBRIDSERVE_PIPELINE_TOKEN;
  if (token === undefined || token === '') return undefined;
  if (Buffer.byteLength(token) > 256) throw new CliError(`${command}: HYBRIDSERVE_PIPELINE_TOKEN is longer than 256 bytes`);
  return token;
}

function parseGpus(text: string | undefined, device: string, command: string): number | 'auto' {
  if (text?.trim().toLowerCase() === 'auto') {
    if (device !== 'cuda') throw new CliError(`${command}: --gpus auto counts the visible GPUs: it is for --device cuda`);
    return 'auto';
  }
  const gpus = parseIntOption(text, `${command}: --gpus`, 1, 64, 1);
  if (gpus > 1 && device !== 'cuda') throw new CliError(`${command}: --gpus is for --device cuda (use --stages on cpu)`);
  return gpus;
}

function checkHostPort(text: string, command: string): void {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) throw new CliError(`${command}: --leader-address must be HOST:PORT, got '${text}'`);
}
