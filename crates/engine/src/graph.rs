//! The graph IR: values (with facts and optional constant data) and nodes (an [`Op`] wired to
//! values), nodes kept in topological order.
//!
//! Importers, the zoo builder and (later) training all produce or consume this one IR;
//! executors and passes never look at ONNX protobuf.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fact::{Dim, Fact};
use crate::ops::Op;
use crate::tensor::Tensor;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// A tensor flowing through the graph.
#[derive(Debug, Clone)]
pub struct Value {
    pub name: String,
    pub fact: Fact,
    /// Constant data (an ONNX initializer); `fact.value` then holds the same `Arc`.
    pub initializer: Option<Arc<Tensor>>,
}

/// One operation.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// One entry per ONNX input slot; `None` for an omitted optional input (`""` in ONNX).
    pub inputs: Vec<Option<ValueId>>,
    /// One entry per ONNX output slot; `None` for an unused optional output.
    pub outputs: Vec<Option<ValueId>>,
}

/// A whole model graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub name: String,
    pub values: Vec<Value>,
    /// In topological order (see [`Graph::sort_topologically`]).
    pub nodes: Vec<Node>,
    /// Runtime inputs only: values without an initializer.
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Default-domain opset the graph was written for.
    pub opset: i64,
    pub ir_version: i64,
    pub producer: String,
}

impl Graph {
    /// Adds a value and returns its id.
    pub fn add_value(&mut self, name: impl Into<String>, fact: Fact) -> ValueId {
        self.values.push(Value { name: name.into(), fact, initializer: None });
        self.values.len() - 1
    }

    /// Adds a constant value.
    pub fn add_initializer(&mut self, name: impl Into<String>, tensor: Tensor) -> ValueId {
        let t = Arc::new(tensor);
        self.values.push(Value { name: name.into(), fact: Fact::constant(t.clone()), initializer: Some(t) });
        self.values.len() - 1
    }

