// Issue 12, case 8: model loading must not follow links out of the model directory, and a parse
// error must not echo what a file (or a link's target) holds.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readHfConfig } from '../../model/config.js';
import { describeJsonError } from '../../model/errors.js';
import { assertConfined, loadModel } from '../../model/load.js';
import { loadCheckpointTokenizer } from '../../model/tokenizer.js';
import { presetConfig } from '../../model/presets.js';

const SECRET = 'root:x:0:0:SECRET-CONTENT-42';
let base: string;
let outside: string;

beforeAll(() => {
  base = mkdtempSync(path.join(tmpdir(), 'hs-symlinks-'));
  outside = path.join(base, 'outside.txt');
  writeFileSync(outside, SECRET);
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

function modelDir(name: string): string {
  const dir = path.join(base, name);
  mkdirSync(dir);
  return dir;
}

describe('symbolic links in a checkpoint directory', () => {
  test('a link that leads outside is refused before anything is read, naming the link only', async () => {
    const dir = modelDir('escape');
    symlinkSync(outside, path.join(dir, 'config.json'));
    const err = await loadModel(dir).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/config\.json is a symbolic link that leads outside the model directory/);
    expect(err?.message).not.toContain('SECRET');
    expect(err?.message).not.toContain('root:x');
  });

  test('a dangling link is refused', async () => {
    const dir = modelDir('dangling');
    symlinkSync(path.join(base, 'missing'), path.join(dir, 'model.safetensors'));
    await expect(assertConfined(dir)).rejects.toThrow(/leads nowhere/);
  });

  test('a link to a file inside the directory is fine (also through a linked directory name)', async () => {
    const dir = modelDir('inside');
    mkdirSync(path.join(dir, 'blobs'));
    writeFileSync(path.join(dir, 'blobs', 'cfg'), '{}');
    symlinkSync(path.join(dir, 'blobs', 'cfg'), path.join(dir, 'config.json'));
    await expect(assertConfined(dir)).resolves.toBeUndefined();
    const linkedName = path.join(base, 'inside-link');
    symlinkSync(dir, linkedName);
    await expect(assertConfined(linkedName)).resolves.toBeUndefined();
  });
});

describe('parse errors never echo file contents', () => {
  test('describeJsonError keeps only the position', () => {
    let err: unknown;
    try {
      JSON.parse(SECRET);
    } catch (e) {
      err = e;
    }
    expect(describeJsonError(err)).toMatch(/^malformed JSON( at position \d+)?$/);
  });

  test('config.json and tokenizer.json holding non-JSON text', async () => {
    const dir = modelDir('garbage');
    writeFileSync(path.join(dir, 'config.json'), SECRET);
    writeFileSync(path.join(dir, 'tokenizer.json'), SECRET);
    const c = await readHfConfig(dir).then(
      () => null,
      (e: Error) => e,
    );
    const exact = (file: string) => new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: malformed JSON( at position \\d+)?$`);
    expect(c?.message).toMatch(exact(path.join(dir, 'config.json')));
    const t = await loadCheckpointTokenizer(dir, presetConfig('opt-125m')!).then(
      () => null,
      (e: Error) => e,
    );
    expect(t?.message).toMatch(exact(path.join(dir, 'tokenizer.json')));
  });
});
