// The chart's optional gateway: off by default; when enabled a Deployment running
// `hybridserve gateway --deployment <target>`, its Service, a ServiceAccount with a Role that
// grants exactly gateway/rbac.ts's rules (no wildcard), and an optional ServiceMonitor.
import { describe, expect, test } from '@jest/globals';
import { gatewayRules } from '../../gateway/rbac.js';
import { helm, CHART, renderChart, validateManifest, type Manifest } from './chart-helm.js';

const named = (docs: Manifest[], kind: string, suffix: string) => docs.find((d) => d.kind === kind && d.metadata.name.endsWith(suffix));

describe('chart gateway', () => {
  test('off by default', () => {
    expect(renderChart().filter((d) => d.metadata.name.endsWith('-gateway'))).toEqual([]);
  });

  test('enabled: Deployment, Service, ServiceAccount and a Role with exactly the gateway rules', () => {
    const docs = renderChart({
      namespace: 'serve',
      set: ['gateway.enabled=true', 'gateway.target=chat', 'gateway.serviceMonitor.enabled=true'],
    });
    const dep = named(docs, 'Deployment', '-gateway') as Manifest & {
      spec: { template: { spec: { serviceAccountName: string; containers: { args: string[]; ports: { containerPort: number }[] }[] } } };
    };
    expect(dep).toBeDefined();
    const c = dep.spec.template.spec.containers[0];
    expect(c.args.slice(0, 3)).toEqual(['gateway', '--deployment', 'chat']);
    expect(c.args).toEqual(expect.arrayContaining(['--routing', 'prefix']));
    expect(c.args[c.args.indexOf('--advertise-url') + 1]).toBe(`http://${dep.metadata.name}.serve.svc:80`); // status.url names the gateway Service
    const svc = named(docs, 'Service', '-gateway') as Manifest & { spec: { selector: Record<string, string>; ports: { port: number }[] } };
    expect(svc.spec.selector['app.kubernetes.io/component']).toBe('gateway');
    expect(svc.spec.selector['app.kubernetes.io/instance']).not.toBe('chat'); // never mixed up with the HSD's own Service selector
    const role = named(docs, 'Role', '-gateway') as Manifest & { rules: unknown };
    expect(role.metadata.namespace).toBe('serve');
    expect(role.rules).toEqual(gatewayRules);
    const binding = named(docs, 'RoleBinding', '-gateway') as Manifest & { subjects: { name: string }[]; roleRef: { name: string } };
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects[0].name).toBe(dep.spec.template.spec.serviceAccountName);
    expect(named(docs, 'ServiceAccount', '-gateway')!.metadata.name).toBe(dep.spec.template.spec.serviceAccountName);
    expect(named(docs, 'ServiceMonitor', '-gateway')).toBeDefined();
  });

  test('every gateway manifest validates against the Kubernetes schemas', async () => {
    const docs = renderChart({ set: ['gateway.enabled=true', 'gateway.target=chat'] }).filter((d) => d.metadata.name.endsWith('-gateway'));
    expect(docs.map((d) => d.kind).sort()).toEqual(['Deployment', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']);
    for (const d of docs) expect(await validateManifest(d)).toEqual([]);
  });

  test('enabled without a target is refused by the values schema', () => {
    const r = helm(['template', 'x', CHART, '--set', 'gateway.enabled=true']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/target/);
  });
});
