#!/usr/bin/env python3
"""Can decode's memory-bound work hide under the prefill's GEMMs on this GPU (issue 10, acceptance 1)?

An engine that runs the prefill and then the decode one after the other (bench:engine, generate())
pays for both: on the H200, OPT-13B at batch 128 x 512 + 32 spends >= 2.52 s in the prefill's GEMMs
under the 700 W limit (bench/sustained_gemm.py) and >= 0.36 s reading the cache in the decode's
attention. A schedule that decoded the first sequences while later ones were still being prefilled
could hide the second under the first only if the GPU runs the two concurrently without the GEMMs
slowing down (the power limit is shared). This measures exactly that, with stand-ins of the same
size: (a) the GEMMs of a whole OPT-13B prefill (40 layers of QKV, out-projection, FFN up and down over
65,536 rows) on one stream; (b) the decode attention's bytes (31 steps x 40 layers x one layer's
cache at batch 128, context 528: 1.38 GB each) read by a reduction on another stream; (c) both at once,
(b)'s reads issued between (a)'s layers. Each run starts after 2 s idle.

Prints one JSON line with the three times and hiddenFraction = ((a) + (b) - (c)) / (b): 1 when the
reads hide completely, 0 when the two just add up.

Usage: python3 bench/overlap_probe.py [--layers 40] [--reads-per-layer 31] [--read-gb 1.384]
"""
import argparse
import json
import time

import torch

from sustained_gemm import layer_gemms, run_layer, warm_up


def timed(fn):
    torch.cuda.synchronize()
    time.sleep(2.0)  # every run starts from the same idle state
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=40)
    ap.add_argument("--reads-per-layer", type=int, default=31, help="decode steps whose attention runs per prefill layer")
    ap.add_argument("--read-gb", type=float, default=1.384, help="one layer's cache bytes read per decode step")
    a = ap.parse_args()
    products, _ = layer_gemms(65536, 5120, 20480)
    cache = torch.randn(int(a.read_gb * 1e9 / 2), dtype=torch.float16, device="cuda")
    sink = torch.empty((), dtype=torch.float32, device="cuda")
    side = torch.cuda.Stream()

    def gemms():
        for _ in range(a.layers):
            run_layer(products)

    def reads(stream):
        with torch.cuda.stream(stream):
            for _ in range(a.reads_per_layer):
                torch.sum(cache, dim=0, dtype=torch.float32, out=sink)

    def reads_only():
        for _ in range(a.layers):
            reads(torch.cuda.current_stream())

    def both():
        main_stream = torch.cuda.current_stream()
        side.wait_stream(main_stream)
        for _ in range(a.layers):
            run_layer(products)
            reads(side)
        main_stream.wait_stream(side)

    warm_up(products)
    reads(torch.cuda.current_stream())
    t_gemm, t_read, t_both = timed(gemms), timed(reads_only), timed(both)
    t_gemm2, t_both2 = timed(gemms), timed(both)
    gemm, together = min(t_gemm, t_gemm2), min(t_both, t_both2)
    read_bytes = a.layers * a.reads_per_layer * a.read_gb * 1e9
    print(json.dumps({
        "what": "prefill GEMMs on one stream, decode-attention-sized reads on another: alone and together",
        "layers": a.layers, "readsPerLayer": a.reads_per_layer, "readGB": a.read_gb,
        "gemmSeconds": [round(t_gemm, 3), round(t_gemm2, 3)], "readSeconds": round(t_read, 3),
        "readTBps": round(read_bytes / t_read / 1e12, 2), "togetherSeconds": [round(t_both, 3), round(t_both2, 3)],
        "sumSeconds": round(gemm + t_read, 3),
        "hiddenFraction": round((gemm + t_read - together) / t_read, 3),
        "torch": torch.__version__, "card": torch.cuda.get_device_name(0),
    }), flush=True)


if __name__ == "__main__":
    main()
