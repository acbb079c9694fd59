#!/usr/bin/env python3
"""Builds the reference fixtures for test/integration/reference-logits.test.ts.

Two tiny randomly initialised checkpoints, made with Hugging Face transformers in fp32:
  opt-ref    OPT (pre-LayerNorm, learned positions, ReLU FFN, biases), tied lm_head, one
             model.safetensors file, plus a byte-level BPE vocab.json + merges.txt.
  llama-ref  Llama with grouped-query attention (4 heads, 2 KV heads), untied lm_head, saved
             sharded (model.safetensors.index.json + several shards), plus a tokenizer.json.

For each one, reference.json holds a fixed prompt (token ids), the logits of the last position
after the prompt and after each of 8 greedy steps (computed by full recomputation, no KV cache,
so the reference does not depend on transformers' cache code), and the greedy tokens.
Every weight (norms and biases too) is random, so a mistake in any of them shows in the logits.

Run on a machine with torch + transformers (no network needed):
    python3 scripts/make_fixtures.py --out OUTDIR [--keep-dirs]
writes OUTDIR/fixtures.tar.gz (and with --keep-dirs also OUTDIR/<name>/); unpack it into test/fixtures/.
Everything together stays well under 1 MB.
"""
import argparse
import json
import os
import tarfile
import tempfile

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

VOCAB = 272          # 4 specials + 256 bytes + 12 merges (also lets a byte tokenizer (b+3) fit)
STEPS = 8
MIN_MARGIN = 0.05    # top-1 minus top-2 logit at each greedy step, so 1e-3 noise cannot flip a token


