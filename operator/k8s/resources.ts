// REST paths of the resources the operator touches: a fixed table, so no discovery round trip.
import { GROUP, PLURAL, VERSION } from '../api/types.js';

export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
}
export interface ResourceRef {
  type: ResourceType;
  namespace?: string;
  name?: string;
  subresource?: 'status' | 'scale';
}

const t = (group: string, version: string, plural: string, namespaced = true): ResourceType => ({ group, version, plural, namespaced });
export const R = {
  hsd: t(GROUP, VERSION, PLURAL),
  deployment: t('apps', 'v1', 'deployments'),
  service: t('', 'v1', 'services'),
  configMap: t('', 'v1', 'configmaps'),
  pod: t('', 'v1', 'pods'),
  node: t('', 'v1', 'nodes', false),
  podDisruptionBudget: t('policy', 'v1', 'poddisruptionbudgets'),
  networkPolicy: t('networking.k8s.io', 'v1', 'networkpolicies'),
  event: t('events.k8s.io', 'v1', 'events'),
  lease: t('coordination.k8s.io', 'v1', 'leases'),
  endpointSlice: t('discovery.k8s.io', 'v1', 'endpointslices'),
  /** An add-on API (sigs.k8s.io/lws): a 404 on it means the LeaderWorkerSet CRD is not installed. */
  leaderWorkerSet: t('leaderworkerset.x-k8s.io', 'v1', 'leaderworkersets'),
} as const;

export function resourcePath(ref: ResourceRef): string {
  const { type } = ref;
  let p = type.group ? `/apis/${type.group}/${type.version}` : `/api/${type.version}`;
  if (type.namespaced && ref.namespace) p += `/namespaces/${encodeURIComponent(ref.namespace)}`;
  p += `/${type.plural}`;
  if (ref.name) p += `/${encodeURIComponent(ref.name)}`;
  if (ref.name && ref.subresource) p += `/${ref.subresource}`;
  return p;
}
