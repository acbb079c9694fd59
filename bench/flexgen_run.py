#!/usr/bin/env python3
"""FlexGen (FlexLLMGen) as the peer of a HybridServe run, on the GPU host, offline.

Runs FlexLLMGen's own benchmark (`flexllmgen.flex_opt.run_flexllmgen`) with random weights
(`--path _DUMMY_`) and prints one JSON line with its throughput, its GPU peak memory and the policy.
The GPU host cannot reach the Hugging Face hub, so the tokenizer FlexGen would download is replaced by
a stand-in that pads one fixed prompt of token ids to the prompt length, as FlexGen's own
get_test_inputs does with its real tokenizer (the ids do not change the work: random weights).
Nothing else of FlexGen is changed; its numbers come from its own timers (write_benchmark_log).

FlexLLMGen's source must be importable: scripts/gpu-run.sh puts .gpu/flexgen (a copy of
FMInference/FlexLLMGen's flexllmgen/ package, made by scripts/fetch-flexgen.sh) on PYTHONPATH.

Usage: bench/flexgen_run.py --model facebook/opt-13b --percent 0 100 0 100 100 0 \
           --gpu-batch-size 64 --num-gpu-batches 2 [--prompt-len 512 --gen-len 32] [--gpu-budget-gib 24]
"""
import argparse
import json
import sys
import tempfile

# Seven fixed ids inside OPT's vocabulary, OPT's BOS (2) first; OPT pads with 1, on the left as FlexGen asks.
PROMPT_IDS = [2, 34960, 16, 5, 812, 343, 9]
PAD_ID = 1


class PaddedPromptTokenizer:
    """What FlexGen asks of its tokenizer with dummy weights: ids padded on the left to max_length."""

    class _Encoded:
        def __init__(self, input_ids):
            self.input_ids = input_ids

    def __call__(self, prompts, padding="max_length", max_length=None, **_):
        ids = PROMPT_IDS[-max_length:] if max_length else list(PROMPT_IDS)
        pad = [PAD_ID] * ((max_length or len(ids)) - len(ids))
        return self._Encoded([pad + ids for _ in prompts])

    def batch_decode(self, ids, **_):
        return ["" for _ in ids]


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="facebook/opt-13b")
    p.add_argument("--percent", nargs=6, type=int, required=True, metavar="P",
                   help="weights GPU/CPU, cache GPU/CPU, activations GPU/CPU (FlexGen's --percent)")
    p.add_argument("--gpu-batch-size", type=int, required=True)
    p.add_argument("--num-gpu-batches", type=int, required=True)
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--gen-len", type=int, default=32)
    p.add_argument("--gpu-budget-gib", type=float, default=None,
                   help="mark the run withinBudget when FlexGen's GPU peak stays under this many GiB")
    return p.parse_args(argv)


def flexgen_args(a, log_file):
    """FlexGen's own argument parser, filled as its command line would be."""
    from flexllmgen import flex_opt

    parser = argparse.ArgumentParser()
    flex_opt.add_parser_arguments(parser)
    return parser.parse_args([
        "--model", a.model, "--path", "_DUMMY_", "--prompt-len", str(a.prompt_len), "--gen-len", str(a.gen_len),
        "--gpu-batch-size", str(a.gpu_batch_size), "--num-gpu-batches", str(a.num_gpu_batches),
        "--percent", *map(str, a.percent), "--log-file", log_file, "--verbose", "1",
    ])


def run(a):
    from flexllmgen import flex_opt

    flex_opt.AutoTokenizer.from_pretrained = staticmethod(lambda *_, **__: PaddedPromptTokenizer())
    seen = {}
    original = flex_opt.write_benchmark_log

    def capture(filename, model_size, cache_size, hidden_size, gpu_peak_mem, projected, prefill_latency,
                prefill_throughput, decode_latency, decode_throughput, total_latency, total_throughput):
        seen.update(modelBytes=model_size, cacheBytes=cache_size, gpuPeakBytes=gpu_peak_mem,
                    prefillSeconds=prefill_latency, decodeSeconds=decode_latency,
                    decodeTokensPerSecond=decode_throughput, totalTokensPerSecond=total_throughput)
        return original(filename, model_size, cache_size, hidden_size, gpu_peak_mem, projected, prefill_latency,
                        prefill_throughput, decode_latency, decode_throughput, total_latency, total_throughput)

    flex_opt.write_benchmark_log = capture
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        flex_opt.run_flexllmgen(flexgen_args(a, log.name))
    row = {
        "peer": "flexgen", "model": a.model, "percent": a.percent, "gpuBatchSize": a.gpu_batch_size,
        "numGpuBatches": a.num_gpu_batches, "batch": a.gpu_batch_size * a.num_gpu_batches,
        "prompt": a.prompt_len, "gen": a.gen_len, **seen,
    }
    if a.gpu_budget_gib is not None:
        row["gpuBudgetBytes"] = a.gpu_budget_gib * 2**30
        row["withinBudget"] = seen.get("gpuPeakBytes", float("inf")) <= a.gpu_budget_gib * 2**30
    return row


if __name__ == "__main__":
    print(json.dumps(run(parse(sys.argv[1:]))), flush=True)
