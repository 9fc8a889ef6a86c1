#!/usr/bin/env python3
"""Two or more `resnet` binaries' `bench --profile` alternated on one model: the per-step A/B
behind the commit messages' "`--profile` alternated" numbers. On a noisy host a change of a
few steps is lost in whole-run times (scripts/ab_bench.py) but shows in its steps' times.

usage: ab_profile.py [--rounds 3] [--threads 1] [--batch 1] [--runs 30] [--mode exact]
                     [--match REGEX] [--top N] BIN [BIN ...] -- MODEL.onnx
Each round runs every BIN in turn as `BIN bench --model MODEL --threads T --batch B --runs R
--mode MODE --profile --json` and records its run median and each profile row (a kernel
shape's summed step medians). Prints one line per round (each binary's run median; with two or more
threads whether CPUs 0 and 1 were on one die or two, scripts/pingpong.c), then per row the
median over rounds and the minimum over rounds of each binary's time, and both relative to
the first binary. Rows are ordered by the first binary's median; `--match` keeps rows whose
kernel text matches, `--top` the N longest. The quiet rounds are those whose run medians are
lowest: compare their rows, as the per-round lines show which they are.
Copy a build to keep it: `cp target/release/resnet /tmp/resnet-old`.
"""
import argparse, json, os, re, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_ort import build_pingpong, dies  # noqa: E402

argv = sys.argv[1:]
if "--" not in argv:
    sys.exit("usage: ab_profile.py [options] BIN [BIN ...] -- MODEL")
cut = argv.index("--")
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--runs", type=int, default=30)
ap.add_argument("--mode", default="exact", choices=["exact", "fast", "bf16"])
ap.add_argument("--match", help="only rows whose kernel text matches this regular expression")
ap.add_argument("--top", type=int, help="only the N rows the first binary spends longest in")
ap.add_argument("bins", nargs="+")
a = ap.parse_args(argv[:cut])
if len(argv) - cut - 1 != 1:
    sys.exit("ab_profile.py: one model after --")
model = argv[cut + 1]
if a.rounds < 1:
    sys.exit("ab_profile.py: --rounds takes at least 1")
try:
    match = re.compile(a.match) if a.match else None
except re.error as e:
    sys.exit(f"ab_profile.py: --match: {e}")


def measure(binary):
    """`(run median ms, {kernel text: ms})` of one `bench --profile`."""
    cmd = [binary, "bench", "--model", model, "--threads", str(a.threads), "--batch", str(a.batch),
           "--runs", str(a.runs), "--mode", a.mode, "--profile", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{binary} bench: {out.stderr.strip() or out.stdout.strip()}")
    d = json.loads(out.stdout)
    return d["median_ms"], {f"{r['kind']} [{r['fused']}]": r["ms"] for r in d["profile"]}


print(time.strftime("%H:%M:%S"), f"{os.path.basename(model)}: {a.rounds} rounds, {a.threads} thread(s), "
      f"batch {a.batch}, mode {a.mode}, {a.runs} runs", file=sys.stderr)
pingpong = build_pingpong() if a.threads > 1 else None
res = {b: [] for b in a.bins}
for r in range(a.rounds):
    cores = dies(pingpong)
    for b in a.bins:
        res[b].append(measure(b))
    state = f", CPUs 0-1 on {cores[1]}" if cores else ""
    runs = "  ".join(f"{os.path.basename(b)} {res[b][-1][0]:.2f}" for b in a.bins)
    print(f"round {r + 1}{state}: run medians (ms) {runs}")

first = a.bins[0]
kernels = sorted({k for b in a.bins for _, rows in res[b] for k in rows},
                 key=lambda k: -statistics.median(rows.get(k, 0.0) for _, rows in res[first]))
if match:
    kernels = [k for k in kernels if match.search(k)]
if a.top:
    kernels = kernels[:a.top]
print(f"ms per row: median / min over rounds (relative to {os.path.basename(first)})")
for k in kernels:
    line, base = "", None
    for b in a.bins:
        v = [rows.get(k, 0.0) for _, rows in res[b]]
        med, mn = statistics.median(v), min(v)
        base = base or (med or 1.0, mn or 1.0)
        line += f" | {os.path.basename(b)} {med:7.3f} / {mn:7.3f} ({med / base[0]:.3f} / {mn / base[1]:.3f})"
    print(line[3:], "|", k)
