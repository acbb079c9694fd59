// Acceptance 3: values.schema.json (and the template guards) reject bad values with a message that
// names the offending key, and accept the edges of the valid range.
import { describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CHART, helm } from './chart-helm.js';

const template = (flags: string[]) => helm(['template', 'hs', CHART, ...flags]);

// [what, helm flags, text the error must contain]
const bad: [string, string[], RegExp][] = [
  ['zero operator replicas', ['--set', 'operator.replicas=0'], /operator\.replicas: Must be greater than or equal to 1/],
  ['an unknown pull policy', ['--set', 'operator.image.pullPolicy=Sometimes'], /operator\.image\.pullPolicy must be one of/],
  ['a port above 65535', ['--set', 'operator.metricsPort=70000'], /operator\.metricsPort: Must be less than or equal to 65535/],
  ['a misspelt operator key', ['--set', 'operator.replica=2'], /operator: Additional property replica is not allowed/],
  ['a misspelt top-level key', ['--set', 'operater.replicas=2'], /Additional property operater is not allowed/],
  [
    'a boolean given as a string',
    ['--set-string', 'serviceAccount.create=yes'],
    /serviceAccount\.create: Invalid type\. Expected: boolean/,
  ],
  [
    'a non-string label value',
    ['--set', 'dashboards.labels.grafana_dashboard=1'],
    /dashboards\.labels\.grafana_dashboard: Invalid type\. Expected: string/,
  ],
  ['a bad scrape interval', ['--set', 'metrics.podMonitor.interval=often'], /metrics\.podMonitor\.interval: Does not match pattern/],
  ['a bad memory quantity', ['--set', 'operator.resources.limits.memory=lots'], /operator\.resources\.limits\.memory/],
  ['a malformed digest', ['--set', 'operator.image.digest=latest'], /operator\.image\.digest: Does not match pattern/],
  ['autoscaling without a target', ['--set', 'autoscaling.enabled=true'], /autoscaling\.target/],
  [
    'an invalid HSD name as target',
    ['--set', 'autoscaling.enabled=true', '--set', 'autoscaling.target=Bad_Name'],
    /autoscaling\.target: Does not match pattern/,
  ],
  ['minReplicas 0', ['--set', 'autoscaling.minReplicas=0'], /autoscaling\.minReplicas: Must be greater than or equal to 1/],
  [
    'minReplicas above maxReplicas',
    [
      '--set',
      'autoscaling.enabled=true',
      '--set',
      'autoscaling.target=a',
      '--set',
      'autoscaling.minReplicas=5',
      '--set',
      'autoscaling.maxReplicas=2',
    ],
    /autoscaling\.minReplicas \(5\) must be <= autoscaling\.maxReplicas \(2\)/,
  ],
  ['a negative alert threshold', ['--set', 'metrics.prometheusRule.queueDepthThreshold=-1'], /queueDepthThreshold/],
  [
    'no SA name with create=false',
    ['--set', 'serviceAccount.create=false'],
    /serviceAccount\.name is required when serviceAccount\.create is false/,
  ],
];

describe('values.schema.json', () => {
  test.each(bad)('rejects %s', (_what, flags, message) => {
    const r = template(flags);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });

  test('rejects a bad values file, naming every offending key at once', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hybridserve-values-'));
    try {
      const file = path.join(dir, 'bad.yaml');
      writeFileSync(file, 'operator:\n  replicas: "two"\n  image: { repository: "" }\nrbac: { create: maybe }\n');
      const r = template(['--values', file]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/operator\.replicas: Invalid type/);
      expect(r.stderr).toMatch(/operator\.image\.repository: String length must be greater than or equal to 1/);
      expect(r.stderr).toMatch(/rbac\.create: Invalid type/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('accepts the edges of the valid ranges', () => {
    const r = template([
      '--set',
      'operator.metricsPort=65535',
      '--set',
      'operator.replicas=5',
      '--set',
      `operator.image.digest=sha256:${'0'.repeat(64)}`,
      '--set',
      'autoscaling.enabled=true',
      '--set',
      'autoscaling.target=a',
      '--set',
      'autoscaling.minReplicas=3',
      '--set',
      'autoscaling.maxReplicas=3',
      '--set',
      'operator.resources.limits.cpu=1.5',
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
