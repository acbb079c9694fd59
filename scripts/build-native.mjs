#!/usr/bin/env node
// Builds the native engine (native/) with CMake. Runs on `npm ci` (install script) and by hand.
// The CPU backend is always built; the CUDA backend only when HYBRIDSERVE_CUDA=on, or when
// HYBRIDSERVE_CUDA=auto (the default) and CMake finds a CUDA toolkit with cuBLAS.
// Usage: node scripts/build-native.mjs [--force] [--sanitize | --tsan] [--build-dir DIR] [--tests]
//   --sanitize: ASan + UBSan (build-sanitize/); --tsan: ThreadSanitizer (build-tsan/). Both imply --tests.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const sanitize = args.includes('--sanitize');
const tsan = args.includes('--tsan');
if (sanitize && tsan) throw new Error('--sanitize and --tsan cannot be combined');
const tests = args.includes('--tests') || sanitize || tsan;
const dirFlag = args.indexOf('--build-dir');
const buildDir = path.resolve(root, dirFlag >= 0 ? args[dirFlag + 1] : sanitize ? 'build-sanitize' : tsan ? 'build-tsan' : 'build');
const require = createRequire(import.meta.url);

function nodeApiInclude() {
  try {
    return require('node-api-headers').include_dir;
  } catch {
    const guess = path.resolve(path.dirname(process.execPath), '..', 'include', 'node');
    if (existsSync(path.join(guess, 'node_api.h'))) return guess;
    throw new Error('node-api headers not found: run npm ci, or install Node.js headers');
  }
}

function run(cmd, argv) {
  console.log(`[build-native] ${cmd} ${argv.join(' ')}`);
  const r = spawnSync(cmd, argv, { stdio: 'inherit', cwd: root });
  if (r.error) throw r.error;
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const haveNinja = spawnSync('ninja', ['--version'], { stdio: 'ignore' }).status === 0;
mkdirSync(buildDir, { recursive: true });
const cmakeArgs = [
  '-S',
  path.join(root, 'native'),
  '-B',
  buildDir,
  ...(haveNinja ? ['-G', 'Ninja'] : []),
  `-DCMAKE_BUILD_TYPE=${sanitize ? 'Debug' : tsan ? 'RelWithDebInfo' : 'Release'}`,
  `-DNODE_API_INCLUDE_DIR=${nodeApiInclude()}`,
  `-DNODE_ADDON_API_DIR=${path.dirname(require.resolve('node-addon-api/package.json'))}`,
  `-DHYBRIDSERVE_CUDA=${process.env.HYBRIDSERVE_CUDA ?? (sanitize || tsan ? 'off' : 'auto')}`,
  `-DHYBRIDSERVE_TSAN=${tsan ? 'ON' : 'OFF'}`,
  `-DHYBRIDSERVE_SANITIZE=${sanitize ? 'ON' : 'OFF'}`,
  `-DHYBRIDSERVE_TESTS=${tests ? 'ON' : 'OFF'}`,
  `-DHYBRIDSERVE_WERROR=${process.env.HYBRIDSERVE_WERROR === '1' ? 'ON' : 'OFF'}`,
];
if (process.env.CUDAARCHS) cmakeArgs.push(`-DCMAKE_CUDA_ARCHITECTURES=${process.env.CUDAARCHS}`);
run('cmake', cmakeArgs);
run('cmake', ['--build', buildDir, '--parallel', String(process.env.HYBRIDSERVE_JOBS ?? 2)]);
