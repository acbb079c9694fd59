// GPU hardware profiles, keyed by the `nvidia.com/gpu.product` label that NVIDIA GPU feature
// discovery (GFD) puts on nodes: the CUDA device name with spaces replaced by '-', e.g.
// "NVIDIA-H100-80GB-HBM3", "Tesla-T4"; with MIG it appends "-MIG-<profile>", with time-slicing
// and renaming "-SHARED".
//
// What each number means (all are *practical* rates, what the cost model should divide by):
// - h2dBytesPerSecond / d2hBytesPerSecond: pinned-memory cudaMemcpyAsync bandwidth of one direction
//   over the host link. Measured where we have a measurement; otherwise ~78% of the link's
//   theoretical per-direction rate (the A100/Gen4 measurement below: 24.8 of 32 GB/s).
// - gemmFlops: sustained fp16 tensor-core GEMM rate (fp32 accumulate) on shapes like the K/V
//   recompute GEMM [T×h]·[h×2h]. Measured where we have it; otherwise 75% of the dense datasheet
//   peak (the H100 measurement: 630–756 of 989 TFLOP/s for T ≥ 2048, i.e. 64–76%).
// - hbmBytes: device memory as nvidia-smi / GFD `nvidia.com/gpu.memory` report it (MiB × 2^20).
// - hbmBytesPerSecond: datasheet device-memory bandwidth (decode GEMMs at small batch and attention
//   are bound by it; we use the datasheet value, optimistic by ~10–20%).
//
// Sources: [M] measurement on an H100 SXM host, PCIe Gen5 x16, PyTorch 2.11 (notes/hybridserve-paper.md
// §6): pinned 55.2 GB/s H2D and 55.2 GB/s D2H, K/V recompute GEMM 630–756 TFLOP/s (T ≥ 2048).
// [M2] planning/calibration/overlap_probe.py on an H200 (see the H200 entry and docs/planning.md §10). [GEN4] NVIDIA developer forum
// thread 352186: ~24.8 GB/s pinned H2D on an A100 (Gen4 x16). [FG] FlexGen experimental/cost_model.py
// fitted T4 constants: 12.89 GB/s CPU→GPU, 21.24 TFLOP/s GEMM. Datasheet peaks: NVIDIA product
// briefs/datasheets for each product (H100: 989.4 SXM / 756 PCIe / 835 NVL dense fp16; H200 989;
// A100 312; L40S 362; L4 121; A10 125 (A10G is AWS's lower-clocked A10, ~70 reported); RTX 4090
// 165.2 with fp32 accumulate; T4 65).
import { PlanError } from './errors.js';

export interface HardwareProfile {
  /** The canonical `nvidia.com/gpu.product` value (for MIG/SHARED variants: the full label). */
  product: string;
  h2dBytesPerSecond: number;
  d2hBytesPerSecond: number;
  gemmFlops: number;
  hbmBytes: number;
  hbmBytesPerSecond: number;
  /** Host link, for display ("PCIe Gen5 x16"). */
  link?: string;
  /**
   * How sharply a layer's time goes from overlapped copies and GPU work to the larger of the two
   * (cost-model.ts overlapped; default OVERLAP_SHARPNESS, fitted on an H200). Infinity: perfect
   * overlap, the notes' idealised max().
   */
  overlapSharpness?: number;
  /** Which of the numbers came from a measurement (probe) rather than the table. */
  measured?: Array<keyof MeasuredValues>;
}

export type MeasuredValues = Partial<
  Pick<HardwareProfile, 'h2dBytesPerSecond' | 'd2hBytesPerSecond' | 'gemmFlops' | 'hbmBytes' | 'hbmBytesPerSecond'>
>;

const GB = 1e9;
const TFLOPS = 1e12;
const MiB = 2 ** 20;

// Practical per-direction pinned bandwidth by link generation (see header).
const GEN5 = 55.2 * GB; // [M]
const GEN4 = 24.8 * GB; // [GEN4]
const GEN3 = 12.89 * GB; // [FG] T4 fitted
const EFF = 0.75; // practical/peak GEMM when not measured (see header)

interface Entry extends HardwareProfile {
  aliases: string[];
}

function entry(product: string, p: Omit<HardwareProfile, 'product'>, aliases: string[] = []): Entry {
  return { product, ...p, aliases };
}