def randomise(model: torch.nn.Module, seed: int, gain: float) -> None:
    """Every parameter random: matrices ~ N(0, gain²/fan_in), embeddings N(0, 0.5), norms 1 + N(0, 0.2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and ('embed' in name or 'lm_head' in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * gain / p.shape[1] ** 0.5)
            elif 'norm' in name and name.endswith('weight'):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def greedy_reference(model, prompt):
    """Logits of the last position for the prompt and after each greedy token, by full recomputation."""
    ids = list(prompt)
    logits_out, tokens, margins = [], [], []
    with torch.no_grad():
        for _ in range(STEPS + 1):
            out = model(torch.tensor([ids]), use_cache=False)
            last = out.logits[0, -1].float()
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            tok = int(torch.argmax(last))
            logits_out.append([round(float(x), 6) for x in last])
            tokens.append(tok)
            ids.append(tok)
    return logits_out, tokens, min(margins)


def pick_prompt(model, first, seed):
    """A prompt whose greedy path has no near-ties (the engine's argmax must agree) and does not
    just repeat one token (a tied lm_head with a strong residual tends to), else None."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(100):
        body = torch.randint(4, VOCAB, (6,), generator=g).tolist()
        prompt = [first] + body
        logits, tokens, margin = greedy_reference(model, prompt)
        if margin >= MIN_MARGIN and len(set(tokens)) >= 5:
            return prompt, logits, tokens, margin
    return None


def randomise_and_pick(model, seed, first):
    """Raises the layers' gain until the greedy path is varied (the layers, not the embedding, decide)."""
    for gain in (1.0, 2.0, 3.0, 4.0, 6.0):
        randomise(model, seed, gain)
        if hasattr(model, 'tie_weights'):
            model.tie_weights()
        picked = pick_prompt(model, first, seed + 1)
        if picked:
            print('gain', gain)
            return picked
    raise SystemExit('no varied greedy path without near-ties found')


def byte_level_vocab():
    """GPT-2 byte-level BPE vocab (bytes_to_unicode) with OPT's specials first, plus a few merges."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {'<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3}
    for b in range(256):
        vocab[byte_char[b]] = 4 + b
    sp = byte_char[ord(' ')]
    merges = [('t', 'h'), ('th', 'e'), (sp, 'th'), (sp + 'th', 'e'), ('i', 'n'), (sp, 'a'),
              ('e', 'r'), (sp, 'in'), ('o', 'n'), ('l', 'l'), ('h', 'e'), ('a', 'n')]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    assert len(vocab) == VOCAB, len(vocab)
    return vocab, merges


TOKENIZER_TEXT = 'the theory in a hello, world! ünïcödé ✓ then'


def make_opt(out: str) -> dict:
    cfg = OPTConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4,
                    max_position_embeddings=64, word_embed_proj_dim=64, do_layer_norm_before=True,
                    enable_bias=True, pad_token_id=1, bos_token_id=2, eos_token_id=2, torch_dtype='float32',
                    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0)
    torch.manual_seed(1)
    model = OPTForCausalLM(cfg).float().eval()
    picked = randomise_and_pick(model, 11, 2)
    d = os.path.join(out, 'opt-ref')
    model.save_pretrained(d, safe_serialization=True)
    vocab, merges = byte_level_vocab()
    with open(os.path.join(d, 'vocab.json'), 'w') as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, 'merges.txt'), 'w') as f:
        f.write('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges))
    ref = reference(picked, 'opt')
    try:  # cross-check of the vocab.json + merges.txt tokenizer path
        from transformers import GPT2Tokenizer
        tok = GPT2Tokenizer(os.path.join(d, 'vocab.json'), os.path.join(d, 'merges.txt'),
                            unk_token='<unk>', bos_token='</s>', eos_token='</s>', pad_token='<pad>')
        ref['tokenizer'] = {'text': TOKENIZER_TEXT, 'ids': tok.encode(TOKENIZER_TEXT, add_special_tokens=False)}
    except Exception as e:  # noqa: BLE001 - optional extra
        print('opt tokenizer check skipped:', e)
    return ref


def make_llama(out: str) -> dict:
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=False,
                      attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2,
                      torch_dtype='float32')
    torch.manual_seed(2)
    model = LlamaForCausalLM(cfg).float().eval()
    picked = randomise_and_pick(model, 22, 1)
    d = os.path.join(out, 'llama-ref')
    model.save_pretrained(d, safe_serialization=True, max_shard_size='150KB')
    ref = reference(picked, 'llama')
    try:  # a real tokenizer.json (byte-level BPE) for the @huggingface/tokenizers path
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        vocab, merges = byte_level_vocab()
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token='<unk>'))
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        tk.save(os.path.join(d, 'tokenizer.json'))
        ref['tokenizer'] = {'text': TOKENIZER_TEXT, 'ids': tk.encode(TOKENIZER_TEXT).ids}
        with open(os.path.join(d, 'tokenizer_config.json'), 'w') as f:
            json.dump({'bos_token': '<s>', 'eos_token': '</s>',
                       'chat_template': "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                                        "{% if add_generation_prompt %}<|assistant|>{% endif %}"}, f)
    except Exception as e:  # noqa: BLE001 - optional extra
        print('llama tokenizer.json skipped:', e)
    return ref


def reference(picked, arch) -> dict:
    prompt, logits, tokens, margin = picked
    return {'arch': arch, 'transformers': transformers.__version__, 'torch': torch.__version__,
            'prompt': prompt, 'steps': STEPS, 'tokens': tokens, 'minTopMargin': round(margin, 4), 'logits': logits}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--keep-dirs', action='store_true')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = args.out if args.keep_dirs else tempfile.mkdtemp()
    torch.set_num_threads(1)
    for name, make in (('opt-ref', make_opt), ('llama-ref', make_llama)):
        ref = make(work)
        with open(os.path.join(work, name, 'reference.json'), 'w') as f:
            json.dump(ref, f, separators=(',', ':'))
        print(name, 'prompt', ref['prompt'], 'tokens', ref['tokens'], 'margin', ref['minTopMargin'])
    # One file back from the GPU host (its transfer keeps few files).
    with tarfile.open(os.path.join(args.out, 'fixtures.tar.gz'), 'w:gz') as tar:
        for name in ('opt-ref', 'llama-ref'):
            tar.add(os.path.join(work, name), arcname=name)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(work) for f in fs
                if not f.endswith('.tar.gz'))
    print('total bytes', total)


if __name__ == '__main__':
    main()
