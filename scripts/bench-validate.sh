#!/usr/bin/env bash
# `resnet validate` vs the reference Python pipeline (scripts/validate_reference.py: Pillow
# decode + preprocess, ONNX Runtime at ORT_ENABLE_ALL, batch 25) on the 200 ImageNet sample
# images laid out as class folders in a temporary directory, same thread count, run
# alternately (ours, Python, ours, Python, …). Prints each round's images/s and the median of
# the per-round ratios ours/Python as a Markdown table, plus the machine's load before and
# after (`uptime`). Both sides time the scoring only (model loaded/compiled, session created).
#
# Usage: scripts/bench-validate.sh [--rounds N] [--threads T] [--batch B] [--mode M] [--crops 1|10]
#   --rounds N    alternating rounds (default 3)
#   --threads T   threads for both (default 2)
#   --batch B     our --batch (default: resnet validate's); Python always uses 25
#   --mode M      our --mode: fast (resnet validate's default), exact or bf16 (opt-in,
#                 bfloat16 1×1 convs); Python always runs ONNX Runtime in float32
# Environment:
#   RESNET_SHARED_DIR  shared folder (default: <repo>/../shared)
#   RESNET_VENV        Python venv with onnxruntime and Pillow (default: <repo>/.venv; made if missing)
#   RESNET_BIN         resnet binary to use (default: build target/release/resnet)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RESNET_SHARED_DIR:-$repo/../shared}
venv=${RESNET_VENV:-$repo/.venv}
target_dir=${CARGO_TARGET_DIR:-$repo/target}

die() { echo "bench-validate: $*" >&2; exit 2; }

rounds=3 threads=2 batch="" crops=1 mode=fast
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --threads) threads=${2:?--threads needs a number}; shift ;;
    --batch) batch=${2:?--batch needs a number}; shift ;;
    --crops) crops=${2:?--crops needs 1 or 10}; shift ;;
    --mode) mode=${2:?--mode needs exact, fast or bf16}; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

model=$shared/models/resnet50-v1-keras/model.onnx
samples=$shared/data/imagenet-samples
[ -f "$model" ] || die "missing $model (set RESNET_SHARED_DIR)"
[ -f "$samples/labels.tsv" ] || die "missing $samples/labels.tsv"

if [ ! -x "$venv/bin/python" ]; then
  echo "== python venv: $venv" >&2
  bash "$shared/tools/ort-venv.sh" "$venv" >&2
fi
python=$venv/bin/python

if [ -n "${RESNET_BIN:-}" ]; then
  resnet=$RESNET_BIN
else
  echo "== building the resnet CLI (release)" >&2
  (cd "$repo" && cargo build -q --release -p resnet) || die "could not build the resnet CLI"
  resnet=$target_dir/release/resnet
fi

data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
tail -n +2 "$samples/labels.tsv" | while IFS=$'\t' read -r file wnid _; do
  mkdir -p "$data/$wnid"
  ln "$samples/images/$file" "$data/$wnid/$file" 2>/dev/null || cp "$samples/images/$file" "$data/$wnid/$file"
done

ours_args=(validate --model "$model" --data "$data" --threads "$threads" --crops "$crops" --mode "$mode" --json)
[ -n "$batch" ] && ours_args+=(--batch "$batch")
[ "$crops" = 1 ] || die "the Python reference does single center crops only"

load_before=$(uptime)
ours=() py=()
for r in $(seq 1 "$rounds"); do
  o=$("$resnet" "${ours_args[@]}") || die "resnet validate failed"
  p=$("$python" "$repo/scripts/validate_reference.py" --model "$model" --data "$data" --threads "$threads" --batch 25) \
    || die "validate_reference.py failed"
  ours+=("$o") py+=("$p")
  echo "round $r: ours $(echo "$o" | "$python" -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["images_per_s"])') images/s," \
       "python $(echo "$p" | "$python" -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["images_per_s"])') images/s" >&2
done
load_after=$(uptime)

"$python" - "$threads" "${batch:-default}" "$mode" "$load_before" "$load_after" "${ours[@]}" "${py[@]}" <<'EOF'
import json, statistics, sys
threads, batch, mode, before, after = sys.argv[1:6]
rest = sys.argv[6:]
n = len(rest) // 2
ours = [json.loads(x) for x in rest[:n]]
py = [json.loads(x) for x in rest[n:]]
ratios = [o["images_per_s"] / p["images_per_s"] for o, p in zip(ours, py)]
print(f"| round | resnet validate (images/s) | Python + ORT (images/s) | ratio |")
print(f"|---|---|---|---|")
for i, (o, p, r) in enumerate(zip(ours, py, ratios), 1):
    print(f"| {i} | {o['images_per_s']:.2f} | {p['images_per_s']:.2f} | {r:.2f} |")
print(f"| **median** | {statistics.median(o['images_per_s'] for o in ours):.2f} | "
      f"{statistics.median(p['images_per_s'] for p in py):.2f} | **{statistics.median(ratios):.2f}** |")
print()
o, p = ours[0], py[0]
print(f"200 images, {threads} threads, our batch {o['batch']} in {mode} mode, Python batch {p['batch']}, "
      f"ONNX Runtime {p['onnxruntime']}; top-1/top-5: ours {o['top1_correct']}/{o['top5_correct']}, "
      f"Python {p['top1_correct']}/{p['top5_correct']} of 200.")
print(f"load before: {before.strip()}")
print(f"load after:  {after.strip()}")
EOF
