#!/usr/bin/env bash
# Differential test against ONNX Runtime on the ten zoo ResNet graphs (CI entry point).
#
# Generates zoo-shaped ResNets with random weights and ORT reference outputs
# (scripts/zoo_models.py) into target/zoo-models, then checks our engine on each with
#   resnet check --tol-of-max 1e-4 DIR/<arch> DIR/<arch>-256x320
# (a data set passes when max|ours - expected| <= 1e-4 * max|expected|) with the compiled
# plan and with the reference interpreter, and the small
# PyTorch- and Keras-style exports of scripts/export_styles.py the same way.
#
# Usage: scripts/zoo-differential.sh [ARCH...]     e.g. resnet18-v1 resnet50-v2 (default: all)
# Environment:
#   RESNET_SHARED_DIR  shared folder (default: <repo>/../shared)
#   RESNET_VENV        Python venv with onnx/onnxruntime (default: <repo>/.venv; made if missing)
#   ZOO_MODELS_DIR     where models go (default: <repo>/target/zoo-models)
#   ZOO_SEED           weight/input seed (default: the generator's default)
#   ZOO_TOL_OF_MAX     tolerance (default: 1e-4)
#   ZOO_CARGO_ARGS     extra `cargo run` arguments, e.g. --release
set -euo pipefail

ALL_ARCHS=(resnet18-v1 resnet34-v1 resnet50-v1 resnet101-v1 resnet152-v1
           resnet18-v2 resnet34-v2 resnet50-v2 resnet101-v2 resnet152-v2)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RESNET_SHARED_DIR:-$repo/../shared}
venv=${RESNET_VENV:-$repo/.venv}
out=${ZOO_MODELS_DIR:-$repo/target/zoo-models}
tol=${ZOO_TOL_OF_MAX:-1e-4}

die() { echo "zoo-differential: $*" >&2; exit 2; }

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
               "${BASH_SOURCE[0]}"; exit 0 ;;
esac

if [ ! -f "$shared/tools/ort-venv.sh" ]; then
  die "shared dir not found at '$shared' (need tools/ort-venv.sh); set RESNET_SHARED_DIR"
fi

if [ $# -gt 0 ]; then
  archs=("$@")
  for a in "${archs[@]}"; do
    [[ " ${ALL_ARCHS[*]} " == *" $a "* ]] || die "unknown arch '$a' (choose from: ${ALL_ARCHS[*]})"
  done
else
  archs=("${ALL_ARCHS[@]}")
fi

echo "== python venv: $venv"
bash "$shared/tools/ort-venv.sh" "$venv"

echo "== generating models into $out"
seed_args=()
if [ -n "${ZOO_SEED:-}" ]; then seed_args=(--seed "$ZOO_SEED"); fi
archs_csv=$(IFS=,; echo "${archs[*]}")
"$venv/bin/python" "$repo/scripts/zoo_models.py" --out "$out" --archs "$archs_csv" \
  "${seed_args[@]}"

echo "== building the resnet CLI"
cd "$repo"
# shellcheck disable=SC2086  # ZOO_CARGO_ARGS is a list of words on purpose
cargo build -q -p resnet ${ZOO_CARGO_ARGS:-} || die "could not build the resnet CLI (crates/resnet)"

echo "== checking (tol-of-max $tol)"
passed=() failed=()
for a in "${archs[@]}"; do
  echo "-- $a"
  # shellcheck disable=SC2086
  # Both executors: the compiled plan (the default) and the reference interpreter.
  if cargo run -q -p resnet ${ZOO_CARGO_ARGS:-} -- check --tol-of-max "$tol" \
       "$out/$a" "$out/$a-256x320" &&
     cargo run -q -p resnet ${ZOO_CARGO_ARGS:-} -- check --engine reference --tol-of-max "$tol" \
       "$out/$a" "$out/$a-256x320"; then
    passed+=("$a")
  else
    failed+=("$a")
  fi
done

# The same network family as other exporters write it (PyTorch's dynamic flatten, Keras'
# NHWC transpose, explicit Pad, Clip, MatMul head): scripts/export_styles.py.
echo "-- export styles (pytorch-opset13, pytorch-opset11, keras-opset13)"
"$venv/bin/python" "$repo/scripts/export_styles.py" --out "$out/export-styles"
# shellcheck disable=SC2086
if cargo run -q -p resnet ${ZOO_CARGO_ARGS:-} -- check --tol-of-max "$tol" "$out"/export-styles/* &&
   cargo run -q -p resnet ${ZOO_CARGO_ARGS:-} -- check --engine reference --tol-of-max "$tol" "$out"/export-styles/*; then
  passed+=("export-styles")
else
  failed+=("export-styles")
fi

echo
echo "== zoo differential summary: ${#passed[@]} passed, ${#failed[@]} failed (of $((${#archs[@]} + 1)))"
for a in "${passed[@]}"; do echo "   ok    $a"; done
for a in "${failed[@]}"; do echo "   FAIL  $a"; done
[ ${#failed[@]} -eq 0 ]
