#!/usr/bin/env python3
"""Golden training steps from PyTorch: what `resnet train`'s forward, backward, BatchNorm and
NAG update must reproduce on a zoo-shaped ResNet-18.

Fixed setup (recorded in the JSON):
  * model: `resnet export --arch resnet18-v1 --seed 7 --input-size 64 --classes 10 FILE`,
    converted by scripts/torch_onnx.py (parameter names = ONNX initializer names);
  * input [4,3,64,64]: x[i] = sin(0.001·i·(1 + i mod 7)) over the flat NCHW index i, computed
    in float64 and cast to float32; labels [1, 3, 5, 7];
  * loss: mean softmax cross-entropy; BatchNorm in training mode (batch statistics, running
    statistics updated with momentum 0.1 = Gluon's 0.9);
  * optimizer: MXNet NAG, lr 0.1, momentum 0.9, wd 2e-4 on every trainable parameter
    (= torch.optim.SGD(nesterov=True, momentum=0.9, weight_decay=2e-4, lr=0.1));
  * two steps, so the second one uses the momentum state; float32 throughout.

Recorded per step k = 1, 2: the loss of step k's forward; per parameter (in graph order) its
value after update k (L2 norm and 16 samples) and the gradient of step k's loss at the weights
before update k (L2 norm, sum and 16 samples; the plain loss gradient, without the weight-decay
term the optimizer adds); per BatchNorm the running mean and variance after step k's forward
(16 samples). PyTorch updates running_var with the unbiased batch variance (as cuDNN does);
`running_var_biased` is the same recursion with the biased variance (MXNet's CPU kernel),
computed here in float64 from the same batches. Samples are at the flat row-major indices
round(k·(n−1)/15), k = 0..15 (listed as `indices`). Step 1's logits of the first 2 images
are recorded too.

    /work/venvs/torch/bin/python scripts/torch_golden.py --onnx r18.onnx \\
        --out crates/resnet/tests/golden/torch_resnet18_step.json
"""
import argparse
import hashlib
import json
import os
import platform
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_onnx  # noqa: E402

EXPORT_COMMAND = "resnet export --arch resnet18-v1 --seed 7 --input-size 64 --classes 10 FILE"
INPUT_SHAPE = [4, 3, 64, 64]
LABELS = [1, 3, 5, 7]
LR, MOMENTUM, WD = 0.1, 0.9, 2e-4
STEPS = 2
SAMPLES = 16


def golden_input():
    """x[i] = sin(0.001·i·(1 + i mod 7)), float64 math, then float32."""
    i = np.arange(int(np.prod(INPUT_SHAPE)), dtype=np.float64)
    return np.sin(0.001 * i * (1.0 + np.mod(i, 7.0))).astype(np.float32).reshape(INPUT_SHAPE)


