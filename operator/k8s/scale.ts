// The scale subresource (autoscaling/v1 Scale) of a HybridServeDeployment, and the gateway's
// activity annotation on it: how the gateway asks an HSD at zero for a replica and tells the
// operator when it last saw a request.
import type { KubeClient } from './client.js';
import { R } from './resources.js';

export interface Scale {
  spec: { replicas?: number };
  status: { replicas?: number; selector?: string };
}

/** Annotation with the time (RFC 3339) of the last request the gateway received for the HSD. */
export const LAST_REQUEST_ANNOTATION = 'hybridserve.io/last-request-time';

export function getHsdScale(client: KubeClient, namespace: string, name: string): Promise<Scale> {
  return client.get<Scale>({ type: R.hsd, namespace, name, subresource: 'scale' });
}

/** Raises spec.replicas to at least `min` through /scale; returns the replicas asked for (unchanged when already enough). */
export async function requestHsdReplicas(client: KubeClient, namespace: string, name: string, min: number): Promise<number> {
  const s = await getHsdScale(client, namespace, name);
  const now = s.spec.replicas ?? 0;
  if (now >= min) return now;
  await client.mergePatch({ type: R.hsd, namespace, name, subresource: 'scale' }, { spec: { replicas: min } });
  return min;
}

/** Records the time of the last request on the HSD (a metadata-only merge patch: no generation bump). */
export async function stampLastRequest(client: KubeClient, namespace: string, name: string, at: Date): Promise<void> {
  await client.mergePatch({ type: R.hsd, namespace, name }, { metadata: { annotations: { [LAST_REQUEST_ANNOTATION]: at.toISOString() } } });
}

/** Annotation with the URL clients should use for the HSD when a gateway fronts it (status.url prefers it). */
export const GATEWAY_URL_ANNOTATION = 'hybridserve.io/gateway-url';

/** Records on the HSD the URL of the gateway in front of it. */
export async function advertiseGateway(client: KubeClient, namespace: string, name: string, url: string): Promise<void> {
  await client.mergePatch({ type: R.hsd, namespace, name }, { metadata: { annotations: { [GATEWAY_URL_ANNOTATION]: url } } });
}
