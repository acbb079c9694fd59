#!/usr/bin/env bash
# Runs the CUDA backend's build, tests and benchmarks on the GPU host in one go (device time is
# scarce: one call, many stages). Usage: scripts/gpu-run.sh STAGE... where STAGE is one of
#   build     cmake (HYBRIDSERVE_CUDA=on) of hs_core + hs_cuda, then the native CUDA test and bench
#             executables; then the Node addon (non-fatal: it also needs the other engineers' code)
#   test      kernel tests (cuda_kernel_test.cu, cuda_gemm_test.cu) and CUDA-vs-CPU model tests (hs_cuda_tests)
#   sanitize  compute-sanitizer memcheck on the kernel tests and the tiny-model runs
#   smoke     a short offloading bench (opt-1.3b) to check the pipeline end to end
#   host13    the README's no-regression row: OPT-13B batch 128 512/32 fp16 all on the host, ACT auto
#   bench13   OPT-13B, batch 128, prompt 512, gen 32: ACT fraction 0 and auto; then the host-capacity
#             runs (fixed 48 GiB cache budget: largest batch at 0 and at auto)
#   table     docs/performance.md rows: opt-6.7b, opt-30b, llama-7b (batch sized to the host)
#   node      bench/engine.ts through the addon (needs the Node bundle and dist/)
#   serving   issue 11: the server (bench/serving.ts) against bench:engine on OPT-13B, batch 128,
#             prompt 512, gen 32, default placement and all-on-host (--resident-layers 0
#             --gpu-cache-blocks 0 on both sides), printing served ÷ engine tokens/s, engine steps
#             and an `acceptance1` verdict line; then Poisson rate sweeps (opt-13b, opt-1.3b). Also as two halves:
#             serving_burst and serving_sweep (each fits one 10-minute call more easily).
#             Needs Node and its packages (scripts/pack-gpu-node.sh here, carry .gpu and dist: the
#             build stage unpacks the packages first, so that it builds build/hybridserve.node too).
#   tiers     issue 10: the GPU cache tier. transformers generate() (bench/hf_generate.py) and the
#             engine with every layer resident and the whole cache in the GPU tier, OPT-13B batch 128
#             (acceptance 1); a 24 GiB budget (acceptance 2); everything on the host (acceptance 3)
#   flexgen24 issue 10 acceptance 2: FlexGen (bench/flexgen_run.py on .gpu/flexgen, made by
#             scripts/fetch-flexgen.sh; carry .gpu) at OPT-13B batch 128 prompt 512 gen 32 with the
#             --percent policies of FLEXGEN_POLICIES (each marked withinBudget when its GPU peak stays
#             under 24 GiB), then the engine's 24 GiB row in the same call; prints the best
#             within-budget FlexGen figure and the ratio
#   tiertest  only the CUDA tier tests (CUDA vs CPU over mixed-tier block tables) and their memcheck
#   contract  issue 11 acceptance 3: node dist/bench/engine-contract.js (token counts, cpu vs cuda)
#   placement_sweep  issue 10 acceptance 4: resident layers swept at 24 GiB (bench/placement-sweep.ts compares);
#             SWEEP_RESIDENT, SWEEP_GPU_BLOCKS, SWEEP_MINI_BATCHES, SWEEP_ACT run the planner's choice
#   minibatch bench:engine all on host with 1 and 4 in-step mini-batches (--mini-batch-tokens; needs node)
#   profile_prefill  issue 10: the resident OPT-13B prefill under nsys (kernel time summary, CSV)
#   clocks13  issue 10: the resident OPT-13B row with the SM clock and power logged (clocks-hbm13.csv);
#             CLOCKS=1 logs prefill_parts the same way (clocks-parts.csv)
#   gemm_ceiling  issue 10: the prefill's GEMMs alone (bench/sustained_gemm.py, torch) from an idle GPU, then
#             generate(), both with the clocks logged: the fp16 rate the card sustains under its power limit;
#             then bench/overlap_probe.py (do decode-sized cache reads on a second stream hide under them?)
#   prefill_parts  issue 10: each operation of one OPT-13B prefill layer (128 x 512) timed on its own with
#             random data, next to its variants (hs_prefill_parts_bench; JSON lines in prefill-parts.jsonl)
#   serve_planned  issue 10: serve with no placement flags (the start plan), whole GPU and 24 GiB, 128 x 512/32
#             (SERVE_PLANNED_ARGS: more serve flags, e.g. --max-step-tokens 0 for steps without the default cap)
#   serve_operator_plan  issue 10: `serve --plan` with the operator's plan file for an OPT-13B HSD on this node
#             (bench/operator-plan.ts), then 128 prompts of 1,024-2,000 tokens (longer than planned): all must finish
#   quant     issue 14: OPT-13B batch 128, prompt 512, gen 32, everything on the host, fp16 then fp8
#             then int4 weights in one process (ACT fraction auto, solved with each format's layer
#             bytes), printing fp8/fp16 and int4/fp16 total tokens/s; then the 24 GiB row (default
#             placement, 28 GPU cache blocks) in fp16 and fp8. Also as halves: quant_host, quant_24g.
#             (test and sanitize cover the quantised CUDA-vs-CPU model tests: *_quantized_matches_cpu_*.)
#   pipeline  issue 15 (the 2-GPU host kind, after build): the NCCL pipeline's test executable
#             (hs_cuda_pipeline_tests: 2-GPU logits == 1-GPU logits, steps in flight), 2 processes x 1 GPU
#             through the rendezvous == 1 process x 2 GPUs (hs_cuda_pipeline_ranks), and OPT-30B batch 128
#             (per group) prompt 512 gen 32 all-on-host at 1 and 2 GPUs in one process, with the ratio.
#             Also as halves: pipeline_check (tests, ranks, lost rank) and pipeline30 (the OPT-30B rows)
#   pipeline66  OPT-66B batch 64 (per group) at 1 and 2 GPUs, ACT 1 (the smallest cache), where it fits
#   serve_inflight  the server on a 2-GPU pipeline (the x2 kind, after build; the addon needs NCCL):
#             OPT-13B all on the host, 128 concurrent 512/32 requests, --steps-in-flight 1 then the
#             default (one lane per stage); prints both served tokens/s, their ratio and each run's
#             /v1/hybridserve/stats server.laneSteps (the default must step in both slots)
#   gpus_auto  --gpus auto (the x2 kind, after build): the addon's gpuCount() with both GPUs and with
#             CUDA_VISIBLE_DEVICES=0; then per case (OPT-13B 96 GiB host, the GPU's memory / a 16 GiB
#             share) `plan --gpus auto --visible-gpus 2` next to `serve --gpus auto` (its 'GPUs:' line)
#             and 64 served 512/32 requests: a gpusAuto JSON line with the planned and served GPU
#             counts and the predicted and served tokens/s (the prediction's first 2-GPU check)
#   numa      issue 15 (the x2 kind, after build): each GPU's NUMA node; pinned H2D GB/s of a 1 GiB buffer
#             on each host node (near = the GPU's node, far = another) per GPU; both GPUs at once with
#             their buffers near vs all on node 0; then the placement check (a tiny 2-stage model's pools
#             and tensors on the nodes asked for, pinned; its 2-GPU pipeline over them == 1 GPU's logits)
#             — hs_numa_bench, JSON lines in numa.jsonl, the checks' ok/FAIL lines in numa.log
# Logs and JSON lines go to $OUT (or ./gpu-out when OUT is unset).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
B=build-gpu
export CUDAARCHS=${CUDAARCHS:-90}
log() { echo "[gpu-run $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/gpu-run.log"; }

