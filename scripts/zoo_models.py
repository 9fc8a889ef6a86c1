#!/usr/bin/env python3
"""Generate ONNX model-zoo-shaped ResNets with random weights for differential testing.

The ten zoo files `resnet{18,34,50,101,152}-v{1,2}-7.onnx` are too large to keep in the
repository, and their weights do not matter for checking an engine's arithmetic.  This
script rebuilds their exact graph structure (SPEC.md §1 and §2: Gluon/MXNet names, node
order, attributes, IR 3 / opset 7, every initializer also a graph input) with seeded random
weights, then records ONNX Runtime's outputs as zoo-style `test_data_set_K` folders:

    DIR/<arch>/model.onnx             input data [N,3,224,224]
    DIR/<arch>/test_data_set_0/       batch 1
    DIR/<arch>/test_data_set_1/       batch 3
    DIR/<arch>-256x320/model.onnx     same graph and weights, input declared [N,3,256,320]
    DIR/<arch>-256x320/test_data_set_0/  batch 1

Each graph is built the way Gluon and the 2020 MXNet exporter build it: layer names are
assigned per scope in construction order (a block's body layers, then its downsample),
operator names (`activation<k>`, `_plus<k>`) per scope in forward order, and ONNX nodes,
initializers and graph inputs are emitted in the MXNet symbol's depth-first order, which
also yields the exporter's `flatten_<idx>` / `reshape_attr_tensor<idx>` indices.  Counts are
asserted against SPEC §1.5 and §2.3–2.4 so a drift from the spec fails loudly.

Usage: zoo_models.py --out DIR [--archs all|resnet18-v1,resnet50-v2,...] [--seed S]
Needs onnx, numpy and onnxruntime (the venv from shared/tools/ort-venv.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 3
OPSET = 7
GRAPH_NAME = "mxnet_converted_model"
INPUT_NAME = "data"
NUM_CLASSES = 1000
DEFAULT_SEED = 1
STAMP_NAME = ".zoo_models.stamp"

# --- SPEC tables ------------------------------------------------------------------------

# SPEC §1.2: depth -> (block type, blocks per stage, channels [stem, s1..s4]).
LAYOUT = {
    18: ("basic", [2, 2, 2, 2], [64, 64, 128, 256, 512]),
    34: ("basic", [3, 4, 6, 3], [64, 64, 128, 256, 512]),
    50: ("bottleneck", [3, 4, 6, 3], [64, 256, 512, 1024, 2048]),
    101: ("bottleneck", [3, 4, 23, 3], [64, 256, 512, 1024, 2048]),
    152: ("bottleneck", [3, 8, 36, 3], [64, 256, 512, 1024, 2048]),
}

# SPEC §2.3: Gluon model prefixes of the zoo files (152-v2 really skips 26).
PREFIX = {
    (1, 18): "resnetv15_", (1, 34): "resnetv16_", (1, 50): "resnetv17_",
    (1, 101): "resnetv18_", (1, 152): "resnetv19_",
    (2, 18): "resnetv22_", (2, 34): "resnetv23_", (2, 50): "resnetv24_",
    (2, 101): "resnetv25_", (2, 152): "resnetv27_",
}


@dataclass(frozen=True)
class Expected:
    """What SPEC says the exported graph contains."""

    nodes: int           # §2.4 node count
    conv: int
    bn: int
    relu: int
    add: int
    float_inits: int     # §2.4 float initializers
    stored_floats: int   # §1.5 "stored floats"
    exporter_idx: int    # §2.3 flatten_<idx> (v1) / reshape_attr_tensor<idx> (v2)


EXPECTED = {
    "resnet18-v1": Expected(69, 20, 20, 17, 8, 102, 11_699_112, 170),
    "resnet34-v1": Expected(125, 36, 36, 33, 16, 182, 21_814_696, 306),
    "resnet50-v1": Expected(175, 53, 53, 49, 16, 299, 25_629_032, 473),
    "resnet101-v1": Expected(345, 104, 104, 100, 33, 588, 44_695_144, 932),
    "resnet152-v1": Expected(515, 155, 155, 151, 50, 877, 60_404_072, 1391),
    "resnet18-v2": Expected(69, 20, 19, 18, 8, 98, 11_695_796, 164),
    "resnet34-v2": Expected(125, 36, 35, 34, 16, 178, 21_811_380, 300),
    "resnet50-v2": Expected(174, 53, 51, 50, 16, 259, 25_595_060, 430),
    "resnet101-v2": Expected(344, 104, 102, 101, 33, 514, 44_639_412, 855),
    "resnet152-v2": Expected(514, 155, 153, 152, 50, 769, 60_329_140, 1280),
}
ARCHS = list(EXPECTED)


def parse_arch(arch: str) -> tuple[int, int]:
    """'resnet101-v2' -> (version 2, depth 101)."""
    depth, version = arch.removeprefix("resnet").split("-v")
    return int(version), int(depth)

# --- Weight initialisation --------------------------------------------------------------
# Random but tame: He-normal convs keep the variance of a ReLU network roughly constant,
# BN statistics stay near the identity, and the last BN (v1) / last conv (v2) of every
# residual branch is scaled down so the residual stream grows slowly through 50 blocks.

V1_LAST_GAMMA_SCALE = 0.2
V2_LAST_CONV_SCALE = 0.3


def float_data_tensor(name: str, arr: np.ndarray) -> TensorProto:
    """A TensorProto holding `arr` in `float_data`, as the MXNet exporter writes them
    (make_tensor(..., raw=False)); built by parsing the packed field, which is much
    faster than a Python list of 60 M floats."""
    arr = np.ascontiguousarray(arr, dtype="<f4")
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=arr.shape)
    payload = arr.tobytes()
    n, length = len(payload), bytearray()
    while True:  # protobuf varint of the payload length
        byte, n = n & 0x7F, n >> 7
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    t.MergeFromString(b"\x22" + bytes(length) + payload)  # field 4 (float_data), packed
    return t


# --- Graph builder ----------------------------------------------------------------------


@dataclass
class Op:
    """One MXNet operator = one ONNX node (the exporter adds a Flatten before v1's Gemm)."""

    op_type: str
    name: str                    # node name == output tensor name
    inputs: list[str]            # data inputs and parameter names, in MXNet input order
    attrs: dict = field(default_factory=dict)


@dataclass
class Scope:
    prefix: str
    layers: Counter = field(default_factory=Counter)  # Gluon block counters (construction)
    ops: Counter = field(default_factory=Counter)     # NameManager counters (forward)


class GraphBuilder:
    """Tracks Gluon-style name scopes and counters, the parameters and the operators."""

    def __init__(self, prefix: str, rng: np.random.Generator):
        self.rng = rng
        self.scopes = [Scope(prefix)]
        self.params: dict[str, np.ndarray] = {}
        self.producers: dict[str, Op] = {}

    # names -----------------------------------------------------------------------------
    @property
    def scope(self) -> Scope:
        return self.scopes[-1]

    def push(self, suffix: str) -> None:
        self.scopes.append(Scope(self.scope.prefix + suffix))

    def pop(self) -> None:
        self.scopes.pop()

    def layer_name(self, hint: str) -> str:
        """Name of a Gluon layer (`conv3`), counted per scope in construction order."""
        k = self.scope.layers[hint]
        self.scope.layers[hint] += 1
        return f"{self.scope.prefix}{hint}{k}"

    def op_name(self, hint: str) -> str:
        """Name of an operator made in hybrid_forward (`activation2`, `_plus1`)."""
        k = self.scope.ops[hint]
        self.scope.ops[hint] += 1
        return f"{self.scope.prefix}{hint}{k}"

    # parameters and operators ---------------------------------------------------------
    def param(self, name: str, value: np.ndarray) -> str:
        assert name not in self.params, name
        self.params[name] = value.astype(np.float32)
        return name

    def add_op(self, op_type: str, name: str, inputs: list[str], **attrs) -> str:
        assert name not in self.producers, name
        self.producers[name] = Op(op_type, name, inputs, attrs)
        return name

    # layers (declared in construction order, called in forward order) ----------------
    def conv(self, cin: int, cout: int, k: int, stride: int, bias: bool = False,
             weight_scale: float = 1.0):
        name = self.layer_name("conv")
        std = np.sqrt(2.0 / (cin * k * k)) * weight_scale
        params = [self.param(f"{name}_weight", self.rng.normal(0, std, (cout, cin, k, k)))]
        if bias:
            params.append(self.param(f"{name}_bias", self.rng.normal(0, 0.1, cout)))
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], dilations=[1, 1],
                     pads=[k // 2] * 4, group=1)
        return lambda x: self.add_op("Conv", f"{name}_fwd", [x, *params], **attrs)

    def batchnorm(self, c: int, gamma_scale: float = 1.0, fixed_affine: bool = False):
        name = self.layer_name("batchnorm")
        rng = self.rng
        if fixed_affine:  # Gluon BatchNorm(scale=False, center=False): gamma 1, beta 0
            gamma, beta = np.ones(c), np.zeros(c)
        else:
            gamma, beta = rng.uniform(0.5, 1.0, c) * gamma_scale, rng.normal(0, 0.1, c)
        params = [
            self.param(f"{name}_gamma", gamma),
            self.param(f"{name}_beta", beta),
            self.param(f"{name}_running_mean", rng.normal(0, 0.1, c)),
            self.param(f"{name}_running_var", rng.uniform(0.5, 1.5, c)),
        ]
        return lambda x: self.add_op("BatchNormalization", f"{name}_fwd", [x, *params],
                                     epsilon=1e-5, momentum=0.9, spatial=1)

    def relu_layer(self):
        name = self.layer_name("relu")  # nn.Activation('relu') -> `relu<k>_fwd`
        return lambda x: self.add_op("Relu", f"{name}_fwd", [x])

    def max_pool(self):
        name = self.layer_name("pool")
        return lambda x: self.add_op("MaxPool", f"{name}_fwd", [x], kernel_shape=[3, 3],
                                     pads=[1, 1, 1, 1], strides=[2, 2])

    def global_avg_pool(self):
        name = self.layer_name("pool")
        return lambda x: self.add_op("GlobalAveragePool", f"{name}_fwd", [x])

    def flatten_layer(self):
        """nn.Flatten of MXNet <= 1.2: `x.reshape((0, -1))` inside the block's scope."""
        name = self.layer_name("flatten")
        scope_suffix = name[len(self.scope.prefix):] + "_"  # `flatten0_`

        def call(x):
            self.push(scope_suffix)
            out = self.add_op("Reshape", self.op_name("reshape"), [x], shape=[0, -1])
            self.pop()
            return out
        return call

    def dense(self, cin: int, units: int):
        name = self.layer_name("dense")
        params = [
            self.param(f"{name}_weight", self.rng.normal(0, 1.0 / np.sqrt(cin), (units, cin))),
            self.param(f"{name}_bias", self.rng.normal(0, 0.1, units)),
        ]
        return lambda x: self.add_op("Gemm", f"{name}_fwd", [x, *params], alpha=1.0,
                                     beta=1.0, transA=0, transB=1)

    # operators made in hybrid_forward ----------------------------------------------
    def activation(self, x: str) -> str:
        return self.add_op("Relu", self.op_name("activation"), [x])

    def plus(self, a: str, b: str) -> str:
        return self.add_op("Add", self.op_name("_plus"), [a, b])

    # export --------------------------------------------------------------------------
    def mxnet_order(self, output: str) -> list[tuple[str, str]]:
        """The MXNet symbol JSON node list: depth-first post-order from the output,
        inputs visited in order; entries are ('var', name) or ('op', name)."""
        order, seen = [], set()
        stack = [(output, False)]
        while stack:  # iterative DFS (a ResNet-152 chain is deeper than Python's stack)
            name, expanded = stack.pop()
            if name in seen:
                continue
            op = self.producers.get(name)
            if op is None:
                seen.add(name)
                order.append(("var", name))
            elif expanded:
                seen.add(name)
                order.append(("op", name))
            else:
                stack.append((name, True))
                stack.extend((i, False) for i in reversed(op.inputs) if i not in seen)
        return order

    def export(self, output: str, flatten_before_gemm: bool) -> tuple[onnx.ModelProto, int]:
        """Emit nodes, initializers and inputs as the MXNet exporter does. Returns the
        model and the exporter index used in `flatten_<idx>` / `reshape_attr_tensor<idx>`."""
        nodes, inits, inputs = [], [], []
        exporter_idx = None
        for idx, (kind, name) in enumerate(self.mxnet_order(output)):
            if kind == "var":
                if name == INPUT_NAME:
                    inputs.append(helper.make_tensor_value_info(
                        name, TensorProto.FLOAT, ["N", 3, 224, 224]))
                else:
                    value = self.params[name]
                    inits.append(float_data_tensor(name, value))
                    inputs.append(helper.make_tensor_value_info(
                        name, TensorProto.FLOAT, value.shape))
                continue
            op = self.producers[name]
            ins = list(op.inputs)
            attrs = dict(op.attrs)
            if op.op_type == "Gemm" and flatten_before_gemm:
                flat = f"flatten_{idx}"
                nodes.append(helper.make_node("Flatten", [ins[0]], [flat], name=flat))
                ins[0], exporter_idx = flat, idx
            if op.op_type == "Reshape":
                shape_name = f"reshape_attr_tensor{idx}"
                shape = attrs.pop("shape")
                inits.append(helper.make_tensor(shape_name, TensorProto.INT64, [len(shape)],
                                                shape, raw=False))
                inputs.append(helper.make_tensor_value_info(
                    shape_name, TensorProto.INT64, [len(shape)]))
                ins.append(shape_name)
                exporter_idx = idx
            nodes.append(helper.make_node(op.op_type, ins, [name], name=name, **attrs))
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", NUM_CLASSES])
        graph = helper.make_graph(nodes, GRAPH_NAME, inputs, [out], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        return model, exporter_idx


# --- Residual blocks (SPEC §1.4; Gluon's resnet.py, MXNet 1.1-1.2) -------------------------


def basic_block_v1(g: GraphBuilder, x: str, cin: int, c: int, stride: int, ds: bool) -> str:
    body = [g.conv(cin, c, 3, stride), g.batchnorm(c), g.relu_layer(),
            g.conv(c, c, 3, 1), g.batchnorm(c, gamma_scale=V1_LAST_GAMMA_SCALE)]
    down = [g.conv(cin, c, 1, stride), g.batchnorm(c)] if ds else []
    out = x
    for layer in body:
        out = layer(out)
    residual = x
    for layer in down:
        residual = layer(residual)
    return g.activation(g.plus(residual, out))  # Gluon: F.Activation(residual+x)


def bottleneck_v1(g: GraphBuilder, x: str, cin: int, c: int, stride: int, ds: bool) -> str:
    m = c // 4
    body = [g.conv(cin, m, 1, stride, bias=True), g.batchnorm(m), g.relu_layer(),
            g.conv(m, m, 3, 1), g.batchnorm(m), g.relu_layer(),
            g.conv(m, c, 1, 1, bias=True), g.batchnorm(c, gamma_scale=V1_LAST_GAMMA_SCALE)]
    down = [g.conv(cin, c, 1, stride), g.batchnorm(c)] if ds else []
    out = x
    for layer in body:
        out = layer(out)
    residual = x
    for layer in down:
        residual = layer(residual)
    return g.activation(g.plus(out, residual))  # Gluon: F.Activation(x + residual)


def basic_block_v2(g: GraphBuilder, x: str, cin: int, c: int, stride: int, ds: bool) -> str:
    bn1, conv1 = g.batchnorm(cin), g.conv(cin, c, 3, stride)
    bn2, conv2 = g.batchnorm(c), g.conv(c, c, 3, 1, weight_scale=V2_LAST_CONV_SCALE)
    down = g.conv(cin, c, 1, stride) if ds else None
    a = g.activation(bn1(x))
    residual = down(a) if down else x
    out = conv2(g.activation(bn2(conv1(a))))
    return g.plus(out, residual)


def bottleneck_v2(g: GraphBuilder, x: str, cin: int, c: int, stride: int, ds: bool) -> str:
    m = c // 4
    bn1, conv1 = g.batchnorm(cin), g.conv(cin, m, 1, 1)
    bn2, conv2 = g.batchnorm(m), g.conv(m, m, 3, stride)
    bn3, conv3 = g.batchnorm(m), g.conv(m, c, 1, 1, weight_scale=V2_LAST_CONV_SCALE)
    down = g.conv(cin, c, 1, stride) if ds else None
    a = g.activation(bn1(x))
    residual = down(a) if down else x
    out = g.activation(bn2(conv1(a)))
    out = conv3(g.activation(bn3(conv2(out))))
    return g.plus(out, residual)


BLOCKS = {
    (1, "basic"): basic_block_v1, (1, "bottleneck"): bottleneck_v1,
    (2, "basic"): basic_block_v2, (2, "bottleneck"): bottleneck_v2,
}


def stages(g: GraphBuilder, x: str, version: int, depth: int) -> str:
    kind, counts, channels = LAYOUT[depth]
    block = BLOCKS[(version, kind)]
    for i, n in enumerate(counts):
        g.push(f"stage{i + 1}_")
        cin, c = channels[i], channels[i + 1]
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            x = block(g, x, cin if j == 0 else c, c, stride, ds=(j == 0 and cin != c))
        g.pop()
    return x


def build_resnet(version: int, depth: int, rng: np.random.Generator):
    """Build one zoo ResNet; returns (model, output name, exporter index)."""
    g = GraphBuilder(PREFIX[(version, depth)], rng)
    channels = LAYOUT[depth][2]
    x = INPUT_NAME
    if version == 1:
        stem = [g.conv(3, channels[0], 7, 2), g.batchnorm(channels[0]), g.relu_layer(),
                g.max_pool()]
        for layer in stem:
            x = layer(x)
        x = stages(g, x, 1, depth)
        head = [g.global_avg_pool(), g.dense(channels[-1], NUM_CLASSES)]
    else:
        stem = [g.batchnorm(3, fixed_affine=True), g.conv(3, channels[0], 7, 2),
                g.batchnorm(channels[0]), g.relu_layer(), g.max_pool()]
        for layer in stem:
            x = layer(x)
        x = stages(g, x, 2, depth)
        head = [g.batchnorm(channels[-1]), g.relu_layer(), g.global_avg_pool(),
                g.flatten_layer(), g.dense(channels[-1], NUM_CLASSES)]
    for layer in head:
        x = layer(x)
    model, idx = g.export(x, flatten_before_gemm=(version == 1))
    return model, x, idx


# --- Checks -----------------------------------------------------------------------------


def check_against_spec(arch: str, model: onnx.ModelProto, exporter_idx: int) -> dict:
    exp = EXPECTED[arch]
    version, depth = parse_arch(arch)
    graph = model.graph
    ops = Counter(n.op_type for n in graph.node)
    floats = [t for t in graph.initializer if t.data_type == TensorProto.FLOAT]
    ints = [t for t in graph.initializer if t.data_type == TensorProto.INT64]
    stored = sum(int(np.prod(t.dims)) for t in floats)
    want_ops = {"Conv": exp.conv, "BatchNormalization": exp.bn, "Relu": exp.relu,
                "Add": exp.add, "MaxPool": 1, "GlobalAveragePool": 1, "Gemm": 1,
                ("Flatten" if version == 1 else "Reshape"): 1}
    got = {"nodes": len(graph.node), "ops": dict(ops), "float_inits": len(floats),
           "int64_inits": len(ints), "stored_floats": stored, "exporter_idx": exporter_idx}
    want = {"nodes": exp.nodes, "ops": want_ops, "float_inits": exp.float_inits,
            "int64_inits": 0 if version == 1 else 1, "stored_floats": exp.stored_floats,
            "exporter_idx": exp.exporter_idx}
    for key in want:
        assert got[key] == want[key], f"{arch}: {key} = {got[key]}, SPEC says {want[key]}"

    # IR < 4: every initializer is a graph input, and `data` is the first input.
    input_names = [i.name for i in graph.input]
    assert input_names[0] == INPUT_NAME, input_names[0]
    assert set(input_names[1:]) == {t.name for t in graph.initializer}, "inputs != inits"
    assert len(input_names) == len(graph.initializer) + 1
    for n in graph.node:
        assert list(n.output) == [n.name], n.name
    prefix = PREFIX[(version, depth)]
    assert graph.output[0].name == f"{prefix}dense0_fwd"
    assert f"{prefix}pool1_fwd" in {n.name for n in graph.node}
    special = f"flatten_{exp.exporter_idx}" if version == 1 else \
        f"reshape_attr_tensor{exp.exporter_idx}"
    assert special in {n.name for n in graph.node} | {t.name for t in ints}, special
    return got


def set_input_hw(model: onnx.ModelProto, h: int, w: int) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = h, w
    return m


def ort_session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_output(arch: str, y: np.ndarray) -> None:
    assert np.isfinite(y).all(), f"{arch}: non-finite output"
    peak = float(np.abs(y).max())
    assert 1.0 <= peak <= 1000.0, f"{arch}: max |logit| = {peak:g}, want O(1-100)"
    assert float(y.std(axis=1).min()) > 0.1, f"{arch}: logits nearly constant over classes"
    if y.shape[0] > 1:
        spread = float(y.std(axis=0).mean())  # how much the input moves each logit
        assert spread > 0.01 * float(y.std()), f"{arch}: outputs barely depend on input"


def write_test_set(folder: Path, x: np.ndarray, y: np.ndarray, output_name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_tensor(numpy_helper.from_array(x, INPUT_NAME), str(folder / "input_0.pb"))
    onnx.save_tensor(numpy_helper.from_array(y, output_name), str(folder / "output_0.pb"))


# --- Driver -----------------------------------------------------------------------------


def stamp_text(seed: int) -> str:
    script = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return f"script={script} seed={seed} onnxruntime={ort.__version__}\n"


def is_fresh(out: Path, arch: str, stamp: str) -> bool:
    s = out / arch / STAMP_NAME
    return ((out / arch / "model.onnx").exists() and (out / f"{arch}-256x320" /
            "model.onnx").exists() and s.exists() and s.read_text() == stamp)


def generate(out: Path, arch: str, seed: int) -> None:
    t0 = time.perf_counter()
    version, depth = parse_arch(arch)
    model, output_name, idx = build_resnet(version, depth, np.random.default_rng(seed))
    got = check_against_spec(arch, model, idx)
    (out / arch / STAMP_NAME).unlink(missing_ok=True)

    variants = [(arch, model, [(0, 1, 224, 224), (1, 3, 224, 224)]),
                (f"{arch}-256x320", set_input_hw(model, 256, 320), [(0, 1, 256, 320)])]
    for name, m, sets in variants:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.onnx"
        onnx.save(m, str(path))
        onnx.checker.check_model(str(path))
        sess = ort_session(path)
        for k, n, h, w in sets:
            key = [seed, zlib.crc32(name.encode()), k]
            x = np.random.default_rng(key).standard_normal((n, 3, h, w), dtype=np.float32)
            (y,) = sess.run(None, {INPUT_NAME: x})
            assert y.shape == (n, NUM_CLASSES) and y.dtype == np.float32, y.shape
            check_output(name, y)
            write_test_set(folder / f"test_data_set_{k}", x, y, output_name)
        del sess

    (out / arch / STAMP_NAME).write_text(stamp_text(seed))
    mb = (out / arch / "model.onnx").stat().st_size / 1e6
    print(f"{arch:13s} nodes={got['nodes']:3d} float_inits={got['float_inits']:3d} "
          f"params={got['stored_floats']:,} idx={idx} size={mb:.1f}MB "
          f"time={time.perf_counter() - t0:.1f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--archs", default="all",
                    help="comma-separated list (e.g. resnet18-v1,resnet50-v2) or 'all'")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)

    archs = ARCHS if args.archs == "all" else [a.strip() for a in args.archs.split(",") if a]
    unknown = [a for a in archs if a not in EXPECTED]
    if unknown:
        ap.error(f"unknown arch(s) {unknown}; choose from {', '.join(ARCHS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = stamp_text(args.seed)
    t0 = time.perf_counter()
    for arch in archs:
        if is_fresh(args.out, arch, stamp):
            print(f"{arch:13s} up to date (seed {args.seed})", flush=True)
            continue
        generate(args.out, arch, args.seed)
    print(f"done: {len(archs)} arch(s) in {time.perf_counter() - t0:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
