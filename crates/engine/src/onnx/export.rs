//! [`Graph`] → ONNX `ModelProto` bytes: the inverse of [`crate::onnx::import`].
//!
//! Two targets, chosen by [`ExportOptions::opset`]:
//!
//! * **opset 7, IR 3** (default) — the conventions of the model zoo's MXNet exporter
//!   (SPEC §2.2–2.4): every initializer is also listed as a graph input (after the runtime
//!   inputs, in initializer order), tensors are stored in `float_data` / `int64_data` (not
//!   `raw_data`), BatchNormalization carries `epsilon`, `momentum` and `spatial`, Conv all of
//!   `dilations`, `group`, `kernel_shape`, `pads`, `strides` that the graph knows, Gemm all of
//!   `alpha`, `beta`, `transA`, `transB`. Attributes are written sorted by name, as
//!   `onnx.helper.make_node` does.
//! * **opset 13, IR 7** — no initializer-as-input quirk, BatchNormalization without
//!   `spatial`, and the opset-13 forms of Squeeze/Unsqueeze (axes input), Softmax (one axis),
//!   Clip/Pad/Dropout (inputs instead of attributes).
//!
//! Every [`Op`] maps its typed attributes back to ONNX attributes in one `match`. What the
//! chosen opset cannot say (a `ceil_mode` MaxPool at opset 7, Squeeze axes held in an
//! attribute at opset 13, …) is an [`ExportError::Op`] naming the node; nothing is silently
//! changed.
//!
//! Output is deterministic and stable under a round trip: everything written is something
//! the importer keeps (graph name, producer, node names and order, value names, initializer
//! order and data, runtime inputs' declared shapes including symbolic dims; outputs are
//! written with their inferred facts). So `export(import(export(g))) == export(g)` byte for
//! byte. Metadata the IR does not hold (doc strings, model version) is not written.

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::fact::{Dim, Fact};
use crate::graph::{Graph, Node, ValueId};
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::tensor_shape_proto::{dimension, Dimension};
use crate::onnx::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use crate::ops::clip::Bounds;
use crate::ops::pad::{PadArgs, PadMode};
use crate::ops::padding::{AutoPad, Window};
use crate::ops::pool::StorageOrder;
use crate::ops::squeeze::Axes;
use crate::ops::Op;
use crate::tensor::{DType, Tensor, TensorData};

/// The opsets we write. 7 is the zoo's; 13 is the first where Squeeze/Unsqueeze, Softmax and
/// friends reached their current form, and what PyTorch and tf2onnx commonly emit.
pub const EXPORT_OPSETS: [i64; 2] = [7, 13];

/// How to write a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Default-domain opset: 7 (IR 3, zoo conventions; the default) or 13 (IR 7).
    pub opset: i64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { opset: 7 }
    }
}

impl ExportOptions {
    pub fn opset(opset: i64) -> ExportOptions {
        ExportOptions { opset }
    }

    /// The IR version that goes with the opset: 3 for opset 7 (ONNX 1.2), 7 for opset 13
    /// (ONNX 1.8).
    pub fn ir_version(&self) -> i64 {
        if self.opset < 13 {
            3
        } else {
            7
        }
    }
}

