#!/usr/bin/env python3
"""One ResNet conv layer as a model of its own (opset 7, IR 3, like the zoo's): Conv with
bias, then optionally the residual Add (of a constant tensor: `resnet bench` feeds one
input) and Relu; seeded random weights. For per-shape measurements with `resnet bench` and
scripts/ab_bench.py (a single-layer run also times the plan's copy of the output).

`--chain N` writes N such convs (stride 1, each followed by Relu unless --no-relu) one
after the other, the m ← c conv and a c ← m one taking turns (the same conv N times when
m = c), each with its own filters: a chain whose filters exceed the L3 cache streams them
from memory every run, as a whole ResNet does, where one layer alone keeps them in cache.

usage: conv_layer_model.py OUT.onnx --m 256 --c 64 --hw 56 [--k 1] [--stride 1] [--batch 1] [--add] [--no-relu]
       conv_layer_model.py OUT.onnx --m 512 --c 2048 --hw 7 --chain 16
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--m", type=int, required=True, help="filters")
ap.add_argument("--c", type=int, required=True, help="input channels")
ap.add_argument("--hw", type=int, required=True, help="input height = width")
ap.add_argument("--k", type=int, default=1, help="kernel size (pads k // 2)")
ap.add_argument("--stride", type=int, default=1)
ap.add_argument("--batch", type=int, default=1, help="images per run (the input's fixed batch)")
ap.add_argument("--add", action="store_true", help="fuse a residual Add of a constant")
ap.add_argument("--no-relu", action="store_true")
ap.add_argument("--chain", type=int, default=1, help="convs one after the other (stride 1, no --add)")
a = ap.parse_args()
if a.chain < 1:
    ap.error("--chain takes at least 1")
if a.chain > 1 and (a.stride != 1 or a.add or a.k % 2 == 0):
    ap.error("--chain needs --stride 1, an odd --k and no --add (every conv keeps the plane's size)")

rng = np.random.default_rng(0)
pad = a.k // 2
oh = (a.hw + 2 * pad - a.k) // a.stride + 1
inits, nodes = [], []
cur, c = "x", a.c
for i in range(a.chain):
    m = a.m if c == a.c else a.c
    w, b = (f"W{i}", f"B{i}") if a.chain > 1 else ("W", "B")
    inits += [numpy_helper.from_array((rng.standard_normal((m, c, a.k, a.k)) * 0.05).astype(np.float32), w),
              numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), b)]
    out = f"c{i}" if a.chain > 1 else "c"
    nodes.append(helper.make_node("Conv", [cur, w, b], [out], kernel_shape=[a.k, a.k], strides=[a.stride] * 2,
                                  pads=[pad] * 4))
    cur, c = out, m
    if a.add:
        inits.append(numpy_helper.from_array(rng.standard_normal((a.batch, m, oh, oh)).astype(np.float32), "r"))
        nodes.append(helper.make_node("Add", [cur, "r"], ["a"]))
        cur = "a"
    if not a.no_relu:
        nodes.append(helper.make_node("Relu", [cur], [f"y{i}" if a.chain > 1 else "y"]))
        cur = nodes[-1].output[0]
# IR 3: every initializer is also a graph input (as in the zoo's files).
inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [a.batch, a.c, a.hw, a.hw])]
inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
graph = helper.make_graph(nodes, "layer", inputs, [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [a.batch, c, oh, oh])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)])
model.ir_version = 3
onnx.checker.check_model(model)
onnx.save(model, a.out)