# Node's packages for the addon build and the Node stages (scripts/pack-gpu-node.sh made the tarball).
unpack_node_modules() {
  [ -d node_modules/fastify ] || [ ! -f .gpu/node-modules.tar.xz ] || tar xJf .gpu/node-modules.tar.xz
}

stage_build() {
  unpack_node_modules
  nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv | tee -a "$OUT/gpu-run.log"
  free -g | tee -a "$OUT/gpu-run.log"
  local napi=""
  [ -d node_modules/node-api-headers/include ] && napi="-DNODE_API_INCLUDE_DIR=$PWD/node_modules/node-api-headers/include -DNODE_ADDON_API_DIR=$PWD/node_modules/node-addon-api"
  cmake -S native -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYBRIDSERVE_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$CUDAARCHS $napi \
    >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; return 1; }
  cmake --build $B --target hs_cuda hs_core -j 16 >"$OUT/build.log" 2>&1 || { grep -E "error|Error" -A3 "$OUT/build.log" | head -60; return 1; }
  local libs="$B/libhs_cuda.a $B/libhs_core.a -lcublas -lcublasLt -lpthread"
  # The executables link in parallel (each nvcc is one process; device time is the scarce thing).
  nvcc -std=c++17 -O2 -arch=sm_$CUDAARCHS -I native/src -o $B/hs_cuda_tests native/test/cuda/cuda_kernel_test.cu \
    native/test/cuda/cuda_gemm_test.cu native/test/cuda/cuda_model_test.cc native/test/test_main.cc $libs \
    >"$OUT/build-tests.log" 2>&1 &
  local tests=$!
  nvcc -std=c++17 -O2 -arch=sm_$CUDAARCHS -I native/src -o $B/hs_cuda_bench native/test/cuda/cuda_bench.cc $libs \
    >"$OUT/build-bench.log" 2>&1 || { tail -40 "$OUT/build-bench.log"; return 1; }
  wait $tests || { tail -40 "$OUT/build-tests.log"; return 1; }
  log "native CUDA build ok"
  if [ -n "$napi" ]; then
    if cmake --build $B -j 16 >"$OUT/addon-build.log" 2>&1; then
      mkdir -p build && cp $B/hybridserve.node build/ && log "addon build ok"
    else
      log "addon build FAILED (see addon-build.log)"; grep -E "error" "$OUT/addon-build.log" | head -20
    fi
  fi
}

stage_test() { $B/hs_cuda_tests 2>&1 | tee "$OUT/tests.log"; }

stage_sanitize() {
  # Kernel tests and the tiny-model CUDA-vs-CPU runs (opt-125m is left out: memcheck makes it slow).
  local rc=0
  for f in kernel_ tiny; do
    compute-sanitizer --tool memcheck --error-exitcode 3 $B/hs_cuda_tests $f >"$OUT/sanitize-$f.log" 2>&1 || rc=1
    tail -4 "$OUT/sanitize-$f.log" | tee -a "$OUT/gpu-run.log"
  done
  return $rc
}

stage_smoke() {
  $B/hs_cuda_bench --model opt-1.3b --batch 32 --prompt 128 --gen 8 --act-fraction 0,auto 2>>"$OUT/bench-stderr.log" | tee -a "$OUT/bench.jsonl"
}

# The no-regression row (README): OPT-13B, batch 128, prompt 512, gen 32, fp16, everything on the host
# (no resident layer, no GPU cache), ACT fraction auto, on the first GPU. Floor: docs/performance.md.
stage_host13() {
  CUDA_VISIBLE_DEVICES=${HOST13_GPU:-0} $B/hs_cuda_bench --model opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction auto \
    --resident-layers 0 --gpu-cache-blocks 0 2>>"$OUT/bench-stderr.log" | tee -a "$OUT/host13.jsonl"
}

stage_bench13() {
  # One process (the 26 GB of pinned weights are built once): the acceptance runs at batch 128, then
  # the host-capacity runs with a fixed 48 GiB cache budget (largest batch at 0 and at auto).
  $B/hs_cuda_bench --model opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction 0,auto,0@cap,auto@cap --host-cache 48G \
    2>>"$OUT/bench-stderr.log" | tee -a "$OUT/bench.jsonl"
}

stage_table() {
  # docs/performance.md rows (OPT-66B's 131 GB of fp16 weights do not fit a 128 GiB host).
  $B/hs_cuda_bench --model opt-6.7b --batch 128 --prompt 512 --gen 32 --act-fraction 0,auto 2>>"$OUT/bench-stderr.log" | tee -a "$OUT/bench.jsonl"
  $B/hs_cuda_bench --model llama-7b --batch 128 --prompt 512 --gen 32 --act-fraction 0,auto 2>>"$OUT/bench-stderr.log" | tee -a "$OUT/bench.jsonl"
  $B/hs_cuda_bench --model opt-30b --batch 64 --prompt 512 --gen 32 --act-fraction 0,auto 2>>"$OUT/bench-stderr.log" | tee -a "$OUT/bench.jsonl"
}

stage_node() {
  [ -f .gpu/node-bundle.tar.xz ] && tar xJf .gpu/node-bundle.tar.xz -C / 2>/dev/null
  node dist/bench/engine.js --model synthetic:opt-1.3b --batch 16 --prompt 128 --gen 8 --act-fraction auto 2>&1 | tee -a "$OUT/node-bench.log"
}

# ---- serving (issue 11) ------------------------------------------------------------------------------
SERVE_PORT=18411
SERVING_DEVICE=${SERVING_DEVICE:-cuda}  # cpu only to try the stage's plumbing on a machine without a GPU
# The comparison's model and host memory (only to try the plumbing with a small model; the acceptance is OPT-13B).
SERVING_MODEL=${SERVING_MODEL:-synthetic:opt-13b}
SERVING_HOST_MEMORY=${SERVING_HOST_MEMORY:-96GiB}
SERVE_URL=http://127.0.0.1:$SERVE_PORT
SERVE_PID=""

node_ready() {
  [ -f .gpu/node-bundle.tar.xz ] && ! command -v node >/dev/null && tar xJf .gpu/node-bundle.tar.xz -C / 2>/dev/null
  unpack_node_modules
  command -v node >/dev/null || { log "no node: unpack .gpu/node-bundle.tar.xz (tools/pack-node.sh)"; return 1; }
  [ -f dist/bench/serving.js ] && [ -f build/hybridserve.node ] || { log "dist/ or build/hybridserve.node missing"; return 1; }
}

