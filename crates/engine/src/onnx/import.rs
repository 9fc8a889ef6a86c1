//! ONNX `ModelProto` → [`Graph`]: version checks, initializers, runtime inputs, nodes and
//! edges, then topological sort and shape inference.
//!
//! The rules, in the order they are checked:
//! 1. IR version in `3..=MAX_IR_VERSION`; a default-domain opset in
//!    `ops::MIN_OPSET..=ops::MAX_OPSET` (other imported domains are fine while unused).
//! 2. Initializers become constants. A graph input with an initializer of the same name (every
//!    parameter of an IR-3 file, such as the zoo's) is a constant, not a runtime input.
//! 3. Every value has exactly one producer; every node input and graph output exists.
//! 4. Every node's op is in [`crate::ops::REGISTRY`] and accepts its attributes at the opset.
//! 5. The graph is sorted and its facts inferred, so shape errors surface at load time.
//!
//! Every failure is a typed [`Error`]; no byte sequence makes the importer panic.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use prost::Message;

use crate::error::{Error, Result};
use crate::fact::{Dim, Fact};
use crate::graph::{Graph, Node, ValueId};
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::tensor_shape_proto::dimension;
use crate::onnx::proto::{type_proto, AttributeProto, ModelProto, NodeProto, ValueInfoProto};
use crate::onnx::tensor_proto::tensor_from_proto_named;
use crate::onnx::MAX_IR_VERSION;
use crate::ops::{self, AttrValue, Attrs};
use crate::tensor::DType;

/// Loads an `.onnx` file. The file is memory-mapped, so initializer bytes are copied once,
/// straight into the tensors. Errors carry the path.
pub fn load_model(path: impl AsRef<Path>) -> Result<Graph> {
    let path = path.as_ref();
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and private; as with every mmap-based loader, a file
    // truncated by another process while we read it would fault. Models are not rewritten
    // in place while being loaded.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    load_model_bytes(Bytes::from_owner(map)).map_err(|e| e.in_file(path))
}

/// Imports a model from its serialized bytes (`raw_data` fields are slices of `bytes`).
pub fn load_model_bytes(bytes: Bytes) -> Result<Graph> {
    import_model(decode_model(bytes)?)
}

/// Decodes the protobuf of a model without interpreting it.
pub fn decode_model(bytes: Bytes) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(Error::NotOnnx("the file is empty".into()));
    }
    ModelProto::decode(bytes).map_err(|e| Error::NotOnnx(e.to_string()))
}

