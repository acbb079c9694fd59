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
});
