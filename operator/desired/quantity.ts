// Kubernetes resource quantities <-> bytes (pure). Only what node memory and pod limits use.
const SUFFIX: Record<string, number> = {
  '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60, m: 1e-3,
};

/** Parses "128Gi", "64G", "1048576", "1e9"; undefined when it is not a quantity. */
export function parseQuantity(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  if (typeof q === 'number') return Number.isFinite(q) ? q : undefined;
  const m = /^\s*([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?\s*$/.exec(q);
  if (!m) return undefined;
  return Number(m[1]) * SUFFIX[m[2] ?? ''];
}

/** Bytes as a binary quantity a human reads ("12.5Gi"); used in status and printer columns. */
export function formatBytes(bytes: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];
  let v = bytes; let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  const text = i === 0 ? String(Math.round(v)) : (Math.round(v * 10) / 10).toString();
  return `${text}${units[i]}`;
}

/** Bytes as an exact integer quantity for pod resources (Kubernetes accepts a plain integer). */
export function bytesQuantity(bytes: number): string { return String(Math.max(0, Math.floor(bytes))); }
