#!/usr/bin/env bash
# Our training speed vs PyTorch's on the same networks, batch sizes and threads, run
# alternately (ours, PyTorch, ours, PyTorch, …) as ../shared/PERFORMANCE.md prescribes; prints
# per configuration our median images/s, PyTorch's, and the median of the per-round ratios
# ours/PyTorch of images/s (> 1: we are faster). Record a run with the command that produced it.
#
# Usage: scripts/bench-train-vs-torch.sh [--rounds N] [--steps N] [--warmup N] [--quick]
#                                        [--torch-only] [--config "A S K B T"]... [--modes M,...]
#                                        [--markdown]
#   --rounds N     alternating rounds per configuration (default 5)
#   --steps N      timed training steps per measurement, ours and PyTorch alike (default 10)
#   --warmup N     untimed steps before them (default 2)
#   --quick        3 rounds of 3 steps after 1 warm-up
#   --torch-only   time PyTorch alone (no ratio): checks that half without `resnet train bench`
#   --config "A S K B T"  instead of the configurations below (repeatable): arch, input size,
#                  classes, batch, threads, e.g. --config "mnist-v1 28 10 16 1" for a smoke test
#   --modes M,...  our conv arithmetic, each measured in every round: exact (default), fast
#                  (`resnet train --mode fast`: Winograd), or both, e.g. --modes exact,fast
#   --markdown     print the table as Markdown
# Configurations (arch, input size, classes, batch, threads):
#   resnet18-v1 224 1000 32 1 | resnet18-v1 224 1000 32 2 | mnist-v1 28 10 128 2
# Ours: `$RESNET_BIN train bench --arch A --input-size S --classes K --batch-size B --threads T
#   --steps N --warmup W --mode M --json`, one JSON object with images_per_sec. PyTorch:
#   scripts/torch_train_bench.py on `resnet export --arch A --seed 0 --classes K --input-size S`
#   (into target/bench-train), BatchNorm in training mode, NAG as MXNet's, same batch/threads.
# Environment:
#   RESNET_BIN  the resnet binary (default: target/release/resnet, built with cargo --release)
#   TORCH_VENV  venv with torch and onnx (default: <repo>/.venv-torch; made by
#               scripts/torch-venv.sh if missing)
#   BENCH_LOG   append every measurement as a JSON line to this file
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${TORCH_VENV:-$repo/.venv-torch}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
models_dir=$target_dir/bench-train

die() { echo "bench-train-vs-torch: $*" >&2; exit 2; }

rounds=5 steps=10 warmup=2 torch_only=0 markdown=0 configs=() modes=exact
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
                 "${BASH_SOURCE[0]}"; exit 0 ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --steps) steps=${2:?--steps needs a number}; shift ;;
    --warmup) warmup=${2:?--warmup needs a number}; shift ;;
    --quick) rounds=3 steps=3 warmup=1 ;;
    --torch-only) torch_only=1 ;;
    --markdown) markdown=1 ;;
    --modes)
      [[ ${2:-} =~ ^(exact|fast)(,(exact|fast))*$ ]] || die "--modes needs exact, fast or exact,fast, got '${2:-}'"
      modes=$2; shift ;;
    --config)
      [[ ${2:-} =~ ^[a-z0-9-]+( [1-9][0-9]*){4}$ ]] || die "--config needs \"ARCH SIZE CLASSES BATCH THREADS\", got '${2:-}'"
      configs+=("$2"); shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

