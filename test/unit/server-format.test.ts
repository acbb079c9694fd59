import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { deltaChunk, deltaEventWriter, sseData } from '../../server/format.js';

describe('stream chunks', () => {
  test('the pre-serialised delta event equals the generic one (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('chat' as const, 'completions' as const),
        fc.string(),
        fc.boolean(),
        fc.string(),
        (ep, text, first, model) => {
          const meta = { id: 'cmpl-1', created: 1700000000, model };
          expect(deltaEventWriter(ep, meta)(text, first)).toBe(sseData(deltaChunk(ep, meta, text, null, first)));
        },
      ),
    );
  });

  test('chunks carry their choice index (n samples, prompt batches), in the same bytes', () => {
    const meta = { id: 'cmpl-1', created: 1700000000, model: 'm' };
    for (const ep of ['chat', 'completions'] as const) {
      for (const [index, first] of [
        [0, true],
        [3, false],
        [1023, true],
      ] as const) {
        const event = deltaEventWriter(ep, meta)('tëxt "q"', first, index);
        expect(event).toBe(sseData(deltaChunk(ep, meta, 'tëxt "q"', null, first, null, null, index)));
        expect(JSON.parse(event.slice('data: '.length)).choices[0].index).toBe(index);
      }
    }
  });
});
