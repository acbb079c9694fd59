#!/usr/bin/env bash
# Copies FlexLLMGen's flexllmgen/ package (FMInference/FlexLLMGen, pinned commit) into .gpu/flexgen,
# which scripts/gpu-run.sh puts on PYTHONPATH for bench/flexgen_run.py (the GPU host has no network).
# Usage: scripts/fetch-flexgen.sh [GIT_DIR_OR_URL]
#   GIT_DIR_OR_URL: a clone or mirror of FlexLLMGen (default: clone from GitHub).
set -euo pipefail
cd "$(dirname "$0")/.."
COMMIT=004ffef82b46e8dc8685c55d0cdda650bdaf1269
SRC=${1:-https://github.com/FMInference/FlexLLMGen}
if [ ! -d "$SRC" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  git clone -q "$SRC" "$tmp/repo"
  SRC="$tmp/repo"
fi
rm -rf .gpu/flexgen && mkdir -p .gpu/flexgen
git -C "$SRC" archive "$COMMIT" flexllmgen LICENSE | tar x -C .gpu/flexgen
echo "fetch-flexgen: FlexLLMGen $COMMIT in .gpu/flexgen ($(du -sh .gpu/flexgen | cut -f1))"
