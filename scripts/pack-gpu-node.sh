#!/usr/bin/env bash
# Packs what the Node stages of scripts/gpu-run.sh need on a GPU host that has no Node.js and no
# network (serving, serve_inflight, gpus_auto, minibatch, contract, and the addon in `build`):
#   .gpu/node-bundle.tar.xz    Node itself and its headers (the workplace's pack-node.sh)
#   .gpu/node-modules.tar.xz   the production dependencies (but the operator's Kubernetes client),
#                              plus node-addon-api and node-api-headers for the addon build (~6.5 MB)
# Then `npm run build` here and carry `.gpu` and `dist`; gpu-run.sh unpacks both where it needs them.
# Usage: scripts/pack-gpu-node.sh [PACK_NODE_SCRIPT]   (default ../shared/tools/pack-node.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
pack_node=${1:-../shared/tools/pack-node.sh}
[ -d node_modules/fastify ] || { echo "run npm ci first (node_modules/ has no fastify)" >&2; exit 1; }
mkdir -p .gpu
bash "$pack_node" .gpu/node-bundle.tar.xz
# The production dependency closure (npm's own list; nested copies travel inside their parents),
# without the operator's Kubernetes client, which serve and the benches never load.
mapfile -t paths < <(npm ls --omit=dev --parseable --all 2>/dev/null | sed "s#^$PWD/##" |
  grep '^node_modules/' | grep -v '^node_modules/.*/node_modules/' | grep -v '^node_modules/@kubernetes/' | sort -u)
[ ${#paths[@]} -gt 0 ] || { echo "npm ls listed no production packages" >&2; exit 1; }
paths+=(node_modules/node-addon-api node_modules/node-api-headers)
tar cf - --exclude='*.map' --exclude='*.d.ts' "${paths[@]}" | xz -T0 -6 >.gpu/node-modules.tar.xz
echo ".gpu/node-modules.tar.xz: $(du -h .gpu/node-modules.tar.xz | cut -f1) (${#paths[@]} packages)"
