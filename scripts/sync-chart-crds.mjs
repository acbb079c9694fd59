#!/usr/bin/env node
// Copies the CRDs from crds/ (the single source, generated from operator/api/schema.ts) into the
// Helm chart's crds/ folder, which Helm installs before the templates. The copies must be
// byte-identical; test/unit/chart-crds.test.ts fails when they drift.
// Usage: node scripts/sync-chart-crds.mjs [--check]   (--check: change nothing, exit 1 on drift)
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'crds');
const target = path.join(root, 'charts', 'hybridserve', 'crds');
const check = process.argv.includes('--check');

const yamlFiles = (dir) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort()
    : [];
const wanted = yamlFiles(source);
if (wanted.length === 0) {
  console.error(`sync-chart-crds: no CRD YAML in ${path.relative(root, source)}/ (run node scripts/gen-crd.mjs first)`);
  process.exit(1);
}

const stale = [];
for (const f of wanted) {
  const dst = path.join(target, f);
  if (!existsSync(dst) || !readFileSync(dst).equals(readFileSync(path.join(source, f)))) stale.push(f);
}
const extra = yamlFiles(target).filter((f) => !wanted.includes(f));

if (check) {
  if (stale.length + extra.length === 0) process.exit(0);
  for (const f of stale) console.error(`sync-chart-crds: charts/hybridserve/crds/${f} differs from crds/${f}`);
  for (const f of extra) console.error(`sync-chart-crds: charts/hybridserve/crds/${f} has no source in crds/`);
  console.error('sync-chart-crds: run node scripts/sync-chart-crds.mjs');
  process.exit(1);
}
mkdirSync(target, { recursive: true });
for (const f of stale) copyFileSync(path.join(source, f), path.join(target, f));
for (const f of extra) rmSync(path.join(target, f));
console.log(`sync-chart-crds: ${stale.length} copied, ${extra.length} removed, ${wanted.length - stale.length} already current`);
