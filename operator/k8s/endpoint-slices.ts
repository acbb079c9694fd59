// EndpointSlices of one Service (discovery.k8s.io/v1), for the gateway: a namespaced list+watch
// cache selected by the label kubernetes.io/service-name, through the same client-node informer
// machinery as the operator's caches (relist on 410 Gone; the caller restarts it on other errors).
import * as k8s from '@kubernetes/client-node';
import { listWatch, type Informer, type KubeClient, type KubeObject } from './client.js';
import { resourcePath } from './resources.js';
import { R } from './resources.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface EndpointSliceLike extends KubeObject {
  addressType?: string;
  endpoints?: {
    addresses: string[];
    conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
    targetRef?: { kind?: string; name?: string; namespace?: string };
  }[];
  ports?: { name?: string; port?: number; protocol?: string }[];
}

/** A watch of the EndpointSlices of Service `service` in `namespace`. */
export function endpointSliceInformer(client: KubeClient, namespace: string, service: string): Informer<EndpointSliceLike> {
  const ref = { type: R.endpointSlice, namespace };
  const selector = `${SERVICE_NAME_LABEL}=${service}`;
  const listFn = () =>
    client.list<EndpointSliceLike>(ref, selector) as unknown as Promise<k8s.KubernetesListObject<EndpointSliceLike & k8s.KubernetesObject>>;
  return listWatch<EndpointSliceLike>(client.kc, resourcePath(ref), listFn, selector);
}
