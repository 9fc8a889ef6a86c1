#!/usr/bin/env python3
"""A zoo-shaped ONNX ResNet as a genuine torch.nn.Module: the PyTorch oracle of `resnet train`.

`load(path)` walks the ONNX graph's node list in order (generic over it, nothing per depth) and
builds one layer per node: nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d (the ONNX pads),
nn.AdaptiveAvgPool2d(1) for GlobalAveragePool, Flatten/Reshape, nn.Linear for Gemm and a
residual add for Add; the weights are copied from the initializers. The forward runs the nodes
in the same order over a name → tensor table, so any graph `resnet export --arch NAME` writes
(v1/v2, every depth, mnist-v1/v2, opset 7 or 13) converts.

Names: the module's parameters are registered under the ONNX initializer names
(`dict(model.named_parameters())["resnetv15_conv0_weight"]`), shared with the layer that uses
them, so `named_parameters()` yields exactly the initializers, in graph order;
`named_onnx_buffers()` gives the BatchNorm running statistics under theirs and
`onnx_state()` every initializer's current value (what a re-export would write).

BatchNorm: eps from the node; momentum = 1 − the node's `momentum` attribute (ONNX/MXNet
convention, default 0.9 ⇒ PyTorch's 0.1). PyTorch updates running_var with the *unbiased*
batch variance (as cuDNN does); MXNet's CPU kernel uses the biased one. A BatchNorm applied
directly to the graph input (Gluon v2's data BN, `scale=False, center=False`) has its gamma
and beta frozen (requires_grad=False), as SPEC §1.5 counts them.

Run as a script, it checks the conversion: eval-mode output against ONNX Runtime on a random
batch (in-process when onnxruntime is importable, else with --ort-python PY):

    python scripts/torch_onnx.py model.onnx --batch 2 --ort-python /work/venvs/ort/bin/python
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper


class ConversionError(Exception):
    """A graph this converter does not handle; the message names the node."""


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _ints(v):
    return [int(i) for i in v]


def _symmetric_pads(node, pads, rank=2):
    """ONNX pads [x1_begin, x2_begin, x1_end, x2_end] → (symmetric padding or None, F.pad tuple)."""
    pads = _ints(pads) if pads is not None else [0] * (2 * rank)
    begin, end = pads[:rank], pads[rank:]
    if begin == end:
        return tuple(begin), None
    # F.pad takes the last dimension first: (w_begin, w_end, h_begin, h_end).
    return (0,) * rank, (begin[1], end[1], begin[0], end[0])


def _check_auto_pad(node, a):
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", ""):
        raise ConversionError(f"node '{node.name}' ({node.op_type}): auto_pad={auto_pad} is not supported")


class OnnxResNet(nn.Module):
    """The converted network. `forward(x)` takes the NCHW float32 batch of the graph input."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        self.graph_name = graph.name
        inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        constants = {}
        for node in graph.node:
            if node.op_type == "Constant":
                constants[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
        runtime_inputs = [i.name for i in graph.input if i.name not in inits]
        if len(runtime_inputs) != 1:
            raise ConversionError(f"graph '{graph.name}': expected one runtime input, found {runtime_inputs}")
        self.input_name = runtime_inputs[0]
        dims = graph.input[[i.name for i in graph.input].index(self.input_name)].type.tensor_type.shape.dim
        # Declared input shape, None for symbolic dimensions.
        self.input_shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if len(graph.output) != 1:
            raise ConversionError(f"graph '{graph.name}': expected one output, found {len(graph.output)}")
        self.output_name = graph.output[0].name

        self.layers = nn.ModuleDict()
        # One step per node: (op, layer key or None, data input names, output name, extra).
        self.steps = []
        # ONNX initializer name → (layer key, attribute) of BatchNorm running statistics.
        self._buffer_names = {}
        # (node name, layer key, running-mean name, running-var name) per BatchNorm, in order.
        self.batchnorms = []
        self._bound = set()

        def init(node, name, what):
            if name not in inits:
                raise ConversionError(f"node '{node.name}' ({node.op_type}): {what} '{name}' is not an initializer")
            if name in self._bound:
                raise ConversionError(f"node '{node.name}': initializer '{name}' is used by two layers")
            self._bound.add(name)
            return torch.from_numpy(np.array(inits[name], dtype=np.float32, copy=True))

        def bind(node, layer, attr, name, what, trainable=True):
            value = init(node, name, what)
            if "." in name:
                raise ConversionError(f"node '{node.name}': initializer name '{name}' contains '.'")
            p = nn.Parameter(value, requires_grad=trainable)
            setattr(layer, attr, p)
            self.register_parameter(name, p)

        for node in graph.node:
            op, a = node.op_type, _attrs(node)
            key = (node.name or node.output[0]).replace(".", "_")
            if key in self.layers:
                raise ConversionError(f"node '{node.name}': two nodes named '{key}'")
            out = node.output[0]
            if op == "Constant":
                continue
            if op == "Conv":
                _check_auto_pad(node, a)
                w = inits.get(node.input[1])
                if w is None or w.ndim != 4:
                    raise ConversionError(f"node '{node.name}' (Conv): weight '{node.input[1]}' must be a 4-D initializer")
                group = int(a.get("group", 1))
                padding, pad = _symmetric_pads(node, a.get("pads"))
                has_bias = len(node.input) > 2 and node.input[2] != ""
                layer = nn.Conv2d(
                    w.shape[1] * group, w.shape[0], kernel_size=tuple(w.shape[2:]),
                    stride=tuple(_ints(a.get("strides", [1, 1]))), padding=padding,
                    dilation=tuple(_ints(a.get("dilations", [1, 1]))), groups=group, bias=has_bias)
                if "kernel_shape" in a and _ints(a["kernel_shape"]) != list(w.shape[2:]):
                    raise ConversionError(f"node '{node.name}' (Conv): kernel_shape {a['kernel_shape']} "
                                          f"disagrees with weight shape {list(w.shape)}")
                bind(node, layer, "weight", node.input[1], "weight")
                if has_bias:
                    bind(node, layer, "bias", node.input[2], "bias")
                self.layers[key] = layer
                self.steps.append(("conv", key, [node.input[0]], out, pad))
            elif op == "BatchNormalization":
                if int(a.get("spatial", 1)) != 1:
                    raise ConversionError(f"node '{node.name}': BatchNormalization spatial=0 is not supported")
                if len(node.output) > 1 and any(node.output[1:]):
                    raise ConversionError(f"node '{node.name}': BatchNormalization with training outputs")
                scale = inits.get(node.input[1])
                if scale is None:
                    raise ConversionError(f"node '{node.name}': scale '{node.input[1]}' is not an initializer")
                # The attribute is a float32 (0.9 → 0.89999998); 7 digits recover the intended value.
                m = float(f"{float(a.get('momentum', 0.9)):.7g}")
                layer = nn.BatchNorm2d(scale.shape[0], eps=float(a.get("epsilon", 1e-5)), momentum=1.0 - m)
                # Gluon's v2 data BatchNorm (scale=False, center=False) sits on the graph input.
                fixed = node.input[0] == self.input_name
                bind(node, layer, "weight", node.input[1], "scale", trainable=not fixed)
                bind(node, layer, "bias", node.input[2], "bias", trainable=not fixed)
                layer.running_mean.copy_(init(node, node.input[3], "mean"))
                layer.running_var.copy_(init(node, node.input[4], "var"))
                self._buffer_names[node.input[3]] = (key, "running_mean")
                self._buffer_names[node.input[4]] = (key, "running_var")
                self.batchnorms.append((node.name, key, node.input[3], node.input[4]))
                self.layers[key] = layer
                self.steps.append(("module", key, [node.input[0]], out, None))
            elif op == "Relu":
                self.layers[key] = nn.ReLU()
                self.steps.append(("module", key, [node.input[0]], out, None))
            elif op == "MaxPool":
                _check_auto_pad(node, a)
                if int(a.get("storage_order", 0)) != 0 or len(node.output) > 1 and node.output[1]:
                    raise ConversionError(f"node '{node.name}': MaxPool indices output is not supported")
                padding, pad = _symmetric_pads(node, a.get("pads"))
                kernel = tuple(_ints(a["kernel_shape"]))
                layer = nn.MaxPool2d(kernel, stride=tuple(_ints(a.get("strides", [1, 1]))), padding=padding,
                                     dilation=tuple(_ints(a.get("dilations", [1, 1]))),
                                     ceil_mode=bool(a.get("ceil_mode", 0)))
                self.layers[key] = layer
                self.steps.append(("pool", key, [node.input[0]], out, pad))
            elif op == "GlobalAveragePool":
                self.layers[key] = nn.AdaptiveAvgPool2d(1)
                self.steps.append(("module", key, [node.input[0]], out, None))
            elif op == "Flatten":
                self.steps.append(("flatten", None, [node.input[0]], out, int(a.get("axis", 1))))
            elif op == "Reshape":
                source = inits.get(node.input[1], constants.get(node.input[1]))
                if source is None:
                    raise ConversionError(f"node '{node.name}' (Reshape): shape '{node.input[1]}' is not constant")
                if node.input[1] in inits:
                    self._bound.add(node.input[1])
                if int(a.get("allowzero", 0)) != 0:
                    raise ConversionError(f"node '{node.name}' (Reshape): allowzero=1 is not supported")
                self.steps.append(("reshape", None, [node.input[0]], out, [int(v) for v in source]))
            elif op == "Gemm":
                if float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0 or int(a.get("transA", 0)):
                    raise ConversionError(f"node '{node.name}' (Gemm): only alpha=beta=1, transA=0 is supported")
                if int(a.get("transB", 0)) != 1:
                    raise ConversionError(f"node '{node.name}' (Gemm): transB=0 would need a transposed weight; "
                                          "only the zoo's transB=1 keeps the initializer's shape")
                w = inits.get(node.input[1])
                if w is None or w.ndim != 2:
                    raise ConversionError(f"node '{node.name}' (Gemm): B '{node.input[1]}' must be a 2-D initializer")
                has_bias = len(node.input) > 2 and node.input[2] != ""
                if has_bias and inits.get(node.input[2], np.zeros(0)).shape != (w.shape[0],):
                    raise ConversionError(f"node '{node.name}' (Gemm): C '{node.input[2]}' must be a [{w.shape[0]}] "
                                          "initializer")
                layer = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
                bind(node, layer, "weight", node.input[1], "B")
                if has_bias:
                    bind(node, layer, "bias", node.input[2], "C")
                self.layers[key] = layer
                self.steps.append(("module", key, [node.input[0]], out, None))
            elif op == "Add":
                for i in node.input:
                    if i in inits:
                        raise ConversionError(f"node '{node.name}' (Add): constant operand '{i}' is not supported")
                self.steps.append(("add", None, list(node.input), out, None))
            else:
                raise ConversionError(f"node '{node.name}': op {op} is not supported (zoo-shaped ResNets only)")
        unused = [n for n in inits if n not in self._bound]
        if unused:
            raise ConversionError(f"graph '{graph.name}': initializers not used by any layer: {unused[:5]}")

    def forward(self, x):
        env = {self.input_name: x}
        for op, key, inputs, out, extra in self.steps:
            args = [env[i] for i in inputs]
            if op == "conv":
                y = args[0] if extra is None else F.pad(args[0], extra)
                y = self.layers[key](y)
            elif op == "pool":
                y = args[0] if extra is None else F.pad(args[0], extra, value=float("-inf"))
                y = self.layers[key](y)
            elif op == "module":
                y = self.layers[key](args[0])
            elif op == "flatten":
                y = args[0].reshape(int(np.prod(args[0].shape[:extra])), -1)
            elif op == "reshape":
                shape = [args[0].shape[i] if d == 0 else d for i, d in enumerate(extra)]
                y = args[0].reshape(shape)
            elif op == "add":
                y = args[0] + args[1]
            else:
                raise AssertionError(op)
            env[out] = y
        return env[self.output_name]

    def named_onnx_buffers(self):
        """(initializer name, tensor) of every BatchNorm running mean and variance, in graph order."""
        for name, (key, attr) in self._buffer_names.items():
            yield name, getattr(self.layers[key], attr)

    def onnx_state(self):
        """Every float initializer's current value as a float32 numpy array, by ONNX name."""
        state = {n: p.detach().cpu().numpy().copy() for n, p in self.named_parameters()}
        state.update((n, b.detach().cpu().numpy().copy()) for n, b in self.named_onnx_buffers())
        return state


def load(path):
    """Reads an ONNX file and converts it; raises ConversionError naming the node it cannot convert."""
    return OnnxResNet(onnx.load(path))


_ORT_SNIPPET = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: x})[0])
"""


def onnxruntime_output(path, x, ort_python=None):
    """The model's output from ONNX Runtime (optimizations off): in-process, or via ort_python."""
    if ort_python is None:
        try:
            import onnxruntime as ort
        except ImportError:
            sys.exit("torch_onnx: no onnxruntime in this python; pass --ort-python PY (a venv that has it)")
        o = ort.SessionOptions()
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        return s.run(None, {s.get_inputs()[0].name: x})[0]
    with tempfile.TemporaryDirectory() as d:
        xin, yout = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(xin, x)
        subprocess.run([ort_python, "-c", _ORT_SNIPPET, path, xin, yout], check=True)
        return np.load(yout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", help="zoo-shaped ONNX ResNet (e.g. from `resnet export --arch NAME`)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random N(0,1) input")
    ap.add_argument("--tol", type=float, default=1e-5, help="largest |torch − ORT| accepted, relative to max |ORT| "
                    "when that exceeds 1")
    ap.add_argument("--ort-python", help="python with onnxruntime, when this one has none")
    a = ap.parse_args()
    model = load(a.onnx).eval()
    shape = [a.batch] + model.input_shape[1:]
    if any(d is None for d in shape):
        sys.exit(f"torch_onnx: the input shape {model.input_shape} has symbolic dimensions past the batch")
    x = np.random.default_rng(a.seed).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    ref = onnxruntime_output(a.onnx, x, a.ort_python)
    diff = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    scale = max(1.0, float(np.max(np.abs(ref))))
    result = {"onnx": a.onnx, "input_shape": shape, "output_shape": list(ours.shape), "max_abs_diff": diff,
              "max_abs_ort": float(np.max(np.abs(ref))), "tol": a.tol * scale,
              "parameters": sum(p.numel() for p in model.parameters()),
              "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "ok": bool(ours.shape == ref.shape and diff <= a.tol * scale)}
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
