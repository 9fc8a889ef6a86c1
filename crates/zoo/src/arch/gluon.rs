//! Gluon naming and MXNet export order: how the zoo's graphs got their names and node order.
//!
//! A port of `scripts/zoo_models.py` (`GraphBuilder`, the four residual blocks, `stages`,
//! `build_resnet`), which was checked against the real zoo files (SPEC §2.3):
//!
//! * Gluon names every layer `<scope><type><k>` with a counter per scope and type, assigned
//!   when the layer is **constructed** (a block's body layers, then its downsample layers);
//!   operators made in `hybrid_forward` (`activation<k>`, `_plus<k>`) are counted per scope
//!   in **forward** order. Hence the layer constructors ([`Builder::conv`], [`Builder::batchnorm`], …) vs [`Builder::call`]
//!   (forward).
//! * The MXNet exporter walks the symbol graph depth-first from the output, inputs in order,
//!   emitting variables and operators in post-order; an operator's position in that list is
//!   the `<idx>` of the exporter-made names `flatten_<idx>` (v1: a Flatten before the Gemm)
//!   and `reshape_attr_tensor<idx>` (v2: the Reshape's shape tensor). Initializers and graph
//!   inputs come out in the same order.

use std::collections::{HashMap, HashSet};

use resnet_engine::ops::batchnorm::BatchNormalization;
use resnet_engine::ops::binary::{Binary, BinaryKind};
use resnet_engine::ops::conv::Conv;
use resnet_engine::ops::flatten::Flatten;
use resnet_engine::ops::gemm::Gemm;
use resnet_engine::ops::global_pool::{GlobalPool, PoolKind};
use resnet_engine::ops::padding::Window;
use resnet_engine::ops::pool::{MaxPool, StorageOrder};
use resnet_engine::ops::relu::Relu;
use resnet_engine::ops::reshape::Reshape;
use resnet_engine::{DType, Dim, Fact, Graph, Node, Op, Tensor, ValueId};

/// The graph's one runtime input (SPEC §2.1).
pub const INPUT_NAME: &str = "data";
/// The MXNet exporter's graph name (SPEC §2.2).
pub const GRAPH_NAME: &str = "mxnet_converted_model";

/// What a parameter is, which decides its initial value (SPEC §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    /// Conv or dense weight: Xavier.
    Weight,
    /// Conv or dense bias: 0.
    Bias,
    Gamma,
    Beta,
    RunningMean,
    RunningVar,
    /// The v2 data BatchNorm's gamma/beta (`scale=False, center=False`): fixed 1 and 0.
    FixedGamma,
    FixedBeta,
}

/// One operator as MXNet has it (one ONNX node, except v1's extra Flatten).
#[derive(Debug, Clone)]
enum Kind {
    Conv { kernel: usize, stride: usize },
    BatchNorm,
    Relu,
    MaxPool,
    GlobalAvgPool,
    Reshape,
    Dense,
    Add,
}

#[derive(Debug, Clone)]
struct OpRec {
    kind: Kind,
    /// Data inputs, then parameter names, in MXNet's input order.
    inputs: Vec<String>,
}

/// A layer made at construction time: its name and parameters; called later.
#[derive(Debug, Clone)]
pub struct Layer {
    name: String,
    kind: Kind,
    params: Vec<String>,
    /// Scope suffix for layers whose forward makes named operators (`flatten0_`).
    inner_scope: Option<String>,
}

#[derive(Debug, Default)]
struct Scope {
    prefix: String,
    layers: HashMap<&'static str, u32>,
    ops: HashMap<&'static str, u32>,
}

/// Tracks scopes, counters, parameters and operators, then emits the graph.
pub struct Builder {
    scopes: Vec<Scope>,
    /// Channels of the declared graph input `[N,C,S,S]`: 3 unless [`Builder::set_input_channels`].
    input_channels: usize,
    params: HashMap<String, (Vec<usize>, ParamRole)>,
    ops: HashMap<String, OpRec>,
}

impl Builder {
    pub fn new(prefix: &str) -> Builder {
        Builder {
            scopes: vec![Scope { prefix: prefix.to_string(), ..Scope::default() }],
            input_channels: 3,
            params: HashMap::new(),
            ops: HashMap::new(),
        }
    }

    /// Declares the graph input with `c` channels instead of the zoo's 3 (e.g. 1 for MNIST).
    pub fn set_input_channels(&mut self, c: usize) {
        self.input_channels = c;
    }

    fn scope(&mut self) -> &mut Scope {
        self.scopes.last_mut().expect("the model scope is never popped")
    }

    pub fn push(&mut self, suffix: &str) {
        let prefix = format!("{}{suffix}", self.scopes.last().expect("scope").prefix);
        self.scopes.push(Scope { prefix, ..Scope::default() });
    }

    pub fn pop(&mut self) {
        self.scopes.pop();
    }

