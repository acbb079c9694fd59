// Sizes and Kubernetes resource quantities <-> bytes (pure). The one parser for sizes in the project:
// the CLI (--host-memory, --gpu-memory, --body-limit), the benches and the operator (CRD fields, node
// allocatable) all read sizes here, with Kubernetes semantics: decimal suffixes are powers of 1000
// ("64G" = 64e9), binary ones powers of 1024 ("64Gi" = 2^36). A trailing "B" is accepted for people
// ("64GiB" = 64Gi, "500MB" = 500M); a plain number is bytes.
const SUFFIX: Record<string, number> = {
  '': 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
  m: 1e-3,
};

const QUANTITY = /^\s*([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?(B)?\s*$/;

/** Parses "128Gi", "64G", "64GiB", "500MB", "1048576", "1e9"; undefined when it is not a quantity. */
export function parseQuantity(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  if (typeof q === 'number') return Number.isFinite(q) ? q : undefined;
  const m = QUANTITY.exec(q);
  if (!m) return undefined;
  // "mB" (milli-bytes) is no size anyone means; refuse it rather than guess.
  if (m[3] && m[2] === 'm') return undefined;
  return Number(m[1]) * SUFFIX[m[2] ?? ''];
}

/** A size in whole bytes (>= 0), or undefined when the text is not one. */
export function parseByteSize(q: string | number | undefined): number | undefined {
  const v = parseQuantity(q);
  if (v === undefined || v < 0) return undefined;
  const bytes = Math.round(v);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Bytes as a binary quantity a human reads ("12.5Gi"); used in status, printer columns and logs. */
export function formatBytes(bytes: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 ? String(Math.round(v)) : (Math.round(v * 10) / 10).toString();
  return `${text}${units[i]}`;
}

/** Bytes as an exact integer quantity for pod resources (Kubernetes accepts a plain integer). */
export function bytesQuantity(bytes: number): string {
  return String(Math.max(0, Math.floor(bytes)));
}
