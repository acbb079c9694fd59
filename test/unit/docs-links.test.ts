// Every file or folder that README.md and docs/*.md point at must exist in the repository: Markdown
// links with a relative target, and repository paths quoted in backticks (`scripts/gen-crd.mjs`,
// `test/k8s/`) or file names they mention (DESIGN.md). Paths that only exist after a build or an install (dist/, build/, node_modules/,
// .tools/) are not repository files and are skipped, as are globs and placeholders.
import { describe, test, expect } from '@jest/globals';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const GENERATED = /^(dist|build|build-[\w-]+|node_modules|coverage|\.tools|\.gpu|gpu-out|\.hybridserve-cache)(\/|$)/;

function docs(): string[] {
  return [
    'README.md',
    'native/README.md',
    ...readdirSync(path.join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
}

/** Relative targets of Markdown links, without their #fragment. */
export function linkTargets(markdown: string): string[] {
  const out: string[] = [];
  for (const m of markdown.matchAll(/\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = m[1].split('#')[0];
    if (!target || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // a fragment only, or a URL
    if (!/^[\w./-]+$/.test(target)) continue; // a regular expression in prose, not a path
    out.push(decodeURIComponent(target));
  }
  return out;
}

const FILE_EXT = /\.(md|ts|js|mjs|cjs|json|ya?ml|sh|py|cc|h|cu|cuh|txt|toml)$/;

/**
 * Paths a document cites outside links: tokens in backticks that start with a top-level entry of the
 * repository (`test/k8s/`) or name a file (`src/core/weights.cc`, relative to the document), and bare
 * Markdown file names in the prose (DESIGN.md).
 */
export function citedPaths(markdown: string, topLevel: Set<string>): string[] {
  const out: string[] = [];
  for (const m of markdown.matchAll(/`([^`\s]+)`/g)) {
    const p = m[1].replace(/[:,;]+$/, '').replace(/\.$/, '');
    if (/[*<>{}$[\]"~@=]|\.\.\./.test(p)) continue; // a glob, placeholder, package or value
    if (p.startsWith('/') || /^[a-z][a-z0-9+.-]*:/i.test(p)) continue; // absolute, or a URL or SPEC
    if (p.includes('/') ? topLevel.has(p.split('/')[0]) || FILE_EXT.test(p) : FILE_EXT.test(p) && /^[A-Z]/.test(p)) out.push(p);
  }
  const prose = markdown.replace(/`[^`]*`/g, ' ').replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, ' ');
  for (const m of prose.matchAll(/(?<![\w./-])([\w-]+(?:\/[\w.-]+)*\.md)\b/g)) out.push(m[1]);
  return out;
}

describe('documentation cites only files that exist', () => {
  const topLevel = new Set(readdirSync(ROOT).filter((e) => !GENERATED.test(e)));

  test.each(docs())('%s', (doc) => {
    const text = readFileSync(path.join(ROOT, doc), 'utf8');
    const dir = path.dirname(path.join(ROOT, doc));
    const missing = [
      ...linkTargets(text)
        .filter((t) => !existsSync(path.resolve(dir, t)))
        .map((t) => `link ${t}`),
      ...citedPaths(text, topLevel)
        .filter((p) => !GENERATED.test(p) && !existsSync(path.join(ROOT, p)) && !existsSync(path.resolve(dir, p)))
        .map((p) => `path ${p}`),
    ];
    expect(missing).toEqual([]);
  });

  test('README and docs agree on the default URL (the one `hybridserve serve` prints)', () => {
    const origins = new Set<string>();
    for (const doc of docs()) {
      const text = readFileSync(path.join(ROOT, doc), 'utf8');
      for (const m of text.matchAll(/https?:\/\/(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1?\])(?::\d+)?/g)) origins.add(m[0]);
    }
    expect([...origins]).toEqual(['http://localhost:8000']);
  });

  test('the checks see links and quoted paths (a broken one is reported)', () => {
    const text =
      'See [ops](operating.md#x), [web](https://example.com/a.md), `scripts/gen-crd.mjs`, `docs/nope.md`, `dist/cli/main.js`, ' +
      '`synthetic:opt-13b`, `nvidia.com/gpu.count`, `other/tool.py`, `/etc/x.json` and DESIGN.md §4.';
    expect(linkTargets(text)).toEqual(['operating.md']);
    expect(citedPaths(text, new Set(['scripts', 'docs', 'dist']))).toEqual([
      'scripts/gen-crd.mjs',
      'docs/nope.md',
      'dist/cli/main.js',
      'other/tool.py',
      'operating.md',
      'DESIGN.md',
    ]);
  });
});
