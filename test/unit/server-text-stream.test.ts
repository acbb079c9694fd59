import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { IncrementalDecoder, StopMatcher, TextStream } from '../../server/text-stream.js';
import { byteTokenizer } from './server-fake-engine.js';

describe('incremental decoding', () => {
  test.each([['window decoding', false], ['per-token fast path', true]])('%s never emits a broken character and loses nothing (property)', (_n, fast) => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (text) => {
      const dec = new IncrementalDecoder(byteTokenizer.decode, fast ? (id) => byteTokenizer.decode([id]) : undefined);
      let out = '';
      for (const id of byteTokenizer.encode(text)) {
        const d = dec.push(id);
        expect(d).not.toContain('\uFFFD');
        out += d;
      }
      out += dec.flush();
      expect(out).toBe(text);
    }));
  });
});

describe('stop strings', () => {
  test('cut at the first stop string, which is not emitted', () => {
    const m = new StopMatcher(['END', 'xy']);
    expect(m.push('abc E')).toBe('abc ');
    expect(m.push('N')).toBe('');
    expect(m.push('D more')).toBe('');
    expect(m.stopped).toBe(true);
    expect(m.flush()).toBe('');
  });
  test('held text is released when it turns out not to be a stop string', () => {
    const m = new StopMatcher(['END']);
    expect(m.push('a EN')).toBe('a ');
    expect(m.push('X')).toBe('ENX');
    expect(m.push('E')).toBe('');
    expect(m.flush()).toBe('E');
  });
  test('streamed output equals the full text cut at the earliest stop (property)', () => {
    fc.assert(fc.property(fc.string({ maxLength: 30 }), fc.array(fc.string({ minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }), (text, stops) => {
      const ts = new TextStream(byteTokenizer.decode, stops);
      let out = '';
      for (const id of byteTokenizer.encode(text)) { out += ts.push(id); if (ts.stopped) break; }
      out += ts.finish();
      const cuts = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
      const want = cuts.length ? text.slice(0, Math.min(...cuts)) : text;
      expect(out).toBe(want);
    }));
  });
});