# Starts `hybridserve serve` on cuda in the background with the given flags; waits until it answers.
serve_start() {
  node dist/cli/main.js serve --device $SERVING_DEVICE --host 127.0.0.1 --port $SERVE_PORT "$@" >"$OUT/serve-$SERVE_TAG.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 1 600); do
    node -e "fetch('$SERVE_URL/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" 2>/dev/null && { log "server up ($*)"; return 0; }
    kill -0 $SERVE_PID 2>/dev/null || { log "server exited"; tail -20 "$OUT/serve-$SERVE_TAG.log"; return 1; }
    sleep 1
  done
  log "server not up after 600 s"; return 1
}

serve_stop() {
  [ -n "$SERVE_PID" ] && kill $SERVE_PID 2>/dev/null && wait $SERVE_PID 2>/dev/null
  SERVE_PID=""
}

# One placement: bench:engine first (its JSON gives the ACT fraction), then the server at that same
# fraction and the same batch (--max-batch 128, 128 concurrent 512/32 ignore_eos requests), then the
# ratio of the two and the engine-step comparison. The placement flags go to both sides verbatim.
serving_compare() {  # $1 = tag (host|default), $2 = bench:engine placement flags, $3 = serve placement flags
  local tag=$1 engine_flags=$2 serve_flags=$3
  SERVE_TAG="opt13b-$tag"
  # shellcheck disable=SC2086  # the flag lists are meant to split
  node dist/bench/engine.js --model $SERVING_MODEL --batch 128 --prompt 512 --gen 32 --act-fraction auto \
    --host-memory $SERVING_HOST_MEMORY $engine_flags --device $SERVING_DEVICE 2>>"$OUT/serving-stderr.log" | tail -1 >"$OUT/engine-$tag.json"
  cat "$OUT/engine-$tag.json" | tee -a "$OUT/serving.jsonl"
  local frac
  frac=$(node -e "try{console.log(JSON.parse(require('fs').readFileSync('$OUT/engine-$tag.json','utf8')).actFraction)}catch{console.log('auto')}")
  # shellcheck disable=SC2086
  serve_start --model $SERVING_MODEL --max-batch 128 --host-memory $SERVING_HOST_MEMORY --act-fraction "$frac" $serve_flags || { serve_stop; return 1; }
  grep -E "placement:|cache pools:|ACT fraction" "$OUT/serve-$SERVE_TAG.log" | tee -a "$OUT/gpu-run.log"
  node dist/bench/serving.js --url $SERVE_URL --model $SERVING_MODEL --concurrency 128 --requests 128 --prompt-tokens 512 \
    --max-tokens 32 --warmup 1 2>>"$OUT/serving-stderr.log" | tee "$OUT/serving-$tag.txt" | tail -1 >"$OUT/serving-$tag.json"
  cat "$OUT/serving-$tag.txt"; tail -1 "$OUT/serving-$tag.json" >>"$OUT/serving.jsonl"
  serve_stop
  # engineSteps: bench:engine takes 1 prefill step of all 128 prompts + 31 decode steps = 32, with
  # 65536 prefill tokens in its first step; the server must take the same (stepsEqual). statsTruth:
  # the server's /v1/hybridserve/stats counters against what the clients received (acceptance 3 on cuda).
  node -e "
    const fs=require('fs');
    const e=JSON.parse(fs.readFileSync('$OUT/engine-$tag.json','utf8')), j=JSON.parse(fs.readFileSync('$OUT/serving-$tag.json','utf8')), s=j.levels[0];
    const srv=s.server||{}, engineSteps=1+(e.gen-1);
    const r={ratio:'$tag', servedTokensPerSecond:s.output_throughput, engineTokensPerSecond:e.totalTokensPerSecond,
      servedOverEngine:s.output_throughput/e.totalTokensPerSecond, actFraction:e.actFraction, serverActFraction:j.actFraction,
      residentLayers:e.residentLayers, gpuKvBlocks:e.gpuKvBlocks, batch:e.batch, serverConcurrency:s.concurrency,
      engineSteps, serverEngineSteps:srv.engineSteps, stepsEqual:srv.engineSteps===engineSteps,
      enginePrefillTokensPerStep:e.batch*e.prompt, serverPrefillTokens:srv.prefillTokens,
      meanBatch:srv.meanBatch, engineBusyFraction:srv.engineBusyFraction,
      statsTruth:srv.decodeTokens+s.completed===s.total_output_tokens && srv.prefillTokens===s.total_input_tokens && s.failed===0};
    console.log(JSON.stringify(r));" | tee -a "$OUT/serving.jsonl" "$OUT/gpu-run.log" "$OUT/ratios.jsonl"
}

# Acceptance 1: both placements in one call, then one verdict line (met: served >= 0.90 x engine in both).
serving_acceptance() {
  node -e "
    const rows=require('fs').readFileSync('$OUT/ratios.jsonl','utf8').trim().split('\\n').map(JSON.parse);
    const by=Object.fromEntries(rows.map(r=>[r.ratio,r]));
    const ok=t=>by[t]&&by[t].servedOverEngine>=0.9;
    console.log(JSON.stringify({acceptance1:'served >= 0.90 x bench:engine, OPT-13B batch 128 512/32',
      host:by.host&&by.host.servedOverEngine, default:by.default&&by.default.servedOverEngine, met:ok('host')&&ok('default')}));
  " | tee -a "$OUT/serving.jsonl" "$OUT/gpu-run.log"
}

stage_serving_burst() {
  node_ready || return 1
  rm -f "$OUT/ratios.jsonl"
  # Every layer resident, no GPU cache tier (serve's defaults before its start plan), on both sides.
  serving_compare default "--resident-layers 40 --gpu-cache-blocks 0" "--resident-layers 40 --gpu-cache-blocks 0"
  # All on host: nothing resident, no GPU cache tier, on both sides.
  serving_compare host "--resident-layers 0 --gpu-cache-blocks 0" "--resident-layers 0 --gpu-cache-blocks 0"
  serving_acceptance
  # The issue's own command line (ACT fraction auto, no product label): the pools must come out
  # split at the fraction the server reports (pools.actBlocksTotal > 0 when it is > 0).
  [ -n "${SERVING_SKIP_ISSUE:-}" ] && return 0
  SERVE_TAG=opt13b-issue
  serve_start --model synthetic:opt-13b --max-batch 128 --host-memory 96GiB && \
    node dist/bench/serving.js --url $SERVE_URL --model synthetic:opt-13b --concurrency 128 --requests 128 --prompt-tokens 512 \
      --max-tokens 32 2>>"$OUT/serving-stderr.log" | tee "$OUT/serving-issue.txt" | tail -1 >>"$OUT/serving.jsonl"
  serve_stop
  cat "$OUT/serving-issue.txt" 2>/dev/null
}

