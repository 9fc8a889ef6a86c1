#!/usr/bin/env bash
# Checks `resnet export --arch` for the ten zoo architectures (CI entry point).
#
# For each architecture, writes target/zoo-export/<arch>/model.onnx (opset 7, seed 1) and
# <arch>-opset13/model.onnx with `resnet export --arch <arch> --seed 1`, then
# scripts/zoo_export_check.py runs onnx.checker (full_check), compares the opset-7 file with
# scripts/zoo_models.py's graph (names, order, attributes, byte size), and records ONNX
# Runtime's output on a random batch of 2 as test_data_set_0; finally
#   resnet check --tol-of-max 1e-4 <folders>
# compares our reference executor with ONNX Runtime (max|ours − ORT| ≤ 1e-4·max|ORT|).
#
# Usage: scripts/zoo-export-check.sh [ARCH...]     e.g. resnet18-v1 resnet50-v2 (default: all)
# Environment:
#   RESNET_SHARED_DIR  shared folder (default: <repo>/../shared)
#   RESNET_VENV        Python venv with onnx/onnxruntime (default: <repo>/.venv; made if missing)
#   ZOO_EXPORT_DIR     where files go (default: <repo>/target/zoo-export)
#   ZOO_TOL_OF_MAX     tolerance (default: 1e-4)
#   ZOO_CARGO_ARGS     extra `cargo run` arguments, e.g. --release
set -euo pipefail

ALL_ARCHS=(resnet18-v1 resnet34-v1 resnet50-v1 resnet101-v1 resnet152-v1
           resnet18-v2 resnet34-v2 resnet50-v2 resnet101-v2 resnet152-v2)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RESNET_SHARED_DIR:-$repo/../shared}
venv=${RESNET_VENV:-$repo/.venv}
out=${ZOO_EXPORT_DIR:-$repo/target/zoo-export}
tol=${ZOO_TOL_OF_MAX:-1e-4}

die() { echo "zoo-export-check: $*" >&2; exit 2; }

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
               "${BASH_SOURCE[0]}"; exit 0 ;;
esac

[ -f "$shared/tools/ort-venv.sh" ] ||
  die "shared dir not found at '$shared' (need tools/ort-venv.sh); set RESNET_SHARED_DIR"

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

cd "$repo"
echo "== building the resnet CLI"
# shellcheck disable=SC2086  # ZOO_CARGO_ARGS is a list of words on purpose
cargo build -q -p resnet ${ZOO_CARGO_ARGS:-} || die "could not build the resnet CLI (crates/resnet)"

echo "== exporting into $out"
folders=()
for a in "${archs[@]}"; do
  for opset in 7 13; do
    f=$a; [ "$opset" = 13 ] && f=$a-opset13
    rm -rf "${out:?}/$f"
    mkdir -p "$out/$f"
    # shellcheck disable=SC2086
    cargo run -q -p resnet ${ZOO_CARGO_ARGS:-} -- export --arch "$a" --seed 1 --opset "$opset" \
      "$out/$f/model.onnx"
    folders+=("$f")
  done
done

echo "== onnx.checker, structure vs scripts/zoo_models.py, ONNX Runtime outputs"
status=0
"$venv/bin/python" "$repo/scripts/zoo_export_check.py" --dir "$out" "${folders[@]}" || status=1

echo "== our engine vs ONNX Runtime (tol-of-max $tol)"
paths=()
for f in "${folders[@]}"; do
  [ -f "$out/$f/test_data_set_0/output_0.pb" ] && paths+=("$out/$f")
done
# Our reference executor (the oracle) and the compiled plan, each against ONNX Runtime.
# shellcheck disable=SC2086
cargo run -q -p resnet ${ZOO_CARGO_ARGS:-} -- check --engine reference --tol-of-max "$tol" "${paths[@]}" || status=1
# shellcheck disable=SC2086
cargo run -q -p resnet ${ZOO_CARGO_ARGS:-} -- check --engine plan --tol-of-max "$tol" "${paths[@]}" || status=1

[ ${#paths[@]} -eq ${#folders[@]} ] || status=1
echo "== zoo export check: $([ $status -eq 0 ] && echo passed || echo FAILED) (${#folders[@]} files)"
exit $status