/// Why a graph could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot export at opset {0} (supported: 7 and 13)")]
    Opset(i64),
    #[error("node '{node}' ({op}): cannot be written at opset {opset}: {detail}")]
    Op { node: String, op: String, opset: i64, detail: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Serializes `graph` as an ONNX model.
pub fn export_model(graph: &Graph, options: &ExportOptions) -> Result<Vec<u8>, ExportError> {
    Ok(model_proto(graph, options)?.encode_to_vec())
}

/// Writes `graph` to `path` atomically: a temporary file in the same folder, then a rename,
/// so a reader never sees a half-written model and a failure leaves no partial file.
pub fn write_model(graph: &Graph, options: &ExportOptions, path: impl AsRef<Path>) -> Result<(), ExportError> {
    let bytes = export_model(graph, options)?;
    write_atomically(path.as_ref(), &bytes)
}

/// Writes `bytes` to `path` through a temporary sibling file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let io = |source| ExportError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| io(std::io::Error::other("not a file path")))?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Builds the `ModelProto` (see the module docs for the conventions).
pub fn model_proto(graph: &Graph, options: &ExportOptions) -> Result<ModelProto, ExportError> {
    let opset = options.opset;
    if !EXPORT_OPSETS.contains(&opset) {
        return Err(ExportError::Opset(opset));
    }
    let name_of = |id: Option<ValueId>| id.map_or_else(String::new, |id| graph.values[id].name.clone());
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let (attribute, inputs) = node_attributes(graph, node, opset)?;
        nodes.push(NodeProto {
            input: inputs.into_iter().map(name_of).collect(),
            output: node.outputs.iter().map(|&o| name_of(o)).collect(),
            name: node.name.clone(),
            op_type: node.op.onnx_type().to_string(),
            attribute,
            ..NodeProto::default()
        });
    }
    let initializers: Vec<(&str, &Tensor)> = graph.initializers().map(|(n, t)| (n, &**t)).collect();
    let mut input: Vec<ValueInfoProto> =
        graph.inputs.iter().map(|&id| value_info(&graph.values[id].name, &graph.values[id].fact)).collect();
    if options.ir_version() < 4 {
        // IR < 4: initializers must also be graph inputs (the zoo files list them all).
        for (name, t) in &initializers {
            let fact = Fact::known(t.dtype(), t.shape());
            input.push(value_info(name, &fact));
        }
    }
    let output = graph.outputs.iter().map(|&id| value_info(&graph.values[id].name, &graph.values[id].fact)).collect();
    let proto = GraphProto {
        node: nodes,
        name: graph.name.clone(),
        initializer: initializers.iter().map(|(n, t)| tensor_proto(n, t)).collect(),
        input,
        output,
        ..GraphProto::default()
    };
    Ok(ModelProto {
        ir_version: options.ir_version(),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        producer_name: graph.producer.clone(),
        graph: Some(proto),
        ..ModelProto::default()
    })
}

/// A tensor in the type-specific field (`float_data`, `int64_data`, `int32_data`), as the
/// MXNet exporter writes initializers.
pub fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    let mut p = TensorProto {
        name: name.to_string(),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: t.dtype().to_onnx(),
        ..TensorProto::default()
    };
    match t.data() {
        TensorData::F32(v) => p.float_data = v.clone(),
        TensorData::I64(v) => p.int64_data = v.clone(),
        TensorData::I32(v) => p.int32_data = v.clone(),
    }
    p
}

/// A `ValueInfoProto` from a fact: numbers become `dim_value`, symbols `dim_param`, unknown
/// dims (`?`) an empty dimension; an unknown rank leaves the shape out.
fn value_info(name: &str, fact: &Fact) -> ValueInfoProto {
    let elem_type = fact.dtype.map_or(0, DType::to_onnx);
    let shape = fact.shape.as_ref().map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: match d {
                    Dim::Known(k) => Some(dimension::Value::DimValue(*k as i64)),
                    Dim::Sym(s) if s == "?" || s.is_empty() => None,
                    Dim::Sym(s) => Some(dimension::Value::DimParam(s.clone())),
                },
                ..Dimension::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type, shape })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

// ---- attributes ---------------------------------------------------------------------------

/// Attribute list under construction; sorted by name when done.
#[derive(Default)]
struct AttrList(Vec<AttributeProto>);

