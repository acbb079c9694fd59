// model/detokenizer.ts: the one incremental detokenizer (UTF-8 safe, stop token ids, stop strings).
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { Detokenizer } from '../../model/detokenizer.js';
import { ByteTokenizer, Gpt2Tokenizer } from '../../model/tokenizer.js';
import { byteTokenizer } from './server-fake-engine.js';

const decode = byteTokenizer.decode;
const run = (d: Detokenizer, ids: number[]) => {
  let out = '';
  for (const id of ids) {
    out += d.push(id);
    if (d.stopped) break;
  }
  return out + d.flush();
};

describe('incremental decoding', () => {
  test.each([
    ['window decoding', false],
    ['per-token fast path', true],
  ])('%s never emits a broken character and loses nothing (property)', (_n, fast) => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (text) => {
        const dec = new Detokenizer({ decode, ...(fast ? { decodeToken: (id: number) => decode([id]) } : {}) });
        let out = '';
        for (const id of byteTokenizer.encode(text)) {
          const d = dec.push(id);
          expect(d).not.toContain('\uFFFD');
          out += d;
        }
        out += dec.flush();
        expect(out).toBe(text);
      }),
    );
  });
});

describe('stop strings', () => {
  test('cut at the first stop string, which is not emitted', () => {
    const d = new Detokenizer({ decode, stopStrings: ['END', 'xy'] });
    expect(run(d, byteTokenizer.encode('abc END more'))).toBe('abc ');
    expect(d.stoppedBy).toEqual({ kind: 'string', text: 'END' });
  });
  test('held text is released when it turns out not to be a stop string', () => {
    const d = new Detokenizer({ decode, stopStrings: ['END'] });
    const ids = byteTokenizer.encode('a ENXE');
    const pieces = ids.map((id) => d.push(id));
    expect(pieces.join('')).toBe('a ENX');
    expect(pieces[3]).toBe(''); // 'N' held: 'EN' may start END
    expect(d.flush()).toBe('E');
    expect(d.stopped).toBe(false);
  });
  test('include_stop_str_in_output keeps the stop string', () => {
    expect(run(new Detokenizer({ decode, stopStrings: ['END'], includeStop: true }), byteTokenizer.encode('abc END more'))).toBe('abc END');
  });
  test('streamed output equals the full text cut at the earliest stop (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 30 }),
        fc.array(fc.string({ minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }),
        (text, stops) => {
          const out = run(new Detokenizer({ decode, stopStrings: stops }), byteTokenizer.encode(text));
          const cuts = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
          const want = cuts.length ? text.slice(0, Math.min(...cuts)) : text;
          expect(out).toBe(want);
        },
      ),
    );
  });
});

describe('stop token ids', () => {
  test('the text ends at a stop id, whose own text is left out unless includeStop', () => {
    const ids = byteTokenizer.encode('abcdef');
    const stopId = ids[3]; // 'd'
    const d = new Detokenizer({ decode, stopTokenIds: [stopId] });
    expect(run(d, ids)).toBe('abc');
    expect(d.stoppedBy).toEqual({ kind: 'token', tokenId: stopId });
    expect(d.push(ids[4])).toBe('');
    expect(run(new Detokenizer({ decode, stopTokenIds: [stopId], includeStop: true }), ids)).toBe('abcd');
  });
  test('a stop id releases text held for a stop string', () => {
    const ids = byteTokenizer.encode('abE!');
    const d = new Detokenizer({ decode, stopStrings: ['END'], stopTokenIds: [ids[3]] });
    expect(run(d, ids)).toBe('abE');
  });
  test('a split character before a stop id is flushed whole', () => {
    const ids = [...byteTokenizer.encode('é'), byteTokenizer.encode('!')[0]];
    expect(run(new Detokenizer({ decode, stopTokenIds: [ids[2]] }), ids)).toBe('é');
  });
});

describe('special tokens', () => {
  test('skipSpecialTokens false keeps EOS text', () => {
    const g = new Gpt2Tokenizer();
    expect(g.decode([15496, 50256, 995])).toBe('Hello world');
    expect(g.decode([15496, 50256, 995], { skipSpecialTokens: false })).toBe('Hello<|endoftext|> world');
    const b = new ByteTokenizer();
    expect(b.decode([1, 72, 2], { skipSpecialTokens: false })).toBe('<s>E</s>');
    expect(b.decode([1, 72, 2])).toBe('E');
  });
});
