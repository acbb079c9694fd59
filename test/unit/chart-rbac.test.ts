// The chart grants exactly the RBAC that operator/rbac.ts says the operator needs (issue 6,
// acceptance 6): the ClusterRole equals clusterRules, the Role in the release namespace equals
// leaseRules, both bound to the operator's ServiceAccount, and nothing uses a wildcard.
import { describe, expect, test } from '@jest/globals';
import { clusterRules, leaseRules, namespacedRules, nodeRules } from '../../operator/rbac.js';
import type { PolicyRule } from '../../operator/rbac.js';
import { findOne, renderChart } from './chart-helm.js';
import { DEFAULT_ALLOWED_IMAGES } from '../../operator/desired/policy.js';
import type { Manifest } from './chart-helm.js';

/** Order-insensitive form: one "group|resource|verb" triple per permission. */
function grants(rules: readonly PolicyRule[]): string[] {
  return rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}|${res}|${v}`)))).sort();
}
const rulesOf = (d: Manifest) => (d as unknown as { rules: PolicyRule[] }).rules;

describe('chart RBAC', () => {
  const docs = renderChart({ namespace: 'ops' });
  const sa = findOne(docs, 'ServiceAccount');

  test('the ClusterRole grants exactly operator/rbac.ts clusterRules', () => {
    const role = findOne(docs, 'ClusterRole');
    expect(grants(rulesOf(role))).toEqual(grants(clusterRules));
    // Same rules rule-by-rule too, so docs/rbac.md and the chart read alike.
    expect(rulesOf(role)).toEqual(clusterRules);
  });

  test('the Lease Role in the release namespace grants exactly leaseRules', () => {
    const role = findOne(docs, 'Role');
    expect(role.metadata.namespace).toBe('ops');
    expect(rulesOf(role)).toEqual(leaseRules);
  });

  test('both are bound to the operator ServiceAccount, which the Deployment uses', () => {
    for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
      const b = findOne(docs, kind) as unknown as {
        roleRef: { kind: string; name: string };
        subjects: { kind: string; name: string; namespace: string }[];
      };
      expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'ops' }]);
      expect(b.roleRef.kind).toBe(kind.replace('Binding', ''));
      expect(findOne(docs, b.roleRef.kind, b.roleRef.name)).toBeDefined();
    }
    const pod = (findOne(docs, 'Deployment').spec as { template: { spec: { serviceAccountName: string } } }).template.spec;
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
  });

  test('no rule uses a wildcard, and secrets are never readable', () => {
    const all = [...rulesOf(findOne(docs, 'ClusterRole')), ...rulesOf(findOne(docs, 'Role'))];
    expect(grants(all).filter((g) => g.includes('*'))).toEqual([]);
    expect(grants(all).filter((g) => g.startsWith('|secrets|'))).toEqual([]);
  });
});

describe('chart RBAC with watchNamespaces (issue 12 acceptance 4)', () => {
  const docs = renderChart({ namespace: 'ops', set: ['watchNamespaces[0]=team-a', 'watchNamespaces[1]=team-b'] });
  const WRITE = ['create', 'update', 'patch', 'delete', 'deletecollection', 'bind', 'escalate', 'impersonate'];

  test('the ClusterRole has no write verb: it only reads Nodes', () => {
    const roles = docs.filter((d) => d.kind === 'ClusterRole');
    expect(roles).toHaveLength(1);
    expect(rulesOf(roles[0])).toEqual(nodeRules);
    expect(grants(rulesOf(roles[0])).filter((g) => WRITE.includes(g.split('|')[2]))).toEqual([]);
  });

  test('each watched namespace gets a Role with namespacedRules, bound to the operator ServiceAccount', () => {
    const sa = findOne(docs, 'ServiceAccount');
    for (const ns of ['team-a', 'team-b']) {
      const role = docs.find((d) => d.kind === 'Role' && d.metadata.namespace === ns)!;
      expect(rulesOf(role)).toEqual(namespacedRules);
      const b = docs.find((d) => d.kind === 'RoleBinding' && d.metadata.namespace === ns) as unknown as {
        roleRef: { name: string };
        subjects: unknown[];
      };
      expect(b.roleRef.name).toBe(role.metadata.name);
      expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'ops' }]);
    }
    // The operator is told which namespaces to watch.
    const env = (findOne(docs, 'Deployment').spec as { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } })
      .template.spec.containers[0].env;
    expect(env.find((e) => e.name === 'WATCH_NAMESPACES')?.value).toBe('team-a,team-b');
  });
});

describe('chart hardening values (issue 12 item 9)', () => {
  type Env = { name: string; value?: string }[];
  const envOf = (docs: Manifest[]) =>
    (findOne(docs, 'Deployment').spec as { template: { spec: { containers: { env: Env }[] } } }).template.spec.containers[0].env;

  test("the HSD policy reaches the operator; by default only the project's server images", () => {
    const env = envOf(renderChart({ namespace: 'ops' }));
    expect(env.find((e) => e.name === 'HYBRIDSERVE_POLICY_ALLOWED_IMAGES')?.value).toBe(DEFAULT_ALLOWED_IMAGES.join(','));
    expect(env.find((e) => e.name === 'WATCH_NAMESPACES')).toBeUndefined();
    const strict = envOf(renderChart({ namespace: 'ops', set: ['policy.allowPvc=false', 'policy.allowSecrets=false'] }));
    expect(strict.filter((e) => e.name.startsWith('HYBRIDSERVE_POLICY_ALLOW_')).map((e) => e.value)).toEqual(['false', 'false']);
  });

  test('the operator NetworkPolicy admits only the metrics port and selects the operator pods', () => {
    expect(renderChart({ namespace: 'ops' }).filter((d) => d.kind === 'NetworkPolicy')).toEqual([]);
    const docs = renderChart({ namespace: 'ops', set: ['networkPolicy.enabled=true'] });
    const np = findOne(docs, 'NetworkPolicy').spec as {
      podSelector: { matchLabels: Record<string, string> };
      policyTypes: string[];
      ingress: { ports: { port: number }[] }[];
      egress: { ports: { port: number }[] }[];
    };
    const dep = findOne(docs, 'Deployment').spec as { selector: { matchLabels: Record<string, string> } };
    expect(np.podSelector.matchLabels).toEqual(dep.selector.matchLabels);
    expect(np.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np.ingress).toHaveLength(1);
    expect(np.ingress[0].ports.map((p) => p.port)).toEqual([8080]);
    expect(np.egress.flatMap((e) => e.ports.map((p) => p.port)).sort((a, b) => a - b)).toEqual([53, 53, 443, 6443, 8000]);
  });
});