    /// A Gluon layer name, counted per scope in construction order.
    fn layer_name(&mut self, hint: &'static str) -> String {
        let s = self.scope();
        let k = s.layers.entry(hint).or_default();
        let name = format!("{}{hint}{k}", s.prefix);
        *k += 1;
        name
    }

    /// An operator name made in `hybrid_forward`, counted per scope in forward order.
    fn op_name(&mut self, hint: &'static str) -> String {
        let s = self.scope();
        let k = s.ops.entry(hint).or_default();
        let name = format!("{}{hint}{k}", s.prefix);
        *k += 1;
        name
    }

    fn param(&mut self, name: String, shape: Vec<usize>, role: ParamRole) -> String {
        assert!(self.params.insert(name.clone(), (shape, role)).is_none(), "parameter {name} twice");
        name
    }

    fn add_op(&mut self, name: String, kind: Kind, inputs: Vec<String>) -> String {
        assert!(self.ops.insert(name.clone(), OpRec { kind, inputs }).is_none(), "operator {name} twice");
        name
    }

    // ---- layers (constructed) ---------------------------------------------------------

    pub fn conv(&mut self, cin: usize, cout: usize, k: usize, stride: usize, bias: bool) -> Layer {
        let name = self.layer_name("conv");
        let mut params = vec![self.param(format!("{name}_weight"), vec![cout, cin, k, k], ParamRole::Weight)];
        if bias {
            params.push(self.param(format!("{name}_bias"), vec![cout], ParamRole::Bias));
        }
        Layer { name, kind: Kind::Conv { kernel: k, stride }, params, inner_scope: None }
    }

    pub fn batchnorm(&mut self, c: usize, fixed_affine: bool) -> Layer {
        let name = self.layer_name("batchnorm");
        let (g, b) = if fixed_affine {
            (ParamRole::FixedGamma, ParamRole::FixedBeta)
        } else {
            (ParamRole::Gamma, ParamRole::Beta)
        };
        let params = vec![
            self.param(format!("{name}_gamma"), vec![c], g),
            self.param(format!("{name}_beta"), vec![c], b),
            self.param(format!("{name}_running_mean"), vec![c], ParamRole::RunningMean),
            self.param(format!("{name}_running_var"), vec![c], ParamRole::RunningVar),
        ];
        Layer { name, kind: Kind::BatchNorm, params, inner_scope: None }
    }

    /// `nn.Activation('relu')`: a layer named `relu<k>`.
    pub fn relu_layer(&mut self) -> Layer {
        Layer { name: self.layer_name("relu"), kind: Kind::Relu, params: vec![], inner_scope: None }
    }

    pub fn max_pool(&mut self) -> Layer {
        Layer { name: self.layer_name("pool"), kind: Kind::MaxPool, params: vec![], inner_scope: None }
    }

    pub fn global_avg_pool(&mut self) -> Layer {
        Layer { name: self.layer_name("pool"), kind: Kind::GlobalAvgPool, params: vec![], inner_scope: None }
    }

    /// `nn.Flatten` of MXNet ≤ 1.2: `x.reshape((0, -1))` inside the block's own scope.
    pub fn flatten_layer(&mut self) -> Layer {
        let name = self.layer_name("flatten");
        let prefix_len = self.scope().prefix.len();
        let inner = format!("{}_", &name[prefix_len..]);
        Layer { name, kind: Kind::Reshape, params: vec![], inner_scope: Some(inner) }
    }

    pub fn dense(&mut self, cin: usize, units: usize) -> Layer {
        let name = self.layer_name("dense");
        let params = vec![
            self.param(format!("{name}_weight"), vec![units, cin], ParamRole::Weight),
            self.param(format!("{name}_bias"), vec![units], ParamRole::Bias),
        ];
        Layer { name, kind: Kind::Dense, params, inner_scope: None }
    }

    // ---- forward ------------------------------------------------------------------------

    /// Applies a layer to `x`; returns the output (= node) name.
    pub fn call(&mut self, layer: &Layer, x: &str) -> String {
        let mut inputs = vec![x.to_string()];
        inputs.extend(layer.params.iter().cloned());
        match &layer.inner_scope {
            Some(inner) => {
                self.push(inner);
                let name = self.op_name("reshape");
                self.pop();
                self.add_op(name, layer.kind.clone(), inputs)
            }
            None => self.add_op(format!("{}_fwd", layer.name), layer.kind.clone(), inputs),
        }
    }

    /// Applies layers in sequence.
    pub fn seq(&mut self, layers: &[Layer], x: &str) -> String {
        layers.iter().fold(x.to_string(), |x, l| self.call(l, &x))
    }

    /// `F.Activation(x, act_type='relu')` inside a forward: `activation<k>`.
    pub fn activation(&mut self, x: &str) -> String {
        let name = self.op_name("activation");
        self.add_op(name, Kind::Relu, vec![x.to_string()])
    }

    /// `a + b` inside a forward: `_plus<k>` (operands in this order).
    pub fn plus(&mut self, a: &str, b: &str) -> String {
        let name = self.op_name("_plus");
        self.add_op(name, Kind::Add, vec![a.to_string(), b.to_string()])
    }

