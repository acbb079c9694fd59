// Test fixture: the API test double with the HybridServeDeployment CRD registered, GPU nodes, an
// optional simulated kubelet, and helpers to wait for conditions. Used by the operator tests and
// bench/operator.ts.
import { crdManifest } from '../../operator/api/schema.js';
import { FakeApiServer, type Obj } from './apiserver.js';
import { SimulatedKubelet, type KubeletOptions } from './kubelet.js';
import { SimulatedEndpointSliceController } from './endpointslices.js';
import { SimulatedLwsController } from './lws-controller.js';

export interface NodeSpec {
  name: string;
  product?: string;
  memory?: string;
  gpus?: number;
  labels?: Record<string, string>;
}

export function nodeObject(n: NodeSpec): Obj {
  const labels: Record<string, string> = { 'kubernetes.io/hostname': n.name, ...(n.labels ?? {}) };
  if (n.product) {
    labels['nvidia.com/gpu.product'] = n.product;
    labels['nvidia.com/gpu.count'] = String(n.gpus ?? 1);
  }
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: n.name, labels },
    status: {
      allocatable: { memory: n.memory ?? '256Gi', cpu: '32', ...(n.product ? { 'nvidia.com/gpu': String(n.gpus ?? 1) } : {}) },
      conditions: [{ type: 'Ready', status: 'True' }],
    },
  };
}

export class TestCluster {
  readonly api = new FakeApiServer();
  kubelet?: SimulatedKubelet;
  endpoints?: SimulatedEndpointSliceController;
  lws?: SimulatedLwsController;
  url = '';

  /** `leaderWorkerSet`: serve the LWS API and, with a 'process' kubelet, run its groups as real processes (./lws-controller.ts). */
  async start(nodes: NodeSpec[], kubelet?: KubeletOptions, extras: { leaderWorkerSet?: boolean } = {}): Promise<this> {
    this.api.registerCrd(crdManifest());
    if (extras.leaderWorkerSet) this.api.installLeaderWorkerSet();
    this.api.bookmarkIntervalMs = 200;
    this.url = await this.api.start();
    for (const n of nodes) this.api.create(this.api.def('', 'v1', 'nodes'), undefined, nodeObject(n));
    if (kubelet) {
      this.kubelet = new SimulatedKubelet(this.api, kubelet);
      this.kubelet.start();
    }
    // EndpointSlices for real server processes (the gateway tests); the fake-pod benches do not need them.
    if (kubelet?.mode === 'process') {
      this.endpoints = new SimulatedEndpointSliceController(this.api);
      this.endpoints.start();
      if (extras.leaderWorkerSet) {
        this.lws = new SimulatedLwsController(this.api, kubelet);
        this.lws.start();
      }
    }
    return this;
  }

  async stop(): Promise<void> {
    await this.lws?.stop();
    this.endpoints?.stop();
    await this.kubelet?.stop();
    await this.api.stop();
  }

  get hsdDef() {
    return this.api.def('hybridserve.io', 'v1alpha1', 'hybridservedeployments');
  }
  hsd(name: string, ns = 'default'): Obj | undefined {
    return this.api.get(this.hsdDef, ns, name);
  }
  list(group: string, version: string, plural: string, ns?: string, selector?: string): Obj[] {
    return this.api.list(this.api.def(group, version, plural), ns, selector);
  }
  createHsd(body: Obj, ns = 'default'): Obj {
    return this.api.create(this.hsdDef, ns, { apiVersion: 'hybridserve.io/v1alpha1', kind: 'HybridServeDeployment', ...body });
  }
}

export function cond(o: Obj | undefined, type: string): Obj | undefined {
  return o?.status?.conditions?.find((c: Obj) => c.type === type);
}

export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