# The server's start plan (issue 10; planning/start-plan.ts serverStartPlan): `serve` with no placement flag and
# no plan file, on the whole GPU and under --gpu-memory 24GiB: its placement line (from the planner)
# and the served tokens/s of 128 concurrent 512/32 requests at --max-batch 128.
stage_serve_planned() {
  node_ready || return 1
  local cap
  for cap in "" 24GiB; do
    SERVE_TAG="opt13b-planned${cap:+-$cap}"
    # shellcheck disable=SC2086  # ${cap:+...} and SERVE_PLANNED_ARGS (e.g. --max-step-tokens 0) are meant to split
    serve_start --model $SERVING_MODEL --max-batch 128 --host-memory $SERVING_HOST_MEMORY ${cap:+--gpu-memory $cap} ${SERVE_PLANNED_ARGS:-} || { serve_stop; continue; }
    grep -E "placement:|cache pools:|ACT fraction" "$OUT/serve-$SERVE_TAG.log" | tee -a "$OUT/gpu-run.log"
    node dist/bench/serving.js --url $SERVE_URL --model $SERVING_MODEL --concurrency 128 --requests 128 --prompt-tokens 512 \
      --max-tokens 32 2>>"$OUT/serving-stderr.log" | tail -1 | tee -a "$OUT/serve-planned.jsonl"
    serve_stop
  done
}

# The operator's plan file on a GPU (issue 10, plans sized for a window-long prompt): the plan an
# operator writes for an OPT-13B HSD on this node (bench/operator-plan.ts), `serve --plan FILE` as a
# pod starts, then a burst of 128 prompts of 1,024-2,000 tokens, longer than the 512 the HSD plans for:
# the server must cap its steps at the plan's maxStepTokens and finish every request (no "GPU memory
# budget exceeded"). Prints the plan, the serving line and an operatorPlan verdict line.
stage_serve_operator_plan() {
  node_ready || return 1
  cat >"$OUT/hsd-opt13b.yaml" <<'YAML'
spec:
  model: { uri: "synthetic:opt-13b" }
  gpusPerPod: 1
  cache: { actFraction: auto, hostMemory: { bytes: 103079215104 } }
  engine: { promptTokens: 512, genTokens: 32, maxBatch: 128 }
YAML
  local product
  product=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
  node dist/bench/operator-plan.js --hsd "$OUT/hsd-opt13b.yaml" --gpu-product "$product" --node-memory 128GiB \
    --out "$OUT/operator-plan.json" 2>&1 | tee -a "$OUT/gpu-run.log" || return 1
  SERVE_TAG="opt13b-operator-plan"
  serve_start --model $SERVING_MODEL --max-batch 128 --plan "$OUT/operator-plan.json" || { serve_stop; return 1; }
  grep -E "placement:|cache pools:|ACT fraction|steps of at most" "$OUT/serve-$SERVE_TAG.log" | tee -a "$OUT/gpu-run.log"
  node dist/bench/serving.js --url $SERVE_URL --model $SERVING_MODEL --concurrency 128 --requests 128 --prompt-tokens 1024:2000 \
    --max-tokens 16 2>>"$OUT/serving-stderr.log" | tail -1 | tee "$OUT/serve-operator-plan.json"
  local alive=0
  kill -0 "$SERVE_PID" 2>/dev/null && alive=1
  serve_stop
  node -e "const j=JSON.parse(require('fs').readFileSync('$OUT/serve-operator-plan.json','utf8'));const l=j.levels[0];console.log(JSON.stringify({operatorPlan:'128 prompts of 1024-2000 tokens against the operator plan file',completed:l.completed,failed:l.failed,serverAlive:$alive===1,outputTokensPerSecond:l.output_throughput}))" | tee -a "$OUT/gpu-run.log"
  ! grep -q "budget exceeded" "$OUT/serve-$SERVE_TAG.log"
}

# Acceptance 3 on cuda without jest: the token-count contract (bench/engine-contract-steps.ts) on cpu
# and cuda, ACT fractions 0/0.5/1, prefix caching on; exits non-zero on any mismatch.
stage_contract() {
  node_ready || return 1
  node dist/bench/engine-contract.js --model synthetic:opt-125m --devices "${CONTRACT_DEVICES:-cpu,cuda}" 2>>"$OUT/contract-stderr.log" | tee "$OUT/contract.json"
  local rc=${PIPESTATUS[0]}
  grep MISMATCH "$OUT/contract-stderr.log" | head -20
  node -e "const j=JSON.parse(require('fs').readFileSync('$OUT/contract.json','utf8'));console.log(JSON.stringify({acceptance3:'token counts cpu vs cuda',ok:j.ok,devicesAgree:j.devicesAgree,mismatches:j.mismatches,exit:$rc}))" | tee -a "$OUT/gpu-run.log"
  return "$rc"
}

stage_serving_sweep() {
  node_ready || return 1
  # Open loop: Poisson arrivals at each rate (requests/s), 512-token prompts, 32 output tokens.
  SERVE_TAG=sweep-opt13b
  serve_start --model synthetic:opt-13b --max-batch 128 --host-memory 96GiB || { serve_stop; return 1; }
  node dist/bench/serving.js --url $SERVE_URL --model synthetic:opt-13b --rates 1,2,4,inf --requests 48 --prompt-tokens 512 \
    --max-tokens 32 2>>"$OUT/serving-stderr.log" | tee -a "$OUT/serving-sweep.txt" | tail -1 >>"$OUT/serving.jsonl"
  serve_stop
  SERVE_TAG=sweep-opt1.3b
  serve_start --model synthetic:opt-1.3b --max-batch 128 --host-memory 32GiB || { serve_stop; return 1; }
  node dist/bench/serving.js --url $SERVE_URL --model synthetic:opt-1.3b --rates 4,16,64,inf --requests 128 --prompt-tokens 512 \
    --max-tokens 32 2>>"$OUT/serving-stderr.log" | tee -a "$OUT/serving-sweep.txt" | tail -1 >>"$OUT/serving.jsonl"
  serve_stop
  cat "$OUT/serving-sweep.txt"
}

stage_serving() { stage_serving_burst; local rc=$?; stage_serving_sweep || rc=1; return $rc; }

trap serve_stop EXIT

bench_json() { $B/hs_cuda_bench "$@" 2>>"$OUT/bench-stderr.log" | tee -a "$OUT/tiers.jsonl"; }
# The default placement on the H200 for model $1 (hybridserve plan: every layer resident, the batch's
# cache in the GPU tier), batch 128, 512/32.
resident_row() {
  bench_json --model "$1" --batch 128 --prompt 512 --gen 32 --act-fraction 0 --resident-layers 40 --gpu-cache-blocks all --mini-batches 1
}

