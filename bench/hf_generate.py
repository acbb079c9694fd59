#!/usr/bin/env python3
"""The GPU-resident yardstick of docs/performance.md (issue 10, acceptance 1): plain Hugging Face
transformers generate() with everything in HBM (fp16, sdpa attention), random weights of a preset's
shape (the GPU host has no network; throughput does not depend on the weights' values), a batch of
random prompts, greedy, exactly `gen` new tokens (min_new_tokens = max_new_tokens = gen).

Prints one JSON line: totalTokensPerSecond = batch·gen / (wall time of generate()), and the prefill
and decode split measured with a separate 1-token generate().

Usage: python3 bench/hf_generate.py --model opt-13b --batch 128 --prompt 512 --gen 32
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, OPTConfig

# Dimensions as model/presets.ts (the synthetic presets the engine's bench uses).
PRESETS = {
    "opt-6.7b": ("opt", dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, ffn_dim=16384)),
    "opt-13b": ("opt", dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, ffn_dim=20480)),
    "opt-30b": ("opt", dict(hidden_size=7168, num_hidden_layers=48, num_attention_heads=56, ffn_dim=28672)),
    "llama-7b": ("llama", dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                               intermediate_size=11008)),
}


def make_config(name):
    arch, dims = PRESETS[name]
    if arch == "opt":
        return OPTConfig(vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=dims["hidden_size"],
                         do_layer_norm_before=True, **dims)
    return LlamaConfig(vocab_size=32000, max_position_embeddings=2048, **dims)


def timed_generate(model, ids, mask, gen):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=gen, min_new_tokens=gen, do_sample=False,
                             pad_token_id=1, eos_token_id=None)
    torch.cuda.synchronize()
    assert out.shape[1] == ids.shape[1] + gen, out.shape
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="opt-13b", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=32)
    a = ap.parse_args()
    cfg = make_config(a.model)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float16, attn_implementation="sdpa")
    model.eval()
    ids = torch.randint(3, cfg.vocab_size, (a.batch, a.prompt), device="cuda")
    mask = torch.ones_like(ids)
    timed_generate(model, ids[:2, :16], mask[:2, :16], 2)  # warm-up (kernels, allocator)
    prefill = timed_generate(model, ids, mask, 1)
    total = timed_generate(model, ids, mask, a.gen)
    decode = max(1e-9, total - prefill)
    print(json.dumps({
        "model": f"synthetic:{a.model}", "driver": "transformers.generate", "attn": "sdpa", "dtype": "float16",
        "batch": a.batch, "prompt": a.prompt, "gen": a.gen, "seconds": round(total, 3),
        "totalTokensPerSecond": round(a.batch * a.gen / total, 2),
        "decodeTokensPerSecond": round(a.batch * (a.gen - 1) / decode, 2), "prefillSeconds": round(prefill, 3),
        "gpuMemoryGiB": round(torch.cuda.max_memory_allocated() / 2**30, 1),
        "torch": torch.__version__, "card": torch.cuda.get_device_name(0),
    }), flush=True)


if __name__ == "__main__":
    main()
