// The package version (package.json), read once: /version, hybridserve_build_info.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native/ts/engine.js';

let cached: string | undefined;

export function packageVersion(): string {
  cached ??= (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  return cached;
}
