#!/usr/bin/env bash
# Browser test of the `resnet serve` web page (CI entry point): starts `resnet serve` with the
# real Keras ResNet-50 on free ports, opens GET / in headless Chromium (Debian's, driven by
# playwright-core: scripts/browser_test.mjs), uploads the traffic-light sample through the file
# input and checks that the page shows "traffic light" as the top class, then that a non-image
# upload shows the server's JSON error. Exits non-zero on any failure; always stops the server.
#
# Installs what it needs when missing: Debian's chromium (apt-get) and playwright-core (npm,
# into target/browser-test/node_modules, gitignored). Leaves target/browser-test/page.png.
#
# Usage: scripts/browser-test.sh
# Environment:
#   RESNET_SHARED_DIR  shared folder (default: <repo>/../shared)
#   RESNET_BIN         a built `resnet` binary (default: `cargo build -p resnet`, target/debug/resnet)
#   CHROMIUM           browser executable (default: /usr/bin/chromium)
set -euo pipefail

PLAYWRIGHT_VERSION=1.65.1

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RESNET_SHARED_DIR:-$repo/../shared}
target=${CARGO_TARGET_DIR:-$repo/target}
work=$target/browser-test
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

die() { echo "browser-test: $*" >&2; exit 2; }

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
               "${BASH_SOURCE[0]}"; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (see --help)" ;;
esac

model=$shared/models/resnet50-v1-keras/model.onnx
image=$shared/data/imagenet-samples/images/n06874185_traffic_light.JPEG
[ -f "$model" ] || die "model not found at $model; set RESNET_SHARED_DIR"
[ -f "$image" ] || die "sample image not found at $image; set RESNET_SHARED_DIR"

if [ ! -x "$CHROMIUM" ]; then
  echo "== installing Debian's chromium"
  command -v apt-get >/dev/null || die "$CHROMIUM is missing and there is no apt-get to install it"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null ||
    die "apt-get install chromium failed"
fi
"$CHROMIUM" --version 2>/dev/null | head -n 1

mkdir -p "$work"
installed=$(node -p "require('$work/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$PLAYWRIGHT_VERSION" ]; then
  echo "== installing playwright-core@$PLAYWRIGHT_VERSION into $work"
  command -v npm >/dev/null || die "npm not found (Node.js 18 or later with npm is needed)"
  # A package.json of our own keeps npm from searching parent folders for one.
  [ -f "$work/package.json" ] || echo '{"name": "resnet-browser-test", "private": true}' >"$work/package.json"
  (cd "$work" && npm install --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION") ||
    die "npm install playwright-core failed"
fi

if [ -z "${RESNET_BIN:-}" ]; then
  echo "== building the resnet CLI"
  (cd "$repo" && cargo build -q -p resnet) || die "could not build the resnet CLI"
  RESNET_BIN=$target/debug/resnet
fi

# shellcheck source=scripts/serve-lib.sh
source "$repo/scripts/serve-lib.sh"
trap 'serve_stop >/dev/null 2>&1 || true' EXIT

echo "== starting resnet serve"
serve_start "$work/serve.log" --model "resnet50=$model" || exit 1
echo "   $SERVE_URL (pid $SERVE_PID)"

echo "== headless Chromium on $SERVE_URL/"
status=0
PLAYWRIGHT_DIR=$work SCREENSHOT=$work/page.png \
  node "$repo/scripts/browser_test.mjs" "$SERVE_URL/" "$image" "traffic light" || status=$?

if ! serve_stop; then
  echo "browser-test: resnet serve did not exit cleanly on SIGTERM; its output:" >&2
  sed 's/^/  | /' "$work/serve.log" >&2
  status=1
fi
exit "$status"
