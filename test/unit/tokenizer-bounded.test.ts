// Encoding stays linear in the prompt's length: long runs without whitespace are split (issue 12, case 2).
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import {
  ByteTokenizer,
  ChatTemplateError,
  Gpt2Tokenizer,
  MAX_WORD_CHARS,
  renderChatTemplate,
  splitLongWords,
} from '../../model/tokenizer.js';

describe('splitLongWords', () => {
  test('text without long runs stays whole', () => {
    expect(splitLongWords('the quick brown fox')).toEqual(['the quick brown fox']);
  });

  test('long runs are cut into pieces of at most the cap, nothing lost', () => {
    const pieces = splitLongWords(`hi ${'a'.repeat(150)} there`, 64);
    expect(pieces.join('')).toBe(`hi ${'a'.repeat(150)} there`);
    expect(pieces).toEqual([`hi ${'a'.repeat(64)}`, 'a'.repeat(64), 'a'.repeat(22), ' there']);
  });

  test('never splits a surrogate pair; property: concatenation is the input, no piece has a long run', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 400 }), fc.integer({ min: 1, max: 40 }), (s, cap) => {
        const pieces = splitLongWords(s, cap);
        expect(pieces.join('')).toBe(s);
        for (const p of pieces) {
          expect(p).not.toMatch(new RegExp(`\\S{${cap + 1}}`, 'u'));
          expect(p).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
        }
      }),
    );
  });
});

describe('bounded encoding time', () => {
  test('GPT-2: 50K letters without a space encode in seconds, not minutes (quadratic before: 20K took 17.6 s)', () => {
    const tok = new Gpt2Tokenizer();
    tok.encode('warm up');
    const t0 = performance.now();
    const ids = tok.encode('x'.repeat(50_000));
    const ms = performance.now() - t0;
    expect(ids.length).toBeGreaterThan(0);
    expect(tok.decode(ids)).toBe('x'.repeat(50_000));
    expect(ms).toBeLessThan(5000);
  });

  test('ordinary text encodes exactly as before (no long runs)', () => {
    expect(new Gpt2Tokenizer().encode('Hello world')).toEqual([15496, 995]);
    expect(MAX_WORD_CHARS).toBeGreaterThanOrEqual(32);
  });

  test('byte tokenizer is unaffected', () => {
    expect(new ByteTokenizer().encode('ab')).toEqual([1, 100, 101]);
  });
});

test('a template raise_exception is a ChatTemplateError (the request is refused with 400)', () => {
  const tpl = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok";
  expect(() => renderChatTemplate(tpl, [{ role: 'system', content: 'x' }], {})).toThrow(ChatTemplateError);
});