stage_tiers() {
  local m=${TIER_MODEL:-opt-13b}
  # The yardstick first, alone on the GPU: plain generate() with everything in HBM (TIER_SKIP_HF=1
  # when the caller ran it already, e.g. beside the build).
  [ -n "${TIER_SKIP_HF:-}" ] || python3 bench/hf_generate.py --model $m --batch 128 --prompt 512 --gen 32 2>>"$OUT/hf-stderr.log" | tee -a "$OUT/tiers.jsonl"
  resident_row $m
  # TIER_ONLY_HBM=1: only the resident pair (the figures for opt-6.7b and llama-7b, or a rerun).
  [ "$m" = opt-13b ] && [ -z "${TIER_ONLY_HBM:-}" ] || return 0
  # A 24 GiB budget: resident layers as the engine fits them, the plan's 28 GPU cache blocks, host overflow.
  bench_json --model $m --batch 128 --prompt 512 --gen 32 --act-fraction 1,auto --gpu-memory 24G --resident-layers -1 --gpu-cache-blocks 28
  # Everything on the host (no regression).
  bench_json --model $m --batch 128 --prompt 512 --gen 32 --act-fraction auto --resident-layers 0 --gpu-cache-blocks 0
}

# "weights-gpu weights-cpu cache-gpu cache-cpu act-gpu act-cpu gpu-batch num-gpu-batches" per policy.
# OPT-13B's 24 GB of fp16 weights and 57 GB of KV at batch 128 leave a 24 GiB GPU room for part of
# the weights only: the cache stays on the CPU. The first is the one of the notes (47.0 tok/s).
FLEXGEN_POLICIES=${FLEXGEN_POLICIES:-"0 100 0 100 0 100 64 2;0 100 0 100 100 0 64 2;30 70 0 100 100 0 64 2;50 50 0 100 100 0 32 4"}

stage_flexgen24() {
  [ -f .gpu/flexgen/flexllmgen/flex_opt.py ] || { log "no .gpu/flexgen: run scripts/fetch-flexgen.sh here and carry .gpu"; return 1; }
  local pol rc=0
  IFS=';' read -ra pols <<<"$FLEXGEN_POLICIES"
  for pol in "${pols[@]}"; do
    read -r w1 w2 c1 c2 a1 a2 gb nb <<<"$pol"
    log "flexgen --percent $w1 $w2 $c1 $c2 $a1 $a2, gpu batch $gb x $nb"
    PYTHONPATH=$PWD/.gpu/flexgen${PYTHONPATH:+:$PYTHONPATH} timeout 420 python3 bench/flexgen_run.py --model facebook/opt-13b \
      --percent $w1 $w2 $c1 $c2 $a1 $a2 --gpu-batch-size $gb --num-gpu-batches $nb --gpu-budget-gib 24 \
      2>>"$OUT/flexgen-stderr.log" | tee -a "$OUT/flexgen.jsonl" || { log "flexgen policy failed (flexgen-stderr.log)"; rc=1; }
  done
  bench_json --model opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction auto --gpu-memory 24G --resident-layers -1 --gpu-cache-blocks 28
  python3 - "$OUT/flexgen.jsonl" "$OUT/tiers.jsonl" <<'PY' | tee -a "$OUT/gpu-run.log"
import json, sys
fg = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ok = [r for r in fg if r.get("withinBudget")]
ours = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")][-1]
best = max(ok, key=lambda r: r["totalTokensPerSecond"]) if ok else None
for r in fg:
    print(f"[flexgen] percent {r['percent']} batch {r['gpuBatchSize']}x{r['numGpuBatches']}: {r['totalTokensPerSecond']:.1f} tok/s, "
          f"GPU peak {r['gpuPeakBytes'] / 2**30:.1f} GiB, within 24 GiB: {r['withinBudget']}")
print(f"[flexgen24] hybridserve 24 GiB: {ours['totalTokensPerSecond']:.1f} tok/s; best FlexGen within budget: "
      + (f"{best['totalTokensPerSecond']:.1f} ({best['percent']}); ratio {ours['totalTokensPerSecond'] / best['totalTokensPerSecond']:.2f}" if best else "none"))
PY
  return $rc
}

stage_tiertest() {
  $B/hs_cuda_tests tiers 2>&1 | tee "$OUT/tiertests.log"
  compute-sanitizer --tool memcheck --error-exitcode 3 $B/hs_cuda_tests tiers_match_cpu_opt_tiny >"$OUT/sanitize-tiers.log" 2>&1
  tail -4 "$OUT/sanitize-tiers.log" | tee -a "$OUT/gpu-run.log"
}

quant_json() { $B/hs_cuda_bench "$@" 2>>"$OUT/quant-stderr.log" | tee -a "$OUT/quant.jsonl"; }

