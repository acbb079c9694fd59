#!/usr/bin/env python3
"""Trains the small *trained* reference checkpoints for the quantised-weight accuracy test
(issue 14, acceptance 2: test/integration/quant-accuracy.test.ts).

make_fixtures.py's opt-ref / llama-ref are fresh random inits: their logits swing by whole units
on a weight change and their top-2 margins mean little, which is not how a served model behaves.
This script trains a tiny OPT (and a tiny Llama) from its random init on text that ships with the
repo (README.md + docs/*.md, byte-level BPE, the same 272-entry vocab as make_fixtures.py) for a
few hundred AdamW steps on the CPU, then saves:
  opt-trained/    config.json, model.safetensors (fp16), vocab.json + merges.txt, reference.json
  llama-trained/  config.json, model.safetensors (fp16), tokenizer.json, reference.json
reference.json has the same fields as make_fixtures.py's (prompt, steps, greedy tokens and the
last-position logits by full recomputation, in float32 from the saved fp16 weights), plus
  prompts     128 prompts of PROMPT_TOKENS token ids cut from held-out text (the accuracy test's
              decode inputs: in-distribution prompts, unlike random ids)
  training    steps, final train / held-out loss (nats per token), corpus tokens, seconds
Weights are saved as fp16: the 16-bit model of the issue; the engine's CPU backend runs it in f32.
Each checkpoint stays under 2 MB. The corpus is the docs as they are when the script runs, so a
re-run on later docs gives a similar, not an identical, checkpoint (training.corpusTokens records it);
the committed fixtures are the ones the tests and docs/performance.md figures refer to.

Run (torch + transformers, CPU, no network; ~1-2 min per model on 2 cores):
    python3 scripts/train_fixture.py --out test/fixtures [--arch opt|llama|both] [--steps N]
    python3 scripts/train_fixture.py --out test/fixtures --reference-only   # reference.json again
"""
import argparse
import glob
import json
import math
import os
import sys
import time

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import STEPS, VOCAB, byte_level_vocab, greedy_reference  # noqa: E402  (one vocab and one reference for every fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ = 128            # training context; max_position_embeddings covers it
BATCH = 16
PROMPT_TOKENS = 16   # the accuracy test's prompt length
N_PROMPTS = 128
MIN_MARGIN = 0.05


def corpus_text() -> str:
    files = [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
    return '\n\n'.join(open(f, encoding='utf-8').read() for f in files)


def tokenizer() -> Tokenizer:
    vocab, merges = byte_level_vocab()
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token='<unk>'))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return tk


def make_model(arch: str):
    if arch == 'opt':
        cfg = OPTConfig(vocab_size=VOCAB, hidden_size=128, num_hidden_layers=3, ffn_dim=384, num_attention_heads=4,
                        max_position_embeddings=SEQ, word_embed_proj_dim=128, do_layer_norm_before=True,
                        enable_bias=True, pad_token_id=1, bos_token_id=2, eos_token_id=2, dropout=0.0,
                        attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0)
        torch.manual_seed(3)
        return OPTForCausalLM(cfg), 2
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=128, intermediate_size=320, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=SEQ,
                      rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True, attention_bias=False,
                      mlp_bias=False, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(4)
    return LlamaForCausalLM(cfg), 0


def batches(ids: torch.Tensor, bos: int, g: torch.Generator):
    """Random windows of SEQ-1 tokens, each starting with the BOS the serving tokenizer prepends."""
    while True:
        starts = torch.randint(0, len(ids) - SEQ, (BATCH,), generator=g)
        x = torch.stack([ids[s:s + SEQ - 1] for s in starts.tolist()])
        yield torch.cat([torch.full((BATCH, 1), bos, dtype=ids.dtype), x], dim=1)


def loss_of(model, x: torch.Tensor) -> torch.Tensor:
    logits = model(x, use_cache=False).logits[:, 1:-1]  # skip predicting from BOS alone
    return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), x[:, 2:].reshape(-1))


