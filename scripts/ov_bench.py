#!/usr/bin/env python3
"""Time OpenVINO on a model the way ../shared/tools/ort_bench.py times ONNX Runtime.

usage: ov_bench.py MODEL.onnx [--batch 1] [--threads 1] [--runs 30] [--warmup 5] [--precision f32|bf16]
Prints one JSON line: median/min/max ms per run, images/s, load (read + compile) time.
Settings: CPU device, fp32 inference precision by default (no bf16 down-conversion, which
OpenVINO picks by default on AVX512_BF16 CPUs; `--precision bf16` asks for it, to compare
with `resnet bench --mode bf16`), INFERENCE_NUM_THREADS=--threads, one stream, LATENCY hint,
random normal input [batch,3,224,224] (weights, not inputs, decide the speed).
"""
import argparse, json, time
import numpy as np
import openvino as ov

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--runs", type=int, default=30)
ap.add_argument("--warmup", type=int, default=5)
ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
a = ap.parse_args()

core = ov.Core()
t0 = time.perf_counter()
model = core.read_model(a.model)
name = model.inputs[0].get_any_name()
model.reshape({name: [a.batch, 3, 224, 224]})
compiled = core.compile_model(model, "CPU", {
    "INFERENCE_PRECISION_HINT": a.precision,
    "INFERENCE_NUM_THREADS": a.threads,
    "NUM_STREAMS": 1,
    "PERFORMANCE_HINT": "LATENCY",
})
load_s = time.perf_counter() - t0
request = compiled.create_infer_request()
x = np.random.default_rng(0).standard_normal((a.batch, 3, 224, 224)).astype(np.float32)
for _ in range(a.warmup):
    request.infer({0: x})
ts = []
for _ in range(a.runs):
    t = time.perf_counter(); request.infer({0: x}); ts.append((time.perf_counter() - t) * 1e3)
ts.sort()
med = ts[len(ts) // 2]
print(json.dumps({"tool": f"openvino {ov.__version__}", "model": a.model, "batch": a.batch, "threads": a.threads,
                  "precision": a.precision,
                  "median_ms": round(med, 3), "min_ms": round(ts[0], 3), "max_ms": round(ts[-1], 3),
                  "img_per_s": round(a.batch * 1e3 / med, 2), "load_s": round(load_s, 3)}))