const TABLE: Entry[] = [
  entry(
    'NVIDIA-H100-80GB-HBM3',
    {
      // SXM5. gemm: [M] 630–756 TFLOP/s for the recompute GEMM; 700 is the value the notes model with.
      h2dBytesPerSecond: GEN5,
      d2hBytesPerSecond: GEN5,
      gemmFlops: 700 * TFLOPS,
      hbmBytes: 81559 * MiB,
      hbmBytesPerSecond: 3.35e12,
      link: 'PCIe Gen5 x16',
    },
    ['H100-SXM5-80GB', 'H100-SXM', 'H100-80GB-HBM3', 'H100-SXM5'],
  ),
  entry(
    'NVIDIA-H100-PCIe',
    {
      // 756 TFLOP/s dense fp16 datasheet; 2.0 TB/s HBM2e; Gen5 x16 (same practical rate as [M] assumed).
      h2dBytesPerSecond: GEN5,
      d2hBytesPerSecond: GEN5,
      gemmFlops: 756 * TFLOPS * EFF,
      hbmBytes: 81559 * MiB,
      hbmBytesPerSecond: 2.0e12,
      link: 'PCIe Gen5 x16',
    },
    ['H100-PCIE-80GB', 'H100-80GB-PCIe'],
  ),
  entry(
    'NVIDIA-H100-NVL',
    {
      // 835 TFLOP/s dense fp16 (per GPU), 94 GB HBM3 at 3.9 TB/s; Gen5 x16.
      h2dBytesPerSecond: GEN5,
      d2hBytesPerSecond: GEN5,
      gemmFlops: 835 * TFLOPS * EFF,
      hbmBytes: 95830 * MiB,
      hbmBytesPerSecond: 3.9e12,
      link: 'PCIe Gen5 x16',
    },
    ['H100-NVL-94GB'],
  ),
  entry(
    'NVIDIA-H200',
    {
      // SXM. Same compute as H100 SXM (989 dense); 141 GB HBM3e at 4.8 TB/s datasheet. [M2] (this
      // project's planning/calibration/overlap_probe.py on an H200, Gen5 x16, PyTorch 2.11): pinned
      // 55.5 GB/s H2D, 55.4 GB/s D2H, 100.9 GB/s both at once, 4.29 TB/s HBM copy, recompute GEMM
      // 536–776 TFLOP/s (h 5120/7168, T 256–65536; 700 at T = 16384, h = 7168).
      h2dBytesPerSecond: 55.5 * GB,
      d2hBytesPerSecond: 55.4 * GB,
      gemmFlops: 700 * TFLOPS,
      hbmBytes: 143771 * MiB,
      hbmBytesPerSecond: 4.29e12,
      link: 'PCIe Gen5 x16',
    },
    ['NVIDIA-H200-141GB-HBM3e', 'H200-SXM', 'H200-141GB', 'H200-SXM5-141GB'],
  ),
  entry('NVIDIA-H200-NVL', {
    // 835 TFLOP/s dense fp16, 141 GB HBM3e at 4.8 TB/s; Gen5 x16.
    h2dBytesPerSecond: GEN5,
    d2hBytesPerSecond: GEN5,
    gemmFlops: 835 * TFLOPS * EFF,
    hbmBytes: 143771 * MiB,
    hbmBytesPerSecond: 4.8e12,
    link: 'PCIe Gen5 x16',
  }),
  entry(
    'NVIDIA-A100-SXM4-40GB',
    {
      // 312 TFLOP/s dense fp16; 40 GB HBM2 at 1.555 TB/s; Gen4 x16.
      h2dBytesPerSecond: GEN4,
      d2hBytesPerSecond: GEN4,
      gemmFlops: 312 * TFLOPS * EFF,
      hbmBytes: 40960 * MiB,
      hbmBytesPerSecond: 1.555e12,
      link: 'PCIe Gen4 x16',
    },
    ['A100-SXM4-40GB', 'A100-40GB'],
  ),
  entry(
    'NVIDIA-A100-SXM4-80GB',
    {
      // 312 TFLOP/s dense fp16; 80 GB HBM2e at 2.039 TB/s; Gen4 x16.
      h2dBytesPerSecond: GEN4,
      d2hBytesPerSecond: GEN4,
      gemmFlops: 312 * TFLOPS * EFF,
      hbmBytes: 81920 * MiB,
      hbmBytesPerSecond: 2.039e12,
      link: 'PCIe Gen4 x16',
    },
    ['A100-SXM4-80GB', 'A100-80GB-SXM'],
  ),
  entry(
    'NVIDIA-A100-80GB-PCIe',
    {
      // 312 TFLOP/s dense fp16; 80 GB HBM2e at 1.935 TB/s; Gen4 x16.
      h2dBytesPerSecond: GEN4,
      d2hBytesPerSecond: GEN4,
      gemmFlops: 312 * TFLOPS * EFF,
      hbmBytes: 81920 * MiB,
      hbmBytesPerSecond: 1.935e12,
      link: 'PCIe Gen4 x16',
    },
    ['A100-PCIE-80GB', 'A100-80GB-PCIE'],
  ),
  entry(
    'NVIDIA-A100-PCIE-40GB',
    {
      // 312 TFLOP/s dense fp16; 40 GB HBM2 at 1.555 TB/s; Gen4 x16.
      h2dBytesPerSecond: GEN4,
      d2hBytesPerSecond: GEN4,
      gemmFlops: 312 * TFLOPS * EFF,
      hbmBytes: 40960 * MiB,
      hbmBytesPerSecond: 1.555e12,
      link: 'PCIe Gen4 x16',
    },
    ['A100-PCIE-40GB', 'A100-40GB-PCIe'],
  ),
  entry('NVIDIA-L40S', {
    // 362 TFLOP/s dense fp16 tensor; 48 GB GDDR6 at 864 GB/s; Gen4 x16.
    h2dBytesPerSecond: GEN4,
    d2hBytesPerSecond: GEN4,
    gemmFlops: 362 * TFLOPS * EFF,
    hbmBytes: 46068 * MiB,
    hbmBytesPerSecond: 864e9,
    link: 'PCIe Gen4 x16',
  }),
  entry('NVIDIA-L4', {
    // 121 TFLOP/s dense fp16 tensor (72 W part: sustained rates fall below this); 24 GB GDDR6 at
    // 300 GB/s; Gen4 x16.
    h2dBytesPerSecond: GEN4,
    d2hBytesPerSecond: GEN4,
    gemmFlops: 121 * TFLOPS * EFF,
    hbmBytes: 23034 * MiB,
    hbmBytesPerSecond: 300e9,
    link: 'PCIe Gen4 x16',
  }),
  entry('NVIDIA-A10G', {
    // AWS's A10 variant: ~70 TFLOP/s dense fp16 reported (A10 datasheet: 125); 24 GB GDDR6 at
    // 600 GB/s; Gen4 x16.
    h2dBytesPerSecond: GEN4,
    d2hBytesPerSecond: GEN4,
    gemmFlops: 70 * TFLOPS * EFF,
    hbmBytes: 23028 * MiB,
    hbmBytesPerSecond: 600e9,
    link: 'PCIe Gen4 x16',
  }),
  entry('NVIDIA-A10', {
    // 125 TFLOP/s dense fp16; 24 GB GDDR6 at 600 GB/s; Gen4 x16.
    h2dBytesPerSecond: GEN4,
    d2hBytesPerSecond: GEN4,
    gemmFlops: 125 * TFLOPS * EFF,
    hbmBytes: 23028 * MiB,
    hbmBytesPerSecond: 600e9,
    link: 'PCIe Gen4 x16',
  }),
  entry(
    'NVIDIA-GeForce-RTX-4090',
    {
      // 165.2 TFLOP/s dense fp16 with fp32 accumulate; 24 GB GDDR6X at 1008 GB/s; Gen4 x16 — the
      // paper's rig; the notes model it at 0.8 × 165 and 25 GB/s.
      h2dBytesPerSecond: GEN4,
      d2hBytesPerSecond: GEN4,
      gemmFlops: 165.2 * TFLOPS * 0.8,
      hbmBytes: 24564 * MiB,
      hbmBytesPerSecond: 1008e9,
      link: 'PCIe Gen4 x16',
    },
    ['RTX-4090', '4090'],
  ),
  entry(
    'Tesla-T4',
    {
      // [FG] fitted: 12.89 GB/s CPU→GPU, 21.24 TFLOP/s GEMM (65 datasheet, 70 W part); 16 GB GDDR6 at
      // 320 GB/s; Gen3 x16.
      h2dBytesPerSecond: GEN3,
      d2hBytesPerSecond: GEN3,
      gemmFlops: 21.24 * TFLOPS,
      hbmBytes: 15360 * MiB,
      hbmBytesPerSecond: 320e9,
      link: 'PCIe Gen3 x16',
    },
    ['NVIDIA-T4', 'T4'],
  ),
];

