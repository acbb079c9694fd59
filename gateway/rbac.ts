// The Kubernetes permissions the gateway needs, in the release namespace (least privilege, exact
// verbs). The chart's gateway Role must equal these rules (test/unit/chart-gateway.test.ts).
import type { PolicyRule } from '../operator/rbac.js';

export const gatewayRules: PolicyRule[] = [
  // The pods behind the HSD's Service (label kubernetes.io/service-name).
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
  // Scale from zero: read spec.replicas and raise it to 1.
  { apiGroups: ['hybridserve.io'], resources: ['hybridservedeployments/scale'], verbs: ['get', 'patch'] },
  // The last-request-time annotation the operator reads to judge idleness.
  { apiGroups: ['hybridserve.io'], resources: ['hybridservedeployments'], verbs: ['get', 'patch'] },
];
