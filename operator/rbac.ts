// The exact RBAC the operator needs, as data: the Helm chart's ClusterRole must equal clusterRules
// and its Role (in the operator's namespace) leaseRules. No wildcards; each verb is used by code:
//   hybridservedeployments: get/list/watch (informer, reconcile), update/patch (finalizer)
//   hybridservedeployments/status: get/update/patch (status writes)
//   hybridservedeployments/finalizers: update (OwnerReferencesPermissionEnforcement: blockOwnerDeletion)
//   deployments, services, configmaps: server-side apply = patch (+ create for the first apply),
//     get/list/watch (informers, plan reads), delete (stale node groups)
//   pods: get/list/watch (feedback loop finds ready pods and their IPs)
//   nodes: get/list/watch (node groups; cluster-scoped)
//   events.k8s.io events: create/patch (Events on retunes, scaling, failures)
//   coordination.k8s.io leases: get/create/update (leader election; only in the operator's namespace)
export interface PolicyRule { apiGroups: string[]; resources: string[]; verbs: string[] }

export const clusterRules: readonly PolicyRule[] = [
  { apiGroups: ['hybridserve.io'], resources: ['hybridservedeployments'], verbs: ['get', 'list', 'watch', 'update', 'patch'] },
  { apiGroups: ['hybridserve.io'], resources: ['hybridservedeployments/status'], verbs: ['get', 'update', 'patch'] },
  { apiGroups: ['hybridserve.io'], resources: ['hybridservedeployments/finalizers'], verbs: ['update'] },
  { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: [''], resources: ['services', 'configmaps'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
];

/** Namespaced Role in the operator's own namespace (POD_NAMESPACE). */
export const leaseRules: readonly PolicyRule[] = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
];
