// Safetensors headers: read the 8-byte little-endian header length and the JSON header of each
// file, validate everything the engine will trust, and return tensor references with absolute
// byte offsets. Tensor data is never read here: the engine reads it straight into its own memory.
import { open, readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { ModelError, describeError, describeJsonError } from './errors.js';

/** Element sizes of the dtypes a safetensors file may contain (structure is validated for all). */
const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};
/** The dtypes the engine can load. */
export const WEIGHT_DTYPES = ['F32', 'F16', 'BF16'] as const;
export type WeightDType = (typeof WEIGHT_DTYPES)[number];

/** Headers larger than this are refused (the reference implementation's limit is 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsTensor {
  /** The name in the checkpoint (not yet canonical). */
  name: string;
  path: string;
  /** Absolute byte offset of the data in the file. */
  offset: number;
  byteLength: number;
  dtype: WeightDType;
  shape: number[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates one header (the JSON text after the 8-byte length) against the file size and returns
 * its tensors. Pure; `file` only names the file in messages and in the refs.
 */
export function parseSafetensorsHeader(headerText: string, headerBytes: number, fileSize: number, file: string): SafetensorsTensor[] {
  const fail = (what: string): never => {
    throw new ModelError(`${file}: invalid safetensors header: ${what}`);
  };
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (err) {
    fail(describeJsonError(err));
  }
  if (!isObject(header)) fail('not a JSON object');
  const h = header as Record<string, unknown>;
  const dataStart = 8 + headerBytes;
  const dataBytes = fileSize - dataStart;
  const out: SafetensorsTensor[] = [];
  const ranges: Array<[number, number, string]> = [];
  for (const [name, entry] of Object.entries(h)) {
    if (name === '__metadata__') {
      if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) fail('__metadata__ must map strings to strings');
      continue;
    }
    if (!isObject(entry)) fail(`tensor '${name}' is not an object`);
    const e = entry as Record<string, unknown>;
    const { dtype, shape, data_offsets: offsets } = e;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) fail(`tensor '${name}' has unknown dtype ${JSON.stringify(dtype)}`);
    if (!(WEIGHT_DTYPES as readonly string[]).includes(dtype as string)) {
      fail(`tensor '${name}' has dtype ${dtype as string}; only ${WEIGHT_DTYPES.join(', ')} weights are supported`);
    }
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`tensor '${name}' has data_offsets [${begin}, ${end}] that end before they begin`);
    if (end > dataBytes) {
      fail(`tensor '${name}' ends at data byte ${end} but the file holds only ${Math.max(0, dataBytes)} data bytes (truncated file?)`);
    }
    let elements = 1;
    for (const d of shape as number[]) {
      elements *= d;
      if (!Number.isSafeInteger(elements)) fail(`tensor '${name}' has a shape too large: ${JSON.stringify(shape)}`);
    }
    const expected = elements * DTYPE_BYTES[dtype as string];
    if (expected !== end - begin) {
      fail(`tensor '${name}' (${dtype as string} ${JSON.stringify(shape)}) needs ${expected} bytes but data_offsets span ${end - begin}`);
    }
    ranges.push([begin, end, name]);
    out.push({
      name,
      path: file,
      offset: dataStart + begin,
      byteLength: end - begin,
      dtype: dtype as WeightDType,
      shape: [...(shape as number[])],
    });
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (let i = 1; i < ranges.length; i++) {
    const [pb, pe, pn] = ranges[i - 1];
    const [b, , n] = ranges[i];
    if (b < pe && pe > pb) fail(`tensors '${pn}' and '${n}' overlap`);
  }
  return out;
}

