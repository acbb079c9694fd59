#!/usr/bin/env node
// `hybridserve` command line: dispatches to one module per subcommand. Each module exports
// `run(argv: string[]): Promise<number>` (the exit code) and never calls process.exit itself.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CliError } from './errors.js';
import { packageRoot } from '../native/ts/engine.js';

/** The version in the package's package.json (the one this file was installed with). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

const COMMANDS: Record<string, () => Promise<{ run(argv: string[]): Promise<number> }>> = {
  serve: () => import('./serve.js'),
  generate: () => import('./generate.js'),
  plan: () => import('./plan.js'),
  operator: () => import('./operator.js'),
  gateway: () => import('./gateway.js'),
};

const USAGE = `usage: hybridserve <command> [options]

commands:
  --version  print the version

  serve      run the OpenAI-compatible server (default model: synthetic:opt-tiny on CPU)
  generate   generate text for one prompt and print it (--json for machines)
  plan       print the KV:ACT cache plan for a model on a GPU
  operator   run the Kubernetes operator
  gateway    run the prefix- and load-aware routing proxy for one HybridServeDeployment

Run 'hybridserve <command> --help' for the options of a command.`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
    console.log(packageVersion());
    return 0;
  }
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

/** A failed command exits even if something it opened (a watcher, an engine thread) would hold the process. */
function exitSoon(code: number): void {
  process.exitCode = code;
  if (code !== 0) setTimeout(() => process.exit(code), 200).unref();
}

main(process.argv.slice(2)).then(
  (code) => {
    exitSoon(code);
  },
  (err: unknown) => {
    if (err instanceof CliError) {
      console.error(`hybridserve: ${err.message}`);
      exitSoon(err.exitCode);
    } else {
      console.error(`hybridserve: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      exitSoon(1);
    }
  },
);
