#!/usr/bin/env python3
"""PyTorch's training speed on a zoo-shaped ONNX ResNet: the other half of
scripts/bench-train-vs-torch.sh.

Converts the model with scripts/torch_onnx.py and times full training steps (zero_grad,
forward with BatchNorm in training mode, mean softmax cross-entropy, backward, NAG update as
MXNet's: SGD(lr 0.1, momentum 0.9, nesterov, wd 2e-4)) on one random batch fixed per run
(seed 0: N(0,1) images, uniform labels), with torch.set_num_threads(T) and PyTorch's default
CPU kernels (oneDNN on). Prints one JSON object with --json, else a line for people:

    python scripts/torch_train_bench.py --onnx r18.onnx --batch 32 --threads 2 --steps 10 --json
    {"tool": "pytorch", "images_per_sec": …, "ms_per_step": <median>, …}
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_onnx  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True, help="zoo-shaped ONNX ResNet (`resnet export --arch NAME …`)")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True, help="torch.set_num_threads (intra-op)")
    ap.add_argument("--steps", type=int, required=True, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    if a.batch < 1 or a.threads < 1 or a.steps < 1 or a.warmup < 0:
        sys.exit("torch_train_bench: --batch, --threads and --steps must be at least 1, --warmup at least 0")
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)

    t0 = time.perf_counter()
    try:
        model = torch_onnx.load(a.onnx).train()
    except torch_onnx.ConversionError as e:
        sys.exit(f"torch_train_bench: {a.onnx}: {e}")
    load_s = time.perf_counter() - t0
    shape = [a.batch] + model.input_shape[1:]
    if any(d is None for d in shape):
        sys.exit(f"torch_train_bench: {a.onnx} declares input {model.input_shape} with symbolic dimensions")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    classes = model.layers[[k for k, l in model.layers.items() if isinstance(l, torch.nn.Linear)][-1]].out_features
    y = torch.randint(0, classes, (a.batch,), generator=gen)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=2e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    for _ in range(a.warmup):
        step()
    times, losses = [], []
    for _ in range(a.steps):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    result = {
        "tool": "pytorch",
        "torch": torch.__version__,
        "model": a.onnx,
        "input_shape": shape,
        "classes": classes,
        "parameters": sum(p.numel() for p in params),
        "batch": a.batch,
        "threads": a.threads,
        "steps": a.steps,
        "warmup": a.warmup,
        "images_per_sec": a.batch / med,
        "ms_per_step": med * 1e3,
        "ms_per_step_min": min(times) * 1e3,
        "ms_per_step_max": max(times) * 1e3,
        "load_s": load_s,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }
    if a.json:
        print(json.dumps(result))
    else:
        print(f"pytorch {torch.__version__}: {shape} batch {a.batch}, {a.threads} threads: "
              f"{result['images_per_sec']:.1f} images/s, {result['ms_per_step']:.1f} ms/step (median of {a.steps}), "
              f"loss {losses[0]:.4f} → {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
