#!/usr/bin/env bash
# Fuzz the ONNX loader with cargo-fuzz (libFuzzer) for N seconds (default 60).
# `--sanitizer none` works on stable Rust; a crash fails the script and leaves the input
# under fuzz/artifacts/load_model/.
set -euo pipefail
seconds="${1:-60}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (once)…"
  cargo install cargo-fuzz --locked --quiet
fi
cd "$repo/fuzz"
mkdir -p corpus/load_model
cargo fuzz run load_model --sanitizer none corpus/load_model seeds/load_model -- \
  -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1
