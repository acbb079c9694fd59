#!/usr/bin/env node
// `hybridserve` command line: dispatches to one module per subcommand. Each module exports
// `run(argv: string[]): Promise<number>` (the exit code) and never calls process.exit itself.
import { CliError } from './errors.js';

const COMMANDS: Record<string, () => Promise<{ run(argv: string[]): Promise<number> }>> = {
  serve: () => import('./serve.js'),
  generate: () => import('./generate.js'),
  plan: () => import('./plan.js'),
  operator: () => import('./operator.js'),
  gateway: () => import('./gateway.js'),
};

const USAGE = `usage: hybridserve <command> [options]

commands:
  serve      run the OpenAI-compatible server (default model: synthetic:opt-tiny on CPU)
  generate   generate text for one prompt and print it (--json for machines)
  plan       print the KV:ACT cache plan for a model on a GPU
  operator   run the Kubernetes operator
  gateway    run the prefix- and load-aware routing proxy for one HybridServeDeployment

Run 'hybridserve <command> --help' for the options of a command.`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  const load = COMMANDS[cmd];
  if (!load) {
    console.error(`hybridserve: unknown command '${cmd}'\n\n${USAGE}`);
    return 2;
  }
  const mod = await load();
  return mod.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof CliError) {
      console.error(`hybridserve: ${err.message}`);
      process.exitCode = err.exitCode;
    } else {
      console.error(`hybridserve: internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      process.exitCode = 1;
    }
  },
);
