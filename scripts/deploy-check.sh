#!/usr/bin/env bash
# Checks deploy/serve without a cluster (CI entry point): the manifests parse and agree with
# each other (scripts/deploy_check.py), then `resnet serve` is started with the Deployment's own
# arguments (the zoo model swapped for the local Keras ResNet-50, loopback, free ports) and
# every path its startup/liveness/readiness probes and the Prometheus scrape GET must answer
# 200; SIGTERM must then stop it with exit status 0.
#
# Usage: scripts/deploy-check.sh
# Environment:
#   RESNET_SHARED_DIR  shared folder (default: <repo>/../shared)
#   RESNET_BIN         a built `resnet` binary (default: `cargo build -p resnet`, target/debug/resnet)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RESNET_SHARED_DIR:-$repo/../shared}
target=${CARGO_TARGET_DIR:-$repo/target}

die() { echo "deploy-check: $*" >&2; exit 2; }

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
               "${BASH_SOURCE[0]}"; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (see --help)" ;;
esac

model=$shared/models/resnet50-v1-keras/model.onnx
[ -f "$model" ] || die "model not found at $model; set RESNET_SHARED_DIR"
python3 -c 'import yaml' 2>/dev/null || die "python3 with PyYAML is needed (apt-get install python3-yaml)"

echo "== manifests"
lines=$(python3 "$repo/scripts/deploy_check.py" manifests "$repo/deploy/serve" "resnet50=$model") || exit 1
args=() probes=()
while IFS= read -r line; do
  case "$line" in
    "probe "*) probes+=("${line#probe }") ;;
    *) args+=("$line") ;;
  esac
done <<<"$lines"
[ "${args[0]:-}" = serve ] || die "the Deployment's arguments do not start with 'serve'"

if [ -z "${RESNET_BIN:-}" ]; then
  (cd "$repo" && cargo build -q -p resnet) || die "could not build the resnet CLI"
  RESNET_BIN=$target/debug/resnet
fi
mkdir -p "$target/deploy-check"

# shellcheck source=scripts/serve-lib.sh
source "$repo/scripts/serve-lib.sh"
trap 'serve_stop >/dev/null 2>&1 || true' EXIT

echo "== resnet ${args[*]}"
serve_start "$target/deploy-check/serve.log" "${args[@]:1}" || exit 1
status=0
python3 "$repo/scripts/deploy_check.py" probe "$SERVE_URL" "${probes[@]}" || status=1
if ! serve_stop; then
  echo "FAIL  resnet serve did not exit 0 on SIGTERM" >&2
  status=1
fi
[ "$status" = 0 ] && echo "deploy-check: the probes answer 200 and the server stops cleanly"
exit "$status"