/** Reads and validates the header of one safetensors file (8 + header bytes; no tensor data). */
export async function readSafetensorsFile(file: string): Promise<SafetensorsTensor[]> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new ModelError(`cannot open ${file}: ${describeError(err)}`);
  }
  try {
    const { size } = await fh.stat();
    if (size < 8) throw new ModelError(`${file}: truncated safetensors file (${size} bytes, the header length alone needs 8)`);
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const len = lenBuf.readBigUInt64LE(0);
    if (len < 2n) throw new ModelError(`${file}: invalid safetensors header length ${len}`);
    if (len > BigInt(MAX_HEADER_BYTES))
      throw new ModelError(
        `${file}: safetensors header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`,
      );
    const n = Number(len);
    if (8 + n > size)
      throw new ModelError(`${file}: truncated safetensors file (header needs ${n} bytes, file has ${size - 8} after the length)`);
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 8);
    if (bytesRead !== n) throw new ModelError(`${file}: truncated safetensors file (read ${bytesRead} of ${n} header bytes)`);
    const text = new TextDecoder('utf-8', { fatal: false }).decode(buf);
    return parseSafetensorsHeader(text, n, size, file);
  } catch (err) {
    if (err instanceof ModelError) throw err;
    throw new ModelError(`cannot read ${file}: ${describeError(err)}`);
  } finally {
    await fh.close();
  }
}

export const INDEX_FILE = 'model.safetensors.index.json';

/**
 * Validates a sharded checkpoint's index (pure): returns the shard file names in first-use order and
 * the expected tensor → shard map. Shard names must be plain file names inside the directory.
 */
export function parseSafetensorsIndex(json: unknown, where: string): { files: string[]; weightMap: Map<string, string> } {
  if (!isObject(json) || !isObject(json.weight_map)) throw new ModelError(`${where}: must be an object with a "weight_map" object`);
  const weightMap = new Map<string, string>();
  const files: string[] = [];
  for (const [name, file] of Object.entries(json.weight_map)) {
    if (typeof file !== 'string' || file === '' || file !== path.basename(file) || file === '.' || file === '..') {
      throw new ModelError(`${where}: weight_map["${name}"] must be a file name in the checkpoint directory, got ${JSON.stringify(file)}`);
    }
    weightMap.set(name, file);
    if (!files.includes(file)) files.push(file);
  }
  if (files.length === 0) throw new ModelError(`${where}: weight_map is empty`);
  return { files, weightMap };
}

/**
 * All tensors of a checkpoint directory: the shards named by model.safetensors.index.json, else
 * model.safetensors, else every *.safetensors file. Names must be unique across files.
 */
export async function readCheckpointTensors(dir: string): Promise<SafetensorsTensor[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    throw new ModelError(`cannot read checkpoint directory ${dir}: ${describeError(err)}`);
  }
  let files: string[];
  let weightMap: Map<string, string> | undefined;
  if (entries.includes(INDEX_FILE)) {
    const where = path.join(dir, INDEX_FILE);
    let json: unknown;
    try {
      json = JSON.parse(await readFile(where, 'utf8'));
    } catch (err) {
      throw new ModelError(`${where}: ${err instanceof SyntaxError ? describeJsonError(err) : `cannot read (${describeError(err)})`}`);
    }
    ({ files, weightMap } = parseSafetensorsIndex(json, where));
  } else if (entries.includes('model.safetensors')) {
    files = ['model.safetensors'];
  } else {
    files = entries.filter((e) => e.endsWith('.safetensors')).sort();
    if (files.length === 0) throw new ModelError(`${dir}: no *.safetensors files (only safetensors checkpoints are supported)`);
  }
  const all: SafetensorsTensor[] = [];
  const seen = new Map<string, string>();
  for (const file of files) {
    const full = path.join(dir, file);
    for (const t of await readSafetensorsFile(full)) {
      const prev = seen.get(t.name);
      if (prev) throw new ModelError(`tensor '${t.name}' appears in both ${prev} and ${full}`);
      seen.set(t.name, full);
      all.push(t);
    }
  }
  if (weightMap) {
    for (const [name, file] of weightMap) {
      if (seen.get(name) !== path.join(dir, file)) {
        throw new ModelError(`${path.join(dir, INDEX_FILE)}: tensor '${name}' is mapped to ${file} but that file does not hold it`);
      }
    }
  }
  return all;
}
