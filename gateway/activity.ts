// The gateway's side of scale to zero: it stamps the HSD with the time of the last request
// (throttled), which the operator reads to judge idleness, and when no pod is ready it asks for a
// replica through the scale subresource (single flight, repeated while requests stay held).
import type { KubeClient } from '../operator/k8s/client.js';
import { requestHsdReplicas, stampLastRequest } from '../operator/k8s/scale.js';

export interface ActivityOptions {
  namespace: string;
  name: string;
  stampIntervalMs: number;
  log: (line: string) => void;
}

export class HsdActivity {
  private lastStamp = 0;
  private stamping?: Promise<void>;
  private waking?: Promise<void>;

  constructor(
    private readonly client: KubeClient,
    private readonly o: ActivityOptions,
  ) {}

  /** A request arrived: stamp the annotation unless one was written within stampIntervalMs. */
  touch(now: number): void {
    if (now - this.lastStamp < this.o.stampIntervalMs || this.stamping) return;
    this.lastStamp = now;
    this.stamping = stampLastRequest(this.client, this.o.namespace, this.o.name, new Date(now))
      .catch((e: Error) => {
        this.lastStamp = 0;
        this.o.log(`cannot stamp the last request time: ${e.message}`);
      })
      .finally(() => {
        this.stamping = undefined;
      });
  }

  /** No pod is ready: stamp now (the operator wakes an idle HSD) and raise spec.replicas to ≥ 1. */
  wake(): Promise<void> {
    if (this.waking) return this.waking;
    this.waking = (async () => {
      this.lastStamp = Date.now();
      await stampLastRequest(this.client, this.o.namespace, this.o.name, new Date(this.lastStamp));
      const asked = await requestHsdReplicas(this.client, this.o.namespace, this.o.name, 1);
      this.o.log(`no ready pod: asked ${this.o.namespace}/${this.o.name} for replicas (spec.replicas ${asked})`);
    })()
      .catch((e: Error) => {
        this.o.log(`cannot ask for a replica: ${e.message}`);
      })
      .finally(() => {
        this.waking = undefined;
      });
    return this.waking;
  }
}
