#!/usr/bin/env bash
# CI: compile-only check of the CUDA backend's sources (native/src/cuda/*.cu, *.cc) with nvcc, warnings as errors.
# CI machines have no GPU and no cuBLAS, so this is not a build of the CUDA backend (CMake builds that
# only where cuBLAS is found): it catches syntax, type and warning regressions in the kernels early.
# A file that includes cuBLAS (directly or through a header of ours) is skipped when cublas_v2.h is
# not in the toolkit; today engine.cu, gemm.cc and probe.cc. Skipped with a message when nvcc is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ]; then
  echo "cuda-compile: nvcc not found; skipping the CUDA compile check"
  exit 0
fi
# The toolkit's include directories, as nvcc itself reports them (nvcc may be a wrapper script).
probe=$(mktemp --suffix=.cu)
cuda_includes=$("$NVCC" --dryrun -c "$probe" -o /dev/null 2>&1 | sed -n 's/^#\$ INCLUDES="-I\(.*\)" *$/\1/p')
rm -f "$probe"
have_cublas=0
for d in $cuda_includes; do [ -f "$d/cublas_v2.h" ] && have_cublas=1; done

# needs_cublas FILE: true if FILE or a header of ours it includes (transitively) mentions cublas.
declare -A seen=()
needs_cublas() {
  local f=$1 inc
  [ -n "${seen[$f]:-}" ] && return 1
  seen[$f]=1
  grep -q 'cublas' "$f" && return 0
  for inc in $(sed -n 's/^#include "\(.*\)"/\1/p' "$f"); do
    [ -f "native/src/$inc" ] && needs_cublas "native/src/$inc" && return 0
  done
  return 1
}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
files=()
for f in native/src/cuda/*.cu native/src/cuda/*.cc; do
  seen=()
  if [ "$have_cublas" = 0 ] && needs_cublas "$f"; then
    echo "cuda-compile: skipping $f (needs cublas_v2.h, not in ${cuda_includes:-the toolkit})"
  else
    files+=("$f")
  fi
done
echo "cuda-compile: $("$NVCC" --version | tail -1); compiling ${#files[@]} files"
printf '%s\n' "${files[@]}" | xargs -P "${HYBRIDSERVE_JOBS:-2}" -I{} sh -c '
  "$0" -std=c++17 -arch=sm_90 -I native/src -c "$1" -o "$2/$(basename "$1").o" \
    -Xcompiler=-Wall,-Wextra,-Werror -Werror=all-warnings || { echo "cuda-compile: FAILED $1"; exit 255; }' "$NVCC" {} "$out"
echo "cuda-compile: ok"