    pub fn value_id(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id]
    }

    /// The node that produces `id`, if any.
    pub fn producer_of(&self, id: ValueId) -> Option<&Node> {
        self.nodes.iter().find(|n| n.outputs.contains(&Some(id)))
    }

    /// All initializers, in value order.
    pub fn initializers(&self) -> impl Iterator<Item = (&str, &Arc<Tensor>)> {
        self.values.iter().filter_map(|v| v.initializer.as_ref().map(|t| (v.name.as_str(), t)))
    }

    /// Number of stored parameters: elements of all f32 initializers.
    pub fn parameter_count(&self) -> usize {
        self.initializers().filter(|(_, t)| t.as_f32().is_some()).map(|(_, t)| t.len()).sum()
    }

    /// Op counts by ONNX type, sorted by type name.
    pub fn op_counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for n in &self.nodes {
            *counts.entry(n.op.onnx_type()).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }

    /// Reorders `nodes` so every node comes after the producers of its inputs (Kahn's
    /// algorithm, stable: nodes already in order stay in file order). Fails on a cycle.
    pub fn sort_topologically(&mut self) -> Result<()> {
        let mut producer: HashMap<ValueId, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for &o in n.outputs.iter().flatten() {
                if producer.insert(o, i).is_some() {
                    return Err(Error::DuplicateValue(self.values[o].name.clone()));
                }
            }
        }
        let n = self.nodes.len();
        let mut pending = vec![0usize; n];
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for &inp in node.inputs.iter().flatten() {
                if let Some(&p) = producer.get(&inp) {
                    pending[i] += 1;
                    consumers[p].push(i);
                }
            }
        }
        // A min-heap over node indices keeps file order wherever the file was already sorted.
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
            (0..n).filter(|&i| pending[i] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &c in &consumers[i] {
                pending[c] -= 1;
                if pending[c] == 0 {
                    ready.push(std::cmp::Reverse(c));
                }
            }
        }
        if order.len() != n {
            let stuck = (0..n).find(|&i| pending[i] > 0).expect("some node is on the cycle");
            let node = &self.nodes[stuck];
            return Err(Error::Cycle { node: node.name.clone(), op: node.op.onnx_type().to_string() });
        }
        let mut old: Vec<Option<Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = order.into_iter().map(|i| old[i].take().expect("each node once")).collect();
        Ok(())
    }

    /// Runs shape inference over the whole graph (nodes must be sorted), replacing every
    /// non-input value's fact. Constants propagate: a node whose inputs are all known values
    /// gets its outputs computed (that is how Shape → Gather → Reshape chains resolve).
    pub fn infer_facts(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            let facts: Vec<Option<&Fact>> = node.inputs.iter().map(|id| id.map(|id| &self.values[id].fact)).collect();
            let wrap = |source| Error::Node { node: node.name.clone(), op: node.op.onnx_type().to_string(), source };
            let mut out = node.op.def().infer(&facts).map_err(wrap)?;
            let all_const = facts.iter().flatten().all(|f| f.value.is_some());
            if all_const && out.iter().any(|f| f.value.is_none()) && is_cheap_to_fold(&facts) {
                let tensors: Vec<Option<&Tensor>> =
                    facts.iter().map(|f| f.map(|f| &**f.value.as_ref().unwrap())).collect();
                let values = node.op.def().eval(&tensors).map_err(wrap)?;
                out = values.into_iter().map(|t| Fact::constant(Arc::new(t))).collect();
            }
            // Every output slot the graph uses must be produced (slot index, not count: a
            // node may skip a leading optional output and use a later one).
            let used_slots = node.outputs.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
            if out.len() < used_slots {
                return Err(wrap(crate::error::OpError::Unsupported(format!(
                    "the node uses {used_slots} outputs but the op produces {}",
                    out.len()
                ))));
            }
            let outputs = node.outputs.clone();
            for (slot, fact) in outputs.into_iter().zip(out) {
                if let Some(id) = slot {
                    self.values[id].fact = fact;
                }
            }
        }
        Ok(())
    }

    /// Indices (into [`Graph::nodes`]) of the nodes that read `id`, each once.
    pub fn consumers_of(&self, id: ValueId) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].inputs.contains(&Some(id))).collect()
    }

    /// Whether `id` is one of the graph outputs.
    pub fn is_output(&self, id: ValueId) -> bool {
        self.outputs.contains(&id)
    }

    /// Makes every reader of `from` (node inputs and graph outputs) read `to` instead. Used by
    /// passes that remove a node: its consumers are rewired to an equivalent value.
    pub fn replace_uses(&mut self, from: ValueId, to: ValueId) {
        for slot in self.nodes.iter_mut().flat_map(|n| n.inputs.iter_mut()) {
            if *slot == Some(from) {
                *slot = Some(to);
            }
        }
        for o in &mut self.outputs {
            if *o == from {
                *o = to;
            }
        }
    }

    /// `base` if no value has that name, else `base_2`, `base_3`, …: names of values that
    /// passes create stay unique (exporters and [`Graph::value_id`] rely on it).
    pub fn unique_name(&self, base: &str) -> String {
        let taken = |name: &str| self.values.iter().any(|v| v.name == name);
        if !taken(base) {
            return base.to_string();
        }
        (2..).map(|i| format!("{base}_{i}")).find(|n| !taken(n)).expect("some suffix is free")
    }

    /// Drops the values that no node, graph input or graph output refers to (orphaned
    /// initializers and intermediates left behind by passes) and renumbers the rest, keeping
    /// their order. Returns how many were dropped.
    pub fn remove_unreferenced_values(&mut self) -> usize {
        let mut used = vec![false; self.values.len()];
        for n in &self.nodes {
            for &id in n.inputs.iter().chain(&n.outputs).flatten() {
                used[id] = true;
            }
        }
        for &id in self.inputs.iter().chain(&self.outputs) {
            used[id] = true;
        }
        let dropped = used.iter().filter(|&&u| !u).count();
        if dropped == 0 {
            return 0;
        }
        let mut new_id = vec![usize::MAX; self.values.len()];
        let mut kept = Vec::with_capacity(self.values.len() - dropped);
        for (old, v) in std::mem::take(&mut self.values).into_iter().enumerate() {
            if used[old] {
                new_id[old] = kept.len();
                kept.push(v);
            }
        }
        self.values = kept;
        for n in &mut self.nodes {
            for slot in n.inputs.iter_mut().chain(n.outputs.iter_mut()).flatten() {
                *slot = new_id[*slot];
            }
        }
        for id in self.inputs.iter_mut().chain(self.outputs.iter_mut()) {
            *id = new_id[*id];
        }
        dropped
    }

    /// Replaces the declared shape of runtime input `index`; callers re-run
    /// [`Graph::infer_facts`] afterwards. Used to run a 224×224 model at another size.
    pub fn set_input_shape(&mut self, index: usize, shape: Vec<Dim>) {
        let id = self.inputs[index];
        self.values[id].fact.shape = Some(shape);
    }
}

/// Constant folding at load time is for shape arithmetic, not for running convolutions on
/// constants: cap the folded inputs at a million elements.
fn is_cheap_to_fold(inputs: &[Option<&Fact>]) -> bool {
    inputs.iter().flatten().map(|f| f.value.as_ref().map_or(0, |t| t.len())).sum::<usize>() <= 1 << 20
}
