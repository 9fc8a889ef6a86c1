#!/usr/bin/env python3
"""Small ResNets written the way other exporters write them, with ONNX Runtime outputs.

The zoo files come from MXNet (scripts/zoo_models.py). Users also bring ResNets exported by
PyTorch (torch.onnx) and by Keras (tf2onnx), which use other ops for the same network:

  pytorch-opset13   Conv with bias (BN folded or not), BatchNormalization, Relu, MaxPool,
                    Add, GlobalAveragePool, then the dynamic-shape flatten PyTorch emits:
                    Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Gemm, Softmax-free.
  pytorch-opset11   The same at opset 11 (Unsqueeze axes as attribute), plus Flatten,
                    Identity and Dropout nodes as older exports have them.
  keras-opset13     NHWC input transposed to NCHW, an explicit Pad before the 7x7 conv,
                    MaxPool with asymmetric pads, Clip as ReLU6, Sub/Mul/Div normalisation,
                    Squeeze after the global pool, MatMul + Add head, Softmax output.

Widths are small (8..32 channels, 64x64 input) so CI stays fast; the op patterns are the point.
Each model goes to OUT/<style>/model.onnx with test_data_set_0 (batch 2), checked with
onnx.checker and run through ONNX Runtime with optimisations off.

usage: export_styles.py --out DIR [--seed S]
"""
import argparse
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


class Builder:
    """Collects nodes and initializers; names are `<op><k>` like a generic exporter."""

    def __init__(self, rng):
        self.rng = rng
        self.nodes, self.inits, self.count = [], [], {}

    def name(self, kind):
        self.count[kind] = self.count.get(kind, 0) + 1
        return f"{kind}_{self.count[kind]}"

    def const(self, array, kind="const"):
        n = self.name(kind)
        self.inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k, stride=1, pad=None, bias=True):
        w = (self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        inputs = [x, self.const(w, "weight")]
        if bias:
            inputs.append(self.const((self.rng.standard_normal(cout) * 0.1).astype(np.float32), "bias"))
        p = k // 2 if pad is None else pad
        return self.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[p, p, p, p])

    def bn(self, x, c):
        params = [
            self.rng.uniform(0.5, 1.0, c),
            self.rng.standard_normal(c) * 0.1,
            self.rng.standard_normal(c) * 0.1,
            self.rng.uniform(0.5, 1.5, c),
        ]
        names = [self.const(p.astype(np.float32), "bn") for p in params]
        return self.op("BatchNormalization", [x] + names, epsilon=1e-5)


def basic_block(b, x, cin, cout, stride, act):
    y = act(b.bn(b.conv(x, cin, cout, 3, stride, bias=False), cout))
    y = b.bn(b.conv(y, cout, cout, 3, 1, bias=False), cout)
    short = x if stride == 1 and cin == cout else b.bn(b.conv(x, cin, cout, 1, stride, pad=0, bias=False), cout)
    return act(b.op("Add", [y, short]))


def trunk(b, x, act, stem_pad=None):
    x = act(b.bn(b.conv(x, 3, 8, 7, 2, pad=stem_pad, bias=False), 8))
    return x


def pytorch(opset, rng):
    b = Builder(rng)
    relu = lambda t: b.op("Relu", [t])  # noqa: E731
    x = trunk(b, "input", relu)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    for cin, cout, s in [(8, 8, 1), (8, 16, 2), (16, 32, 2)]:
        x = basic_block(b, x, cin, cout, s, relu)
    x = b.op("GlobalAveragePool", [x])
    if opset >= 13:
        # torch.flatten(x, 1) traced with a dynamic batch.
        shape = b.op("Shape", [x])
        n = b.op("Gather", [shape, b.const(np.array(0, dtype=np.int64))], axis=0)
        n = b.op("Unsqueeze", [n, b.const(np.array([0], dtype=np.int64))])
        target = b.op("Concat", [n, b.const(np.array([-1], dtype=np.int64))], axis=0)
        x = b.op("Reshape", [x, target])
    else:
        x = b.op("Flatten", [x], axis=1)
        x = b.op("Identity", [x])
        x = b.op("Dropout", [x], ratio=0.5) if opset < 12 else x
    w = (rng.standard_normal((10, 32)) * 0.2).astype(np.float32)
    y = b.op("Gemm", [x, b.const(w), b.const(np.zeros(10, np.float32))], alpha=1.0, beta=1.0, transB=1)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 64, 64])
    return b, [inp], y


def keras(rng):
    b = Builder(rng)
    relu6 = lambda t: b.op("Clip", [t, b.const(np.array(0, np.float32)), b.const(np.array(6, np.float32))])  # noqa: E731
    x = b.op("Transpose", ["input"], perm=[0, 3, 1, 2])
    x = b.op("Sub", [x, b.const(np.array([123.7, 116.3, 103.5], np.float32).reshape(1, 3, 1, 1))])
    x = b.op("Div", [x, b.const(np.array([58.4, 57.1, 57.4], np.float32).reshape(1, 3, 1, 1))])
    x = b.op("Mul", [x, b.const(np.array(1.0, np.float32))])
    x = b.op("Pad", [x, b.const(np.array([0, 0, 3, 3, 0, 0, 3, 3], np.int64))], mode="constant")
    x = trunk(b, x, relu6, stem_pad=0)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])
    for cin, cout, s in [(8, 8, 1), (8, 16, 2), (16, 32, 2)]:
        x = basic_block(b, x, cin, cout, s, relu6)
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Squeeze", [x, b.const(np.array([2, 3], np.int64))])
    w = (rng.standard_normal((32, 10)) * 0.2).astype(np.float32)
    x = b.op("MatMul", [x, b.const(w)])
    x = b.op("Add", [x, b.const((rng.standard_normal(10) * 0.1).astype(np.float32))])
    y = b.op("Softmax", [x], axis=-1)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64, 64, 3])
    return b, [inp], y


def save(out_dir, style, opset, built, rng):
    b, inputs, y = built
    graph = helper.make_graph(b.nodes, style, inputs, [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", 10])],
                              initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="export_styles.py")
    model.ir_version = 7 if opset >= 13 else 6
    onnx.checker.check_model(model, full_check=True)
    folder = os.path.join(out_dir, style)
    data = os.path.join(folder, "test_data_set_0")
    os.makedirs(data, exist_ok=True)
    onnx.save(model, os.path.join(folder, "model.onnx"))
    dims = [2] + [d.dim_value for d in inputs[0].type.tensor_type.shape.dim[1:]]
    x = rng.standard_normal(dims).astype(np.float32)
    if style.startswith("keras"):
        x = (x * 60 + 120).astype(np.float32)  # pixel-like input before the model's normalisation
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(os.path.join(folder, "model.onnx"), so, providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x})
    onnx.save_tensor(numpy_helper.from_array(x, "input"), os.path.join(data, "input_0.pb"))
    onnx.save_tensor(numpy_helper.from_array(out, y), os.path.join(data, "output_0.pb"))
    ops = sorted({n.op_type for n in b.nodes})
    print(f"{style:18s} opset {opset}  {len(b.nodes)} nodes  ops {', '.join(ops)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    save(a.out, "pytorch-opset13", 13, pytorch(13, rng), rng)
    save(a.out, "pytorch-opset11", 11, pytorch(11, rng), rng)
    save(a.out, "keras-opset13", 13, keras(rng), rng)


if __name__ == "__main__":
    main()
