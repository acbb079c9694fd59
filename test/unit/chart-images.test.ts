// The Dockerfiles cannot be built here (no Docker engine), so check what can be checked statically:
// multi-stage, the build runs scripts/docker-build-steps.sh with the right variant and smoke-tests it,
// the runtime stage is non-root by numeric UID and runs the hybridserve CLI, COPY --from names real
// stages, and the build context leaves local builds out. The steps themselves run for real in
// test/integration/chart-images.test.ts.
import { describe, expect, test } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './chart-helm.js';

interface Stage {
  from: string;
  name?: string;
  lines: { op: string; args: string }[];
}

/** Splits a Dockerfile into stages of (instruction, arguments), joining continuation lines. */
function parseDockerfile(text: string): Stage[] {
  const logical = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of logical) {
    const [op, ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!m) throw new Error(`bad FROM: ${line}`);
      stages.push({ from: m[1], name: m[2], lines: [] });
    } else if (stages.length) stages[stages.length - 1].lines.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

const images: [string, string][] = [
  ['Dockerfile.server', 'server-cuda'],
  ['Dockerfile.server-cpu', 'server-cpu'],
  ['Dockerfile.operator', 'operator'],
];

describe.each(images)('docker/%s', (file, variant) => {
  const stages = parseDockerfile(readFileSync(path.join(ROOT, 'docker', file), 'utf8'));
  const final = stages[stages.length - 1];
  const runs = stages.flatMap((s) => s.lines.filter((l) => l.op === 'RUN').map((l) => l.args));

  test('is multi-stage and builds with the tested build-steps script, then smoke-tests the result', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(runs.some((r) => r.includes(`scripts/docker-build-steps.sh build ${variant} /src /stage`))).toBe(true);
    expect(runs.some((r) => r.includes(`scripts/docker-build-steps.sh smoke ${variant} /stage`))).toBe(true);
    // No build step in the runtime stage: it only copies the staged app.
    expect(final.lines.filter((l) => l.op === 'RUN')).toEqual([]);
    expect(final.lines.some((l) => l.op === 'COPY' && /--from=build\s+\/stage\/\s+\/app\//.test(l.args))).toBe(true);
  });

  test('every COPY --from names an earlier stage', () => {
    stages.forEach((s, i) => {
      for (const l of s.lines.filter((x) => x.op === 'COPY' && x.args.includes('--from='))) {
        const ref = /--from=(\S+)/.exec(l.args)?.[1];
        expect(stages.slice(0, i).map((x) => x.name)).toContain(ref);
      }
    });
  });

  test('runs as a numeric non-root user and starts the hybridserve CLI', () => {
    const users = final.lines.filter((l) => l.op === 'USER');
    expect(users.length).toBeGreaterThan(0);
    const [uid, gid] = users[users.length - 1].args.split(':').map(Number);
    expect(uid).toBeGreaterThan(0);
    expect(gid).toBeGreaterThan(0);
    const entry = final.lines.find((l) => l.op === 'ENTRYPOINT');
    expect(JSON.parse(entry?.args ?? 'null')).toEqual([expect.stringMatching(/node$/), '/app/dist/cli/main.js']);
    const cmd = JSON.parse(final.lines.find((l) => l.op === 'CMD')?.args ?? 'null') as string[];
    expect(cmd[0]).toBe(variant === 'operator' ? 'operator' : 'serve');
  });

  test('the CUDA image builds on a CUDA devel base and runs on the CUDA runtime base', () => {
    if (variant !== 'server-cuda') {
      expect(stages.some((s) => s.from.startsWith('nvidia/cuda'))).toBe(false);
      return;
    }
    expect(stages.find((s) => s.name === 'build')?.from).toMatch(/^nvidia\/cuda:\$\{CUDA_VERSION\}-devel-/);
    expect(final.from).toMatch(/^nvidia\/cuda:\$\{CUDA_VERSION\}-runtime-/);
  });

  test('its build context leaves out local builds, dependencies and tools', () => {
    const ignore = path.join(ROOT, 'docker', `${file}.dockerignore`);
    expect(existsSync(ignore)).toBe(true);
    const patterns = readFileSync(ignore, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(patterns).toEqual(expect.arrayContaining(['node_modules', 'dist', 'build', '.tools', '.git']));
  });
});
