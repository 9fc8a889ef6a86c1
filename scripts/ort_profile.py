#!/usr/bin/env python3
"""ONNX Runtime's per-operator profile of a model, summed per conv weight shape: the other
half of `resnet bench --profile` when comparing layer by layer (BENCHMARKS.md).

usage: ort_profile.py MODEL.onnx [--threads 1] [--batch 1] [--runs 25] [--json]
Runs the model with ORT's profiler (CPUExecutionProvider, ORT_ENABLE_ALL, intra-op threads
--threads, inter-op 1), drops the first 3 runs, and prints per node the median kernel time
over the rest, summed per (op, weight shape): "ms  nodes  op [W shape] -> [output shape]".
--json prints {"total_ms": ..., "rows": [{"op", "w", "out", "nodes", "ms"}]} instead.
"""
import argparse, collections, json, os, tempfile

import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--runs", type=int, default=25)
ap.add_argument("--json", action="store_true")
a = ap.parse_args()

so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.log_severity_level = 3
so.enable_profiling = True
so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
shape = [a.batch if not isinstance(d, int) else d for d in inp.shape]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
for _ in range(a.runs):
    s.run(None, {inp.name: x})
path = s.end_profiling()
events = json.load(open(path))
os.remove(path)

per_node = collections.defaultdict(list)
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        args = e["args"]
        shapes = [list(d.values())[0] for d in args.get("input_type_shape", [])]
        outs = [list(d.values())[0] for d in args.get("output_type_shape", [])]
        w = shapes[1] if len(shapes) > 1 else []
        per_node[e["name"]].append((e["dur"], args.get("op_name"), w, outs[0] if outs else []))

rows = collections.defaultdict(lambda: [0.0, 0])
for runs in per_node.values():
    runs = runs[3:] or runs
    med = sorted(r[0] for r in runs)[len(runs) // 2] / 1000.0
    _, op, w, out = runs[0]
    key = (op, json.dumps(w), json.dumps(out))
    rows[key][0] += med
    rows[key][1] += 1
total = sum(v[0] for v in rows.values())
ordered = sorted(rows.items(), key=lambda kv: -kv[1][0])
if a.json:
    print(json.dumps({"total_ms": round(total, 3), "rows": [
        {"op": k[0], "w": json.loads(k[1]), "out": json.loads(k[2]), "nodes": v[1], "ms": round(v[0], 3)}
        for k, v in ordered]}))
else:
    print(f"ONNX Runtime {ort.__version__}, {a.threads} thread(s), batch {a.batch}: "
          f"sum of per-node medians {total:.2f} ms")
    for (op, w, out), (ms, n) in ordered:
        print(f"{ms:8.3f} {n:3d}  {op} {w} -> {out}")
