import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { presetConfig } from '../../model/presets.js';
import { Detokenizer } from '../../model/detokenizer.js';
import { ByteTokenizer, Gpt2Tokenizer, plainChatPrompt, syntheticTokenizer, type Tokenizer } from '../../model/tokenizer.js';

function streamed(tok: Tokenizer, ids: number[]): string[] {
  const d = tok.decoder();
  const pieces = ids.map((id) => d.push(id));
  pieces.push(d.flush());
  return pieces;
}

describe('GPT-2 tokenizer (synthetic OPT)', () => {
  const tok = new Gpt2Tokenizer();
  test('known GPT-2 ids, no BOS, EOS 50256', () => {
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.bosTokenId).toBeUndefined();
    expect(tok.eosTokenId).toBe(50256);
    expect(syntheticTokenizer(presetConfig('opt-125m')!).kind).toBe('gpt2');
  });

  test('special-token text in a prompt is plain text', () => {
    const ids = tok.encode('a <|endoftext|> b');
    expect(ids).not.toContain(50256);
    expect(tok.decode(ids)).toBe('a <|endoftext|> b');
  });

  test('ids beyond the GPT-2 vocabulary and EOS decode to nothing', () => {
    expect(tok.decode([15496, 50256, 50260, 50271, 995])).toBe('Hello world');
  });

  test('round trip and streaming never split a character', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => {
        const ids = tok.encode(s);
        expect(tok.decode(ids)).toBe(s);
        const pieces = streamed(tok, ids);
        expect(pieces.join('')).toBe(s);
        for (const p of pieces) expect(p).not.toContain('\uFFFD');
      }),
      { numRuns: 300, seed: 5 },
    );
  });

  test('a multi-byte character split over tokens is held back until complete', () => {
    const ids = tok.encode('✓'); // three bytes, more than one GPT-2 token
    expect(ids.length).toBeGreaterThan(1);
    const pieces = streamed(tok, ids);
    expect(pieces.slice(0, -2).every((p) => p === '')).toBe(true);
    expect(pieces.join('')).toBe('✓');
  });
});

describe('byte tokenizer (synthetic Llama)', () => {
  const tok = new ByteTokenizer();
  test('byte b → id b + 3, BOS 1 first, EOS 2', () => {
    expect(tok.encode('Hi')).toEqual([1, 72 + 3, 105 + 3]);
    expect(tok.encode('Hi', { addSpecialTokens: false })).toEqual([75, 108]);
    expect(tok.encode('é', { addSpecialTokens: false })).toEqual([0xc3 + 3, 0xa9 + 3]);
    expect(tok.eosTokenId).toBe(2);
    expect(syntheticTokenizer(presetConfig('llama-tiny')!).kind).toBe('bytes');
  });

  test('specials and ids above 258 decode to nothing', () => {
    expect(tok.decode([1, 75, 2, 300, 108, 31999])).toBe('Hi');
  });

  test('streaming holds partial UTF-8', () => {
    const ids = tok.encode('aé✓😀', { addSpecialTokens: false });
    const pieces = streamed(tok, ids);
    expect(pieces).toEqual(['a', '', 'é', '', '', '✓', '', '', '', '😀', '']);
  });

  test('a truly broken tail comes out on flush', () => {
    const d = tok.decoder();
    expect(d.push(0xe2 + 3)).toBe('');
    expect(d.flush()).toBe('\uFFFD');
  });
});

describe('incremental decoder', () => {
  test('neighbour-dependent decoding (a leading-space rule) stays right', () => {
    // A toy sentencepiece-like decode: the first piece loses its leading space.
    const vocab = ['▁Hello', '▁world', '!'];
    const decode = (ids: readonly number[]) =>
      ids
        .map((i) => vocab[i])
        .join('')
        .replace(/▁/g, ' ')
        .replace(/^ /, '');
    const d = new Detokenizer({ decode });
    expect([d.push(0), d.push(1), d.push(2), d.flush()].join('')).toBe('Hello world!');
  });
});

test('plain chat template', () => {
  expect(
    plainChatPrompt([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ]),
  ).toBe('system: Be brief.\nuser: Hi\nassistant:');
  expect(new ByteTokenizer().encodeChat([{ role: 'user', content: 'x' }])).toEqual([
    1,
    ...Buffer.from('user: x\nassistant:').map((b) => b + 3),
  ]);
});
