#!/usr/bin/env python3
"""Layer by layer, ours against ONNX Runtime: `resnet bench --profile` (exact and fast mode)
and ORT's profiler (scripts/ort_profile.py) on one model, alternated for a few rounds,
summed per conv weight shape. Prints a Markdown table: per shape, the median over rounds of
each side's summed step times and GFLOP/s, and the ratio ours/ORT. The "what limits it" part
of issue 4's note (BENCHMARKS.md). With two or more threads, before each of a round's three
measurements CPU 0 and CPU 1 pass a cache line back and forth (scripts/pingpong.c, as
ab_bench.py does): one die or two. The host moves the vCPUs between the two and our
two-thread steps pay more for two dies than ORT's, so when rounds of both kinds occurred the
table is printed again for each kind's rounds (a round whose three measurements saw
different states counts in neither).

usage: layers_vs_ort.py MODEL.onnx [--threads 1] [--batch 1] [--rounds 3] [--runs 20]
Environment: RESNET_BIN (default target/release/resnet), RESNET_VENV's python for ORT
(default .venv/bin/python).
"""
import argparse, json, os, re, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_ort import build_pingpong, dies  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--runs", type=int, default=20)
a = ap.parse_args()
resnet = os.environ.get("RESNET_BIN", os.path.join(root, "target/release/resnet"))
python = os.path.join(os.environ.get("RESNET_VENV", os.path.join(root, ".venv")), "bin/python")

row_re = re.compile(r"^\s+([0-9.]+)\s+[0-9.]+%\s+(\d+)\s+([0-9.]+)\s+\S+\s+(.*)$")
w_re = re.compile(r"W\[([0-9, ]+)\]")


def ours(mode):
    out = subprocess.run([resnet, "bench", "--model", a.model, "--threads", str(a.threads), "--batch", str(a.batch),
                          "--runs", str(a.runs), "--mode", mode, "--profile"], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        m = row_re.match(line)
        if not m:
            continue
        ms, _steps, gmacs, kernel = float(m[1]), int(m[2]), float(m[3]), m[4]
        w = w_re.search(kernel)
        key = "[" + w[1] + "]" if w else kernel.split(" [")[0]
        r = rows.setdefault(key, [0.0, 0.0])
        r[0] += ms
        r[1] += gmacs
    return rows


def ort_rows():
    out = subprocess.run([python, os.path.join(here, "ort_profile.py"), a.model, "--threads", str(a.threads),
                          "--batch", str(a.batch), "--runs", str(a.runs), "--json"], capture_output=True, text=True, check=True).stdout
    rows = {}
    for r in json.loads(out)["rows"]:
        key = json.dumps(r["w"]).replace(" ", "").replace(",", ", ") if r["op"] == "Conv" else r["op"]
        rows[key] = rows.get(key, 0.0) + r["ms"]
    return rows


samples = {"exact": [], "fast": [], "ort": []}
pingpong = build_pingpong() if a.threads > 1 else None
states = []
for i in range(a.rounds):
    seen = set()
    for side, measure in (("exact", lambda: ours("exact")), ("fast", lambda: ours("fast")), ("ort", ort_rows)):
        cores = dies(pingpong)
        if cores:
            seen.add(cores[1])
        samples[side].append(measure())
    state = seen.pop() if len(seen) == 1 else ("mixed" if seen else None)
    states.append(state)
    where = {None: "", "mixed": ": CPUs 0-1 moved between one die and two"}.get(state, f": CPUs 0-1 on {state}")
    print(f"round {i + 1}/{a.rounds}{where}", file=sys.stderr)

keys = [k for k in samples["exact"][0] if k.startswith("[")]
gmacs = {k: samples["exact"][0][k][1] for k in keys}


def med(side, k, rounds):
    vals = [(r[k][0] if side != "ort" else r[k]) for i, r in enumerate(samples[side]) if i in rounds and k in r]
    return statistics.median(vals) if vals else float("nan")


def table(rounds):
    print("| W shape | GMACs | exact ms | fast ms | ORT ms | exact/ORT | fast/ORT | exact GFLOP/s | ORT GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    tot = [0.0, 0.0, 0.0]
    for k in sorted(keys, key=lambda k: -med("ort", k, rounds) if k in samples["ort"][0] else 0):
        e, f, o = med("exact", k, rounds), med("fast", k, rounds), med("ort", k, rounds)
        tot = [tot[0] + e, tot[1] + f, tot[2] + (o if o == o else 0)]
        g = gmacs[k]
        print(f"| {k} | {g:.3f} | {e:.2f} | {f:.2f} | {o:.2f} | {e / o:.2f} | {f / o:.2f} | {2e3 * g / e:.0f} | {2e3 * g / o:.0f} |")
    print(f"| all convs | | {tot[0]:.2f} | {tot[1]:.2f} | {tot[2]:.2f} | {tot[0] / tot[2]:.2f} | {tot[1] / tot[2]:.2f} | | |")


table(set(range(a.rounds)))
by_state = {s: {i for i, x in enumerate(states) if x == s} for s in ("one die", "two dies")}
if all(by_state.values()):
    for s, rounds in by_state.items():
        print(f"\nCPUs 0-1 on {s} ({len(rounds)} of {a.rounds} rounds):\n")
        table(rounds)
elif by_state["two dies"] and len(by_state["two dies"]) == a.rounds:
    print(f"\n(all {a.rounds} rounds on two dies)")
