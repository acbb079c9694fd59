// Groups the cluster's GPU nodes into "node groups": same nvidia.com/gpu.product and the same
// allocatable memory (rounded down to GiB, so kubelet reservations that differ by a few MiB do not
// split a group). Each group gets its own plan, Deployment and ConfigMap. With gpusPerPod 0 every
// pod runs the CPU engine: all groups are CPU groups (`cpu: true`, planned without a GPU profile),
// and nodes WITHOUT a GPU product label take part too, grouped as gpuProduct CPU_PRODUCT, so a CPU
// trial on kind/minikube needs no node labels. Pure.
import { createHash } from 'node:crypto';
import type { HsdSpec } from '../api/types.js';
import { resolveSpec } from '../api/defaults.js';
import { parseQuantity } from '../../planning/quantity.js';

export const GPU_PRODUCT_LABEL = 'nvidia.com/gpu.product';
export const GPU_COUNT_LABEL = 'nvidia.com/gpu.count';
/** gpuProduct of a group of nodes without a GPU label (only formed when gpusPerPod is 0). */
export const CPU_PRODUCT = 'cpu';
const GIB = 2 ** 30;

export interface NodeLike {
  metadata: { name: string; labels?: Record<string, string> };
  spec?: { unschedulable?: boolean; taints?: { key: string; effect: string; value?: string }[] };
  status?: { allocatable?: Record<string, string>; conditions?: { type: string; status: string }[] };
}

export interface NodeGroup {
  /** Stable DNS-label-safe id, e.g. "h100-80gb-hbm3-1967gi-3f2a1c". */
  id: string;
  gpuProduct: string;
  allocatableMemoryBytes: number;
  gpusPerNode: number;
  nodeNames: string[];
  /** Its pods run the CPU engine (gpusPerPod 0). Unlabelled nodes have gpuProduct CPU_PRODUCT. */
  cpu?: boolean;
}

export function isCpuGroup(g: Pick<NodeGroup, 'cpu'>): boolean {
  return g.cpu === true;
}

function nodeGpus(n: NodeLike): number {
  const alloc = parseQuantity(n.status?.allocatable?.['nvidia.com/gpu']);
  if (alloc !== undefined) return Math.floor(alloc);
  const label = Number(n.metadata.labels?.[GPU_COUNT_LABEL]);
  return Number.isFinite(label) ? label : 0;
}

function isReady(n: NodeLike): boolean {
  const c = n.status?.conditions?.find((x) => x.type === 'Ready');
  return !c || c.status === 'True';
}

/** Nodes that match the spec's nodeSelector and carry enough GPUs, grouped; sorted by id. */
export function groupNodes(nodes: readonly NodeLike[], spec: Pick<HsdSpec, 'nodeSelector' | 'gpusPerPod'>): NodeGroup[] {
  const { gpusPerPod } = resolveSpec(spec);
  const groups = new Map<string, NodeGroup>();
  for (const n of nodes) {
    const labels = n.metadata.labels ?? {};
    const labelled = labels[GPU_PRODUCT_LABEL];
    // A node without a GPU label serves only CPU pods (gpusPerPod 0); for GPU pods it is skipped.
    if (!labelled && gpusPerPod > 0) continue;
    const product = labelled || CPU_PRODUCT;
    if (n.spec?.unschedulable || !isReady(n)) continue;
    if (Object.entries(spec.nodeSelector ?? {}).some(([k, v]) => labels[k] !== v)) continue;
    const gpus = nodeGpus(n);
    if (gpusPerPod > 0 && gpus < gpusPerPod) continue;
    const mem = parseQuantity(n.status?.allocatable?.memory);
    if (!mem || mem <= 0) continue;
    const memGiB = Math.floor(mem / GIB);
    // The cpu key cannot collide with a product label value: labels never contain '|'.
    const key = labelled ? `${product}|${memGiB}` : `|cpu|${memGiB}`;
    let g = groups.get(key);
    if (!g) {
      g = {
        id: groupId(product, memGiB, !labelled),
        gpuProduct: product,
        allocatableMemoryBytes: memGiB * GIB,
        gpusPerNode: gpus,
        nodeNames: [],
        ...(gpusPerPod > 0 ? {} : { cpu: true }),
      };
      groups.set(key, g);
    }
    g.gpusPerNode = Math.min(g.gpusPerNode, gpus);
    g.nodeNames.push(n.metadata.name);
  }
  for (const g of groups.values()) g.nodeNames.sort();
  return [...groups.values()].sort((a, b) => a.id.localeCompare(b.id));
}

/** `cpu` marks a group of unlabelled nodes; it hashes apart from a node labelled with product "cpu". */
export function groupId(product: string, memGiB: number, cpu = false): string {
  const slug = product
    .toLowerCase()
    .replace(/^nvidia-/, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 24)
    .replace(/-$/, '');
  const hash = createHash('sha256')
    .update(cpu ? `|cpu|${memGiB}` : `${product}|${memGiB}`)
    .digest('hex')
    .slice(0, 6);
  return `${slug || 'gpu'}-${memGiB}gi-${hash}`;
}

/** Pods a group can hold at once (one pod per gpusPerPod GPUs; CPU-only pods: one per node). */
export function groupCapacity(g: NodeGroup, gpusPerPod: number): number {
  if (gpusPerPod <= 0) return g.nodeNames.length;
  return g.nodeNames.length * Math.floor(g.gpusPerNode / gpusPerPod);
}

/**
 * Splits `total` replicas across groups in proportion to their capacity (largest remainder, ties to
 * the earlier group), so that the sum is exactly `total` and the result is stable across reconciles.
 */
export function splitReplicas(total: number, capacities: readonly number[]): number[] {
  if (capacities.length === 0) return [];
  const sum = capacities.reduce((a, b) => a + b, 0);
  const weights = sum > 0 ? capacities : capacities.map(() => 1);
  const wsum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (total * w) / wsum);
  const out = exact.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    out[i]++;
    left--;
  }
  return out;
}