def train(model, train_ids, held_ids, bos, steps):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(5)
    it = batches(train_ids, bos, g)
    model.train()
    t0 = time.time()
    for step in range(steps):
        loss = loss_of(model, next(it))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(f'step {step} loss {loss.item():.3f} ({time.time() - t0:.0f}s)', flush=True)
    model.eval()
    with torch.no_grad():
        hg = torch.Generator().manual_seed(6)
        held = sum(loss_of(model, next(batches(held_ids, bos, hg))).item() for _ in range(4)) / 4
    return {'steps': steps, 'trainLoss': round(loss.item(), 4), 'heldOutLoss': round(held, 4),
            'seconds': round(time.time() - t0, 1)}


def prompts_from(held_ids: torch.Tensor, bos: int) -> list:
    """N_PROMPTS prompts (BOS + PROMPT_TOKENS - 1 tokens) at evenly spaced places of the held-out text."""
    n = PROMPT_TOKENS - 1
    step = (len(held_ids) - n) // N_PROMPTS
    return [[bos] + held_ids[i * step:i * step + n].tolist() for i in range(N_PROMPTS)]


def save(arch: str, model, out: str, prompts: list, training: dict, tk: Tokenizer) -> None:
    name = f'{arch}-trained'
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    model.half().save_pretrained(d, safe_serialization=True)
    vocab, merges = byte_level_vocab()
    if arch == 'opt':
        with open(os.path.join(d, 'vocab.json'), 'w') as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(os.path.join(d, 'merges.txt'), 'w') as f:
            f.write('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges))
    else:
        tk.save(os.path.join(d, 'tokenizer.json'))
    write_reference(arch, d, prompts, training, tk)


def write_reference(arch: str, d: str, prompts: list, training: dict, tk: Tokenizer) -> None:
    """reference.json from the checkpoint as saved, reloaded in f32. Not from the trained module cast
    to fp16 and back: that also rounds buffers the checkpoint does not hold (Llama's RoPE inv_freq),
    which moved the logits by ~1e-3."""
    name = os.path.basename(d)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    picked = None
    for p in prompts:
        logits, tokens, margin = greedy_reference(model, p)
        if margin >= MIN_MARGIN:
            picked = (p, logits, tokens, margin)
            break
    if picked is None:
        raise SystemExit(f'{name}: no prompt with a greedy path free of near-ties')
    p, logits, tokens, margin = picked
    ref = {'arch': arch, 'transformers': transformers.__version__, 'torch': torch.__version__,
           'prompt': p, 'steps': STEPS, 'tokens': tokens, 'minTopMargin': round(margin, 4), 'logits': logits,
           'prompts': prompts, 'training': training,
           'sample': tk.decode(p + tokens)}
    with open(os.path.join(d, 'reference.json'), 'w') as f:
        json.dump(ref, f, separators=(',', ':'))
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f'{name}: {size} bytes, training {training}, sample {ref["sample"]!r}')
    if size >= 2 * 1024 * 1024:
        raise SystemExit(f'{name} is {size} bytes: keep the fixture under 2 MB')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--arch', choices=['opt', 'llama', 'both'], default='both')
    ap.add_argument('--steps', type=int, default=400)
    ap.add_argument('--reference-only', action='store_true',
                    help="rewrite OUT/<arch>-trained/reference.json from the saved checkpoint (keeps its prompts)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tk = tokenizer()
    archs = ['opt', 'llama'] if args.arch == 'both' else [args.arch]
    if args.reference_only:
        for arch in archs:
            d = os.path.join(args.out, f'{arch}-trained')
            old = json.load(open(os.path.join(d, 'reference.json')))
            write_reference(arch, d, old['prompts'], old['training'], tk)
        return
    ids = torch.tensor(tk.encode(corpus_text()).ids, dtype=torch.long)
    cut = int(len(ids) * 0.9)
    train_ids, held_ids = ids[:cut], ids[cut:]
    print(f'corpus {len(ids)} tokens ({cut} train, {len(held_ids)} held out)')
    for arch in archs:
        model, bos = make_model(arch)
        model = model.float()
        training = train(model, train_ids, held_ids, bos, args.steps)
        training['corpusTokens'] = len(ids)
        save(arch, model, args.out, prompts_from(held_ids, bos), training, tk)


if __name__ == '__main__':
    main()
