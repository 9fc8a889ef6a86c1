#!/usr/bin/env python3
"""One ResNet conv layer as a model of its own (opset 7, IR 3, like the zoo's): Conv with
bias, then optionally the residual Add (of a constant tensor: `resnet bench` feeds one
input) and Relu; seeded random weights. For per-shape measurements with `resnet bench` and
scripts/ab_bench.py (a single-layer run also times the plan's copy of the output).

usage: conv_layer_model.py OUT.onnx --m 256 --c 64 --hw 56 [--k 1] [--stride 1] [--batch 1] [--add] [--no-relu]
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
a = ap.parse_args()

rng = np.random.default_rng(0)
pad = a.k // 2
oh = (a.hw + 2 * pad - a.k) // a.stride + 1
inits = [numpy_helper.from_array((rng.standard_normal((a.m, a.c, a.k, a.k)) * 0.05).astype(np.float32), "W"),
         numpy_helper.from_array(rng.standard_normal(a.m).astype(np.float32), "B")]
nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[a.k, a.k], strides=[a.stride] * 2, pads=[pad] * 4)]
cur = "c"
if a.add:
    inits.append(numpy_helper.from_array(rng.standard_normal((a.batch, a.m, oh, oh)).astype(np.float32), "r"))
    nodes.append(helper.make_node("Add", [cur, "r"], ["a"]))
    cur = "a"
if not a.no_relu:
    nodes.append(helper.make_node("Relu", [cur], ["y"]))
    cur = "y"
# IR 3: every initializer is also a graph input (as in the zoo's files).
inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [a.batch, a.c, a.hw, a.hw])]
inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
graph = helper.make_graph(nodes, "layer", inputs, [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [a.batch, a.m, oh, oh])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)])
model.ir_version = 3
onnx.checker.check_model(model)
onnx.save(model, a.out)
