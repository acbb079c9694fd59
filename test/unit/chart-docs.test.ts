// docs/configuration.md is generated from the CRD schema and values.schema.json and must be current;
// the hand-written docs must only point at files and example names that exist.
import { describe, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { SPEC_FIELD_PATHS } from '../../operator/api/types.js';
import { ROOT } from './chart-helm.js';

const doc = (name: string) => readFileSync(path.join(ROOT, 'docs', name), 'utf8');
const handWritten = ['install.md', 'quickstart.md', 'operating.md', 'architecture.md'];

describe('docs', () => {
  test('docs/configuration.md is current (node scripts/gen-config-docs.mjs --check)', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'gen-config-docs.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('the configuration reference lists every spec field of the CR types and every chart value', () => {
    const text = doc('configuration.md');
    for (const p of SPEC_FIELD_PATHS) expect(text).toContain(`| \`spec.${p}\` |`);
    for (const key of ['operator.image.repository', 'metrics.podMonitor.enabled', 'autoscaling.metric.name', 'dashboards.labels'])
      expect(text).toContain(`| \`${key}\` |`);
  });

  test.each(handWritten)('%s links only to files that exist', (name) => {
    const text = doc(name);
    const missing: string[] = [];
    // Markdown links to repository files, and inline `path` mentions of the project's folders.
    for (const m of text.matchAll(/\]\((?!https?:|#)([^)#\s]+)/g)) if (!existsSync(path.resolve(ROOT, 'docs', m[1]))) missing.push(m[1]);
    for (const m of text.matchAll(/`((?:examples|charts|docker|scripts|crds|docs)\/[A-Za-z0-9._/-]+)`/g))
      if (!existsSync(path.join(ROOT, m[1]))) missing.push(m[1]);
    expect(missing).toEqual([]);
  });
});
