// Records events.k8s.io/v1 Events about an HSD. Best effort: a failed Event never fails a reconcile.
import { randomBytes } from 'node:crypto';
import { API_VERSION, KIND, type HybridServeDeployment } from '../api/types.js';
import type { KubeClient } from '../k8s/client.js';
import { R } from '../k8s/resources.js';

export interface EventRecorder {
  record(hsd: HybridServeDeployment, type: 'Normal' | 'Warning', reason: string, action: string, note: string): Promise<void>;
}

export function eventRecorder(client: KubeClient, instance: string): EventRecorder {
  return {
    async record(hsd, type, reason, action, note) {
      const ns = hsd.metadata.namespace ?? 'default';
      const body = {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name: `${hsd.metadata.name}.${Date.now().toString(16)}${randomBytes(3).toString('hex')}`, namespace: ns },
        eventTime: new Date().toISOString().replace('Z', '000Z'),
        reportingController: 'hybridserve.io/operator',
        reportingInstance: instance,
        action,
        reason,
        type,
        note: note.slice(0, 1024),
        regarding: { apiVersion: API_VERSION, kind: KIND, name: hsd.metadata.name, namespace: ns, uid: hsd.metadata.uid },
      };
      try {
        await client.create({ type: R.event, namespace: ns }, body);
      } catch {
        /* events are best effort */
      }
    },
  };
}
