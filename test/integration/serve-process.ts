// Runs the real `hybridserve serve` (dist/cli/main.js, `npm run build` first) on loopback for the
// hardening tests: start, wait for the listening line, collect its output, stop it. Not a test file.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli/main.js');

export interface ServeProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  /** Everything written so far (stdout and stderr). */
  output(): string;
  /** The JSON lines of the request log so far. */
  logLines(): Array<Record<string, unknown>>;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  alive(): boolean;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Spawns the CLI; with `waitListening` (default) resolves once it listens, else right away. */
export async function runServe(
  args: string[],
  env: Record<string, string> = {},
  opts: { waitListening?: boolean; port?: number } = {},
): Promise<ServeProcess> {
  const port = opts.port ?? (await freePort());
  const proc = spawn(process.execPath, [CLI, 'serve', '--host', '127.0.0.1', '--port', String(port), '--threads', '1', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  let running = true;
  const exited = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => {
      running = false;
      resolve(code);
    }),
  );
  const sp: ServeProcess = {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    exited,
    output: () => out,
    alive: () => running,
    logLines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return {};
          }
        }),
  };
  if (opts.waitListening === false) return sp;
  const deadline = Date.now() + 30_000;
  while (!/HybridServe listening on/.test(out)) {
    if (!running) throw new Error(`serve exited before listening:\n${out}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`serve did not listen in 30 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return sp;
}

/** SIGTERM and the exit code (SIGKILL after `ms`, then the code is null). */
export async function stop(sp: ServeProcess, ms = 15_000): Promise<number | null> {
  if (!sp.alive()) return sp.exited;
  sp.proc.kill('SIGTERM');
  const t = setTimeout(() => sp.proc.kill('SIGKILL'), ms);
  const code = await sp.exited;
  clearTimeout(t);
  return code;
}
