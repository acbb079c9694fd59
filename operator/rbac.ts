// The exact RBAC the operator needs, as data: the Helm chart's ClusterRole must equal clusterRules
// and its Role (in the operator's namespace) leaseRules. No wildcards; each verb is used by code:
//   hybridservedeployments: get/list/watch (informer, reconcile), update/patch (finalizer)
//   hybridservedeployments/status: get/update/patch (status writes)
//   hybridservedeployments/finalizers: update (OwnerReferencesPermissionEnforcement: blockOwnerDeletion)
//   deployments, services, configmaps: server-side apply = patch (+ create for the first apply),
//     get/list/watch (informers, plan reads), delete (stale node groups)
//   poddisruptionbudgets, networkpolicies: server-side apply (create/patch), delete when disabled
//   leaderworkersets (parallelism.nodes > 1): get (readiness), list/watch (stale groups; an optional informer
//     that wakes reconcile on group readiness), create/patch (server-side apply), delete (stale node groups)
//   pods: get/list/watch (feedback loop finds ready pods and their IPs)
//   nodes: get/list/watch (node groups; cluster-scoped)
//   events.k8s.io events: create/patch (Events on retunes, scaling, failures)
//   coordination.k8s.io leases: get/create/update (leader election; only in the operator's namespace)
export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/**
 * What the operator does inside a namespace it serves: everything but reading Nodes. With
 * watchNamespaces set, the chart grants these through a Role + RoleBinding in each listed namespace.
 */
export const namespacedRules: readonly PolicyRule[] = [
  { apiGroups: ['hybridserve.io'], resources: ['hybridservedeployments'], verbs: ['get', 'list', 'watch', 'update', 'patch'] },
  { apiGroups: ['hybridserve.io'], resources: ['hybridservedeployments/status'], verbs: ['get', 'update', 'patch'] },
  { apiGroups: ['hybridserve.io'], resources: ['hybridservedeployments/finalizers'], verbs: ['update'] },
  { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: [''], resources: ['services', 'configmaps'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: ['create', 'patch', 'delete'] },
  { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['create', 'patch', 'delete'] },
  {
    apiGroups: ['leaderworkerset.x-k8s.io'],
    resources: ['leaderworkersets'],
    verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'],
  },
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
];

/** Cluster-scoped reads the operator always needs: Nodes (node groups). The only ClusterRole with watchNamespaces. */
export const nodeRules: readonly PolicyRule[] = [{ apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] }];

/** All-namespaces mode (watchNamespaces unset): one ClusterRole with every rule. */
export const clusterRules: readonly PolicyRule[] = [...namespacedRules, ...nodeRules];

/** Namespaced Role in the operator's own namespace (POD_NAMESPACE). */
export const leaseRules: readonly PolicyRule[] = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
];
