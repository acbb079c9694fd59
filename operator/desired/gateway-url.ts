// The URL clients should use for an HSD (pure): the gateway's, when one advertises itself on the
// HSD (annotation hybridserve.io/gateway-url, written by `hybridserve gateway --advertise-url`),
// else undefined and status.url stays the Service's. Anything but a plain http(s) URL is ignored.
import type { HybridServeDeployment } from '../api/types.js';
import { GATEWAY_URL_ANNOTATION } from '../k8s/scale.js';

export function advertisedGatewayUrl(hsd: HybridServeDeployment): string | undefined {
  const v = hsd.metadata.annotations?.[GATEWAY_URL_ANNOTATION];
  if (!v || v.length > 512) return undefined;
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && !u.username && !u.password ? v : undefined;
  } catch {
    return undefined;
  }
}