/** Lower-case, '-'-separated, without vendor/brand prefixes: "NVIDIA H100 80GB HBM3" → "h100-80gb-hbm3". */
function normalize(name: string): string {
  return name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9.]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .replace(/^(nvidia-)?(tesla-)?(geforce-)?/, '');
}

const INDEX = new Map<string, Entry>();
for (const e of TABLE) {
  for (const key of [e.product, ...e.aliases]) INDEX.set(normalize(key), e);
}

/** The canonical product names in the table (for error messages and docs). */
export const KNOWN_PRODUCTS: readonly string[] = TABLE.map((e) => e.product);

function strip(e: Entry): HardwareProfile {
  const { aliases: _aliases, ...p } = e;
  return { ...p };
}

/**
 * Looks up a `nvidia.com/gpu.product` value, tolerating case, spaces for dashes (nvidia-smi names),
 * a missing "NVIDIA-"/"Tesla-" prefix, a "-SHARED" suffix (time-slicing) and a "-MIG-<g>g.<n>gb"
 * suffix (memory and compute scaled to the slice: n GB and g/7 of the SMs; the host link is shared
 * by the whole GPU, so the slice keeps the full link rate as an upper bound).
 */
export function hardwareProfile(product: string): HardwareProfile | undefined {
  if (typeof product !== 'string' || product.trim() === '') return undefined;
  let key = normalize(product).replace(/-shared$/, '');
  let mig: { g: number; gb: number } | undefined;
  const m = /-mig-(\d+)g\.(\d+)gb$/.exec(key);
  if (m) {
    mig = { g: Number(m[1]), gb: Number(m[2]) };
    key = key.slice(0, m.index);
  }
  const e = INDEX.get(key);
  if (!e) return undefined;
  const p = strip(e);
  if (!mig) return p;
  const share = Math.min(1, mig.g / 7);
  return {
    ...p,
    product: product.trim(),
    gemmFlops: p.gemmFlops * share,
    hbmBytes: Math.min(p.hbmBytes, mig.gb * 1e9),
    hbmBytesPerSecond: p.hbmBytesPerSecond * share,
  };
}

