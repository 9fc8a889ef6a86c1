#!/usr/bin/env bash
# Ours vs ONNX Runtime on the same models, batch sizes and threads, run alternately
# (ours, ORT, ours, ORT, …) as ../shared/PERFORMANCE.md prescribes; prints per configuration
# our median ms, ORT's median ms and the median of the per-round ratios ours/ORT beside the
# target of issue 4. Record a run in BENCHMARKS.md with the command that produced it.
# Two-thread rounds also print whether CPUs 0 and 1 were on one die or two at the time
# (scripts/pingpong.c, when a C compiler is there): on two, our runs slow ~27 %, ORT's ~10 %.
#
# Usage: scripts/bench-vs-ort.sh [--rounds N] [--runs N] [--warmup N] [--quick] [--all]
#                                [--engines E[,E]] [--modes M[,M]] [--openvino] [--markdown]
#   --rounds N     alternating rounds per configuration (default 5)
#   --runs N       timed runs per measurement, ours and ORT alike (default 10)
#   --warmup N     untimed runs before them (default 2)
#   --quick        3 rounds of 3 runs after 1 warm-up (a few minutes on 2 cores)
#   --all          also resnet18-v1 and resnet50-v2 at the configurations without a target
#   --engines E    engines of `resnet bench` to time, comma-separated (default: plan if the
#                  binary has it, else reference)
#   --modes M      arithmetic modes of `resnet bench`, comma-separated: exact (default),
#                  fast (Winograd for the 3×3 convs; rows with the issue's fast targets),
#                  bf16 (fast with bfloat16 1×1 convs, AVX-512 BF16 CPUs; opt-in, no target)
#   --openvino     also time OpenVINO (scripts/ov_bench.py, same threads and batch; fp32, and
#                  with --modes …bf16 also at bf16 inference precision, which the bf16 rows
#                  are compared with) in every round and add its ms and the ratio
#                  ours/OpenVINO (pip-installs `openvino` into the venv if missing)
#   --markdown     print the table as Markdown
# Models: ../shared/models/resnet50-v1-keras/model.onnx and zoo-structured resnet18-v1 and
# resnet50-v2 with random weights (`resnet export --arch A --seed 1`, into target/bench).
# Environment:
#   RESNET_SHARED_DIR  shared folder (default: <repo>/../shared)
#   RESNET_VENV        Python venv with onnx/onnxruntime (default: <repo>/.venv; made if missing)
#   BENCH_LOG          append every measurement as a JSON line to this file
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RESNET_SHARED_DIR:-$repo/../shared}
venv=${RESNET_VENV:-$repo/.venv}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
models_dir=$target_dir/bench

die() { echo "bench-vs-ort: $*" >&2; exit 2; }

rounds=5 runs=10 warmup=2 engines="" modes=exact extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
                 "${BASH_SOURCE[0]}"; exit 0 ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --warmup) warmup=${2:?--warmup needs a number}; shift ;;
    --quick) rounds=3 runs=3 warmup=1 ;;
    --engines) engines=${2:?--engines needs a list}; shift ;;
    --modes) modes=${2:?--modes needs a list}; shift ;;
    --all|--markdown) extra+=("$1") ;;
    --openvino) extra+=(--openvino "$repo/scripts/ov_bench.py") ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

[ -f "$shared/tools/ort-venv.sh" ] || die "shared dir not found at '$shared' (need tools/); set RESNET_SHARED_DIR"
keras=$shared/models/resnet50-v1-keras/model.onnx
[ -f "$keras" ] || die "missing $keras"

echo "== python venv: $venv" >&2
bash "$shared/tools/ort-venv.sh" "$venv" >&2
if [[ " ${extra[*]} " == *" --openvino "* ]] && ! "$venv/bin/python" -c "import openvino" 2>/dev/null; then
  echo "== installing openvino into $venv" >&2
  "$venv/bin/pip" install -q openvino >&2 || die "could not install openvino (pip)"
fi

echo "== building the resnet CLI (release)" >&2
(cd "$repo" && cargo build -q --release -p resnet) || die "could not build the resnet CLI (crates/resnet)"
resnet=$target_dir/release/resnet

mkdir -p "$models_dir"
for arch in resnet18-v1 resnet50-v2; do
  if [ ! -f "$models_dir/$arch.onnx" ]; then
    echo "== exporting $arch (zoo structure, random weights, seed 1)" >&2
    "$resnet" export --arch "$arch" --seed 1 "$models_dir/$arch.onnx" >&2
  fi
done

if [ -z "$engines" ]; then
  if "$resnet" bench --help | grep -q '\[possible values: .*plan'; then engines=plan; else engines=reference; fi
fi

echo "== $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $rounds rounds," \
     "$runs runs after $warmup warm-up; engines: $engines; modes: $modes" >&2
exec "$venv/bin/python" "$repo/scripts/bench_vs_ort.py" \
  --resnet "$resnet" --python "$venv/bin/python" --ort-bench "$shared/tools/ort_bench.py" \
  --model "resnet50-v1-keras=$keras" \
  --model "resnet18-v1=$models_dir/resnet18-v1.onnx" \
  --model "resnet50-v2=$models_dir/resnet50-v2.onnx" \
  --engines "$engines" --modes "$modes" --rounds "$rounds" --runs "$runs" --warmup "$warmup" \
  ${BENCH_LOG:+--log "$BENCH_LOG"} "${extra[@]}"
