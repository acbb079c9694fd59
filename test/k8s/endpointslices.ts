// TEST DOUBLE: a simulated EndpointSlice controller for the loopback API test double. For every
// Service with a selector it keeps one EndpointSlice per matching Pod (label
// kubernetes.io/service-name, owned by the Service so GC removes them): the pod's IP, its Ready
// condition as ready/serving, terminating while the pod is being deleted, and a port named "http".
// One slice per pod because every pod of the simulated kubelet listens on its own loopback port
// (annotation hybridserve.io/port), and a slice's ports apply to all its endpoints; a real
// controller groups pods with equal ports. Not emulated: maxEndpointsPerSlice, topology hints,
// EndpointSlice mirroring, Services without selectors.
import { createHash } from 'node:crypto';
import type { FakeApiServer, Obj, ResourceDef } from './apiserver.js';

const SERVICE_LABEL = 'kubernetes.io/service-name';
const MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** The EndpointSlice the controller keeps for one pod of one Service (pure). */
export function sliceFor(svc: Obj, pod: Obj): Obj {
  const ready = pod.status?.conditions?.some((c: Obj) => c.type === 'Ready' && c.status === 'True') === true;
  const terminating = Boolean(pod.metadata.deletionTimestamp);
  const port = Number(pod.metadata.annotations?.['hybridserve.io/port']) || svc.spec.ports?.[0]?.port || 80;
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${pod.metadata.name.slice(0, 56)}-${createHash('sha256').update(svc.metadata.name).digest('hex').slice(0, 6)}`,
      namespace: svc.metadata.namespace,
      labels: { [SERVICE_LABEL]: svc.metadata.name, [MANAGED_BY]: 'endpointslice-controller.k8s.io' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid, controller: true }],
    },
    addressType: 'IPv4',
    endpoints: [
      {
        addresses: [pod.status?.podIP ?? '127.0.0.1'],
        conditions: { ready: ready && !terminating, serving: ready, terminating },
        targetRef: { kind: 'Pod', name: pod.metadata.name, namespace: pod.metadata.namespace, uid: pod.metadata.uid },
      },
    ],
    ports: [{ name: 'http', port, protocol: 'TCP' }],
  };
}

export class SimulatedEndpointSliceController {
  private readonly services: ResourceDef;
  private readonly pods: ResourceDef;
  private readonly slices: ResourceDef;
  private unsubscribe?: () => void;
  private scheduled = false;

  constructor(private readonly api: FakeApiServer) {
    this.services = api.def('', 'v1', 'services');
    this.pods = api.def('', 'v1', 'pods');
    this.slices = api.def('discovery.k8s.io', 'v1', 'endpointslices');
  }

  start(): void {
    this.unsubscribe = this.api.subscribe((e) => {
      if (e.res === '/v1/pods' || e.res === '/v1/services') this.schedule();
    });
    this.schedule();
  }

  stop(): void {
    this.unsubscribe?.();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      try {
        this.sync();
      } catch {
        /* an object went away meanwhile; the next event syncs again */
      }
    });
  }

  private sync(): void {
    const want = new Map<string, Obj>();
    for (const svc of this.api.list(this.services)) {
      const sel = svc.spec?.selector as Record<string, string> | undefined;
      if (!sel || Object.keys(sel).length === 0) continue;
      for (const pod of this.api.list(this.pods, svc.metadata.namespace)) {
        if (!matches(sel, pod.metadata.labels)) continue;
        const s = sliceFor(svc, pod);
        want.set(`${s.metadata.namespace}/${s.metadata.name}`, s);
      }
    }
    const have = this.api.list(this.slices, undefined, `${MANAGED_BY}=endpointslice-controller.k8s.io`);
    for (const s of have) {
      const key = `${s.metadata.namespace}/${s.metadata.name}`;
      const w = want.get(key);
      if (!w) {
        this.api.remove(this.slices, s.metadata.namespace, s.metadata.name);
        continue;
      }
      want.delete(key);
      if (JSON.stringify([s.endpoints, s.ports]) !== JSON.stringify([w.endpoints, w.ports])) {
        this.api.update(this.slices, s.metadata.namespace, s.metadata.name, (o) => {
          o.endpoints = w.endpoints;
          o.ports = w.ports;
        });
      }
    }
    for (const w of want.values()) this.api.create(this.slices, w.metadata.namespace, w);
  }
}
