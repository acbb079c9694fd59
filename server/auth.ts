// Optional Bearer API keys. Keys come from HYBRIDSERVE_API_KEYS (comma-separated) and/or a file
// (one key per line, # comments). Health, readiness, metrics and the stats JSON stay open so
// probes, Prometheus and the operator need no secret (they carry no request content).
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';

export const OPEN_PATHS = new Set(['/healthz', '/readyz', '/metrics', '/v1/hybridserve/stats', '/health', '/version', '/openapi.json']);

export function parseKeyList(text: string, separator: RegExp): string[] {
  return text.split(separator).map((k) => k.replace(/#.*$/, '').trim()).filter((k) => k.length > 0);
}

export function loadApiKeys(env: NodeJS.ProcessEnv, file?: string): string[] {
  const keys = parseKeyList(env.HYBRIDSERVE_API_KEYS ?? '', /,/);
  if (file) keys.push(...parseKeyList(readFileSync(file, 'utf8'), /\r?\n/));
  return [...new Set(keys)];
}

/** Whether an Authorization header carries one of the keys (constant time per key). Pure. */
export function authorized(header: string | undefined, keys: readonly string[]): boolean {
  if (keys.length === 0) return true;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]);
  let ok = false;
  for (const k of keys) {
    const want = Buffer.from(k);
    if (want.length === given.length && timingSafeEqual(want, given)) ok = true;
  }
  return ok;
}