    // ---- export ------------------------------------------------------------------------

    /// MXNet's symbol order: depth-first post-order from `output`, inputs in order. Entries
    /// are `(is_op, name)`.
    fn mxnet_order(&self, output: &str) -> Vec<(bool, String)> {
        let mut order = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut stack = vec![(output.to_string(), false)];
        while let Some((name, expanded)) = stack.pop() {
            if seen.contains(&name) {
                continue;
            }
            match self.ops.get(&name) {
                None => {
                    seen.insert(name.clone());
                    order.push((false, name));
                }
                Some(_) if expanded => {
                    seen.insert(name.clone());
                    order.push((true, name));
                }
                Some(op) => {
                    stack.push((name.clone(), true));
                    stack.extend(op.inputs.iter().rev().filter(|i| !seen.contains(*i)).map(|i| (i.clone(), false)));
                }
            }
        }
        order
    }

    /// Emits the graph: values, initializers and nodes in MXNet's order, with v1's
    /// `flatten_<idx>` before the Gemm and v2's `reshape_attr_tensor<idx>`. `make_param`
    /// gives each parameter's tensor (called in that order). Returns the graph (facts not yet
    /// inferred) and the exporter index.
    pub fn emit(
        &self,
        output: &str,
        input_size: usize,
        flatten_before_gemm: bool,
        make_param: &mut dyn FnMut(&[usize], ParamRole) -> Tensor,
    ) -> (Graph, usize) {
        let mut g = Graph { name: GRAPH_NAME.to_string(), opset: 7, ir_version: 3, ..Graph::default() };
        let mut ids: HashMap<String, ValueId> = HashMap::new();
        let mut exporter_idx = 0;
        for (idx, (is_op, name)) in self.mxnet_order(output).into_iter().enumerate() {
            if !is_op {
                let id = if name == INPUT_NAME {
                    let shape = vec![
                        Dim::Sym("N".into()),
                        Dim::Known(self.input_channels),
                        Dim::Known(input_size),
                        Dim::Known(input_size),
                    ];
                    let id = g.add_value(INPUT_NAME, Fact::new(DType::F32, shape));
                    g.inputs.push(id);
                    id
                } else {
                    let (shape, role) = &self.params[&name];
                    g.add_initializer(name.clone(), make_param(shape, *role))
                };
                ids.insert(name, id);
                continue;
            }
            let rec = &self.ops[&name];
            let mut inputs: Vec<Option<ValueId>> = rec.inputs.iter().map(|i| Some(ids[i])).collect();
            if matches!(rec.kind, Kind::Dense) && flatten_before_gemm {
                let flat = format!("flatten_{idx}");
                let out = g.add_value(flat.clone(), Fact::unknown());
                g.nodes.push(Node {
                    name: flat,
                    op: Op::Flatten(Flatten { axis: 1 }),
                    inputs: vec![inputs[0]],
                    outputs: vec![Some(out)],
                });
                inputs[0] = Some(out);
                exporter_idx = idx;
            }
            if matches!(rec.kind, Kind::Reshape) {
                let shape =
                    g.add_initializer(format!("reshape_attr_tensor{idx}"), Tensor::from_i64(vec![2], vec![0, -1]));
                inputs.push(Some(shape));
                exporter_idx = idx;
            }
            let out = g.add_value(name.clone(), Fact::unknown());
            ids.insert(name.clone(), out);
            g.nodes.push(Node { name, op: onnx_op(&rec.kind), inputs, outputs: vec![Some(out)] });
        }
        g.outputs.push(ids[output]);
        (g, exporter_idx)
    }
}

/// The IR op with the attributes the zoo files carry (SPEC §2.4).
fn onnx_op(kind: &Kind) -> Op {
    match *kind {
        Kind::Conv { kernel: k, stride: s } => Op::Conv(Conv {
            window: Window {
                kernel_shape: Some(vec![k, k]),
                strides: Some(vec![s, s]),
                dilations: Some(vec![1, 1]),
                pads: Some(vec![k / 2; 4]),
                ..Window::default()
            },
            group: 1,
        }),
        Kind::BatchNorm => Op::BatchNormalization(BatchNormalization { epsilon: 1e-5, spatial: true }),
        Kind::Relu => Op::Relu(Relu {}),
        Kind::MaxPool => Op::MaxPool(MaxPool {
            window: Window {
                kernel_shape: Some(vec![3, 3]),
                strides: Some(vec![2, 2]),
                pads: Some(vec![1; 4]),
                ..Window::default()
            },
            storage_order: StorageOrder::RowMajor,
        }),
        Kind::GlobalAvgPool => Op::GlobalPool(GlobalPool { kind: PoolKind::Average }),
        Kind::Reshape => Op::Reshape(Reshape { allowzero: false }),
        Kind::Dense => Op::Gemm(Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, c_required: true }),
        Kind::Add => Op::Binary(Binary { kind: BinaryKind::Add }),
    }
}
