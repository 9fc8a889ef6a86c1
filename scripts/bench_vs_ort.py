#!/usr/bin/env python3
"""Ours vs ONNX Runtime, side by side: the rounds behind scripts/bench-vs-ort.sh.

For each configuration (model, batch, threads) and each round, runs `resnet bench --json`
(once per engine and mode: `--modes exact,fast` adds fast-mode rows) and then ../shared/tools/ort_bench.py with the same model, batch, threads,
runs and warm-up, so the two share the machine's state of the moment (method:
../shared/PERFORMANCE.md). Prints per configuration and engine: our median ms, ORT's median
ms (medians over rounds of each run's median), the median of the per-round ratios ours/ORT,
the issue's target, load times and peak RSS; `--markdown` prints the table as Markdown.
A JSON line per measurement goes to --log when given.

For configurations on two or more threads each round also times a cache line passed between
CPU 0 and CPU 1 (scripts/pingpong.c, built with the system's `cc` if it has one) and prints
it with the round: ~50 ns per round trip when both vCPUs are on one die, ~330 ns on two, the
host state that slows our two-thread runs by ~27 % and ORT's by ~10 % (BENCHMARKS.md).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

# The target table of issue 4: (model key, batch, threads, {mode: target ratio}).
TARGETS = [
    ("resnet50-v1-keras", 1, 1, {"exact": 1.00, "fast": 0.80}),
    ("resnet50-v1-keras", 1, 2, {"exact": 1.00, "fast": 0.80}),
    ("resnet50-v1-keras", 8, 2, {"exact": 0.95, "fast": 0.75}),
    ("resnet18-v1", 1, 1, {"exact": 1.00, "fast": 0.65}),
    ("resnet50-v2", 1, 2, {"exact": 1.00, "fast": 0.80}),
]
# More of the same grid with --all (no target in the issue).
EXTRA = [
    ("resnet18-v1", 1, 2, None),
    ("resnet18-v1", 8, 2, None),
    ("resnet50-v2", 1, 1, None),
    ("resnet50-v2", 8, 2, None),
]


def run_json(cmd):
    """Runs a tool that prints one JSON line; adds the process's peak RSS (wait4's ru_maxrss)."""
    with tempfile.TemporaryFile("w+") as errf:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)  # not p.wait(): wait4 also gives the rusage
        p.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read()
    code = p.returncode
    if code != 0:
        sys.exit(f"bench-vs-ort: command failed ({code}): {' '.join(cmd)}\n{err.strip()}")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_peak_rss_mb"] = usage.ru_maxrss * 1024 / 1e6  # Linux: KiB
    return result


def build_pingpong():
    """Builds scripts/pingpong.c into a temp dir: the binary's path, or None without a C compiler."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pingpong.c")
    out = os.path.join(tempfile.mkdtemp(prefix="pingpong-"), "pingpong")
    try:
        subprocess.run(["cc", "-O2", "-pthread", src, "-o", out], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out


def dies(pingpong):
    """`(round trip ns, "one die" | "two dies")` of CPUs 0 and 1, or None."""
    if not pingpong or (os.cpu_count() or 1) < 2:
        return None
    try:
        out = subprocess.run([pingpong], check=True, capture_output=True, text=True).stdout
        rt = float(out.split("round trip")[1].split("ns")[0])
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        return None
    return rt, "one die" if rt < 150 else "two dies"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resnet", required=True, help="the resnet binary")
    ap.add_argument("--python", required=True, help="python with onnxruntime")
    ap.add_argument("--ort-bench", required=True, help="path of ort_bench.py")
    ap.add_argument("--model", action="append", required=True, metavar="KEY=PATH", help="model files by key")
    ap.add_argument("--engines", default="reference", help="comma-separated engines of `resnet bench`")
    ap.add_argument("--modes", default="exact", help="comma-separated modes of `resnet bench` (exact, fast, bf16; bf16 rows have no target)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per measurement, both tools")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up runs per measurement, both tools")
    ap.add_argument("--all", action="store_true", help="also the untargeted configurations")
    ap.add_argument("--openvino", metavar="OV_BENCH", help="also time OpenVINO (fp32; bf16 as well for bf16 rows) with this scripts/ov_bench.py "
                    "(same model, batch, threads, runs, warm-up) in every round")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--log", help="append every measurement as a JSON line to this file")
    a = ap.parse_args()
    models = dict(m.split("=", 1) for m in a.model)
    # (engine, mode) pairs; the reference executor has exact arithmetic only.
    engines = [(e, m) for e in a.engines.split(",") for m in a.modes.split(",") if not (e == "reference" and m != "exact")]
    if not engines:
        sys.exit("bench-vs-ort: no engine/mode pair to run (the reference engine runs --mode exact only)")
    label = lambda em: em[0] if em[1] == "exact" else f"{em[0]} {em[1]}"
    configs = TARGETS + (EXTRA if a.all else [])
    log = open(a.log, "a") if a.log else None

    # OpenVINO's inference precisions to time: bf16 rows are compared with OpenVINO in bf16.
    ov_precisions = ["f32"] + (["bf16"] if any(e[1] == "bf16" for e in engines) else [])
    pingpong = build_pingpong()
    results = []
    for key, batch, threads, target in configs:
        path = models[key]
        ours = {e: [] for e in engines}
        ort, ov = [], {p: [] for p in ov_precisions}
        for r in range(a.rounds):
            cores = dies(pingpong) if threads > 1 else None
            if log and cores:
                log.write(json.dumps({"round": r, "tool": "pingpong", "round_trip_ns": cores[0]}) + "\n")
            for e in engines:
                cmd = [a.resnet, "bench", "--model", path, "--batch", str(batch), "--threads", str(threads),
                       "--runs", str(a.runs), "--warmup", str(a.warmup), "--engine", e[0], "--mode", e[1], "--json"]
                o = run_json(cmd)
                ours[e].append(o)
                if log:
                    log.write(json.dumps({"round": r, "tool": f"resnet {label(e)}", **o}) + "\n")
            x = run_json([a.python, a.ort_bench, path, "--batch", str(batch), "--threads", str(threads),
                          "--runs", str(a.runs), "--warmup", str(a.warmup)])
            ort.append(x)
            if log:
                log.write(json.dumps({"round": r, **x}) + "\n")
            if a.openvino:
                # fp32 for the exact and fast rows; bf16 too when a bf16 row is timed.
                for prec in ov_precisions:
                    v = run_json([a.python, a.openvino, path, "--batch", str(batch), "--threads", str(threads),
                                  "--runs", str(a.runs), "--warmup", str(a.warmup), "--precision", prec])
                    ov[prec].append(v)
                    if log:
                        log.write(json.dumps({"round": r, **v}) + "\n")
            line = "  ".join(f"{label(e)} {ours[e][-1]['median_ms']:.1f} ms" for e in engines)
            ov_line = "".join(f"  openvino {p} {ov[p][-1]['median_ms']:.1f} ms" for p in ov_precisions if ov[p])
            cores_line = f"  [CPUs 0-1: {cores[1]}, {cores[0]:.0f} ns round trip]" if cores else ""
            print(f"[{time.strftime('%H:%M:%S')}] {key} b{batch} t{threads} round {r + 1}/{a.rounds}: "
                  f"{line}  ort {x['median_ms']:.1f} ms{ov_line}{cores_line}", file=sys.stderr, flush=True)
        for e in engines:
            ratios = [o["median_ms"] / x["median_ms"] for o, x in zip(ours[e], ort)]
            ovp = "bf16" if e[1] == "bf16" else "f32"
            results.append({
                "model": key, "batch": batch, "threads": threads, "engine": label(e),
                "ours_ms": statistics.median(o["median_ms"] for o in ours[e]),
                "ort_ms": statistics.median(x["median_ms"] for x in ort),
                "ratio": statistics.median(ratios),
                "ratio_min": min(ratios), "ratio_max": max(ratios),
                "target": None if target is None else target.get(e[1]),
                "ours_gflops": statistics.median(o["gflops"] for o in ours[e]),
                "ours_fraction_of_peak": statistics.median(o["fraction_of_peak"] or 0 for o in ours[e]),
                "ours_load_ms": statistics.median(o["load_ms"] + o["compile_ms"] for o in ours[e]),
                "ort_load_ms": statistics.median(x["load_s"] * 1e3 for x in ort),
                "ours_rss_mb": max(o["process_peak_rss_mb"] for o in ours[e]),
                "ort_rss_mb": max(x["process_peak_rss_mb"] for x in ort),
                "ov_precision": ovp,
                "ov_ms": statistics.median(v["median_ms"] for v in ov[ovp]) if ov[ovp] else None,
                "ov_ratio": statistics.median(o["median_ms"] / v["median_ms"] for o, v in zip(ours[e], ov[ovp]))
                if ov[ovp] else None,
            })

    header = ["model", "batch", "threads", "engine", "ours ms", "ORT ms", "ratio ours/ORT (min–max)", "target",
              "GFLOP/s (of peak)", "load+compile ms ours / ORT", "peak RSS MB ours / ORT"]
    if a.openvino:
        header += ["OpenVINO ms (precision)", "ratio ours/OpenVINO"]
    rows = []
    for r in results:
        target = "—" if r["target"] is None else f"≤ {r['target']:.2f}"
        rows.append([r["model"], str(r["batch"]), str(r["threads"]), r["engine"], f"{r['ours_ms']:.1f}",
                     f"{r['ort_ms']:.1f}", f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})", target,
                     f"{r['ours_gflops']:.1f} ({r['ours_fraction_of_peak'] * 100:.0f} %)",
                     f"{r['ours_load_ms']:.0f} / {r['ort_load_ms']:.0f}", f"{r['ours_rss_mb']:.0f} / {r['ort_rss_mb']:.0f}"]
                    + ([f"{r['ov_ms']:.1f} ({r['ov_precision']})", f"{r['ov_ratio']:.2f}"] if a.openvino else []))
    if a.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
