#!/usr/bin/env bash
# Planner calibration on the GPU host (issue 4, acceptance 3), in one device call: builds only the
# CUDA backend's static libraries and the calibration bench (native/test/cuda/calibrate_bench.cc),
# then measures mean decode step times with the weights pinned once per model:
#   OPT-13B dims, batch 128, ACT fractions 0, 0.1, …, 1 (one pool group: 57 GB KV + 28 GB ACT)
#   OPT-30B dims, batch 64,  ACT fractions 0, 0.5, 1   (two pool groups: 60 GB of weights + 48 GB)
# Both at a mean cached context of 528 tokens per sequence (prompt 512 + gen 32 / 2, the
# planner's convention), 1 warm-up + 3 timed decode steps per fraction, every layer streamed.
# JSON lines go to $OUT/calibrate.jsonl (one per fraction, flushed as it completes), progress to
# $OUT/calibrate-stderr.log and $OUT/gpu-calibrate.log. Compare with the planner locally:
#   npx tsx bench/calibrate-planning.ts $OUT/calibrate.jsonl      (see docs/performance.md)
# Wall time on the H200 host (docs/performance.md timings): build ~20 s, OPT-13B ~130 s (24 s weights,
# ~31 s pools, 11 × ~5 s), OPT-30B ~130 s (58 s weights, 2 × 18 s pools, 3 × ~8 s).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
B=build-gpu
export CUDAARCHS=${CUDAARCHS:-90}
STEPS=${STEPS:-3}
log() { echo "[gpu-calibrate $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/gpu-calibrate.log"; }

log "start"
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv 2>&1 | tee -a "$OUT/gpu-calibrate.log"
free -g | tee -a "$OUT/gpu-calibrate.log"

if [ ! -x $B/hs_calibrate_bench ]; then
  cmake -S native -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DHYBRIDSERVE_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$CUDAARCHS \
    >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
  cmake --build $B --target hs_cuda hs_core -j 16 >"$OUT/build.log" 2>&1 || { grep -E "error|Error" -A3 "$OUT/build.log" | head -60; exit 1; }
  nvcc -std=c++17 -O2 -arch=sm_$CUDAARCHS -I native/src -o $B/hs_calibrate_bench native/test/cuda/calibrate_bench.cc \
    $B/libhs_cuda.a $B/libhs_core.a -lcublas -lcublasLt -lpthread >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi
log "build ok"

run() {  # run LIMIT_S ARGS...: one model's fractions in one process (weights pinned once)
  local limit=$1; shift
  timeout "$limit" $B/hs_calibrate_bench --context $((528 - 1 - (STEPS - 1) / 2)) --max-tokens 544 --steps "$STEPS" --warmup 1 "$@" \
    2>>"$OUT/calibrate-stderr.log" | tee -a "$OUT/calibrate.jsonl"
  log "exit ${PIPESTATUS[0]}: $*"
}

# 0, 0.5 and 1 first so that a cut-short run still has the ±15% points.
run ${LIMIT13:-240} --model opt-13b --batch 128 --fractions "0,0.5,1,0.1,0.2,0.3,0.4,0.6,0.7,0.8,0.9"
run ${LIMIT30:-200} --model opt-30b --batch 64 --fractions "1,0.5;0"
log "done"
