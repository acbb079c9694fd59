// Optional Bearer API keys. Keys come from HYBRIDSERVE_API_KEYS (comma-separated; every character
// is part of a key, # included) and/or a key file (one key per line; a line whose first non-blank
// character is # is a comment). Health, readiness, metrics and the stats JSON stay open so probes,
// Prometheus and the operator need no secret (they carry no request content).
// Fail closed: keys configured but none found is a start-up error, and a key file that reloads to
// zero keys keeps every protected request refused (never an open server).
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { watchMountedFile } from './mounted-file.js';
import { timingSafeEqual } from 'node:crypto';

export const OPEN_PATHS = new Set(['/healthz', '/readyz', '/metrics', '/v1/hybridserve/stats', '/health', '/version', '/openapi.json']);

/** Keys of HYBRIDSERVE_API_KEYS: comma-separated, trimmed; no comment syntax. Pure. */
export function parseEnvKeys(text: string): string[] {
  return text
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
}

/** Keys of a key file: one per line, trimmed; whole-line # comments and blank lines skipped. Pure. */
export function parseKeyFile(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((k) => k.trim())
    .filter((k) => k.length > 0 && !k.startsWith('#'));
}

/**
 * The keys in effect. `required` is true once any key source was configured; then an empty
 * `keys` refuses every protected request.
 */
export interface KeySet {
  required: boolean;
  keys: readonly string[];
}

export const OPEN_KEYS: KeySet = { required: false, keys: [] };

export class ApiKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ApiKeyError';
  }
}

/**
 * Keys at start from the environment and the key file. Throws ApiKeyError when a source was
 * configured but yields no key (an empty Secret must not start an open server); the message never
 * contains key material. No keys and no source: an open server (required false).
 */
export function loadApiKeys(env: NodeJS.ProcessEnv, file?: string): string[] {
  const envText = env.HYBRIDSERVE_API_KEYS;
  const keys = parseEnvKeys(envText ?? '');
  // Set but empty is what an empty Kubernetes Secret gives: configured, so it must not open the server.
  if (envText !== undefined && keys.length === 0) {
    throw new ApiKeyError('HYBRIDSERVE_API_KEYS is set but holds no key (keys are comma-separated)');
  }
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ApiKeyError(`cannot read the API key file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const fromFile = parseKeyFile(text);
    if (fromFile.length === 0)
      throw new ApiKeyError(`the API key file ${file} holds no key (one key per line; lines starting with # are comments)`);
    keys.push(...fromFile);
  }
  return [...new Set(keys)];
}

/** The key set for a list of keys: required as soon as there is one. */
export function keySet(keys: readonly string[]): KeySet {
  return { required: keys.length > 0, keys: [...keys] };
}

/** Whether an Authorization header carries one of the keys (constant time per key). Pure. */
export function authorized(header: string | undefined, set: KeySet): boolean {
  if (!set.required) return true;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]);
  let ok = false;
  for (const k of set.keys) {
    const want = Buffer.from(k);
    if (want.length === given.length && timingSafeEqual(want, given)) ok = true;
  }
  return ok;
}

export interface KeyFileWatcher {
  /** Re-reads the file now (also done on change events and every pollMs). */
  check(): Promise<void>;
  close(): void;
}

export interface KeyLog {
  info(m: string): void;
  error(m: string): void;
}

/**
 * Keeps `set` in step with the key file: envKeys plus the file's keys. Kubernetes updates a
 * mounted Secret by swapping a symlink in the directory, so the directory is watched and the file
 * polled by content. A reload with zero keys (or an unreadable file) keeps the set required and
 * empties the file's share: protected requests are refused and an error is logged.
 */
export async function watchKeyFile(
  file: string,
  set: KeySet,
  envKeys: readonly string[],
  log: KeyLog,
  pollMs = 1000,
): Promise<KeyFileWatcher> {
  let last: string | null | undefined; // undefined: not read yet; null: unreadable
  return watchMountedFile(file, pollMs, async (closed) => {
    let text: string | null;
    let why = '';
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      text = null;
      why = (err as NodeJS.ErrnoException).code ?? 'error';
    }
    if (closed() || text === last) return;
    const first = last === undefined;
    last = text;
    const fileKeys = text === null ? [] : parseKeyFile(text);
    set.required = true;
    set.keys = [...new Set([...envKeys, ...fileKeys])];
    if (text === null) log.error(`API key file ${file} is unreadable (${why}); refusing requests that need a key until it is back`);
    else if (fileKeys.length === 0) log.error(`API key file ${file} holds no key; refusing requests that need a key until it has one`);
    else if (!first) log.info(`API key file reloaded: ${fileKeys.length} key(s)`);
  });
}
