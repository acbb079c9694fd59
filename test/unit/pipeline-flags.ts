// Shared by the operator pod tests: the server flags of issue 15's pipeline.
import { parseServeArgs } from '../../cli/serve.js';

/**
 * The pipeline flags (--gpus, --leader-address; issue 15) come with the engine's pipeline, built
 * beside the operator: until cli/serve.ts knows them, the args are parsed without them, and the
 * flags themselves are checked as values. Once the server knows them, they are parsed like the rest.
 */
export function withoutPendingPipelineFlags(args: string[]): string[] {
  let known = true;
  try {
    parseServeArgs(['--model', 'synthetic:opt-125m', '--device', 'cuda', '--gpus', '2'], {});
  } catch {
    known = false;
  }
  if (known) return args;
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--gpus' || args[i] === '--leader-address') i++;
    else out.push(args[i]);
  }
  return out;
}