if [ ${#configs[@]} -eq 0 ]; then
  configs=(
    "resnet18-v1 224 1000 32 1"
    "resnet18-v1 224 1000 32 2"
    "mnist-v1 28 10 128 2"
  )
fi

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, onnx" 2>/dev/null; then
  echo "== making the PyTorch venv $venv (scripts/torch-venv.sh)" >&2
  bash "$repo/scripts/torch-venv.sh" "$venv" >&2 || die "could not make the PyTorch venv $venv"
fi
python=$venv/bin/python

if [ -z "${RESNET_BIN:-}" ]; then
  echo "== building the resnet CLI (release)" >&2
  (cd "$repo" && cargo build -q --release -p resnet) || die "could not build the resnet CLI (crates/resnet)"
  RESNET_BIN=$target_dir/release/resnet
fi
[ -x "$RESNET_BIN" ] || die "RESNET_BIN=$RESNET_BIN is not an executable"
if [ "$torch_only" = 0 ] && ! "$RESNET_BIN" train bench --help >/dev/null 2>&1; then
  die "$RESNET_BIN has no 'train bench' subcommand (issue #7's CLI part); build a binary that has it, or use --torch-only"
fi

mkdir -p "$models_dir"
for c in "${configs[@]}"; do
  read -r arch size classes _ _ <<<"$c"
  model=$models_dir/$arch-$size-$classes.onnx
  if [ ! -f "$model" ]; then
    echo "== exporting $arch (input $size, $classes classes, seed 0) for PyTorch" >&2
    "$RESNET_BIN" export --arch "$arch" --seed 0 --classes "$classes" --input-size "$size" "$model" >&2 \
      || die "could not export $arch with $RESNET_BIN"
  fi
done

results=$(mktemp)
trap 'rm -f "$results"' EXIT
# Runs a command that prints one JSON object (its last stdout line); appends it to the results
# with the configuration and round, and to BENCH_LOG.
measure() {
  local tool=$1 key=$2 round=$3; shift 3
  local out line
  out=$("$@") || die "$tool failed: $*"
  line=$(printf '%s\n' "$out" | tail -n 1)
  line=$("$python" -c 'import json, sys
try:
    o = json.loads(sys.argv[1])
    o["images_per_sec"] = float(o["images_per_sec"])
except (ValueError, KeyError, TypeError) as e:
    sys.exit(f"last line {sys.argv[1][:200]!r}: {e!r}")
o.update(bench_tool=sys.argv[2], bench_config=sys.argv[3], bench_round=int(sys.argv[4]))
print(json.dumps(o))' "$line" "$tool" "$key" "$round") || die "$tool did not print a JSON object with images_per_sec: $*"
  printf '%s\n' "$line" >>"$results"
  if [ -n "${BENCH_LOG:-}" ]; then printf '%s\n' "$line" >>"$BENCH_LOG"; fi
  "$python" -c 'import json, sys; print("%.1f" % json.loads(sys.argv[1])["images_per_sec"])' "$line"
}

echo "== $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $rounds rounds," \
     "$steps steps after $warmup warm-up; torch $("$python" -c 'import torch; print(torch.__version__)')" >&2
for c in "${configs[@]}"; do
  read -r arch size classes batch threads <<<"$c"
  key="$arch $size $classes $batch $threads"
  model=$models_dir/$arch-$size-$classes.onnx
  for ((r = 1; r <= rounds; r++)); do
    line="[$(date +%H:%M:%S)] $arch ${size}px b$batch t$threads round $r/$rounds:"
    if [ "$torch_only" = 0 ]; then
      for mode in ${modes//,/ }; do
        ours=$(measure "ours-$mode" "$key" "$r" "$RESNET_BIN" train bench --arch "$arch" --input-size "$size" \
          --classes "$classes" --batch-size "$batch" --threads "$threads" --steps "$steps" --warmup "$warmup" \
          --mode "$mode" --json)
        line="$line ours ($mode) $ours img/s"
      done
    fi
    theirs=$(measure pytorch "$key" "$r" "$python" "$repo/scripts/torch_train_bench.py" --onnx "$model" \
      --batch "$batch" --threads "$threads" --steps "$steps" --warmup "$warmup" --json)
    echo "$line pytorch $theirs img/s" >&2
  done
done

"$python" - "$results" "$markdown" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
markdown = sys.argv[2] == "1"
configs = list(dict.fromkeys(r["bench_config"] for r in rows))
header = ["model", "input", "classes", "batch", "threads", "our mode", "ours img/s", "PyTorch img/s",
          "ratio ours/PyTorch (min–max)", "PyTorch ms/step"]
table = []
for key in configs:
    arch, size, classes, batch, threads = key.split()
    by_round = {}
    for r in rows:
        if r["bench_config"] == key:
            by_round.setdefault(r["bench_round"], {})[r["bench_tool"]] = r
    theirs = [v["pytorch"]["images_per_sec"] for v in by_round.values()]
    tools = sorted({t for v in by_round.values() for t in v if t.startswith("ours-")}) or ["ours-—"]
    for tool in tools:
        ours = [v[tool]["images_per_sec"] for v in by_round.values() if tool in v]
        ratios = [v[tool]["images_per_sec"] / v["pytorch"]["images_per_sec"] for v in by_round.values() if tool in v]
        table.append([arch, f"{size}x{size}", classes, batch, threads, tool[len("ours-"):],
                      f"{statistics.median(ours):.1f}" if ours else "—", f"{statistics.median(theirs):.1f}",
                      f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "—",
                      f"{statistics.median(v['pytorch']['ms_per_step'] for v in by_round.values()):.1f}"])
if markdown:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in table:
        print("| " + " | ".join(row) + " |")
else:
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
EOF
