#!/usr/bin/env node
// Builds and runs the native tests (native/test/*.cc).
// Usage: node scripts/native-tests.mjs [--sanitize | --tsan] [FILTER]
//   --sanitize: build-sanitize/ with AddressSanitizer + UndefinedBehaviorSanitizer (Debug); any
//   sanitizer report fails the run (halt_on_error, and a report in stderr is also caught).
//   --tsan: build-tsan/ with ThreadSanitizer; any data race report fails the run. It catches races
//   that rarely crash (a pipeline thread reading a vector its constructor was still growing did,
//   once, in CI), so CI runs it too.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const sanitize = args.includes('--sanitize');
const tsan = args.includes('--tsan');
const filter = args.find((a) => !a.startsWith('--'));

const build = spawnSync(
  process.execPath,
  [path.join(root, 'scripts', 'build-native.mjs'), '--tests', ...(sanitize ? ['--sanitize'] : []), ...(tsan ? ['--tsan'] : [])],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
if (build.status !== 0) process.exit(build.status ?? 1);

const exe = path.join(root, sanitize ? 'build-sanitize' : tsan ? 'build-tsan' : 'build', 'hs_native_tests');
const env = {
  ...process.env,
  ASAN_OPTIONS: 'halt_on_error=1:detect_leaks=1:abort_on_error=0',
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
  TSAN_OPTIONS: 'halt_on_error=1:second_deadlock_stack=1',
};
const run = spawnSync(exe, filter ? [filter] : [], { cwd: root, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
// Per-test lines (stderr) first, so the summary line (stdout) stays the last line.
process.stderr.write(run.stderr ?? '');
process.stdout.write(run.stdout ?? '');
const report = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer/.test(run.stderr ?? '');
if (report) console.error('[native-tests] sanitizer report found');
process.exit(run.status === 0 && !report ? 0 : run.status || 1);