# Total tokens/s of each format over fp16 among the quant.jsonl rows of one regime.
quant_ratios() {
  python3 - "$OUT/quant.jsonl" "$1" <<'PY'
import json, sys
rows = [r for r in (json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")) if not r.get("failed")]
regime = sys.argv[2]
pick = [r for r in rows if (r["gpuKvBlocks"] == 0 and r["residentLayers"] == 0) == (regime == "host")]
by = {r["weightDtype"]: r for r in pick}
base = by.get("fp16")
for d, r in by.items():
    ratio = r["totalTokensPerSecond"] / base["totalTokensPerSecond"] if base else float("nan")
    print(f"[quant {regime}] {d}: total {r['totalTokensPerSecond']:.1f} tok/s, decode {r['decodeTokensPerSecond']:.1f}, "
          f"a={r['actFraction']:.3f}, weights h2d/step {r['bytesPerDecodeStep']['weightsH2D']/1e9:.2f} GB, "
          f"step {r['meanDecodeStepSeconds']:.3f} s; {d}/fp16 = {ratio:.3f}")
PY
}

stage_quant_host() {
  # Acceptance 3: all on the host (no resident layer, no GPU cache), fp16, fp8, int4 in one process.
  quant_json --model opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction auto --resident-layers 0 \
    --gpu-cache-blocks 0 --weight-dtype fp16,fp8,int4 || return 1
  quant_ratios host | tee -a "$OUT/gpu-run.log"
}

stage_quant_24g() {
  # The memory-tiers 24 GiB row: resident layers as the engine fits them (fp8 keeps them quantised).
  quant_json --model opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction auto --gpu-memory 24G \
    --resident-layers -1 --gpu-cache-blocks 28 --weight-dtype fp16,fp8 || return 1
  quant_ratios 24g | tee -a "$OUT/gpu-run.log"
}

stage_quant() { stage_quant_host; local rc=$?; stage_quant_24g || rc=1; return $rc; }

# ---- placement sweep (issue 10 acceptance 4) ---------------------------------------------------------------
# OPT-13B batch 128 512/32 at a 24 GiB budget, ACT 1, 28 GPU cache blocks: the engine's own fit (-1)
# and resident layer counts around it up to the planner's choice (35 on 2026-12-01), one process.
# Compare here afterwards (or there, with node): node dist/bench/placement-sweep.js sweep.jsonl --gpu-memory 24GiB
stage_placement_sweep() {
  $B/hs_cuda_bench --model opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction "${SWEEP_ACT:-1}" --gpu-memory 24G \
    --resident-layers "${SWEEP_RESIDENT:--1,20,24,26,28,30,32,35}" --gpu-cache-blocks "${SWEEP_GPU_BLOCKS:-28}" \
    --mini-batches "${SWEEP_MINI_BATCHES:-4}" 2>>"$OUT/sweep-stderr.log" | tee -a "$OUT/sweep.jsonl"
  command -v node >/dev/null && [ -f dist/bench/placement-sweep.js ] &&
    node dist/bench/placement-sweep.js "$OUT/sweep.jsonl" --gpu-memory 24GiB | tee -a "$OUT/gpu-run.log"
  return 0
}

# ---- in-step mini-batches through the engine core -----------------------------------------------------
# bench:engine (the addon and engine core, as the server runs them) on OPT-13B all on host, one
# mini-batch per step (today's server) and 4 (--mini-batch-tokens 17408 = 128 x 544 / 4: the
# zig-zag schedule hs_cuda_bench --mini-batches 4 measures for the no-regression row).
stage_minibatch() {
  node_ready || return 1
  local n
  for n in 0 17408; do
    node dist/bench/engine.js --model synthetic:opt-13b --batch 128 --prompt 512 --gen 32 --act-fraction auto \
      --host-memory 96GiB --resident-layers 0 --gpu-cache-blocks 0 --mini-batch-tokens $n --device cuda \
      2>>"$OUT/minibatch-stderr.log" | tail -1 | tee -a "$OUT/minibatch.jsonl"
  done
}

# ---- pipeline (issue 15) -------------------------------------------------------------------------------
# Builds hs_pipeline_cuda (CMake finds NCCL in the build stage), the pipeline tests and an NCCL build of
# the bench (hs_cuda_bench_nccl: the same source with HS_WITH_NCCL, so that --gpus 2 is available).
pipeline_build() {
  [ -f $B/libhs_pipeline_cuda.a ] && [ -x $B/hs_cuda_pipeline_tests ] && [ -x $B/hs_cuda_bench_nccl ] && [ -x $B/hs_cuda_pipeline_ranks ] && return 0
  grep -q "NCCL pipeline .*nccl" "$OUT/cmake.log" 2>/dev/null || log "cmake did not report NCCL (see cmake.log)"
  cmake --build $B --target hs_pipeline_cuda -j 16 >"$OUT/pipeline-build.log" 2>&1 || { grep -E "error" -A3 "$OUT/pipeline-build.log" | head -40; return 1; }
  local libs="$B/libhs_pipeline_cuda.a $B/libhs_cuda.a $B/libhs_core.a -lcublas -lcublasLt -lnccl -lpthread" exe src pids=() rc=0
  for exe in hs_cuda_pipeline_tests:cuda_pipeline_test.cc hs_cuda_bench_nccl:cuda_bench.cc hs_cuda_pipeline_ranks:cuda_pipeline_ranks.cc; do
    src=native/test/cuda/${exe#*:}
    [ "${exe%%:*}" = hs_cuda_pipeline_tests ] && src="$src native/test/test_main.cc"
    # shellcheck disable=SC2086  # $src and $libs are meant to split
    nvcc -std=c++17 -O2 -arch=sm_$CUDAARCHS -DHS_WITH_NCCL -I native/src -o $B/${exe%%:*} $src $libs \
      >"$OUT/pipeline-build-${exe%%:*}.log" 2>&1 &
    pids+=($!)
  done
  for exe in "${pids[@]}"; do wait "$exe" || rc=1; done
  [ $rc = 0 ] || { tail -40 "$OUT"/pipeline-build-*.log; return 1; }
  log "pipeline build ok"
}

stage_pipeline_build() { pipeline_build; }  # only the build (e.g. in the background while the tests run)

stage_pipeline() { stage_pipeline_check; local rc=$?; stage_pipeline30 || rc=1; return $rc; }

# The pipeline's correctness on two GPUs: the tests, the rendezvous and a lost rank.
stage_pipeline_check() {
  nvidia-smi -L | tee -a "$OUT/gpu-run.log"
  pipeline_build || return 1
  local rc=0
  timeout 240 $B/hs_cuda_pipeline_tests pipeline_cuda 2>&1 | tee "$OUT/pipeline-tests.log" || rc=1
  # 2 processes x 1 GPU through the rendezvous == 1 process x 2 GPUs (rank 0 prints "ranks: PASS").
  # NCCL's warnings go to the rank logs (the first run here hung without a word).
  local at=127.0.0.1:29511
  export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
  timeout 90 $B/hs_cuda_pipeline_ranks --rank 1 --world-size 2 --leader-address $at --device 1 >"$OUT/ranks-1.log" 2>&1 &
  timeout 90 $B/hs_cuda_pipeline_ranks --rank 0 --world-size 2 --leader-address $at --device 0 2>&1 | tee "$OUT/ranks-0.log" || rc=1
  wait $! || { rc=1; tail -5 "$OUT/ranks-1.log"; }
  # A lost rank: rank 1 ends its process 10 s in, with steps in flight; rank 0's step must fail with
  # HS_PEER_LOST (its NCCL transfers aborted by the link watch), not hang ("loss: PASS").
  timeout 90 $B/hs_cuda_pipeline_ranks --rank 1 --world-size 2 --leader-address $at --device 1 --die-after-s 10 >"$OUT/loss-1.log" 2>&1 &
  timeout 90 $B/hs_cuda_pipeline_ranks --rank 0 --world-size 2 --leader-address $at --device 0 --expect-loss 2>&1 | tee "$OUT/loss-0.log" || rc=1
  wait $! 2>/dev/null
  return $rc
}

stage_pipeline30() {
  pipeline_build || return 1
  local rc=0
  # Acceptance 2: 2 GPUs >= 1.8x the 1-GPU total tokens/s (the summary line's ratio). --batch is per
  # group: 1 GPU runs one group of 128, 2 GPUs two groups of 128 in flight (FlexGen's schedule).
  # Both sides prefill in 4 chunks of 32 sequences (the pipeline's fill and drain then cost a chunk,
  # not a group's whole prefill: 11.8 s against 7.9 s on 2026-12-01 without chunks); the 2-GPU run's
  # host memory near each stage's GPU when the host has several NUMA nodes.
  timeout 500 $B/hs_cuda_bench_nccl --model opt-30b --batch 128 --prompt 512 --gen 32 --act-fraction auto \
    --resident-layers 0 --gpu-cache-blocks 0 --gpus 1,2 --prefill-chunks "${PIPELINE_PREFILL_CHUNKS:-4}" \
    --numa-place "${PIPELINE_NUMA:-on}" 2>>"$OUT/pipeline-stderr.log" | tee -a "$OUT/pipeline.jsonl" || rc=1
  return $rc
}

stage_pipeline66() {
  pipeline_build || return 1
  # 131 GB of weights: 1 GPU with one group of 64, 2 GPUs with two groups of 64 (213 GB pinned in all);
  # should the two groups not fit, 2 GPUs with two groups of 32 (the same 64 sequences in total).
  # PIPELINE66_GPUS=2 (only the pipeline) and PIPELINE66_TIMEOUT fit it into what is left of a call.
  # (No --numa-place: placed weights are a second copy, and two of 131 GB do not fit 256 GiB.)
  timeout "${PIPELINE66_TIMEOUT:-540}" $B/hs_cuda_bench_nccl --model opt-66b --batch 64 --prompt 512 --gen 32 --act-fraction 1 \
    --resident-layers 0 --gpu-cache-blocks 0 --gpus "${PIPELINE66_GPUS:-1,2}" --prefill-chunks 4 \
    2>>"$OUT/pipeline-stderr.log" | tee -a "$OUT/pipeline.jsonl"
  [ -n "${PIPELINE66_GPUS:-}" ] && return 0
  grep -q '"model":"synthetic:opt-66b".*"summary":"pipeline"' "$OUT/pipeline.jsonl" && return 0
  # Only when two groups of 64 failed (the bench's "failed" line), not when time ran out: a second
  # try would not fit the call.
  grep -q '"model":"synthetic:opt-66b".*"gpus":2,"failed":true' "$OUT/pipeline.jsonl" || return 1
  log "opt-66b: two groups of 64 did not fit; two groups of 32"
  timeout 300 $B/hs_cuda_bench_nccl --model opt-66b --batch 32 --prompt 512 --gen 32 --act-fraction 1 \
    --resident-layers 0 --gpu-cache-blocks 0 --gpus 2 2>>"$OUT/pipeline-stderr.log" | tee -a "$OUT/pipeline.jsonl"
}

# ---- server steps in flight (issue 15 gap) ---------------------------------------------------------------
# The same requests through `serve --gpus 2` with one step in flight (--steps-in-flight 1: one step of
# 128) and with the default (a lane per stage: two steps of 64 in flight, stage s on one while stage
# s-1 runs the other). Expected: the default well above one lane (bench:engine's pipeline ratio).
stage_serve_inflight() {
  node_ready || return 1
  # The overrides only try the plumbing on a machine without GPUs (SERVING_DEVICE=cpu, INFLIGHT_PIPELINE="--stages 2").
  local m=${INFLIGHT_MODEL:-synthetic:opt-13b} mem=${INFLIGHT_HOST_MEMORY:-96GiB} pipe=${INFLIGHT_PIPELINE:---gpus 2}
  local n=${INFLIGHT_REQUESTS:-128} prompt=${INFLIGHT_PROMPT:-512} tag
  for tag in one default; do
    SERVE_TAG=inflight-$tag
    local lanes=""
    [ $tag = one ] && lanes="--steps-in-flight 1"
    # shellcheck disable=SC2086  # $pipe and $lanes are meant to split
    serve_start --model $m $pipe --max-batch $n --host-memory $mem --resident-layers 0 --gpu-cache-blocks 0 $lanes || { serve_stop; return 1; }
    grep -E "steps in flight|placement:|cache pools:|ACT fraction|on cuda" "$OUT/serve-$SERVE_TAG.log" | tee -a "$OUT/gpu-run.log"
    node dist/bench/serving.js --url $SERVE_URL --model $m --concurrency $n --requests $n --prompt-tokens $prompt \
      --max-tokens 32 --warmup 1 2>>"$OUT/serving-stderr.log" | tee "$OUT/inflight-$tag.txt" | tail -1 >"$OUT/inflight-$tag.json"
    node -e "fetch('$SERVE_URL/v1/hybridserve/stats').then(r=>r.json()).then(s=>console.log(JSON.stringify(s.server)))" \
      >"$OUT/inflight-$tag-stats.json"
    serve_stop
  done
  node -e "
    const fs=require('fs'), read=f=>JSON.parse(fs.readFileSync('$OUT/'+f,'utf8'));
    const one=read('inflight-one.json').levels[0], def=read('inflight-default.json').levels[0];
    const s1=read('inflight-one-stats.json'), s2=read('inflight-default-stats.json');
    console.log(JSON.stringify({serveInFlight:'$m $pipe, $n x $prompt/32, all on host',
      oneLaneTokensPerSecond:one.output_throughput, defaultTokensPerSecond:def.output_throughput,
      ratio:def.output_throughput/one.output_throughput, oneLaneSteps:s1.laneSteps, defaultLaneSteps:s2.laneSteps,
      failed:one.failed+def.failed, bothSlotsUsed:s2.laneSteps.length===2&&s2.laneSteps.every(n=>n>0)}));
  " | tee -a "$OUT/gpu-run.log" "$OUT/inflight.jsonl"
}

# ---- --gpus auto (issue 15) -------------------------------------------------------------------------------
stage_gpus_auto() {
  node_ready || return 1
  local rc=0 all one
  all=$(node -e "console.log(require('./build/hybridserve.node').gpuCount())")
  one=$(CUDA_VISIBLE_DEVICES=0 node -e "console.log(require('./build/hybridserve.node').gpuCount())")
  log "gpuCount: $all visible, $one with CUDA_VISIBLE_DEVICES=0 (nvidia-smi: $(nvidia-smi -L | wc -l))"
  [ "$one" = 1 ] && [ "$all" = "$(nvidia-smi -L | wc -l)" ] || rc=1
  local case gm m=synthetic:opt-13b
  for case in full 16GiB; do
    gm=""
    [ $case = 16GiB ] && gm="--gpu-memory 16GiB"
    SERVE_TAG=gpus-auto-$case
    # shellcheck disable=SC2086  # $gm is meant to split
    node dist/cli/main.js plan --model $m --gpu "${GPUS_AUTO_PRODUCT:-NVIDIA-H200}" --host-memory 96GiB $gm --max-batch 64 \
      --prompt 512 --gen 32 --gpus auto --visible-gpus "$all" --json >"$OUT/gpus-auto-plan-$case.json" || rc=1
    # shellcheck disable=SC2086
    serve_start --model $m --gpus auto --max-batch 64 --host-memory 96GiB $gm || { serve_stop; rc=1; continue; }
    grep -E "GPUs:|steps in flight|placement:|on cuda" "$OUT/serve-$SERVE_TAG.log" | tee -a "$OUT/gpu-run.log"
    node dist/bench/serving.js --url $SERVE_URL --model $m --concurrency 64 --requests 64 --prompt-tokens 512 \
      --max-tokens 32 --warmup 1 2>>"$OUT/serving-stderr.log" | tail -1 >"$OUT/gpus-auto-$case.json"
    serve_stop
    node -e "
      const fs=require('fs'), plan=JSON.parse(fs.readFileSync('$OUT/gpus-auto-plan-$case.json','utf8'));
      const lvl=JSON.parse(fs.readFileSync('$OUT/gpus-auto-$case.json','utf8')).levels[0];
      const line=(fs.readFileSync('$OUT/serve-$SERVE_TAG.log','utf8').match(/GPUs: (\\d+)/)||[])[1];
      const pred=plan.pipeline?plan.pipeline.tokensPerSecond:plan.predictedTokensPerSecond;
      console.log(JSON.stringify({gpusAuto:'$m 96GiB $gm', plannedGpus:plan.gpuChoice.gpus, servedGpus:Number(line),
        predictedTokensPerSecond:pred, servedTokensPerSecond:lvl.output_throughput, failed:lvl.failed,
        candidates:plan.gpuChoice.candidates}));
    " | tee -a "$OUT/gpu-run.log" "$OUT/gpus-auto.jsonl" || rc=1
  done
  return $rc
}

# ---- where the resident prefill goes (issue 10, acceptance 1) ---------------------------------------------
# OPT-13B, batch 128, prompt 512, every layer resident and the cache in the GPU tier, 2 steps (the prefill
# and one decode step) under Nsight Systems: the kernel summary says which kernels hold the 3.3 s prefill
# (GEMMs at the probed 893 TFLOP/s would take 1.9 s of it); only the run is captured (HS_BENCH_PROFILE: the
# bench brackets it with cudaProfilerStart/Stop), not the probes. Falls back to the phase timer without nsys.
stage_profile_prefill() {
  local args="--model opt-13b --batch 128 --prompt 512 --gen 2 --act-fraction 0 --resident-layers 40 --gpu-cache-blocks all --mini-batches 1"
  if command -v nsys >/dev/null; then
    # shellcheck disable=SC2086  # $args is meant to split
    HS_BENCH_PROFILE=1 nsys profile --capture-range=cudaProfilerApi --capture-range-end=stop -o "$OUT/prefill" \
      --force-overwrite true --stats=false $B/hs_cuda_bench $args >"$OUT/prefill-bench.log" 2>&1 || return 1
    nsys stats --report cuda_gpu_kern_sum --format csv "$OUT/prefill.nsys-rep" 2>/dev/null | head -40 | tee "$OUT/prefill-kernels.csv"
    rm -f "$OUT/prefill.nsys-rep" "$OUT/prefill.sqlite"
  else
    log "no nsys on this host: the bench's phase split only"
    # shellcheck disable=SC2086
    $B/hs_cuda_bench $args 2>&1 | tee "$OUT/prefill-bench.log" | tail -3
  fi
}

# The GPU's SM clock, power and clock-event reasons every 100 ms into $OUT/clocks-NAME.csv, in the
# background; prints the logger's pid (kill it after). Falls back to the fields every driver has.
clock_log() {
  local f="$OUT/clocks-$1.csv" q=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu
  nvidia-smi --query-gpu=$q,clocks_event_reasons.active --format=csv -lms 100 >"$f" 2>&1 &
  local pid=$!
  sleep 0.5
  if ! kill -0 $pid 2>/dev/null; then
    nvidia-smi --query-gpu=$q --format=csv -lms 100 >"$f" 2>&1 &
    pid=$!
  fi
  echo $pid
}

# clocks13: the resident OPT-13B row (as tiers runs it, without generate()) with the clocks logged, to
# see whether the 2.6 s prefill runs at lower SM clocks than its operations timed alone (prefill_parts,
# logged the same way when run after this stage with CLOCKS=1).
stage_clocks13() {
  local pid
  pid=$(clock_log hbm13)
  resident_row opt-13b
  local rc=$?
  kill "$pid" 2>/dev/null
  return $rc
}

# gemm_ceiling: the card's fp16 GEMM ceiling for an OPT-13B prefill under its power limit
# (bench/sustained_gemm.py: the prefill's GEMMs alone, from an idle GPU), then generate() alone, each
# with the clocks logged (clocks-ceiling.csv, clocks-hf.csv), then the overlap probe: what bounds
# acceptance 1's total ratio.
stage_gemm_ceiling() {
  local pid rc
  pid=$(clock_log ceiling)
  python3 bench/sustained_gemm.py 2>>"$OUT/hf-stderr.log" | tee -a "$OUT/tiers.jsonl"
  rc=${PIPESTATUS[0]}
  kill "$pid" 2>/dev/null
  sleep 3
  pid=$(clock_log hf)
  python3 bench/hf_generate.py --model opt-13b --batch 128 --prompt 512 --gen 32 2>>"$OUT/hf-stderr.log" | tee -a "$OUT/tiers.jsonl"
  kill "$pid" 2>/dev/null
  # Whether decode-sized cache reads on a second stream hide under those GEMMs (bench/overlap_probe.py).
  python3 bench/overlap_probe.py 2>>"$OUT/hf-stderr.log" | tee -a "$OUT/tiers.jsonl"
  return $rc
}

stage_prefill_parts() {
  nvcc -std=c++17 -O2 -arch=sm_$CUDAARCHS -I native/src -o $B/hs_prefill_parts_bench native/test/cuda/prefill_parts_bench.cu \
    $B/libhs_cuda.a $B/libhs_core.a -lcublas -lcublasLt >"$OUT/prefill-parts-build.log" 2>&1 || { tail -30 "$OUT/prefill-parts-build.log"; return 1; }
  local pid=""
  [ -z "${CLOCKS:-}" ] || pid=$(clock_log parts)
  $B/hs_prefill_parts_bench ${PARTS_ARGS:-} 2>>"$OUT/bench-stderr.log" | tee -a "$OUT/prefill-parts.jsonl"
  local rc=${PIPESTATUS[0]}
  [ -z "$pid" ] || kill "$pid" 2>/dev/null
  return $rc
}

# ---- NUMA placement (issue 15) ----------------------------------------------------------------------------
stage_numa() {
  pipeline_build || return 1
  local libs="$B/libhs_pipeline_cuda.a $B/libhs_cuda.a $B/libhs_core.a -lcublas -lcublasLt -lnccl -lpthread"
  nvcc -std=c++17 -O2 -arch=sm_$CUDAARCHS -DHS_WITH_NCCL -I native/src -o $B/hs_numa_bench native/test/cuda/numa_bench.cc \
    $libs >"$OUT/numa-build.log" 2>&1 || { tail -30 "$OUT/numa-build.log"; return 1; }
  { lscpu | grep -i numa; nvidia-smi topo -m; } 2>&1 | tee -a "$OUT/numa.log"
  timeout 300 $B/hs_numa_bench 2>>"$OUT/numa.log" | tee "$OUT/numa.jsonl"
  local rc=$?
  grep -E "ok  |FAIL" "$OUT/numa.log"
  return $rc
}

for s in "$@"; do
  log "stage $s"
  t0=$(date +%s)
  if ! "stage_$s"; then
    log "stage $s FAILED"
    [ "$s" = build ] && exit 1
  fi
  log "stage $s done in $(( $(date +%s) - t0 )) s"
done