/// Is `domain` the default ONNX operator domain?
fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// Builds a [`Graph`] from a decoded model (see the module docs for the rules).
pub fn import_model(model: ModelProto) -> Result<Graph> {
    if !(3..=MAX_IR_VERSION).contains(&model.ir_version) {
        return Err(Error::IrVersion(model.ir_version));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| is_default_domain(&o.domain))
        .map(|o| o.version)
        .ok_or(Error::NoDefaultOpset)?;
    if !(ops::MIN_OPSET..=ops::MAX_OPSET).contains(&opset) {
        return Err(Error::Opset { domain: "ai.onnx".into(), version: opset });
    }
    let proto = model.graph.ok_or(Error::NoGraph)?;
    let mut graph = Graph {
        name: proto.name,
        opset,
        ir_version: model.ir_version,
        producer: model.producer_name,
        ..Graph::default()
    };
    let mut ids: HashMap<String, ValueId> = HashMap::new();

    for init in proto.initializer {
        let name = init.name.clone();
        if name.is_empty() {
            return Err(Error::Tensor { name, detail: "an initializer has no name".into() });
        }
        if ids.contains_key(&name) {
            return Err(Error::DuplicateValue(name));
        }
        let tensor = tensor_from_proto_named(init, &name)?;
        ids.insert(name.clone(), graph.add_initializer(name, tensor));
    }
    for input in &proto.input {
        if ids.contains_key(&input.name) && graph.values[ids[&input.name]].initializer.is_some() {
            continue; // IR < 4: parameters are listed as inputs too.
        }
        if input.name.is_empty() {
            return Err(Error::Input { name: String::new(), detail: "a graph input has no name".into() });
        }
        if ids.contains_key(&input.name) {
            return Err(Error::DuplicateValue(input.name.clone()));
        }
        let id = graph.add_value(input.name.clone(), input_fact(input)?);
        ids.insert(input.name.clone(), id);
        graph.inputs.push(id);
    }

    // Outputs first (the file need not be sorted), then inputs resolve against all of them.
    let node_names: Vec<String> = proto.node.iter().enumerate().map(|(i, n)| node_name(n, i)).collect();
    let mut outputs: Vec<Vec<Option<ValueId>>> = Vec::with_capacity(proto.node.len());
    for node in &proto.node {
        let mut slots = Vec::with_capacity(node.output.len());
        for out in &node.output {
            if out.is_empty() {
                slots.push(None);
                continue;
            }
            if ids.contains_key(out) {
                return Err(Error::DuplicateValue(out.clone()));
            }
            let id = graph.add_value(out.clone(), Fact::unknown());
            ids.insert(out.clone(), id);
            slots.push(Some(id));
        }
        outputs.push(slots);
    }
    let mut inputs: Vec<Vec<Option<ValueId>>> = Vec::with_capacity(proto.node.len());
    for (node, name) in proto.node.iter().zip(&node_names) {
        let slots = node
            .input
            .iter()
            .map(|inp| match inp.as_str() {
                "" => Ok(None),
                inp => ids.get(inp).copied().map(Some).ok_or_else(|| Error::DanglingEdge {
                    node: name.clone(),
                    op: node.op_type.clone(),
                    input: inp.to_string(),
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        inputs.push(slots);
    }
    for out in &proto.output {
        let id = *ids.get(&out.name).ok_or_else(|| Error::DanglingOutput(out.name.clone()))?;
        graph.outputs.push(id);
    }

    for (((node, name), inputs), outputs) in proto.node.into_iter().zip(node_names).zip(inputs).zip(outputs) {
        let op = parse_op(node, &name, opset)?;
        graph.nodes.push(Node { name, op, inputs, outputs });
    }
    graph.sort_topologically()?;
    graph.infer_facts()?;
    Ok(graph)
}

/// A node's name for messages: its own, else its first output's, else `#<index>`.
fn node_name(node: &NodeProto, index: usize) -> String {
    if !node.name.is_empty() {
        return node.name.clone();
    }
    match node.output.iter().find(|o| !o.is_empty()) {
        Some(out) => out.clone(),
        None => format!("#{index}"),
    }
}

/// Looks the node's op up in the registry and builds it from its attributes.
fn parse_op(node: NodeProto, name: &str, opset: i64) -> Result<ops::Op> {
    let NodeProto { op_type, domain, attribute, .. } = node;
    let unknown =
        |domain: &str| Error::UnknownOp { node: name.to_string(), op: op_type.clone(), domain: domain.to_string() };
    if !is_default_domain(&domain) {
        return Err(unknown(&domain));
    }
    let mut items = Vec::with_capacity(attribute.len());
    for attr in attribute {
        let attr_name = attr.name.clone();
        items.push((attr_name, attr_value(attr, name)?));
    }
    match ops::parse(&op_type, &Attrs::new(items), opset) {
        None => Err(unknown("")),
        Some(Err(source)) => Err(Error::Node { node: name.to_string(), op: op_type, source }),
        Some(Ok(op)) => Ok(op),
    }
}

/// Converts one attribute by its `type` field. Old exporters leave `type` UNDEFINED; then
/// the kind is read off whichever field is set (a zero scalar reads as the int 0, since
/// protobuf 3 cannot tell which scalar field was written).
fn attr_value(attr: AttributeProto, node: &str) -> Result<AttrValue> {
    let kind = match AttributeType::try_from(attr.r#type) {
        Ok(AttributeType::Undefined) | Err(_) => infer_attr_type(&attr),
        Ok(kind) => kind,
    };
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    Ok(match kind {
        AttributeType::Float => AttrValue::Float(attr.f),
        AttributeType::Int => AttrValue::Int(attr.i),
        AttributeType::String => AttrValue::String(text(&attr.s)),
        AttributeType::Tensor => {
            let label = format!("{node}.{}", attr.name);
            match attr.t {
                Some(t) => {
                    let label = if t.name.is_empty() { label } else { t.name.clone() };
                    AttrValue::Tensor(tensor_from_proto_named(t, &label)?)
                }
                None => return Err(Error::Tensor { name: label, detail: "tensor attribute without a tensor".into() }),
            }
        }
        AttributeType::Floats => AttrValue::Floats(attr.floats),
        AttributeType::Ints => AttrValue::Ints(attr.ints),
        AttributeType::Strings => AttrValue::Strings(attr.strings.iter().map(text).collect()),
        AttributeType::Graph => AttrValue::Other("graph"),
        AttributeType::Graphs => AttrValue::Other("graphs"),
        AttributeType::Tensors => AttrValue::Other("tensors"),
        AttributeType::SparseTensor => AttrValue::Other("sparse tensor"),
        AttributeType::SparseTensors => AttrValue::Other("sparse tensors"),
        AttributeType::TypeProto => AttrValue::Other("type proto"),
        AttributeType::TypeProtos => AttrValue::Other("type protos"),
        AttributeType::Undefined => AttrValue::Other("undefined"),
    })
}

fn infer_attr_type(a: &AttributeProto) -> AttributeType {
    if !a.floats.is_empty() {
        AttributeType::Floats
    } else if !a.ints.is_empty() {
        AttributeType::Ints
    } else if !a.strings.is_empty() {
        AttributeType::Strings
    } else if a.t.is_some() {
        AttributeType::Tensor
    } else if a.g.is_some() {
        AttributeType::Graph
    } else if !a.tensors.is_empty() {
        AttributeType::Tensors
    } else if !a.graphs.is_empty() {
        AttributeType::Graphs
    } else if a.sparse_tensor.is_some() {
        AttributeType::SparseTensor
    } else if !a.s.is_empty() {
        AttributeType::String
    } else if a.f != 0.0 {
        AttributeType::Float
    } else {
        AttributeType::Int
    }
}

/// The declared type and shape of a runtime input.
fn input_fact(input: &ValueInfoProto) -> Result<Fact> {
    let fail = |detail: String| Error::Input { name: input.name.clone(), detail };
    let Some(value) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(Fact::unknown());
    };
    let type_proto::Value::TensorType(tensor) = value else {
        return Err(fail("only tensor inputs are supported (not sequences, maps or optionals)".into()));
    };
    // elem_type 0 (UNDEFINED) leaves the type open; anything we cannot store is refused here,
    // naming the input, rather than at run time.
    let dtype = match DType::from_onnx(tensor.elem_type) {
        DType::Unsupported(0) => None,
        DType::Unsupported(code) => {
            let name = DType::Unsupported(code);
            return Err(fail(format!("element type {name} is not supported (only float32, int64 and int32 are)")));
        }
        dtype => Some(dtype),
    };
    let shape = match &tensor.shape {
        None => None,
        Some(shape) => Some(
            shape
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(dimension::Value::DimValue(v)) => {
                        usize::try_from(*v).map(Dim::Known).map_err(|_| fail(format!("negative dimension {v}")))
                    }
                    Some(dimension::Value::DimParam(p)) if !p.is_empty() => Ok(Dim::Sym(p.clone())),
                    _ => Ok(Dim::unknown()),
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(Fact { dtype, shape, value: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::TensorProto;

    fn attr(f: impl FnOnce(&mut AttributeProto)) -> AttrValue {
        let mut a = AttributeProto { name: "a".into(), ..AttributeProto::default() };
        f(&mut a);
        attr_value(a, "n").unwrap()
    }

    #[test]
    fn attributes_convert_by_their_type_field() {
        assert_eq!(attr(|a| (a.r#type, a.i) = (AttributeType::Int as i32, 3)), AttrValue::Int(3));
        assert_eq!(attr(|a| (a.r#type, a.f) = (AttributeType::Float as i32, 0.5)), AttrValue::Float(0.5));
        assert_eq!(
            attr(|a| (a.r#type, a.s) = (AttributeType::String as i32, Bytes::from_static(b"SAME_UPPER"))),
            AttrValue::String("SAME_UPPER".into())
        );
        assert_eq!(attr(|a| a.r#type = AttributeType::Ints as i32), AttrValue::Ints(vec![]));
        assert_eq!(attr(|a| a.r#type = AttributeType::Graph as i32), AttrValue::Other("graph"));
    }

    #[test]
    fn untyped_attributes_are_read_off_the_field_that_is_set() {
        assert_eq!(attr(|a| a.ints = vec![1, 2]), AttrValue::Ints(vec![1, 2]));
        assert_eq!(attr(|a| a.floats = vec![1.0]), AttrValue::Floats(vec![1.0]));
        assert_eq!(attr(|a| a.f = 1e-5), AttrValue::Float(1e-5));
        assert_eq!(attr(|a| a.i = 7), AttrValue::Int(7));
        assert_eq!(attr(|a| a.s = Bytes::from_static(b"NOTSET")), AttrValue::String("NOTSET".into()));
        let t = TensorProto { data_type: 7, int64_data: vec![4], ..TensorProto::default() };
        assert!(matches!(attr(|a| a.t = Some(t)), AttrValue::Tensor(t) if t.as_i64() == Some(&[4][..])));
    }

    #[test]
    fn a_bad_tensor_attribute_is_named_after_node_and_attribute() {
        let t = TensorProto { data_type: 1, dims: vec![2], ..TensorProto::default() };
        let a = AttributeProto {
            name: "value".into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(t),
            ..AttributeProto::default()
        };
        let e = attr_value(a, "const0").unwrap_err();
        assert!(matches!(&e, Error::Tensor { name, .. } if name == "const0.value"), "{e}");
    }
}
