// The plan file the operator would write for one node group, so that a GPU host can start `serve
// --plan FILE` exactly as a pod would (the operator's ConfigMap content, generation 1). Usage (after
// `npm run build`):
//   node dist/bench/operator-plan.js --hsd FILE.yaml --gpu-product NVIDIA-H200 --node-memory 128GiB \
//     [--gpus-per-node 1] --out plan.json
// Prints the plan's summary on stderr. The HSD is the YAML a user applies (spec only is read).
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse } from 'yaml';
import { planGroup } from '../operator/desired/plan.js';
import type { HsdSpec } from '../operator/api/types.js';
import { parseSize } from '../cli/args.js';
import { serializePlan } from '../planning/plan-file.js';
import { runIfEntryPoint } from './run-main.js';

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: {
      hsd: { type: 'string' },
      'gpu-product': { type: 'string', default: 'NVIDIA-H200' },
      'node-memory': { type: 'string', default: '128GiB' },
      'gpus-per-node': { type: 'string', default: '1' },
      out: { type: 'string' },
    },
  });
  if (!v.hsd || !v.out) throw new Error('--hsd FILE and --out FILE are required');
  const doc = parse(readFileSync(v.hsd, 'utf8')) as { spec?: HsdSpec };
  if (!doc?.spec) throw new Error(`${v.hsd}: no spec`);
  const gpusPerNode = Number(v['gpus-per-node']);
  if (!Number.isInteger(gpusPerNode) || gpusPerNode < 1)
    throw new Error(`--gpus-per-node: a whole number ≥ 1, got '${v['gpus-per-node']}'`);
  const group = {
    id: 'bench',
    gpuProduct: v['gpu-product']!,
    allocatableMemoryBytes: parseSize(v['node-memory']!, '--node-memory'),
    gpusPerNode,
    nodeNames: ['bench-node'],
  };
  const planned = planGroup(doc.spec, group);
  if (!planned.ok) throw new Error(`${planned.reason}: ${planned.message}`);
  writeFileSync(v.out, serializePlan(planned.file));
  process.stderr.write(`${v.out}: ${serializePlan(planned.file)}\n`);
  return 0;
}

runIfEntryPoint(import.meta.url, 'operator-plan', main);