def sample_indices(n):
    """round(k·(n−1)/15) for k = 0..15, in integers (k·(n−1)/15 never ends in .5)."""
    return [(2 * k * (n - 1) + (SAMPLES - 1)) // (2 * (SAMPLES - 1)) for k in range(SAMPLES)]


def f32(values):
    """float32 values as the shortest decimal that reads back as the same float32 (9 digits)."""
    return [float(f"{float(v):.9g}") for v in np.asarray(values, dtype=np.float32).ravel()]


def samples(t, idx):
    return f32(t.detach().reshape(-1).cpu().numpy()[idx])


class BiasedRunningVar:
    """Follows every BatchNorm's running variance as MXNet's CPU kernel would update it (biased
    batch variance), from the inputs the training forwards see."""

    def __init__(self, model):
        self.var = {}
        self.count = {}
        for node, key, _, var_name in model.batchnorms:
            layer = model.layers[key]
            self.var[node] = layer.running_var.detach().double().clone()
            layer.register_forward_pre_hook(self._hook(node))

    def _hook(self, node):
        def hook(layer, inputs):
            if layer.training:
                x = inputs[0].detach().double()
                self.count[node] = x.numel() // x.shape[1]
                batch_var = x.var(dim=(0, 2, 3), unbiased=False)
                self.var[node] = (1.0 - layer.momentum) * self.var[node] + layer.momentum * batch_var
        return hook


def compact_json(obj):
    """Indented JSON with every list of numbers on one line (a small, diffable file)."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s+([-+0-9.eE,\s]+?)\s+\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def train_steps(path, dtype):
    """Converts the model, runs the STEPS training steps in `dtype`; returns (step-1 logits of
    the first 2 images, per-step records)."""
    model = torch_onnx.load(path)
    if model.input_shape[1:] != INPUT_SHAPE[1:]:
        sys.exit(f"torch_golden: {path} declares input {model.input_shape}, not [N,3,64,64]; "
                 f"make it with `{EXPORT_COMMAND}`")
    model = model.to(dtype).train()
    biased = BiasedRunningVar(model)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.SGD([p for _, p in params], lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD)
    x = torch.from_numpy(golden_input()).to(dtype)
    y = torch.tensor(LABELS, dtype=torch.int64)

    # MXNet's NAG written out (SPEC §6.1), to check torch's SGD(nesterov=True) is exactly it.
    nag_w = {n: p.detach().clone() for n, p in params}
    nag_state = {n: torch.zeros_like(p) for n, p in params}
    steps, logits_step1 = [], None
    for step in range(1, STEPS + 1):
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        if step == 1:
            logits_step1 = [f32(row) for row in logits.detach()[:2].numpy()]
        grads = {n: p.grad.detach().clone() for n, p in params}
        opt.step()
        for n, p in params:
            g = grads[n] + WD * nag_w[n]
            nag_state[n] = MOMENTUM * nag_state[n] + g
            expected = nag_w[n] - LR * (g + MOMENTUM * nag_state[n])
            tol = 1e-12 if dtype == torch.float64 else 1e-6
            if not torch.allclose(p.detach(), expected, rtol=tol, atol=tol):
                sys.exit(f"torch_golden: step {step}: SGD(nesterov) differs from MXNet NAG on {n}")
            nag_w[n] = p.detach().clone()
        entries = []
        for name, p in params:
            g = grads[name].double()
            idx = sample_indices(p.numel())
            entries.append({
                "name": name, "shape": list(p.shape),
                "norm": float(p.detach().double().norm()),
                "grad_norm": float(g.norm()), "grad_sum": float(g.sum()),
                "indices": idx, "value": samples(p, idx), "grad": samples(grads[name], idx),
            })
        bns = []
        for node, key, mean_name, var_name in model.batchnorms:
            layer = model.layers[key]
            idx = sample_indices(layer.running_mean.numel())
            bns.append({
                "node": node, "mean": mean_name, "var": var_name, "count": biased.count[node], "indices": idx,
                "running_mean": samples(layer.running_mean, idx),
                "running_var": samples(layer.running_var, idx),
                "running_var_biased": f32(biased.var[node].numpy()[idx]),
            })
        steps.append({"step": step, "loss": float(loss.detach()), "params": entries, "batchnorm": bns})
        print(f"{str(dtype).removeprefix('torch.')} step {step}: loss {float(loss.detach()):.7f}", file=sys.stderr)
    return logits_step1, steps


def max_abs_diff(a, b):
    """max |a − b| to 3 significant digits (a tolerance scale, not a value)."""
    return float(f"{np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))):.3g}")


def attach_float32_spread(steps, steps32):
    """Adds to every record how far PyTorch's float32 run landed from the float64 one: the
    rounding noise a correct float32 implementation must be allowed (it grows in step 2,
    where step 1's rounding has moved the weights)."""
    for s, s32 in zip(steps, steps32):
        s["loss_f32"] = s32["loss"]
        for p, p32 in zip(s["params"], s32["params"]):
            assert p["name"] == p32["name"]
            p["f32_spread"] = {
                "value": max_abs_diff(p["value"], p32["value"]), "grad": max_abs_diff(p["grad"], p32["grad"]),
                "norm": max_abs_diff(p["norm"], p32["norm"]),
                "grad_norm": max_abs_diff(p["grad_norm"], p32["grad_norm"]),
                "grad_sum": max_abs_diff(p["grad_sum"], p32["grad_sum"]),
            }
        for b, b32 in zip(s["batchnorm"], s32["batchnorm"]):
            b["f32_spread"] = {k: max_abs_diff(b[k], b32[k]) for k in ("running_mean", "running_var",
                                                                         "running_var_biased")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True, help=f"the model of `{EXPORT_COMMAND}`")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: reproducible sums)")
    ap.add_argument("--mkldnn", action="store_true",
                    help="keep oneDNN's convolutions (off by default: on an AVX-512/AMX Xeon their float32 training "
                         "path was 3 %% off float64 in the step-1 gradients; PyTorch's native one 2.5e-5)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = a.mkldnn

    with open(a.onnx, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    logits_step1, steps = train_steps(a.onnx, torch.float64)
    logits32, steps32 = train_steps(a.onnx, torch.float32)
    attach_float32_spread(steps, steps32)

    xs = golden_input()
    golden = {
        "format": "resnet-rs torch golden training steps, v1",
        "generator": {
            "script": "scripts/torch_golden.py", "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "threads": a.threads, "mkldnn": a.mkldnn,
            "dtype": "float64 (inputs and initial weights are float32 values); f32_spread: |float32 run - this|",
        },
        "setup": {
            "model": {"command": EXPORT_COMMAND, "arch": "resnet18-v1", "seed": 7, "input_size": 64, "classes": 10,
                      "onnx_sha256": sha256, "converter": "scripts/torch_onnx.py"},
            "input": {"shape": INPUT_SHAPE, "dtype": "float32",
                      "formula": "x[i] = sin(0.001*i*(1 + i mod 7)) over the flat NCHW index i, float64, then float32",
                      "sum": float(xs.astype(np.float64).sum()), "first": f32(xs.ravel()[:8])},
            "labels": LABELS,
            "loss": "mean softmax cross-entropy over the batch",
            "batchnorm": {"mode": "training", "momentum_torch": 0.1, "momentum_gluon": 0.9, "eps": "from the node",
                          "running_var": "PyTorch: unbiased batch variance (n/(n-1)); running_var_biased: "
                                         "the biased one (MXNet CPU); count = n = N*H*W per channel"},
            "optimizer": {"name": "nag", "lr": LR, "momentum": MOMENTUM, "wd": WD, "wd_on": "every trainable param",
                          "torch": "SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=2e-4)",
                          "mxnet": "state = momentum*state + grad + wd*w; w -= lr*(grad + wd*w + momentum*state)"},
            "steps": STEPS,
            "records": "loss of step k's forward; param value after update k; grad = d loss_k / d w at the weights "
                       "before update k (no wd term); BN running stats after step k's forward",
            "sampling": "flat row-major indices round(k*(n-1)/15), k = 0..15",
        },
        "logits_step1": logits_step1,
        "logits_step1_f32_spread": max_abs_diff(logits_step1, logits32),
        "steps": steps,
    }
    text = compact_json(golden) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(f"wrote {a.out} ({len(text)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
