#!/usr/bin/env python3
"""Check the ONNX files `resnet export --arch` wrote (scripts/zoo-export-check.sh runs this).

For each DIR/<arch>[-opset13]/model.onnx:
  * onnx.checker.check_model(full_check=True);
  * opset 7 only: the structure equals scripts/zoo_models.py's graph of the same arch
    (same graph inputs, initializers with names/types/shapes, nodes with op types, names,
    inputs, outputs and attributes, outputs — all in the same order; weights aside), and the
    serialized size is the same to the byte (less the explicit defaults proto2 writes);
  * ONNX Runtime runs a seeded random batch of 2; input and output are written as
    test_data_set_0 beside the model, for `resnet check` to compare our engine against.

Usage: zoo_export_check.py --dir DIR ARCH_DIR...     (e.g. resnet18-v1 resnet18-v1-opset13)
"""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_models import INPUT_NAME, ort_session, write_test_set  # noqa: E402
from zoo_structure import reference_model, structure_lines  # noqa: E402


def attributes(node: onnx.NodeProto) -> list[tuple[str, object]]:
    return [(a.name, helper.get_attribute_value(a)) for a in node.attribute]


def compare_structure(arch: str, ours: onnx.ModelProto) -> None:
    ref = reference_model(arch)
    for field in ("ir_version", "producer_name"):
        assert getattr(ours, field) == getattr(ref, field), \
            f"{arch}: {field} {getattr(ours, field)!r} != {getattr(ref, field)!r}"
    assert [(o.domain, o.version) for o in ours.opset_import] == \
        [(o.domain, o.version) for o in ref.opset_import], f"{arch}: opset_import differs"
    assert ours.graph.name == ref.graph.name, f"{arch}: graph name {ours.graph.name!r}"
    a, b = structure_lines(ours), structure_lines(ref)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"{arch}: line {i} differs:\n  ours:      {x}\n  generator: {y}"
    assert len(a) == len(b), f"{arch}: {len(a)} structure lines vs the generator's {len(b)}"
    for n, m in zip(ours.graph.node, ref.graph.node):
        assert attributes(n) == attributes(m), f"{arch}: node {n.name} attributes {attributes(n)} != {attributes(m)}"
    # Python's onnx (proto2) serializes fields that were set to their default; prost
    # (proto3) leaves them out. Semantically the same; it costs the generator 2 bytes for the
    # opset's empty domain and 2 per zero-valued int attribute (Gemm's transA).
    explicit = 2 * sum(o.HasField("domain") and not o.domain for o in ref.opset_import)
    explicit += sum(2 for n in ref.graph.node for a in n.attribute if a.type == onnx.AttributeProto.INT and a.i == 0)
    explicit += sum(5 for n in ref.graph.node for a in n.attribute if a.type == onnx.AttributeProto.FLOAT and a.f == 0)
    sa, sb = ours.ByteSize(), ref.ByteSize()
    assert sa == sb - explicit, f"{arch}: {sa} bytes vs the generator's {sb} - {explicit} explicit defaults"


def check(folder: Path, seed: int) -> str:
    name = folder.name
    path = folder / "model.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    notes = [f"opset {model.opset_import[0].version}", f"{path.stat().st_size:,} B"]
    if not name.endswith("-opset13"):
        compare_structure(name, model)
        notes.append("structure = zoo_models.py")
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng([seed, zlib.crc32(name.encode())]).standard_normal(
        (2, *shape), dtype=np.float32)
    (y,) = ort_session(path).run(None, {INPUT_NAME: x})
    assert y.shape == (2, 1000) and np.isfinite(y).all(), f"{name}: bad ORT output {y.shape}"
    write_test_set(folder / "test_data_set_0", x, y, model.graph.output[0].name)
    notes.append(f"max|y| {float(np.abs(y).max()):.3g}")
    return f"ok   {name:22s} " + ", ".join(notes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("folders", nargs="+")
    args = ap.parse_args()
    failed = 0
    for f in args.folders:
        try:
            print(check(args.dir / f, args.seed), flush=True)
        except (AssertionError, onnx.checker.ValidationError) as e:  # report all, then fail
            failed += 1
            print(f"FAIL {f}: {e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
