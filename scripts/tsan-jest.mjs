#!/usr/bin/env node
// Runs jest files with the addon built under ThreadSanitizer (build-tsan/hybridserve.node), to find
// data races between the JS thread (prepare/finish of a step) and the addon's worker and pipeline
// threads, which the native tests do not drive. Any ThreadSanitizer report fails the run.
// Usage: node scripts/tsan-jest.mjs JEST_FILE...
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node scripts/tsan-jest.mjs JEST_FILE...');
  process.exit(2);
}
const build = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-native.mjs'), '--tsan'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const libtsan = spawnSync('gcc', ['-print-file-name=libtsan.so'], { encoding: 'utf8' }).stdout.trim();
if (!path.isAbsolute(libtsan)) {
  console.error('[tsan-jest] libtsan.so not found (gcc -print-file-name=libtsan.so)');
  process.exit(1);
}
const env = {
  ...process.env,
  HYBRIDSERVE_ADDON: path.join(root, 'build-tsan', 'hybridserve.node'),
  LD_PRELOAD: libtsan,
  TSAN_OPTIONS: `suppressions=${path.join(root, 'native', 'tsan-node.supp')} halt_on_error=0 report_signal_unsafe=0`,
  NODE_OPTIONS: '--experimental-vm-modules',
};
// node itself, not npx: only this process tree gets the preloaded runtime.
const jest = path.join(root, 'node_modules', 'jest', 'bin', 'jest.js');
const run = spawnSync(process.execPath, [jest, '--runInBand', ...files], { cwd: root, env, encoding: 'utf8', maxBuffer: 1 << 28 });
process.stdout.write(run.stdout ?? '');
process.stderr.write(run.stderr ?? '');
const races = ((run.stdout ?? '') + (run.stderr ?? '')).split('WARNING: ThreadSanitizer').length - 1;
if (races > 0) console.error(`[tsan-jest] ${races} ThreadSanitizer report(s)`);
process.exit(run.status === 0 && races === 0 ? 0 : run.status || 1);
