#!/usr/bin/env python3
"""The card's fp16 GEMM ceiling for a prefill (issue 10, acceptance 1): how fast can any engine run the
matrix products of one OPT-13B prefill (batch 128 x prompt 512 = 65,536 rows) on this GPU, under its
power limit? Runs only the GEMMs of a prefill layer (QKV 5120->15360, out-projection 5120->5120, FFN
up 5120->20480, FFN down 20480->5120; fp16 in and out, PyTorch's cuBLAS, no attention, norms or
elementwise work) back to back, layer after layer, from an idle GPU for --seconds, and times every
layer with CUDA events.

Prints one JSON line: the time of the first --layers layers (the GEMMs of one whole prefill started
cold, as bench:engine and generate() start theirs), the rate they ran at, and the rate sustained over
the rest of the run. An engine's prefill, which adds attention and the elementwise kernels to these
GEMMs, cannot be faster than firstPrefillSeconds.

Usage: python3 bench/sustained_gemm.py [--rows 65536] [--hidden 5120] [--ffn 20480] [--layers 40] [--seconds 10]
"""
import argparse
import json
import time

import torch


def layer_gemms(rows, hidden, ffn):
    """Operands and outputs of one layer's four products, allocated once (no allocator in the loop)."""
    x = torch.randn(rows, hidden, dtype=torch.float16, device="cuda")
    h = torch.randn(rows, ffn, dtype=torch.float16, device="cuda")
    weights = [torch.randn(hidden, n, dtype=torch.float16, device="cuda") * 0.02 for n in (3 * hidden, hidden, ffn)]
    w_down = torch.randn(ffn, hidden, dtype=torch.float16, device="cuda") * 0.02
    outs = [torch.empty(rows, n, dtype=torch.float16, device="cuda") for n in (3 * hidden, hidden, ffn, hidden)]
    products = [(x, weights[0], outs[0]), (x, weights[1], outs[1]), (x, weights[2], outs[2]), (h, w_down, outs[3])]
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in products)
    return products, flops


def run_layer(products):
    for a, b, out in products:
        torch.matmul(a, b, out=out)


def warm_up(products):
    """One layer on a 256-row slice: kernels chosen and loaded, without heating the GPU."""
    run_layer([(x[:256], w, out[:256]) for x, w, out in products])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--hidden", type=int, default=5120)
    ap.add_argument("--ffn", type=int, default=20480)
    ap.add_argument("--layers", type=int, default=40, help="layers in one prefill (OPT-13B: 40)")
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    products, flops = layer_gemms(a.rows, a.hidden, a.ffn)
    warm_up(products)  # on a slice, so that the GPU is near idle at the start
    torch.cuda.synchronize()
    time.sleep(2.0)
    events = [torch.cuda.Event(enable_timing=True)]
    events[0].record()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < a.seconds or len(events) <= a.layers:
        run_layer(products)
        events.append(torch.cuda.Event(enable_timing=True))
        events[-1].record()
        if len(events) % 8 == 0:
            events[-1].synchronize()  # keep the host within a few layers of the GPU
    torch.cuda.synchronize()
    ms = [events[i].elapsed_time(events[i + 1]) for i in range(len(events) - 1)]
    first = sum(ms[:a.layers]) / 1e3
    rest = sum(ms[a.layers:]) / 1e3
    print(json.dumps({
        "driver": "torch.matmul", "what": "the four GEMMs of a prefill layer, back to back from an idle GPU",
        "rows": a.rows, "hidden": a.hidden, "ffn": a.ffn, "gemmFlopsPerLayer": flops, "layersRun": len(ms),
        "firstPrefillLayers": a.layers, "firstPrefillSeconds": round(first, 3),
        "firstPrefillTflops": round(flops * a.layers / first / 1e12, 1),
        "sustainedTflopsAfter": round(flops * (len(ms) - a.layers) / max(rest, 1e-9) / 1e12, 1),
        "fastestLayerTflops": round(flops / (min(ms) / 1e3) / 1e12, 1),
        "slowestLayerTflops": round(flops / (max(ms) / 1e3) / 1e12, 1),
        "torch": torch.__version__, "card": torch.cuda.get_device_name(0),
    }), flush=True)


if __name__ == "__main__":
    main()