/** Like hardwareProfile, but throws a PlanError that lists the known products. */
export function requireHardwareProfile(product: string): HardwareProfile {
  const p = hardwareProfile(product);
  if (!p) {
    throw new PlanError(`unknown GPU product '${product}'; known products (nvidia.com/gpu.product values): ${KNOWN_PRODUCTS.join(', ')}`);
  }
  return p;
}

/**
 * Measured values (the engine's probe) override the table: each positive finite measurement
 * replaces the table value and is recorded in `measured`. Zeros (e.g. a CPU probe's bandwidth) and
 * missing values keep the table's.
 */
export function withMeasured(profile: HardwareProfile, measured: MeasuredValues): HardwareProfile {
  const out: HardwareProfile = { ...profile, measured: [...(profile.measured ?? [])] };
  for (const k of ['h2dBytesPerSecond', 'd2hBytesPerSecond', 'gemmFlops', 'hbmBytes', 'hbmBytesPerSecond'] as const) {
    const v = measured[k];
    if (typeof v === 'number' && Number.isFinite(v) && v > 0) {
      out[k] = v;
      if (!out.measured!.includes(k)) out.measured!.push(k);
    }
  }
  return out;
}

/** Checks that a (possibly hand-made) profile has usable numbers. */
export function validateHardware(p: HardwareProfile): void {
  for (const k of ['h2dBytesPerSecond', 'd2hBytesPerSecond', 'gemmFlops', 'hbmBytes', 'hbmBytesPerSecond'] as const) {
    if (!(typeof p[k] === 'number' && Number.isFinite(p[k]) && p[k] > 0)) {
      throw new PlanError(`hardware profile '${p.product}': ${k} must be a positive number, got ${String(p[k])}`);
    }
  }
}
