#!/usr/bin/env python3
"""Calibration probe for the planning cost model (docs/planning.md), run on a GPU host with PyTorch.

Measures what the hardware profiles hold (pinned H2D/D2H bandwidth alone and together, fp16 GEMM
rates for the K/V recompute shape [T x h] x [h x 2h], HBM copy bandwidth) and then times a decode
step pattern in PyTorch: per layer, the cache of the next layer (and optionally its weights) copies
host-to-device on a copy stream while the current layer runs its new-token GEMMs, attention and K/V
recompute on the compute stream. It prints one JSON object; docs/planning.md compares it with the
cost model's prediction. This is a stand-in for the CUDA engine's bench, not the engine itself.

usage: python3 planning/calibration/overlap_probe.py [--out FILE]
"""
import argparse, json, time
import torch

dev = torch.device('cuda')
f16 = torch.float16


def timed(fn, reps=5, warm=2, stream=None):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def bandwidth():
    n = 1 << 30
    host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    host2 = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    d = torch.empty(n, dtype=torch.uint8, device=dev)
    d2 = torch.empty(n, dtype=torch.uint8, device=dev)
    h2d = n / timed(lambda: d.copy_(host, non_blocking=True))
    d2h = n / timed(lambda: host2.copy_(d2, non_blocking=True))
    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()

    def both():
        with torch.cuda.stream(s1):
            d.copy_(host, non_blocking=True)
        with torch.cuda.stream(s2):
            host2.copy_(d2, non_blocking=True)
        torch.cuda.synchronize()
    t = timed(both)
    pageable = torch.empty(n, dtype=torch.uint8)
    h2d_pageable = n / timed(lambda: d.copy_(pageable), reps=3)
    big = torch.empty(4 << 30, dtype=torch.uint8, device=dev)
    big2 = torch.empty_like(big)
    hbm = 2 * big.numel() / timed(lambda: big2.copy_(big), reps=10)
    del big, big2
    return {'h2d': h2d, 'd2h': d2h, 'bidirectional_total': 2 * n / t, 'h2d_pageable': h2d_pageable, 'hbm_copy': hbm}


def gemm_rates():
    out = {}
    for h in (5120, 7168):
        w = torch.randn(h, 2 * h, dtype=f16, device=dev)
        for T in (256, 1024, 4096, 16384, 65536):
            a = torch.randn(T, h, dtype=f16, device=dev)
            t = timed(lambda: a @ w, reps=10)
            out[f'recompute_h{h}_T{T}'] = 4 * h * h * T / t
        for b in (16, 64, 256):
            a = torch.randn(b, h, dtype=f16, device=dev)
            w4 = torch.randn(h, 4 * h, dtype=f16, device=dev)
            t = timed(lambda: a @ w4, reps=20)
            out[f'decode_h{h}_b{b}'] = {'flops': 2 * b * h * 4 * h / t, 'weight_bytes_per_s': w4.numel() * 2 / t}
    return out


def decode_step(h, heads, layers, batch, ctx, frac, stream_weights, reps=2):
    """Times `layers` decode layers with the copy of layer l+1's cache overlapping layer l's compute."""
    d = h // heads
    N = batch * ctx
    act_tokens = int(round(frac * N))
    kv_tokens = N - act_tokens
    cache_bytes = kv_tokens * 4 * h + act_tokens * 2 * h
    layer_bytes = 12 * h * h * 2 if stream_weights else 0
    per_layer = cache_bytes + layer_bytes
    host = torch.empty(max(per_layer, 1), dtype=torch.uint8, pin_memory=True)
    bufs = [torch.empty(max(per_layer, 1), dtype=torch.uint8, device=dev) for _ in range(2)]
    wb_host = torch.empty(batch * 4 * h, dtype=torch.uint8, pin_memory=True)
    wqkv = torch.randn(h, 3 * h, dtype=f16, device=dev)
    wo = torch.randn(h, h, dtype=f16, device=dev)
    w1 = torch.randn(h, 4 * h, dtype=f16, device=dev)
    w2 = torch.randn(4 * h, h, dtype=f16, device=dev)
    wkv = wqkv[:, h:]
    act = torch.randn(max(act_tokens, 1), h, dtype=f16, device=dev)
    K = torch.randn(batch, heads, ctx, d, dtype=f16, device=dev)
    V = torch.randn(batch, heads, ctx, d, dtype=f16, device=dev)
    x = torch.randn(batch, h, dtype=f16, device=dev)
    copy = torch.cuda.Stream()
    comp = torch.cuda.current_stream()

    def compute():
        qkv = x @ wqkv
        if act_tokens:
            _ = act @ wkv  # K/V recompute from ACT
        q = qkv[:, :h].view(batch, heads, 1, d)
        o = torch.nn.functional.scaled_dot_product_attention(q, K, V).reshape(batch, h)
        y = o @ wo
        z = torch.relu(y @ w1) @ w2
        return z

    def step():
        ev = [torch.cuda.Event() for _ in range(layers + 1)]
        with torch.cuda.stream(copy):
            bufs[0].copy_(host, non_blocking=True)
            ev[0].record(copy)
        for l in range(layers):
            comp.wait_event(ev[l])
            if l + 1 < layers:
                with torch.cuda.stream(copy):
                    copy.wait_stream(comp)  # buffer (l+1)%2 was used by layer l-1, finished on comp
                    bufs[(l + 1) % 2].copy_(host, non_blocking=True)
                    wb_host.copy_(bufs[l % 2][: wb_host.numel()], non_blocking=True)  # write-back
                    ev[l + 1].record(copy)
            compute()
        torch.cuda.synchronize()

    t_step = timed(step, reps=reps, warm=1)
    # phases alone
    t_copy = timed(lambda: bufs[0].copy_(host, non_blocking=True), reps=reps) * layers
    t_comp = timed(compute, reps=reps) * layers
    res = {'h': h, 'layers': layers, 'batch': batch, 'ctx': ctx, 'frac': frac, 'streamWeights': stream_weights,
           'stepSeconds': t_step, 'copyAloneSeconds': t_copy, 'computeAloneSeconds': t_comp}
    del host, bufs, act, K, V
    torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out')
    args = ap.parse_args()
    r = {'device': torch.cuda.get_device_name(), 'torch': torch.__version__}
    r['bandwidth'] = bandwidth()
    r['gemm'] = gemm_rates()
    steps = []
    for (h, heads, layers) in ((5120, 40, 40), (7168, 56, 48)):
        for frac in (0.0, 0.5, 1.0):
            for sw in (False, True):
                steps.append(decode_step(h, heads, layers, 64, 576, frac, sw))
    r['steps'] = steps
    text = json.dumps(r, indent=1)
    print(text)
    if args.out:
        open(args.out, 'w').write(text)


if __name__ == '__main__':
    main()
