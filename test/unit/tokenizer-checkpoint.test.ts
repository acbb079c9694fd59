// The checkpoint tokenizers against ids computed by Hugging Face (transformers' GPT2Tokenizer for
// vocab.json + merges.txt, the tokenizers library for tokenizer.json) when the fixtures were made.
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from '@jest/globals';
import { parseHfConfig } from '../../model/config.js';
import { ModelError } from '../../model/errors.js';
import { loadCheckpointTokenizer, renderChatTemplate } from '../../model/tokenizer.js';
import { LLAMA_REF, OPT_REF } from '../fixtures/helpers.js';

const cfgOf = (dir: string) => parseHfConfig(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')), path.basename(dir));
const refOf = (dir: string) =>
  JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as { tokenizer: { text: string; ids: number[] } };

describe.each([
  ['vocab.json+merges.txt', OPT_REF],
  ['tokenizer.json', LLAMA_REF],
])('%s', (kind, dir) => {
  test('matches the Hugging Face ids and round-trips', async () => {
    const tok = await loadCheckpointTokenizer(dir, cfgOf(dir));
    expect(tok.kind).toBe(kind);
    const { text, ids } = refOf(dir).tokenizer;
    expect(tok.encode(text, { addSpecialTokens: false })).toEqual(ids);
    expect(tok.decode(ids)).toBe(text);
    const d = tok.decoder();
    const pieces = [...ids.map((id) => d.push(id)), d.flush()];
    expect(pieces.join('')).toBe(text);
    expect(pieces.some((p) => p.includes('\uFFFD'))).toBe(false);
  });
});

describe('special tokens and templates', () => {
  test('OPT vocab.json+merges.txt prepends BOS (</s> = 2) like Hugging Face', async () => {
    const tok = await loadCheckpointTokenizer(OPT_REF, cfgOf(OPT_REF));
    const ids = tok.encode('the');
    expect(ids).toEqual([2, 261]);
    expect(tok.decode(ids)).toBe('the');
    expect(tok.eosTokenId).toBe(2);
    expect(tok.chatTemplate).toBeUndefined();
    expect(tok.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe('user: hi\nassistant:');
  });

  test('tokenizer_config.json chat template rendered with jinja', async () => {
    const tok = await loadCheckpointTokenizer(LLAMA_REF, cfgOf(LLAMA_REF));
    const msgs = [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'yo' },
      { role: 'user', content: 'the end' },
    ];
    expect(tok.applyChatTemplate(msgs)).toBe('<|user|>hi\n<|assistant|>yo\n<|user|>the end\n<|assistant|>');
    expect(tok.applyChatTemplate(msgs, { addGenerationPrompt: false })).toBe('<|user|>hi\n<|assistant|>yo\n<|user|>the end\n');
    expect(tok.encodeChat(msgs)).toEqual(tok.encode(tok.applyChatTemplate(msgs), { addSpecialTokens: false }));
  });

  test('templates get bos/eos strings and raise_exception gives a ModelError', () => {
    expect(
      renderChatTemplate('{{ bos_token }}{{ messages[0].content }}{{ eos_token }}', [{ role: 'user', content: 'x' }], {
        bos_token: '<s>',
        eos_token: '</s>',
      }),
    ).toBe('<s>x</s>');
    expect(() => renderChatTemplate("{{ raise_exception('roles must alternate') }}", [], {})).toThrow(
      /chat template failed: .*roles must alternate/,
    );
    expect(() => renderChatTemplate('{% for %}', [], {})).toThrow(ModelError);
  });

  test('missing or malformed tokenizer files', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-tok-'));
    copyFileSync(path.join(OPT_REF, 'config.json'), path.join(dir, 'config.json'));
    await expect(loadCheckpointTokenizer(dir, cfgOf(OPT_REF))).rejects.toThrow(
      /no tokenizer \(expected tokenizer.json, or vocab.json \+ merges.txt\)/,
    );
    writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    await expect(loadCheckpointTokenizer(dir, cfgOf(OPT_REF))).rejects.toThrow(/tokenizer.json: malformed JSON/);
    writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": {"type": "Nope"}}');
    await expect(loadCheckpointTokenizer(dir, cfgOf(OPT_REF))).rejects.toThrow(ModelError);
  });
});
