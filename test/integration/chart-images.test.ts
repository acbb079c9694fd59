// Runs the image build steps for real (scripts/docker-build-steps.sh, exactly what the Dockerfiles
// RUN) on a copy of the repository filtered like the Docker build context, then smoke-tests the staged
// app: `hybridserve --help`, and for the CPU server a generation through the staged native addon.
// `npm ci` from the registry takes minutes, so this runs only when HYBRIDSERVE_IMAGE_STEPS=1:
//   HYBRIDSERVE_IMAGE_STEPS=1 NODE_OPTIONS=--experimental-vm-modules npx jest test/integration/chart-images
// The CUDA variant needs the CUDA toolkit and is exercised by the image build itself.
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = path.join(ROOT, 'scripts', 'docker-build-steps.sh');
const enabled = process.env.HYBRIDSERVE_IMAGE_STEPS === '1';

/** The files `docker build` would send: tracked and untracked-but-not-ignored files, minus the .dockerignore. */
function buildContext(dockerfile: string, dest: string): void {
  const ignore = readFileSync(path.join(ROOT, 'docker', `${dockerfile}.dockerignore`), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/|$)`));
  const files = spawnSync('git', ['ls-files', '-co', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' })
    .stdout.split('\0')
    .filter(Boolean);
  for (const f of files) {
    if (ignore.some((re) => re.test(f))) continue; // .dockerignore patterns are anchored at the context root
    if (!existsSync(path.join(ROOT, f))) continue; // deleted in the working tree
    mkdirSync(path.dirname(path.join(dest, f)), { recursive: true });
    cpSync(path.join(ROOT, f), path.join(dest, f));
  }
}

function steps(args: string[]) {
  // prefer-offline: reuse the local npm cache (inside docker build the cache is empty anyway).
  const env = { ...process.env, npm_config_prefer_offline: 'true' };
  const r = spawnSync('bash', [SCRIPT, ...args], { encoding: 'utf8', maxBuffer: 64 << 20, env });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

(enabled ? describe : describe.skip)('image build steps (HYBRIDSERVE_IMAGE_STEPS=1)', () => {
  test.each([
    ['Dockerfile.server-cpu', 'server-cpu'],
    ['Dockerfile.operator', 'operator'],
  ])(
    '%s: build and smoke',
    (dockerfile, variant) => {
      const dir = mkdtempSync(path.join(tmpdir(), `hybridserve-image-${variant}-`));
      try {
        const src = path.join(dir, 'src');
        const stage = path.join(dir, 'stage');
        buildContext(dockerfile, src);
        expect(existsSync(path.join(src, 'node_modules'))).toBe(false);
        const built = steps(['build', variant, src, stage]);
        expect(built.out).toContain(`staged ${variant}`);
        expect(built.status).toBe(0);
        const smoke = steps(['smoke', variant, stage]);
        expect(smoke.out).toContain(`smoke test of ${variant} passed`);
        expect(smoke.status).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    900_000,
  );
});

describe('image build steps: argument checks (always run)', () => {
  test('an unknown variant and a missing source fail with a clear message', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hybridserve-image-args-'));
    try {
      const bad = steps(['build', 'server-gpu', ROOT, path.join(dir, 'stage')]);
      expect(bad.status).not.toBe(0);
      expect(bad.out).toContain("unknown variant 'server-gpu'");
      const nosrc = steps(['build', 'operator', path.join(dir, 'nothing'), path.join(dir, 'stage')]);
      expect(nosrc.status).not.toBe(0);
      expect(nosrc.out).toMatch(/has no package.json and package-lock.json/);
      expect(steps(['smoke', 'operator', path.join(dir, 'nothing')]).out).toMatch(/dist\/cli\/main.js is missing/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