impl AttrList {
    fn push(&mut self, name: &str, kind: AttributeType, f: impl FnOnce(&mut AttributeProto)) {
        let mut a = AttributeProto { name: name.to_string(), r#type: kind as i32, ..AttributeProto::default() };
        f(&mut a);
        self.0.push(a);
    }
    fn int(&mut self, name: &str, v: i64) {
        self.push(name, AttributeType::Int, |a| a.i = v);
    }
    fn float(&mut self, name: &str, v: f32) {
        self.push(name, AttributeType::Float, |a| a.f = v);
    }
    fn ints(&mut self, name: &str, v: &[i64]) {
        self.push(name, AttributeType::Ints, |a| a.ints = v.to_vec());
    }
    fn usizes(&mut self, name: &str, v: &[usize]) {
        self.ints(name, &v.iter().map(|&x| x as i64).collect::<Vec<_>>());
    }
    fn string(&mut self, name: &str, v: &str) {
        self.push(name, AttributeType::String, |a| a.s = bytes::Bytes::from(v.as_bytes().to_vec()));
    }
    fn tensor(&mut self, name: &str, t: &Tensor) {
        self.push(name, AttributeType::Tensor, |a| a.t = Some(tensor_proto("", t)));
    }
    fn finish(mut self) -> Vec<AttributeProto> {
        self.0.sort_by(|a, b| a.name.cmp(&b.name));
        self.0
    }
}

/// The window attributes as the graph holds them (absent lists stay absent).
fn window_attrs(a: &mut AttrList, w: &Window) {
    if let Some(k) = &w.kernel_shape {
        a.usizes("kernel_shape", k);
    }
    if let Some(s) = &w.strides {
        a.usizes("strides", s);
    }
    if let Some(d) = &w.dilations {
        a.usizes("dilations", d);
    }
    if let Some(p) = &w.pads {
        a.usizes("pads", p);
    }
    let auto_pad = match w.auto_pad {
        AutoPad::NotSet => None,
        AutoPad::SameUpper => Some("SAME_UPPER"),
        AutoPad::SameLower => Some("SAME_LOWER"),
        AutoPad::Valid => Some("VALID"),
    };
    if let Some(s) = auto_pad {
        a.string("auto_pad", s);
    }
}

fn has_dilation(w: &Window) -> bool {
    w.dilations.as_ref().is_some_and(|d| d.iter().any(|&x| x != 1))
}

/// The node's attributes at `opset` and the inputs to write (an input folded into an
/// attribute, such as Squeeze's constant axes at opset 7, is dropped).
fn node_attributes(
    graph: &Graph,
    node: &Node,
    opset: i64,
) -> Result<(Vec<AttributeProto>, Vec<Option<ValueId>>), ExportError> {
    let refuse = |detail: String| ExportError::Op {
        node: node.name.clone(),
        op: node.op.onnx_type().to_string(),
        opset,
        detail,
    };
    let mut inputs = node.inputs.clone();
    let input_const = |i: usize| -> Option<&Tensor> {
        node.inputs.get(i).copied().flatten().and_then(|id| graph.values[id].fact.value.as_deref())
    };
    let input_rank = || node.inputs.first().copied().flatten().and_then(|id| graph.values[id].fact.rank());
    let has_input = |i: usize| node.inputs.get(i).copied().flatten().is_some();
    let mut a = AttrList::default();
    match &node.op {
        Op::Conv(c) => {
            window_attrs(&mut a, &c.window);
            a.int("group", c.group as i64);
        }
        Op::BatchNormalization(bn) => {
            a.float("epsilon", bn.epsilon);
            // Not kept by the importer (inference ignores it); Gluon's value, as the zoo has it.
            a.float("momentum", 0.9);
            if opset < 9 {
                a.int("spatial", i64::from(bn.spatial));
            } else if !bn.spatial {
                return Err(refuse("spatial=0 (per-element statistics) exists only before opset 9".into()));
            }
        }
        Op::Relu(_) | Op::Binary(_) | Op::Sum(_) | Op::MatMul(_) | Op::Identity(_) | Op::GlobalPool(_) => {}
        Op::MaxPool(p) => {
            if opset < 10 && (p.window.ceil_mode || has_dilation(&p.window)) {
                return Err(refuse("ceil_mode and dilations need opset 10 or later".into()));
            }
            if opset < 8 && p.storage_order == StorageOrder::ColumnMajor {
                return Err(refuse("storage_order needs opset 8 or later".into()));
            }
            if opset < 8 && node.outputs.get(1).copied().flatten().is_some() {
                return Err(refuse("the Indices output needs opset 8 or later".into()));
            }
            window_attrs(&mut a, &p.window);
            if p.window.ceil_mode {
                a.int("ceil_mode", 1);
            }
            if p.storage_order == StorageOrder::ColumnMajor {
                a.int("storage_order", 1);
            }
        }
        Op::AveragePool(p) => {
            if opset < 10 && p.window.ceil_mode {
                return Err(refuse("ceil_mode needs opset 10 or later".into()));
            }
            if opset < 19 && has_dilation(&p.window) {
                return Err(refuse("AveragePool dilations need opset 19 or later".into()));
            }
            window_attrs(&mut a, &p.window);
            if p.window.ceil_mode {
                a.int("ceil_mode", 1);
            }
            if p.count_include_pad {
                a.int("count_include_pad", 1);
            }
        }
        Op::Gemm(g) => {
            if opset < 11 && !has_input(2) {
                return Err(refuse("Gemm without C needs opset 11 or later".into()));
            }
            a.float("alpha", g.alpha);
            a.float("beta", g.beta);
            a.int("transA", i64::from(g.trans_a));
            a.int("transB", i64::from(g.trans_b));
        }
        Op::Flatten(f) => {
            if f.axis < 0 && opset < 11 {
                return Err(refuse(format!("negative axis {} needs opset 11 or later", f.axis)));
            }
            if f.axis != 1 {
                a.int("axis", f.axis);
            }
        }
        Op::Reshape(r) => {
            if r.allowzero {
                return Err(refuse("allowzero=1 needs opset 14 or later".into()));
            }
        }
        Op::Softmax(s) => {
            // Before 13 the op normalises over all axes from `axis` on; from 13 over `axis`
            // only. The two agree when `axis` is the last axis.
            if s.flatten_tail != (opset < 13) {
                let last = input_rank().is_some_and(|r| s.axis == -1 || s.axis == r as i64 - 1);
                if !last {
                    return Err(refuse(format!(
                        "axis {} means something else at this opset (only a last-axis softmax converts)",
                        s.axis
                    )));
                }
            }
            if s.axis < 0 && opset < 11 {
                let Some(r) = input_rank() else {
                    return Err(refuse(format!("negative axis {} needs opset 11 or later", s.axis)));
                };
                a.int("axis", s.axis + r as i64);
            } else {
                let default = if opset < 13 { 1 } else { -1 };
                if s.axis != default {
                    a.int("axis", s.axis);
                }
            }
        }
        Op::Dropout(d) => {
            if d.takes_ratio_input && opset < 12 && (has_input(1) || has_input(2)) {
                return Err(refuse("ratio and training_mode inputs need opset 12 or later".into()));
            }
        }
        Op::Constant(c) => a.tensor("value", &c.value),
        Op::Clip(c) => match (&c.bounds, opset < 11) {
            (Bounds::Attrs { min, max }, true) => {
                if *min != f32::NEG_INFINITY {
                    a.float("min", *min);
                }
                if *max != f32::INFINITY {
                    a.float("max", *max);
                }
            }
            (Bounds::Attrs { min, max }, false) => {
                if *min != f32::NEG_INFINITY || *max != f32::INFINITY {
                    return Err(refuse("min/max attributes exist only before opset 11".into()));
                }
            }
            (Bounds::Inputs, true) => {
                for (i, name) in [(1, "min"), (2, "max")] {
                    if !has_input(i) {
                        continue;
                    }
                    match input_const(i).and_then(|t| t.as_f32()).filter(|v| v.len() == 1) {
                        Some(v) => a.float(name, v[0]),
                        None => return Err(refuse(format!("{name} is not a constant float32 scalar"))),
                    }
                }
                inputs.truncate(1);
            }
            (Bounds::Inputs, false) => {}
        },
        Op::Concat(c) => {
            if c.axis < 0 && opset < 11 {
                return Err(refuse(format!("negative axis {} needs opset 11 or later", c.axis)));
            }
            a.int("axis", c.axis);
        }
        Op::Shape(s) => {
            if s.start != 0 || s.end.is_some() {
                return Err(refuse("start/end need opset 15 or later".into()));
            }
        }
        Op::Gather(g) => {
            if g.axis < 0 && opset < 11 {
                return Err(refuse(format!("negative axis {} needs opset 11 or later", g.axis)));
            }
            if g.axis != 0 {
                a.int("axis", g.axis);
            }
        }
        Op::Squeeze(s) => axes_attribute(&mut a, &mut inputs, &s.axes, opset, &input_const, &refuse)?,
        Op::Unsqueeze(s) => axes_attribute(&mut a, &mut inputs, &s.axes, opset, &input_const, &refuse)?,
        Op::Transpose(t) => {
            if let Some(p) = &t.perm {
                a.usizes("perm", p);
            }
        }
        Op::Pad(p) => {
            let mode = match p.mode {
                PadMode::Constant => None,
                PadMode::Reflect => Some("reflect"),
                PadMode::Edge => Some("edge"),
                PadMode::Wrap => return Err(refuse("mode \"wrap\" needs opset 19 or later".into())),
            };
            if let Some(m) = mode {
                a.string("mode", m);
            }
            match (&p.args, opset < 11) {
                (PadArgs::Attributes { pads, value }, true) => {
                    a.ints("pads", pads);
                    if *value != 0.0 {
                        a.float("value", *value);
                    }
                }
                (PadArgs::Attributes { .. }, false) => {
                    return Err(refuse("pads as an attribute exists only before opset 11".into()))
                }
                (PadArgs::Inputs { .. }, true) => {
                    if has_input(3) {
                        return Err(refuse("the axes input needs opset 18 or later".into()));
                    }
                    let Some(pads) = input_const(1).and_then(Tensor::to_i64_vec) else {
                        return Err(refuse("pads is not a constant".into()));
                    };
                    a.ints("pads", &pads);
                    if has_input(2) {
                        match input_const(2).and_then(|t| t.as_f32()).filter(|v| v.len() == 1) {
                            Some(v) if v[0] != 0.0 => a.float("value", v[0]),
                            Some(_) => {}
                            None => return Err(refuse("constant_value is not a constant float32 scalar".into())),
                        }
                    }
                    inputs.truncate(1);
                }
                (PadArgs::Inputs { .. }, false) => {
                    if has_input(3) && opset < 18 {
                        return Err(refuse("the axes input needs opset 18 or later".into()));
                    }
                }
            }
        }
    }
    // Trailing absent optional inputs are left out rather than written as "".
    while inputs.last().is_some_and(Option::is_none) {
        inputs.pop();
    }
    Ok((a.finish(), inputs))
}

/// Squeeze/Unsqueeze axes: an attribute before opset 13, input 1 from 13 on. A constant axes
/// input folds into the attribute; an attribute cannot become an input (that would need a
/// new tensor), so it is refused.
fn axes_attribute<'a>(
    a: &mut AttrList,
    inputs: &mut Vec<Option<ValueId>>,
    axes: &Axes,
    opset: i64,
    input_const: &dyn Fn(usize) -> Option<&'a Tensor>,
    refuse: &dyn Fn(String) -> ExportError,
) -> Result<(), ExportError> {
    match (axes, opset < 13) {
        (Axes::Attribute(v), true) => {
            if let Some(v) = v {
                if opset < 11 && v.iter().any(|&x| x < 0) {
                    return Err(refuse(format!("negative axes {v:?} need opset 11 or later")));
                }
                a.ints("axes", v);
            }
        }
        (Axes::Attribute(None), false) => {}
        (Axes::Attribute(Some(_)), false) => {
            return Err(refuse("axes as an attribute exists only before opset 13".into()));
        }
        (Axes::Input, true) => {
            if inputs.get(1).copied().flatten().is_some() {
                let Some(v) = input_const(1).and_then(Tensor::to_i64_vec) else {
                    return Err(refuse("axes is not a constant".into()));
                };
                if opset < 11 && v.iter().any(|&x| x < 0) {
                    return Err(refuse(format!("negative axes {v:?} need opset 11 or later")));
                }
                a.ints("axes", &v);
            }
            inputs.truncate(1);
        }
        (Axes::Input, false) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::import::load_model_bytes;

    /// `x [N,4] → Relu → Gemm(w, b) → y`, with `w` and `b` initializers.
    fn tiny() -> Graph {
        let mut g = Graph { name: "tiny".into(), opset: 7, ir_version: 3, ..Graph::default() };
        let x = g.add_value("x", Fact::new(DType::F32, vec![Dim::Sym("N".into()), Dim::Known(4)]));
        g.inputs.push(x);
        let w = g.add_initializer("w", Tensor::from_f32(vec![2, 4], (0..8).map(|i| i as f32).collect()));
        let b = g.add_initializer("b", Tensor::from_f32(vec![2], vec![0.5, -0.5]));
        let r = g.add_value("r", Fact::unknown());
        let y = g.add_value("y", Fact::unknown());
        g.nodes.push(Node {
            name: "r".into(),
            op: Op::Relu(crate::ops::relu::Relu {}),
            inputs: vec![Some(x)],
            outputs: vec![Some(r)],
        });
        let gemm = crate::ops::gemm::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, c_required: true };
        g.nodes.push(Node {
            name: "y".into(),
            op: Op::Gemm(gemm),
            inputs: vec![Some(r), Some(w), Some(b)],
            outputs: vec![Some(y)],
        });
        g.outputs.push(y);
        g.infer_facts().unwrap();
        g
    }

    #[test]
    fn ir3_lists_initializers_as_inputs_after_the_runtime_inputs() {
        let m = model_proto(&tiny(), &ExportOptions::default()).unwrap();
        let graph = m.graph.unwrap();
        let names: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["x", "w", "b"]);
        assert_eq!((m.ir_version, m.opset_import[0].version), (3, 7));
        assert_eq!(graph.initializer[0].float_data.len(), 8);
        assert!(graph.initializer[0].raw_data.is_empty());
        let attrs: Vec<&str> = graph.node[1].attribute.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(attrs, ["alpha", "beta", "transA", "transB"]);
    }

    #[test]
    fn opset13_has_no_initializer_inputs() {
        let graph = model_proto(&tiny(), &ExportOptions::opset(13)).unwrap().graph.unwrap();
        assert_eq!(graph.input.len(), 1);
    }

    #[test]
    fn round_trip_is_byte_identical() {
        for opset in EXPORT_OPSETS {
            let o = ExportOptions::opset(opset);
            let a = export_model(&tiny(), &o).unwrap();
            let b = export_model(&load_model_bytes(a.clone().into()).unwrap(), &o).unwrap();
            assert_eq!(a, b, "opset {opset}");
        }
    }

    #[test]
    fn unsupported_opset_is_refused() {
        assert!(matches!(export_model(&tiny(), &ExportOptions::opset(11)), Err(ExportError::Opset(11))));
    }

    #[test]
    fn squeeze_axes_attribute_cannot_be_written_at_opset_13() {
        let mut g = tiny();
        let y = g.outputs[0];
        let s = g.add_value("s", Fact::unknown());
        let op = Op::Unsqueeze(crate::ops::squeeze::Unsqueeze { axes: Axes::Attribute(Some(vec![0])) });
        g.nodes.push(Node { name: "s".into(), op, inputs: vec![Some(y)], outputs: vec![Some(s)] });
        g.outputs = vec![s];
        g.infer_facts().unwrap();
        let e = export_model(&g, &ExportOptions::opset(13)).unwrap_err();
        assert!(e.to_string().contains("node 's' (Unsqueeze)"), "{e}");
        assert!(export_model(&g, &ExportOptions::opset(7)).is_ok());
    }
}
