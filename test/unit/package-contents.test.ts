// What `npm pack` would publish: the built product (dist/ without the benches and the test doubles
// they import), the native sources to build the addon on install, the CRD and chart, the LICENSE;
// source maps that carry their sources (the .ts files are not shipped). Needs dist/ (`npm test`
// builds it in `pretest`).
import { describe, test, expect, beforeAll } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface PackEntry {
  path: string;
}
let files: string[] = [];

beforeAll(() => {
  if (!existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is not built: run npm run build');
  // --ignore-scripts: packing must not run `prepare` (a build) inside the test.
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`npm pack --dry-run failed: ${r.stderr.slice(-2000)}`);
  files = (JSON.parse(r.stdout) as { files: PackEntry[] }[])[0].files.map((f) => f.path).sort();
});

describe('npm pack', () => {
  test('ships the product, the native sources, the CRD, the chart and the license', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; license: string };
    for (const f of [
      'LICENSE',
      'README.md',
      'package.json',
      'native/CMakeLists.txt',
      'scripts/build-native.mjs',
      ...Object.values(pkg.bin),
    ]) {
      expect(files).toContain(f);
    }
    for (const dir of ['dist/server/', 'dist/operator/', 'dist/planning/', 'native/src/core/', 'crds/', 'charts/hybridserve/']) {
      expect(files.some((f) => f.startsWith(dir))).toBe(true);
    }
    expect(pkg.license).toBe('Apache-2.0');
    expect(readFileSync(path.join(ROOT, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
  });

  test('ships no tests, test doubles, benches, build info or TypeScript sources', () => {
    const unwanted = files.filter(
      (f) =>
        /^dist\/(test|bench)\//.test(f) ||
        /^(test|bench)\//.test(f) ||
        /\.tsbuildinfo$/.test(f) ||
        (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)),
    );
    expect(unwanted).toEqual([]);
  });

  test('every source map is shipped with its script and carries its sources', () => {
    const shipped = new Set(files);
    const problems: string[] = [];
    for (const js of files.filter((f) => f.endsWith('.js'))) {
      const ref = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(path.join(ROOT, js), 'utf8'))?.[1];
      if (ref && !shipped.has(path.posix.join(path.posix.dirname(js), ref))) problems.push(`${js}: map ${ref} not shipped`);
    }
    for (const map of files.filter((f) => f.endsWith('.map'))) {
      const m = JSON.parse(readFileSync(path.join(ROOT, map), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
      m.sources.forEach((src, i) => {
        const inPackage = shipped.has(path.posix.join(path.posix.dirname(map), src));
        if (!inPackage && typeof m.sourcesContent?.[i] !== 'string') problems.push(`${map}: source ${src} neither shipped nor inlined`);
      });
    }
    expect(problems).toEqual([]);
  });
});
