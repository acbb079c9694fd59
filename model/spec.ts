// Model SPEC parsing (a pure function of the string and the environment):
//   synthetic:<preset>[?seed=N]   deterministic random weights of a named architecture
//   pvc://<claim>/<path>          a checkpoint directory on a mounted PersistentVolumeClaim
//   <path>                        a Hugging Face checkpoint directory (config.json + *.safetensors)
import path from 'node:path';
import { ModelError } from './errors.js';
import { PRESET_NAMES, presetConfig } from './presets.js';
import type { ModelConfig } from './types.js';

export type ModelSpec =
  | { kind: 'synthetic'; spec: string; preset: string; seed: number; config: ModelConfig }
  | { kind: 'checkpoint'; spec: string; dir: string };

/** Where `pvc://<claim>/<path>` specs are mounted: `<root>/<claim>/<path>`. */
export const DEFAULT_MODEL_ROOT = '/models';
export const SYNTHETIC_PREFIX = 'synthetic:';
const MAX_SEED = 2 ** 32 - 1;

export function parseModelSpec(spec: string, env: Record<string, string | undefined> = process.env): ModelSpec {
  const text = spec.trim();
  if (text === '') throw new ModelError('model spec is empty (use synthetic:<preset>, a checkpoint directory or pvc://<claim>/<path>)');
  if (text.startsWith(SYNTHETIC_PREFIX)) return parseSynthetic(text);
  if (text.startsWith('pvc://')) return { kind: 'checkpoint', spec: text, dir: resolvePvc(text, env) };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new ModelError(
      `model spec '${text}': unsupported scheme (use synthetic:<preset>, a checkpoint directory or pvc://<claim>/<path>)`,
    );
  }
  return { kind: 'checkpoint', spec: text, dir: path.resolve(text) };
}

function parseSynthetic(text: string): ModelSpec {
  const rest = text.slice(SYNTHETIC_PREFIX.length);
  const q = rest.indexOf('?');
  const preset = q < 0 ? rest : rest.slice(0, q);
  const config = presetConfig(preset);
  if (!config) {
    throw new ModelError(`unknown synthetic preset '${preset}' (known: ${PRESET_NAMES.join(', ')})`);
  }
  let seed = 0;
  if (q >= 0) {
    const params = new URLSearchParams(rest.slice(q + 1));
    for (const [key, value] of params) {
      if (key !== 'seed') throw new ModelError(`model spec '${text}': unknown parameter '${key}' (only seed=N is accepted)`);
      if (!/^\d+$/.test(value) || Number(value) > MAX_SEED) {
        throw new ModelError(`model spec '${text}': seed must be an integer in [0, ${MAX_SEED}], got '${value}'`);
      }
      seed = Number(value);
    }
  }
  return { kind: 'synthetic', spec: text, preset, seed, config };
}

function resolvePvc(text: string, env: Record<string, string | undefined>): string {
  const rest = text.slice('pvc://'.length);
  const slash = rest.indexOf('/');
  const claim = slash < 0 ? rest : rest.slice(0, slash);
  const sub = slash < 0 ? '' : rest.slice(slash + 1);
  // A claim name is a DNS-1123 subdomain; the path must stay inside the claim's mount.
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(claim) || claim.length > 253) {
    throw new ModelError(`model spec '${text}': '${claim}' is not a valid PersistentVolumeClaim name`);
  }
  if (sub.split('/').some((seg) => seg === '..')) {
    throw new ModelError(`model spec '${text}': the path must not contain '..'`);
  }
  const root = env.HYBRIDSERVE_MODEL_ROOT?.trim() || DEFAULT_MODEL_ROOT;
  return path.join(root, claim, sub);
}
