#!/usr/bin/env python3
"""Two or more `resnet` binaries (and optionally ONNX Runtime) alternated on the same models:
the A/B measurement behind the commit messages' "alternated" numbers on a noisy host.

usage: ab_bench.py [--rounds 5] [--threads 1] [--batch 1] [--runs 60] [--mode exact] [--startup]
                   BIN [BIN ...] -- MODEL.onnx [MODEL.onnx ...]
Each round runs, per model, every BIN as `BIN bench --model M --threads T --batch B --runs R
--mode MODE --json` in turn (BIN `ort`: ONNX Runtime through ../shared/tools/ort_bench.py-
style timing, same threads, batch and runs, with the venv's python). Prints per model and
binary the median over rounds of the per-measurement medians, the minimum over rounds of the
minima, and both relative to the first binary (`--startup`: each measurement is `bench --runs
1 --warmup 0`, a fresh process, and the medians over rounds of its load + compile time and
of its one run — the first, with whatever the plan defers to it — are printed instead); with two or more threads each round first
times a cache line between CPU 0 and CPU 1 (scripts/pingpong.c: one die or two, see
BENCHMARKS.md) and, when both occurred, the same is printed over each state's rounds. Copy a
build to keep it: `cp target/release/resnet /tmp/resnet-old`.
Environment: RESNET_VENV (default .venv) for `ort`.
"""
import argparse, json, os, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_ort import build_pingpong, dies  # noqa: E402

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
argv = sys.argv[1:]
if "--" not in argv:
    sys.exit("usage: ab_bench.py [options] BIN [BIN ...] -- MODEL [MODEL ...]")
cut = argv.index("--")
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--runs", type=int, default=60)
ap.add_argument("--mode", default="exact", choices=["exact", "fast", "bf16"])
ap.add_argument("--startup", action="store_true", help="time load + compile and the first run instead")
ap.add_argument("bins", nargs="+")
a = ap.parse_args(argv[:cut])
models = argv[cut + 1:]
python = os.path.join(os.environ.get("RESNET_VENV", os.path.join(root, ".venv")), "bin/python")

ORT = """
import json, sys, time, numpy as np, onnxruntime as ort
m, t, b, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions(); so.intra_op_num_threads = t; so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL; so.log_severity_level = 3
s = ort.InferenceSession(m, so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.random.default_rng(0).standard_normal([b if not isinstance(d, int) else d for d in i.shape]).astype(np.float32)
for _ in range(2): s.run(None, {i.name: x})
ts = []
for _ in range(r):
    t0 = time.perf_counter(); s.run(None, {i.name: x}); ts.append((time.perf_counter() - t0) * 1e3)
ts.sort(); print(json.dumps({"median_ms": ts[r // 2], "min_ms": ts[0]}))
"""


def measure(binary, model):
    if binary == "ort":
        cmd = [python, "-c", ORT, model, str(a.threads), str(a.batch), str(a.runs)]
    elif a.startup:
        cmd = [binary, "bench", "--model", model, "--threads", str(a.threads), "--batch", str(a.batch),
               "--runs", "1", "--warmup", "0", "--mode", a.mode, "--json"]
    else:
        cmd = [binary, "bench", "--model", model, "--threads", str(a.threads), "--batch", str(a.batch),
               "--runs", str(a.runs), "--mode", a.mode, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])}: {out.stderr.strip()}")
    d = json.loads(out.stdout)
    if a.startup:
        return d["load_ms"] + d["compile_ms"], d["max_ms"]
    return d["median_ms"], d["min_ms"]


if a.startup and "ort" in a.bins:
    sys.exit("ab_bench.py: --startup times our binaries only")


res, states = {}, []
print(time.strftime("%H:%M:%S"), f"{a.rounds} rounds, {a.threads} thread(s), batch {a.batch}, mode {a.mode}", file=sys.stderr)
# With two or more threads, each round starts by timing a cache line between CPU 0 and CPU 1:
# one die or two (BENCHMARKS.md); rounds on two dies are counted and summarized apart.
pingpong = build_pingpong() if a.threads > 1 else None
for r in range(a.rounds):
    cores = dies(pingpong)
    states.append(cores[1] if cores else None)
    if cores:
        print(time.strftime("%H:%M:%S"), f"round {r + 1}: CPUs 0-1 on {cores[1]} ({cores[0]:.0f} ns round trip)", file=sys.stderr)
    for m in models:
        for b in a.bins:
            res.setdefault((m, b), []).append(measure(b, m))


def summary(label, rounds):
    for m in models:
        line, base = (os.path.basename(m) + label).ljust(32 if label else 22), None
        for b in a.bins:
            v = [res[(m, b)][i] for i in rounds]
            if a.startup:
                med, first = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
                base = base or (med, first)
                line += (f" | {os.path.basename(b)}: load+compile {med:7.1f} first run {first:7.1f}"
                         f" ({med / base[0]:.3f} / {first / base[1]:.3f})")
                continue
            med, mn = statistics.median(x[0] for x in v), min(x[1] for x in v)
            base = base or (med, mn)
            line += f" | {os.path.basename(b)}: med {med:8.3f} min {mn:8.3f} ({med / base[0]:.3f} / {mn / base[1]:.3f})"
        print(line)


summary("", range(a.rounds))
by_state = {s: [i for i, x in enumerate(states) if x == s] for s in ("one die", "two dies")}
if all(by_state.values()):
    for s, rounds in by_state.items():
        summary(f" ({s}, {len(rounds)})", rounds)
elif by_state["two dies"]:
    print(f"(all {a.rounds} rounds on two dies)")
