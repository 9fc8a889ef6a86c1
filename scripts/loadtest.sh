#!/usr/bin/env bash
# Load test of `resnet serve` (issue 6): builds release (--quick: the dev build), then for each mode starts the server
# with the real Keras ResNet-50 and --threads 2 — dynamic batching on (--batch-size 8
# --max-batch-delay-ms 5) and off (--batch-size 1) — warms it up with the same load, reads its
# RSS, runs resnet-loadgen (tools/loadgen: CLIENTS concurrent keep-alive clients POSTing the
# 200 sample JPEGs round-robin to /predictions/resnet50 for DURATION s), reads the RSS again and
# stops it with SIGTERM. Prints a markdown table (mode, requests, errors, req/s, p50/p90/p99,
# RSS after warm-up and at the end).
#
# Fails (exit 1) if any request failed (warm-up included), if a server does not exit 0 on
# SIGTERM, if RSS at the end > 1.2 x RSS after warm-up, or (full run only) if batching's
# throughput is < 1.3 x that of batch size 1. Exit 2: could not build or start.
#
# Usage: scripts/loadtest.sh [--quick] [--duration-s S] [--warmup-s S] [--clients N]
#   default: 60 s per mode after a 10 s warm-up, 16 clients (~3 min in all);
#   --quick: 10 s after a 3 s warm-up, and no throughput-ratio check (CI).
# Environment:
#   RESNET_SHARED_DIR  shared folder (default: <repo>/../shared)
# Leaves target/loadtest/: each mode's server log and resnet-loadgen JSON, and table.md.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RESNET_SHARED_DIR:-$repo/../shared}
target=${CARGO_TARGET_DIR:-$repo/target}
out=$target/loadtest

die() { echo "loadtest: $*" >&2; exit 2; }

quick=0 duration="" warmup="" clients=16
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' \
                 "${BASH_SOURCE[0]}"; exit 0 ;;
    --quick) quick=1 ;;
    --duration-s) duration=${2:?--duration-s needs a value}; shift ;;
    --warmup-s) warmup=${2:?--warmup-s needs a value}; shift ;;
    --clients) clients=${2:?--clients needs a value}; shift ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  duration=${duration:-10} warmup=${warmup:-3}
else
  duration=${duration:-60} warmup=${warmup:-10}
fi

model=$shared/models/resnet50-v1-keras/model.onnx
images=$shared/data/imagenet-samples/images
[ -f "$model" ] || die "model not found at $model; set RESNET_SHARED_DIR"
[ -d "$images" ] || die "sample images not found at $images; set RESNET_SHARED_DIR"
command -v python3 >/dev/null || die "python3 is needed to summarise the results"

# --quick (CI) uses the dev profile the test suite has already built (the engine and every
# dependency are optimized there too); the full run measures the release build.
if [ "$quick" = 1 ]; then profile=debug cargo_profile=(); else profile=release cargo_profile=(--release); fi
echo "== building resnet and resnet-loadgen ($profile)"
(cd "$repo" && cargo build -q "${cargo_profile[@]}" -p resnet -p resnet-loadgen) || die "cargo build failed"
RESNET_BIN=$target/$profile/resnet
loadgen=$target/$profile/resnet-loadgen

mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.log "$out"/table.md "$out"/modes.tsv

# shellcheck source=scripts/serve-lib.sh
source "$repo/scripts/serve-lib.sh"
trap 'serve_stop >/dev/null 2>&1 || true' EXIT

# run_mode NAME SERVER-ARGS...: one server, warm-up, RSS, measured run, RSS, SIGTERM.
run_mode() {
  local name=$1
  shift
  echo "== $name: resnet serve --threads 2 $*"
  serve_start "$out/$name.log" --model "resnet50=$model" --threads 2 "$@" || exit 2
  local url=$SERVE_URL/predictions/resnet50
  echo "   $url (pid $SERVE_PID); warm-up ${warmup} s"
  "$loadgen" --url "$url" --images "$images" --clients "$clients" --duration-s "$warmup" --json \
    >"$out/$name-warmup.json" || die "resnet-loadgen failed (warm-up)"
  local rss_warm rss_end exit_status=0
  rss_warm=$(serve_rss_kb)
  echo "   measuring ${duration} s with $clients clients"
  "$loadgen" --url "$url" --images "$images" --clients "$clients" --duration-s "$duration" --json \
    >"$out/$name.json" || die "resnet-loadgen failed"
  rss_end=$(serve_rss_kb)
  serve_stop || exit_status=$?
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$*" "$rss_warm" "$rss_end" "$exit_status" >>"$out/modes.tsv"
}

run_mode batching --batch-size 8 --max-batch-delay-ms 5
run_mode batch-1 --batch-size 1

echo
python3 - "$out" "$quick" "$clients" "$duration" <<'PY'
import json, os, sys

out, quick, clients, duration = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
failures, rows, rps = [], [], {}
for line in open(os.path.join(out, "modes.tsv")):
    name, args, rss_warm, rss_end, exit_status = line.rstrip("\n").split("\t")
    warm = json.load(open(os.path.join(out, f"{name}-warmup.json")))
    r = json.load(open(os.path.join(out, f"{name}.json")))
    rss_warm, rss_end = int(rss_warm) / 1024, int(rss_end) / 1024
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
    lat = r["latency_ms"]
    rows.append(f"| {name} | `{args}` | {r['requests']} | {errors} | {r['throughput_rps']:.1f} | "
                f"{lat['p50']:.0f} | {lat['p90']:.0f} | {lat['p99']:.0f} | {rss_warm:.0f} | {rss_end:.0f} |")
    rps[name] = r["throughput_rps"]
    if r["errors"] or warm["errors"]:
        failures.append(f"{name}: requests failed (measured {r['errors']}, warm-up {warm['errors']})")
    if r["ok"] == 0:
        failures.append(f"{name}: no successful request")
    if rss_end > 1.2 * rss_warm:
        failures.append(f"{name}: RSS grew from {rss_warm:.0f} MiB after warm-up to {rss_end:.0f} MiB (> 1.2x)")
    if exit_status != "0":
        failures.append(f"{name}: resnet serve exited with status {exit_status} on SIGTERM (want 0)")

table = [
    f"{clients} clients, {duration} s per mode after warm-up; latency over successful requests, RSS = VmRSS.",
    "",
    "| mode | server args (+ `--threads 2`) | requests | errors | req/s | p50 ms | p90 ms | p99 ms | RSS warm MiB | RSS end MiB |",
    "|---|---|---|---|---|---|---|---|---|---|",
    *rows,
]
ratio = rps["batching"] / rps["batch-1"] if rps.get("batch-1") else 0.0
table += ["", f"Throughput batching / batch size 1: **{ratio:.2f}x** (required >= 1.3x{', not checked with --quick' if quick else ''})."]
if not quick and ratio < 1.3:
    failures.append(f"batching gives {ratio:.2f}x the throughput of batch size 1 (< 1.3x)")
text = "\n".join(table)
print(text)
open(os.path.join(out, "table.md"), "w").write(text + "\n")
print()
for f in failures:
    print(f"FAIL  {f}")
print(f"loadtest: {'all checks passed' if not failures else str(len(failures)) + ' check(s) failed'}")
sys.exit(1 if failures else 0)
PY
