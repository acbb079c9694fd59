import { mkdtempSync, writeFileSync, readFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { ModelError } from '../../model/errors.js';
import { readCheckpointTensors, readSafetensorsFile } from '../../model/safetensors.js';
import { LLAMA_REF, OPT_REF, buildSafetensors, withHeader } from '../fixtures/helpers.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'hs-st-'));

describe('readSafetensorsFile', () => {
  test('returns absolute offsets that point at the tensor data', async () => {
    const dir = tmp();
    const file = path.join(dir, 'a.safetensors');
    writeFileSync(
      file,
      buildSafetensors([
        { name: 'a', shape: [2, 3], fill: 1.5 },
        { name: 'b', shape: [4], fill: -2 },
        { name: 'h', dtype: 'F16', shape: [3] },
      ]),
    );
    const ts = await readSafetensorsFile(file);
    const bytes = readFileSync(file);
    const b = ts.find((t) => t.name === 'b')!;
    expect(b).toMatchObject({ dtype: 'F32', shape: [4], byteLength: 16, path: file });
    expect(bytes.readFloatLE(b.offset)).toBe(-2);
    expect(bytes.readFloatLE(b.offset + 12)).toBe(-2);
    const a = ts.find((t) => t.name === 'a')!;
    expect(bytes.readFloatLE(a.offset + 20)).toBe(1.5);
    expect(ts.find((t) => t.name === 'h')).toMatchObject({ dtype: 'F16', byteLength: 6 });
  });

  test('the OPT fixture: every tensor inside the file, none overlapping', async () => {
    const file = path.join(OPT_REF, 'model.safetensors');
    const ts = await readSafetensorsFile(file);
    expect(ts.length).toBe(36);
    const size = readFileSync(file).length;
    const sorted = [...ts].sort((x, y) => x.offset - y.offset);
    for (let i = 0; i < sorted.length; i++) {
      expect(sorted[i].offset + sorted[i].byteLength).toBeLessThanOrEqual(i + 1 < sorted.length ? sorted[i + 1].offset : size);
    }
  });

  const bad: Array<[string, () => Buffer, RegExp]> = [
    ['empty file', () => Buffer.alloc(0), /truncated safetensors file \(0 bytes/],
    ['short length', () => Buffer.alloc(5), /truncated/],
    [
      'huge header length',
      () => {
        const b = Buffer.alloc(16);
        b.writeBigUInt64LE(2n ** 60n);
        return b;
      },
      /exceeds/,
    ],
    [
      'header past the end',
      () => {
        const b = Buffer.alloc(16);
        b.writeBigUInt64LE(100n);
        return b;
      },
      /truncated safetensors file \(header needs 100/,
    ],
    ['garbage JSON', () => withHeader('{"a": [', Buffer.alloc(0)), /malformed JSON/],
    ['JSON array', () => withHeader('[1,2]', Buffer.alloc(0)), /not a JSON object/],
    ['bad dtype', () => withHeader('{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}', Buffer.alloc(1)), /unknown dtype "Q4"/],
    ['int dtype', () => withHeader('{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', Buffer.alloc(8)), /only F32, F16, BF16/],
    [
      'shape mismatch',
      () => withHeader('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', Buffer.alloc(8)),
      /needs 12 bytes but data_offsets span 8/,
    ],
    ['negative dim', () => withHeader('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', Buffer.alloc(4)), /invalid shape/],
    [
      'reversed offsets',
      () => withHeader('{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}', Buffer.alloc(4)),
      /end before they begin/,
    ],
    [
      'overlap',
      () =>
        withHeader(
          '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
          Buffer.alloc(12),
        ),
      /overlap/,
    ],
    ['bad metadata', () => withHeader('{"__metadata__":{"x":1}}', Buffer.alloc(0)), /__metadata__/],
  ];
  test.each(bad)('%s → ModelError', async (_name, make, message) => {
    const file = path.join(tmp(), 'x.safetensors');
    writeFileSync(file, make());
    await expect(readSafetensorsFile(file)).rejects.toThrow(ModelError);
    await expect(readSafetensorsFile(file)).rejects.toThrow(message);
  });

  test('a truncated copy of the fixture names the tensor that runs past the end', async () => {
    const file = path.join(tmp(), 'model.safetensors');
    const full = readFileSync(path.join(OPT_REF, 'model.safetensors'));
    writeFileSync(file, full.subarray(0, full.length - 100));
    await expect(readSafetensorsFile(file)).rejects.toThrow(
      /ends at data byte \d+ but the file holds only \d+ data bytes \(truncated file\?\)/,
    );
  });
});

describe('readCheckpointTensors', () => {
  test('sharded Llama fixture: all tensors from the three shards', async () => {
    const ts = await readCheckpointTensors(LLAMA_REF);
    expect(ts.length).toBe(21);
    expect(new Set(ts.map((t) => path.basename(t.path))).size).toBe(3);
    expect(ts.find((t) => t.name === 'lm_head.weight')).toMatchObject({ shape: [272, 64], dtype: 'F32' });
  });

  test('index problems', async () => {
    const dir = tmp();
    for (const f of ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors'])
      copyFileSync(path.join(LLAMA_REF, f), path.join(dir, f));
    copyFileSync(path.join(LLAMA_REF, 'model.safetensors.index.json'), path.join(dir, 'model.safetensors.index.json'));
    await expect(readCheckpointTensors(dir)).rejects.toThrow(/cannot open .*model-00003-of-00003/);
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": {"a": "../x.safetensors"}}');
    await expect(readCheckpointTensors(dir)).rejects.toThrow(/must be a file name in the checkpoint directory/);
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": {"nope": "model-00001-of-00003.safetensors"}}');
    await expect(readCheckpointTensors(dir)).rejects.toThrow(
      /tensor 'nope' is mapped to model-00001-of-00003.safetensors but that file does not hold it/,
    );
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    await expect(readCheckpointTensors(dir)).rejects.toThrow(/malformed JSON/);
  });

  test('no safetensors, duplicate tensors across files', async () => {
    const dir = tmp();
    await expect(readCheckpointTensors(dir)).rejects.toThrow(/no \*\.safetensors files/);
    writeFileSync(path.join(dir, 'a.safetensors'), buildSafetensors([{ name: 'w', shape: [2] }]));
    writeFileSync(path.join(dir, 'b.safetensors'), buildSafetensors([{ name: 'w', shape: [2] }]));
    await expect(readCheckpointTensors(dir)).rejects.toThrow(/tensor 'w' appears in both/);
    await expect(readCheckpointTensors(path.join(dir, 'missing'))).rejects.toThrow(/cannot read checkpoint directory/);
  });
});
