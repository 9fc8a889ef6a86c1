//! [`TrainProgram`]: a graph compiled for training — forward in training mode with saved
//! activations, softmax cross-entropy on the logits, backward to parameter gradients, and
//! BatchNorm running-statistics updates.
//!
//! Compilation walks the graph once: it keeps the nodes the logits depend on (a trailing
//! Softmax/LogSoftmax is dropped: the loss applies its own), turns the initializers the ops
//! learn into [`Param`]s and [`Buffer`]s, folds what does not depend on the input into
//! constants, and decides per node whether backward has to visit it (some input needs a
//! gradient). Ops without a backward run their reference kernel from [`crate::ops`] in f32;
//! if a gradient would have to flow through one, compilation fails naming the node.
//!
//! At run time every activation stays in the program's workspace until backward has used it;
//! the buffers are kept across steps, so a steady-state step allocates little. An activation
//! is NCHW, or on batch lanes (`[C, H, W, N]`, f32 on AVX-512) where
//! `TrainProgram::lane_values` lets it; its gradient has the same layout.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::OpError;
use crate::fact::{fmt_shape, shape_fits, Dim, Fact};
use crate::graph::{Graph, ValueId};
use crate::ops::conv::{conv_geometry, Conv, ConvGeometry};
use crate::ops::gemm::Gemm;
use crate::ops::padding::{lift_to_3d, Axis, Window};
use crate::ops::Op;
use crate::plan::kernels::{self, Isa};
use crate::tensor::{numel, DType, Tensor, TensorData};
use crate::train::batchnorm::{self, BatchStats, BnDims};
use crate::train::conv::{self, ConvDims};
use crate::train::dense::{self, GemmDims};
use crate::train::elementwise;
use crate::train::error::TrainError;
use crate::train::lanes;
use crate::train::loss::softmax_cross_entropy;
use crate::train::param::{Buffer, Param, ParamRole};
use crate::train::pool;
use crate::train::real::Real;

/// How a program trains. See [`TrainOptions::default`] for the defaults.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Threads of the program's own rayon pool (0 = all cores). With 1 a run is
    /// bit-reproducible; other counts change results only by float summation order.
    pub threads: usize,
    /// Gluon/MXNet BatchNorm momentum: `running = momentum·running + (1 − momentum)·batch`.
    /// The running variance is updated with the UNBIASED batch variance (`·n/(n−1)` with `n`
    /// the values per channel, as PyTorch and MXNet do) while the forward pass normalises
    /// with the biased one.
    pub bn_momentum: f32,
    /// Label smoothing ε (0 = hard labels): `target = (1−ε)·onehot + ε/K`.
    pub label_smoothing: f32,
    /// Initializer names of parameters that are frozen (no gradient, `trainable == false`).
    pub frozen: HashSet<String>,
    /// BatchNormalization node names that run in inference mode (running statistics, not
    /// updated), e.g. a frozen backbone. All other BN nodes use batch statistics.
    pub bn_inference: HashSet<String>,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// f32 programs: the forward product and the input gradient of 3×3 stride-1 convs with
    /// 64 to 256 channels and outputs of at least 14×14 run as Winograd F(4×4, 3×3)
    /// (`train::conv`'s module docs), 1.3–1.5× faster on ResNet-18's 56×56 and
    /// 28×28 layers at batch 32. Off by default: it changes float32 rounding. Measured: one
    /// step's parameter gradients against an f64 program within 7.8e-6 of each tensor's
    /// largest entry (exact: 2.9e-6, `tests/train_program.rs`); a zoo ResNet-18 step against
    /// PyTorch within 7.0e-5 (exact: 1.7e-5, `crates/resnet/tests/train_torch_golden.rs`).
    /// f64 programs (gradient checks) are always exact.
    pub winograd: bool,
}

impl Default for TrainOptions {
    /// All cores, momentum 0.9, no smoothing, nothing frozen, every BN in training mode,
    /// seed 0, exact convolutions (no Winograd).
    fn default() -> Self {
        TrainOptions {
            threads: 0,
            bn_momentum: 0.9,
            label_smoothing: 0.0,
            frozen: HashSet::new(),
            bn_inference: HashSet::new(),
            seed: 0,
            winograd: false,
        }
    }
}

/// What one [`TrainProgram::step`] measured on its batch (before the update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutput {
    /// Mean cross-entropy over the batch (with label smoothing when enabled).
    pub loss: f64,
    /// Samples whose label has the largest logit (the first of equal logits wins).
    pub correct_top1: usize,
    /// Samples whose label is among the five largest logits.
    pub correct_top5: usize,
    pub batch: usize,
}

/// Where a value's data lives.
enum Source<T> {
    /// Computed at run time (the graph input or a node output).
    Act,
    Param(usize),
    Buffer(usize),
    /// An initializer that is not learned, or a value folded from constants; `real` holds
    /// it converted when it is f32.
    Const {
        tensor: Arc<Tensor>,
        real: Option<Vec<T>>,
    },
}

/// What a step computes.
#[derive(Debug, Clone)]
enum Kind {
    Conv(Conv),
    BatchNorm {
        epsilon: f64,
        inference: bool,
        /// Fused with the Relu that is its output's only consumer (the step outputs the
        /// Relu's value; see [`batchnorm`]'s module docs).
        relu: bool,
    },
    Relu,
    MaxPool(Window),
    AveragePool {
        window: Window,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    Add {
        /// Fused with the Relu that is its output's only consumer (the step outputs the
        /// Relu's value), like BatchNorm's `relu`.
        relu: bool,
    },
    /// Flatten, Reshape, Identity, Squeeze, Unsqueeze: same data, new shape.
    View,
    Dropout {
        ratio: f64,
    },
    Gemm(Gemm),
    MatMul,
    /// Forward only, through the op's f32 reference kernel.
    Reference,
}

impl Kind {
    /// Whether input slot `slot` can receive a gradient.
    fn differentiable(&self, slot: usize) -> bool {
        match self {
            Kind::Conv(_) | Kind::Gemm(_) => slot < 3,
            Kind::BatchNorm { .. } => slot < 3,
            Kind::Add { .. } | Kind::MatMul => slot < 2,
            Kind::Relu
            | Kind::MaxPool(_)
            | Kind::AveragePool { .. }
            | Kind::GlobalAveragePool
            | Kind::View
            | Kind::Dropout { .. } => slot == 0,
            Kind::Reference => true,
        }
    }
}

/// One node of the program.
struct Step {
    /// Index of the node in the graph (part of the dropout mask key).
    node_index: usize,
    name: String,
    op: Op,
    kind: Kind,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    /// Some input needs a gradient: backward visits this step.
    backward: bool,
}

impl Step {
    fn err(&self, source: OpError) -> TrainError {
        TrainError::Node { node: self.name.clone(), op: self.op.onnx_type().to_string(), source }
    }

    fn unsupported(&self, detail: impl Into<String>) -> TrainError {
        TrainError::Unsupported { node: self.name.clone(), op: self.op.onnx_type().to_string(), detail: detail.into() }
    }

    fn input(&self, slot: usize) -> Result<ValueId, TrainError> {
        self.inputs.get(slot).copied().flatten().ok_or_else(|| self.err(OpError::MissingInput(slot)))
    }

    fn opt_input(&self, slot: usize) -> Option<ValueId> {
        self.inputs.get(slot).copied().flatten()
    }

    fn output(&self) -> Result<ValueId, TrainError> {
        self.outputs.first().copied().flatten().ok_or_else(|| self.unsupported("output 0 is not used"))
    }
}

/// A runtime tensor: `data` is NCHW (row-major in `shape`), or with `lanes` on batch lanes
/// (`[C, H, W, N]` of the 4-D `shape` `[N, C, H, W]`; see [`TrainProgram::lane_values`]).
#[derive(Debug, Clone, Default)]
struct Act<T> {
    shape: Vec<usize>,
    data: Vec<T>,
    lanes: bool,
}

/// What a training-mode forward keeps for backward, per step.
#[derive(Debug, Clone, Default)]
enum Saved {
    #[default]
    Nothing,
    BatchNorm(BatchStats),
    Argmax(Vec<u32>),
    Dropout {
        key: u64,
    },
    /// A conv run as Winograd: its kernels (the filter transforms are redone every step).
    Winograd(Box<conv::FastConv>),
    /// A conv whose forward ran the plan's direct kernel (filters repacked every step); its
    /// weight gradient runs over the same shifted views, its input gradient through the
    /// kernel where that applies (else im2col, like dB).
    Direct(Box<conv::DirectTrain>),
    /// A conv whose forward ran on batch lanes (small planes): its input lanes, kept for
    /// the weight gradient; both gradients but dB run there too.
    Lanes(Box<lanes::LaneConv>),
}

/// The gradients of the activations during backward, kept across steps.
///
/// No zeroing pass: at the start of backward every buffer is `fresh` (its contents are stale),
/// the first contribution overwrites it and later ones add. The kernels that cannot
/// overwrite get the buffer zeroed just before they add to it.
#[derive(Default)]
struct Grads<T> {
    bufs: Vec<Vec<T>>,
    fresh: Vec<bool>,
}

/// A gradient buffer taken out for one kernel: the value, the buffer, and whether it is
/// fresh (holds no gradient yet: the kernel overwrites it).
type Taken<T> = (ValueId, Vec<T>, bool);

/// `dx` ready to be added to: zeroed when fresh (for kernels without an overwrite mode).
fn zeroed<T: Real>(dx: &mut [T], fresh: bool) -> &mut [T] {
    if fresh {
        dx.par_chunks_mut(1 << 15).for_each(|c| c.fill(T::ZERO));
    }
    dx
}

/// Activations, gradients and saved state of one pass, reused across steps.
#[derive(Default)]
struct Workspace<T> {
    acts: Vec<Act<T>>,
    /// Non-float runtime values (e.g. Shape outputs) of reference nodes.
    aux: HashMap<ValueId, Tensor>,
    grads: Grads<T>,
    saved: Vec<Saved>,
    /// Scratch of the conv kernels.
    conv: conv::ConvScratch<T>,
    /// Which values may live on batch lanes, for the input shape and ISA it was made for.
    lane_plan: Option<([usize; 4], Isa, Vec<bool>)>,
    /// An NCHW operand of an Add moved onto lanes.
    lane_tmp: Vec<f32>,
    /// Per step: seconds spent in forward and backward (only when profiling).
    profile: Option<Vec<[f64; 2]>>,
    /// Steps counted in `profile`; the first step is not (it allocates every buffer).
    profiled_steps: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Batch statistics and dropout; `counter` keys the dropout masks.
    Train { counter: u64 },
    /// Running statistics, no dropout.
    Inference,
}

/// A graph compiled for training, generic over the float type (`f32` to train, `f64` for
/// gradient checks).
pub struct TrainProgram<T: Real = f32> {
    input: ValueId,
    input_name: String,
    input_shape: Option<Vec<Dim>>,
    logits: ValueId,
    logits_name: String,
    sources: Vec<Source<T>>,
    steps: Vec<Step>,
    /// Per value: a gradient has to reach it.
    needs_grad: Vec<bool>,
    params: Vec<Param<T>>,
    buffers: Vec<Buffer<T>>,
    bn_momentum: f64,
    label_smoothing: f64,
    seed: u64,
    /// [`TrainOptions::winograd`] (false for f64 programs).
    winograd: bool,
    /// Activations may stay on batch lanes between ops (f32 programs).
    lanes: bool,
    /// Per value: the `(step, input slot)`s that read it.
    consumers: Vec<Vec<(usize, usize)>>,
    /// Steps taken so far; keys the dropout masks.
    counter: u64,
    pool: rayon::ThreadPool,
    ws: Workspace<T>,
    /// `RESNET_TRAIN_PROFILE` is set: time every step and print the table when dropped.
    profile: bool,
}

/// Which initializer slots of an op are learned, and as what.
fn param_slots(kind: &Kind) -> &'static [(usize, ParamRole)] {
    match kind {
        Kind::Conv(_) | Kind::Gemm(_) => &[(1, ParamRole::Weight), (2, ParamRole::Bias)],
        Kind::MatMul => &[(1, ParamRole::Weight)],
        Kind::BatchNorm { .. } => &[(1, ParamRole::Gamma), (2, ParamRole::Beta)],
        _ => &[],
    }
}

fn f32_initializer(graph: &Graph, id: ValueId) -> Result<(Vec<usize>, Vec<f32>), TrainError> {
    let v = &graph.values[id];
    let t = v.initializer.as_ref().expect("caller checked");
    match t.as_f32() {
        Some(data) => Ok((t.shape().to_vec(), data.to_vec())),
        None => Err(TrainError::Initializer {
            name: v.name.clone(),
            detail: format!("has type {}, a learned tensor must be float32", t.dtype()),
        }),
    }
}

fn to_real<T: Real>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from_f32(x)).collect()
}

fn to_f32<T: Real>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// A pool's window resolved for input shape `xs`: the 3-D axes and the output shape.
fn pool_axes(window: &Window, xs: &[usize]) -> Result<([Axis; 3], Vec<usize>), OpError> {
    let kernel = window.kernel_shape.as_deref().unwrap_or_default();
    if !(3..=5).contains(&xs.len()) || xs.len() != kernel.len() + 2 {
        return Err(OpError::shape(format!(
            "input shape {xs:?} does not fit kernel_shape {kernel:?}: expected [N,C] and one dim per kernel axis"
        )));
    }
    let axes = window.axes(kernel, &xs[2..])?;
    let mut out = xs[..2].to_vec();
    out.extend(axes.iter().map(|a| a.output));
    Ok((lift_to_3d(&axes)?, out))
}

/// `[N, C, plane]` of a `[N, C, ...]` shape.
fn bn_dims(xs: &[usize]) -> Result<BnDims, OpError> {
    if xs.len() < 2 {
        return Err(OpError::shape(format!("X must be [N,C,...] (rank ≥ 2), got shape {xs:?}")));
    }
    Ok(BnDims { n: xs[0], c: xs[1], plane: xs[2..].iter().product() })
}

/// [`bn_dims`] of a tensor as stored: on batch lanes each channel's values are one block,
/// `[1, C, N·H·W]` (same count per channel, so the same statistics).
fn bn_view(xs: &[usize], lanes: bool) -> Result<BnDims, OpError> {
    let d = bn_dims(xs)?;
    Ok(if lanes { BnDims { n: 1, c: d.c, plane: d.n * d.plane } } else { d })
}

fn spatial_input(xs: &[usize]) -> Result<(), OpError> {
    if (3..=5).contains(&xs.len()) {
        Ok(())
    } else {
        Err(OpError::shape(format!("input shape {xs:?} is not [N,C,spatial...] with 1 to 3 spatial axes")))
    }
}

/// Gemm sizes for stored shapes `a`, `b` and optional C.
fn gemm_dims(g: &Gemm, a: &[usize], b: &[usize], c: Option<&[usize]>) -> Result<GemmDims, OpError> {
    if a.len() != 2 || b.len() != 2 {
        return Err(OpError::shape(format!("A and B must be 2-D, got {a:?} and {b:?}")));
    }
    let (m, k) = if g.trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
    let (kb, n) = if g.trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
    if k != kb {
        return Err(OpError::shape(format!(
            "inner dims differ: A {a:?} (transA={}) and B {b:?} (transB={})",
            g.trans_a as u8, g.trans_b as u8
        )));
    }
    let c = match c {
        None => None,
        Some(cs) => {
            let (cm, cn) = match *cs {
                [] => (1, 1),
                [cn] => (1, cn),
                [cm, cn] => (cm, cn),
                _ => return Err(OpError::shape(format!("C of shape {cs:?} has rank above 2"))),
            };
            if (cm != 1 && cm != m) || (cn != 1 && cn != n) {
                return Err(OpError::shape(format!("C of shape {cs:?} does not broadcast to [{m}, {n}]")));
            }
            Some((cm, cn))
        }
    };
    Ok(GemmDims { m, k, n, trans_a: g.trans_a, trans_b: g.trans_b, alpha: g.alpha as f64, beta: g.beta as f64, c })
}

/// MatMul `[.., K] × [K, N]` as a Gemm over the flattened leading dims; returns the output
/// shape too.
fn matmul_dims(a: &[usize], b: &[usize]) -> Result<(GemmDims, Vec<usize>), OpError> {
    if a.len() < 2 || b.len() != 2 || a[a.len() - 1] != b[0] {
        return Err(OpError::shape(format!(
            "training supports MatMul of [..,K] by a 2-D [K,N] only, got {a:?} and {b:?}"
        )));
    }
    let k = b[0];
    let m = a[..a.len() - 1].iter().product();
    let mut out = a[..a.len() - 1].to_vec();
    out.push(b[1]);
    Ok((GemmDims { m, k, n: b[1], trans_a: false, trans_b: false, alpha: 1.0, beta: 1.0, c: None }, out))
}

impl<T: Real> TrainProgram<T> {
    /// Compiles `graph` for training.
    ///
    /// The graph has one runtime input `[N,C,H,W]` (N may be symbolic: any N per call) and one
    /// output, the logits `[N,K]`; when the output is produced by a Softmax (or LogSoftmax),
    /// the loss uses that node's input. Initializers consumed as Conv W/B, Gemm B/C, MatMul
    /// weight, BatchNormalization scale/B (and the bias of an Add that follows a MatMul)
    /// become [`Param`]s (roles Weight/Bias/Gamma/Beta, in node order, named as in the graph);
    /// BN mean/var become [`Buffer`]s; other initializers stay constants. An op without a
    /// backward may appear only where no gradient has to flow through it.
    pub fn new(graph: &Graph, options: TrainOptions) -> Result<Self, TrainError> {
        let mut g = graph.clone();
        g.sort_topologically()?;
        g.infer_facts()?;
        if g.inputs.len() != 1 {
            return Err(TrainError::InputCount(g.inputs.len()));
        }
        if g.outputs.len() != 1 {
            return Err(TrainError::OutputCount(g.outputs.len()));
        }
        let input = g.inputs[0];
        let mut logits = g.outputs[0];
        let mut excluded = None;
        if let Some(i) = g.nodes.iter().position(|n| n.outputs.contains(&Some(logits))) {
            if let Op::Softmax(_) = g.nodes[i].op {
                logits = g.nodes[i].inputs.first().copied().flatten().ok_or_else(|| TrainError::Unsupported {
                    node: g.nodes[i].name.clone(),
                    op: g.nodes[i].op.onnx_type().into(),
                    detail: "the output Softmax has no input".into(),
                })?;
                excluded = Some(i);
            }
        }

        // The nodes the logits depend on.
        let nv = g.values.len();
        let mut needed = vec![false; nv];
        needed[logits] = true;
        let mut node_needed = vec![false; g.nodes.len()];
        for (i, node) in g.nodes.iter().enumerate().rev() {
            if Some(i) != excluded && node.outputs.iter().flatten().any(|&o| needed[o]) {
                node_needed[i] = true;
                for &v in node.inputs.iter().flatten() {
                    needed[v] = true;
                }
            }
        }
        // Values that depend on the runtime input.
        let mut dynamic = vec![false; nv];
        dynamic[input] = true;
        for node in &g.nodes {
            if node.inputs.iter().flatten().any(|&v| dynamic[v]) {
                for &o in node.outputs.iter().flatten() {
                    dynamic[o] = true;
                }
            }
        }

        let mut sources: Vec<Source<T>> = Vec::with_capacity(nv);
        for v in &g.values {
            sources.push(match (&v.initializer, &v.fact.value) {
                (Some(t), _) => Source::Const { tensor: t.clone(), real: t.as_f32().map(to_real) },
                _ => Source::Act,
            });
        }
        let mut steps = Vec::new();
        for (i, node) in g.nodes.iter().enumerate() {
            if !node_needed[i] {
                continue;
            }
            let outs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
            let folded = outs.iter().all(|&o| !dynamic[o] && g.values[o].fact.value.is_some());
            if folded {
                for &o in &outs {
                    let t = g.values[o].fact.value.clone().expect("checked");
                    sources[o] = Source::Const { real: t.as_f32().map(to_real), tensor: t };
                }
                continue;
            }
            let used = |slot: usize| node.outputs.get(slot).copied().flatten().is_some_and(|o| needed[o]);
            let kind = match &node.op {
                Op::Conv(c) => Kind::Conv(c.clone()),
                Op::BatchNormalization(bn) => Kind::BatchNorm {
                    epsilon: bn.epsilon as f64,
                    inference: options.bn_inference.contains(&node.name),
                    relu: false,
                },
                Op::Relu(_) => Kind::Relu,
                Op::MaxPool(mp) if !used(1) => Kind::MaxPool(mp.window.clone()),
                Op::AveragePool(ap) => {
                    Kind::AveragePool { window: ap.window.clone(), count_include_pad: ap.count_include_pad }
                }
                Op::GlobalPool(gp) if gp.kind == crate::ops::global_pool::PoolKind::Average => Kind::GlobalAveragePool,
                Op::Binary(b) if b.kind == crate::ops::binary::BinaryKind::Add => Kind::Add { relu: false },
                Op::Flatten(_) | Op::Reshape(_) | Op::Identity(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => Kind::View,
                Op::Dropout(d) => Kind::Dropout { ratio: dropout_ratio(&g, node, d)? },
                Op::Gemm(gm) => Kind::Gemm(gm.clone()),
                Op::MatMul(_) => Kind::MatMul,
                _ => Kind::Reference,
            };
            let step = Step {
                node_index: i,
                name: node.name.clone(),
                op: node.op.clone(),
                kind,
                inputs: node.inputs.clone(),
                outputs: node.outputs.clone(),
                backward: false,
            };
            if !matches!(step.kind, Kind::Reference | Kind::Add { .. }) {
                let ids: Vec<ValueId> = step.inputs.iter().flatten().copied().collect();
                if (1..ids.len()).any(|j| ids[..j].contains(&ids[j])) {
                    return Err(step.unsupported("one value feeds two inputs of the node"));
                }
            }
            if !matches!(step.kind, Kind::Reference) && step.outputs.iter().skip(1).flatten().any(|&o| needed[o]) {
                return Err(step.unsupported("training computes output 0 only, but a later output is used"));
            }
            steps.push(step);
        }

        // BatchNormalization or Add → Relu, where the Relu is the only consumer of the
        // first's output (and that output is not the logits): one step writing the Relu's
        // output.
        let mut readers = vec![0usize; nv];
        for step in &steps {
            for &id in step.inputs.iter().flatten() {
                readers[id] += 1;
            }
        }
        let mut fused = Vec::with_capacity(steps.len());
        let mut pending_relu: HashMap<ValueId, usize> = HashMap::new();
        for (si, step) in steps.iter().enumerate() {
            if let (Kind::Relu, Some(x)) = (&step.kind, step.opt_input(0)) {
                if let Some(&bn) = pending_relu.get(&x) {
                    fused.push((bn, si));
                }
            }
            if let (Kind::BatchNorm { .. } | Kind::Add { .. }, Some(Some(y))) = (&step.kind, step.outputs.first()) {
                if readers[*y] == 1 && *y != logits && step.outputs.iter().skip(1).flatten().next().is_none() {
                    pending_relu.insert(*y, si);
                }
            }
        }
        for &(bn, relu) in fused.iter().rev() {
            let relu_step = steps.remove(relu);
            let step = &mut steps[bn];
            if let Kind::BatchNorm { relu, .. } | Kind::Add { relu } = &mut step.kind {
                *relu = true;
            }
            step.outputs = relu_step.outputs;
        }

        // Params and buffers, in node order.
        let mut params: Vec<Param<T>> = Vec::new();
        let mut buffers: Vec<Buffer<T>> = Vec::new();
        let mut assigned = vec![false; nv];
        let producer_kind: HashMap<ValueId, usize> =
            steps.iter().enumerate().flat_map(|(si, s)| s.outputs.iter().flatten().map(move |&o| (o, si))).collect();
        for step in &steps {
            let mut slots: Vec<(usize, ParamRole)> = param_slots(&step.kind).to_vec();
            if matches!(step.kind, Kind::Add { .. }) {
                // The bias of a MatMul + Add dense layer.
                for (slot, other) in [(1, 0), (0, 1)] {
                    let other_is_matmul = step
                        .opt_input(other)
                        .and_then(|o| producer_kind.get(&o))
                        .is_some_and(|&si| matches!(steps[si].kind, Kind::MatMul));
                    if other_is_matmul {
                        slots.push((slot, ParamRole::Bias));
                    }
                }
            }
            for (slot, role) in slots {
                let Some(id) = step.opt_input(slot) else { continue };
                if assigned[id] || g.values[id].initializer.is_none() {
                    continue;
                }
                assigned[id] = true;
                let (shape, value) = f32_initializer(&g, id)?;
                let name = g.values[id].name.clone();
                let len = value.len();
                params.push(Param {
                    trainable: !options.frozen.contains(&name),
                    name,
                    shape,
                    value: to_real(&value),
                    grad: vec![T::ZERO; len],
                    role,
                });
                sources[id] = Source::Param(params.len() - 1);
            }
            if matches!(step.kind, Kind::BatchNorm { .. }) {
                for slot in [3, 4] {
                    let Some(id) = step.opt_input(slot) else { continue };
                    if assigned[id] || g.values[id].initializer.is_none() {
                        continue;
                    }
                    assigned[id] = true;
                    let (shape, value) = f32_initializer(&g, id)?;
                    buffers.push(Buffer { name: g.values[id].name.clone(), shape, value: to_real(&value) });
                    sources[id] = Source::Buffer(buffers.len() - 1);
                }
            }
        }
        for name in &options.frozen {
            if !params.iter().any(|p| &p.name == name) {
                return Err(TrainError::UnknownName { what: "frozen parameter", name: name.clone() });
            }
        }
        for name in &options.bn_inference {
            if !steps.iter().any(|s| &s.name == name && matches!(s.kind, Kind::BatchNorm { .. })) {
                return Err(TrainError::UnknownName { what: "BatchNormalization node", name: name.clone() });
            }
        }

        // Which values a gradient has to reach, and which steps backward visits.
        let mut needs_grad = vec![false; nv];
        for step in &mut steps {
            let mut any = false;
            for (slot, id) in step.inputs.iter().enumerate() {
                let Some(id) = *id else { continue };
                let wants = match sources[id] {
                    Source::Act => needs_grad[id],
                    Source::Param(p) => params[p].trainable,
                    _ => false,
                };
                if wants && step.kind.differentiable(slot) {
                    any = true;
                }
            }
            if any {
                if matches!(step.kind, Kind::Reference) {
                    return Err(TrainError::NoBackward { node: step.name.clone(), op: step.op.onnx_type().into() });
                }
                step.backward = true;
                for &o in step.outputs.iter().flatten() {
                    needs_grad[o] = true;
                }
            }
        }

        let mut consumers = vec![Vec::new(); nv];
        for (si, step) in steps.iter().enumerate() {
            for (slot, id) in step.inputs.iter().enumerate() {
                if let Some(id) = *id {
                    consumers[id].push((si, slot));
                }
            }
        }

        // rayon reads 0 as "all cores".
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .thread_name(|i| format!("train-{i}"))
            .build()
            .map_err(|e| TrainError::ThreadPool(e.to_string()))?;
        Ok(TrainProgram {
            input,
            input_name: g.values[input].name.clone(),
            input_shape: g.values[input].fact.shape.clone(),
            logits,
            logits_name: g.values[logits].name.clone(),
            sources,
            steps,
            needs_grad,
            params,
            buffers,
            bn_momentum: decimal_f64(options.bn_momentum),
            label_smoothing: decimal_f64(options.label_smoothing),
            seed: options.seed,
            winograd: options.winograd && T::as_f32(&[]).is_some(),
            lanes: T::as_f32(&[]).is_some(),
            consumers,
            counter: 0,
            pool,
            ws: Workspace::default(),
            profile: std::env::var_os("RESNET_TRAIN_PROFILE").is_some(),
        })
    }

    /// The learned tensors, in node order.
    pub fn params(&self) -> &[Param<T>] {
        &self.params
    }

    /// The learned tensors, for optimizers (update `value`, keep shapes and lengths).
    pub fn params_mut(&mut self) -> &mut [Param<T>] {
        &mut self.params
    }

    /// BatchNorm running means and variances, in node order.
    pub fn buffers(&self) -> &[Buffer<T>] {
        &self.buffers
    }

    /// BatchNorm running statistics, e.g. to restore a checkpoint (keep lengths).
    pub fn buffers_mut(&mut self) -> &mut [Buffer<T>] {
        &mut self.buffers
    }

    /// Parameters and buffers at once, e.g. to restore both from a checkpoint.
    pub fn state_mut(&mut self) -> (&mut [Param<T>], &mut [Buffer<T>]) {
        (&mut self.params, &mut self.buffers)
    }

    /// Steps taken so far (the dropout masks are keyed by it).
    pub fn step_count(&self) -> u64 {
        self.counter
    }

    /// The nodes whose outputs the last [`TrainProgram::step`] kept on batch lanes (small-plane
    /// convolutions and the BatchNorm, Relu and Add between them, on AVX-512 CPUs; see
    /// `train::lanes`), in node order: a diagnostic of which layers skipped the NCHW layout.
    pub fn nodes_on_lanes(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| {
                s.outputs.first().copied().flatten().is_some_and(|o| self.ws.acts.get(o).is_some_and(|a| a.lanes))
            })
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Sets the step counter, e.g. when resuming from a checkpoint.
    pub fn set_step_count(&mut self, count: u64) {
        self.counter = count;
    }

    /// Forward in training mode and backward: sets every trainable param's `grad` to the
    /// gradient of the MEAN cross-entropy over the batch (frozen params get zeros), then
    /// updates the BatchNorm running statistics. `input` is NCHW, row-major.
    pub fn step(&mut self, input: &[T], shape: [usize; 4], labels: &[usize]) -> Result<StepOutput, TrainError> {
        let mut ws = std::mem::take(&mut self.ws);
        if self.profile && ws.profile.is_none() {
            ws.profile = Some(vec![[0.0; 2]; self.steps.len() + 1]);
        }
        let mut pgrads: Vec<Vec<T>> = self.params.iter_mut().map(|p| std::mem::take(&mut p.grad)).collect();
        let mode = Mode::Train { counter: self.counter };
        let result = self.pool.install(|| {
            for g in &mut pgrads {
                g.fill(T::ZERO);
            }
            self.forward(&mut ws, input, shape, mode)?;
            let (value, dlogits) = self.loss_of(&ws, shape[0], labels, true)?;
            self.backward(&mut ws, &mut pgrads, dlogits.expect("asked for the gradient"), mode)?;
            Ok(value)
        });
        for (p, g) in self.params.iter_mut().zip(pgrads) {
            p.grad = g;
        }
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                self.ws = ws;
                return Err(e);
            }
        };
        self.update_running_stats(&ws);
        if let Some(p) = ws.profile.as_mut() {
            ws.profiled_steps = match ws.profiled_steps {
                None => {
                    p.iter_mut().for_each(|t| *t = [0.0; 2]);
                    Some(0)
                }
                Some(n) => Some(n + 1),
            };
        }
        self.ws = ws;
        self.counter += 1;
        Ok(StepOutput { loss: value.loss, correct_top1: value.top1, correct_top5: value.top5, batch: shape[0] })
    }

    /// The loss `step` would report for this batch (training mode: batch statistics, the
    /// dropout masks of the next step), without backward and without touching the running
    /// statistics. For finite differences and evaluation in training mode.
    pub fn loss(&self, input: &[T], shape: [usize; 4], labels: &[usize]) -> Result<f64, TrainError> {
        let mut ws = Workspace::default();
        self.pool.install(|| {
            self.forward(&mut ws, input, shape, Mode::Train { counter: self.counter })?;
            Ok(self.loss_of(&ws, shape[0], labels, false)?.0.loss)
        })
    }

    /// Inference-mode logits `[N, K]` row-major (BatchNorm with running statistics, no
    /// dropout).
    pub fn predict(&self, input: &[T], shape: [usize; 4]) -> Result<Vec<T>, TrainError> {
        let mut ws = Workspace::default();
        self.pool.install(|| self.forward(&mut ws, input, shape, Mode::Inference))?;
        Ok(std::mem::take(&mut ws.acts[self.logits].data))
    }

    /// Writes the current params and buffers into the graph's initializers of the same
    /// names (as f32), e.g. before exporting the trained model.
    pub fn write_to_graph(&self, graph: &mut Graph) -> Result<(), TrainError> {
        let tensors = self
            .params
            .iter()
            .map(|p| (&p.name, &p.shape, &p.value))
            .chain(self.buffers.iter().map(|b| (&b.name, &b.shape, &b.value)));
        for (name, shape, value) in tensors {
            let id = graph
                .value_id(name)
                .filter(|&id| graph.values[id].initializer.is_some())
                .ok_or_else(|| TrainError::UnknownName { what: "initializer", name: name.clone() })?;
            let old = graph.values[id].initializer.as_ref().expect("filtered");
            if old.shape() != shape.as_slice() {
                return Err(TrainError::Initializer {
                    name: name.clone(),
                    detail: format!("has shape {:?} in the graph but {shape:?} in the program", old.shape()),
                });
            }
            let t = Arc::new(Tensor::from_f32(shape.clone(), to_f32(value)));
            graph.values[id].fact = Fact::constant(t.clone());
            graph.values[id].initializer = Some(t);
        }
        Ok(())
    }

    // ---- forward ---------------------------------------------------------------------------

    fn check_input(&self, input: &[T], shape: [usize; 4]) -> Result<(), TrainError> {
        let bad = |detail: String| TrainError::Input { name: self.input_name.clone(), detail };
        if let Some(declared) = &self.input_shape {
            if !shape_fits(declared, &shape) {
                return Err(bad(format!("expected shape {}, got {shape:?}", fmt_shape(declared))));
            }
        }
        if numel(&shape) != input.len() {
            return Err(bad(format!("shape {shape:?} needs {} values, got {}", numel(&shape), input.len())));
        }
        Ok(())
    }

    /// Shape and data of a float value.
    fn real<'a>(&'a self, acts: &'a [Act<T>], id: ValueId) -> Result<(&'a [usize], &'a [T]), TrainError> {
        match &self.sources[id] {
            Source::Act => Ok((&acts[id].shape, &acts[id].data)),
            Source::Param(p) => Ok((&self.params[*p].shape, &self.params[*p].value)),
            Source::Buffer(b) => Ok((&self.buffers[*b].shape, &self.buffers[*b].value)),
            Source::Const { tensor, real: Some(r) } => Ok((tensor.shape(), r)),
            Source::Const { tensor, real: None } => Err(TrainError::Input {
                name: format!("value {id}"),
                detail: format!("is {} where float data is needed", tensor.dtype()),
            }),
        }
    }

    /// Any value as an f32 tensor (for reference kernels and shape inference).
    fn tensor(&self, ws: &Workspace<T>, id: ValueId) -> Tensor {
        match &self.sources[id] {
            Source::Const { tensor, .. } => (**tensor).clone(),
            Source::Act => match ws.aux.get(&id) {
                Some(t) => t.clone(),
                None => Tensor::from_f32(ws.acts[id].shape.clone(), to_f32(&ws.acts[id].data)),
            },
            Source::Param(p) => Tensor::from_f32(self.params[*p].shape.clone(), to_f32(&self.params[*p].value)),
            Source::Buffer(b) => Tensor::from_f32(self.buffers[*b].shape.clone(), to_f32(&self.buffers[*b].value)),
        }
    }

    /// Which activations stay on batch lanes (`[C, H, W, N]`, [`lanes`]) for an input of
    /// `shape`, so that consecutive small-plane convs do not transpose between layouts: a
    /// 4-D f32 activation of a [`lanes::lane_batch`] (not the logits) whose every reader
    /// takes lanes: a conv that runs there ([`lanes::accepts_lanes`], not Winograd), a
    /// BatchNorm, Relu or same-shape Add whose output may stay on lanes too, or a
    /// GlobalAveragePool. Whether a value is on lanes is then up to its producer: a conv on
    /// lanes writes them, BatchNorm and Relu keep their input's layout, an Add with one
    /// operand on lanes moves the other there; everything else reads and writes NCHW.
    fn lane_values(&self, shape: [usize; 4]) -> Vec<bool> {
        let nv = self.sources.len();
        let mut allowed = vec![false; nv];
        if !self.lanes || !lanes::lane_batch(shape[0]) {
            return allowed;
        }
        // Shapes through the ops that can keep lanes (unknown past the others).
        let mut shapes: Vec<Option<Vec<usize>>> = vec![None; nv];
        shapes[self.input] = Some(shape.to_vec());
        for step in &self.steps {
            let (Some(out), Some(xs)) =
                (step.outputs.first().copied().flatten(), step.opt_input(0).and_then(|id| shapes[id].clone()))
            else {
                continue;
            };
            shapes[out] = match &step.kind {
                Kind::Conv(c) => self.static_conv_geometry(step, c, &xs).map(|g| g.out_shape),
                Kind::BatchNorm { .. } | Kind::Relu => Some(xs),
                Kind::Add { .. } => {
                    step.opt_input(1).and_then(|id| shapes[id].as_ref()).filter(|b| **b == xs).map(|_| xs.clone())
                }
                _ => None,
            };
        }
        // Readers come after their inputs: decide from the last value back.
        for step in self.steps.iter().rev() {
            let Some(v) = step.outputs.first().copied().flatten() else { continue };
            let Some(vs) = shapes[v].as_deref() else { continue };
            let takes_lanes = |&(si, slot): &(usize, usize)| {
                let reader = &self.steps[si];
                let out_ok = reader.outputs.first().copied().flatten().is_some_and(|o| allowed[o]);
                match &reader.kind {
                    Kind::Conv(c) => {
                        slot == 0
                            && self.static_conv_geometry(reader, c, vs).is_some_and(|g| {
                                lanes::accepts_lanes(&g) && !(self.winograd && conv::winograd_applies(&g))
                            })
                    }
                    Kind::BatchNorm { .. } => slot == 0 && out_ok,
                    Kind::Relu | Kind::Add { .. } => out_ok,
                    Kind::GlobalAveragePool => true,
                    _ => false,
                }
            };
            allowed[v] = vs.len() == 4
                && vs[0] == shape[0]
                && v != self.logits
                && matches!(self.sources[v], Source::Act)
                && !self.consumers[v].is_empty()
                && self.consumers[v].iter().all(takes_lanes);
        }
        allowed
    }

    /// A conv step's geometry for input shape `xs`, when its weight and bias are not
    /// activations (their shapes are known before the step runs).
    fn static_conv_geometry(&self, step: &Step, c: &Conv, xs: &[usize]) -> Option<ConvGeometry> {
        let shape_of = |id: ValueId| -> Option<&[usize]> {
            match &self.sources[id] {
                Source::Param(p) => Some(&self.params[*p].shape),
                Source::Buffer(b) => Some(&self.buffers[*b].shape),
                Source::Const { tensor, .. } => Some(tensor.shape()),
                Source::Act => None,
            }
        };
        let w = shape_of(step.opt_input(1)?)?;
        let bias = match step.opt_input(2) {
            Some(id) => Some(numel(shape_of(id)?)),
            None => None,
        };
        conv_geometry(&c.window, c.group, xs, w, bias).ok()
    }

    /// Runs every step; leaves the activations (and saved state) in `ws`.
    fn forward(&self, ws: &mut Workspace<T>, input: &[T], shape: [usize; 4], mode: Mode) -> Result<(), TrainError> {
        self.check_input(input, shape)?;
        ws.acts.resize_with(self.sources.len(), Act::default);
        ws.saved.resize_with(self.steps.len(), Saved::default);
        ws.aux.clear();
        let isa = kernels::active_isa();
        if !matches!(&ws.lane_plan, Some((s, i, _)) if *s == shape && *i == isa) {
            ws.lane_plan = Some((shape, isa, self.lane_values(shape)));
        }
        let x = &mut ws.acts[self.input];
        x.shape = shape.to_vec();
        x.data.clear();
        x.data.extend_from_slice(input);
        x.lanes = false;
        for (si, step) in self.steps.iter().enumerate() {
            let start = std::time::Instant::now();
            self.forward_step(ws, si, step, mode)?;
            if let Some(p) = ws.profile.as_mut() {
                p[si][0] += start.elapsed().as_secs_f64();
            }
        }
        Ok(())
    }

    fn forward_step(&self, ws: &mut Workspace<T>, si: usize, step: &Step, mode: Mode) -> Result<(), TrainError> {
        if let Kind::Reference = step.kind {
            return self.forward_reference(ws, step);
        }
        let out_id = step.output()?;
        let mut out = std::mem::take(&mut ws.acts[out_id]);
        let result = self.forward_native(ws, si, step, mode, &mut out);
        ws.acts[out_id] = out;
        result
    }

    fn forward_native(
        &self,
        ws: &mut Workspace<T>,
        si: usize,
        step: &Step,
        mode: Mode,
        out: &mut Act<T>,
    ) -> Result<(), TrainError> {
        let acts = &ws.acts;
        let (xs, x) = self.real(acts, step.input(0)?)?;
        let e = |err| step.err(err);
        // Batch lanes: which inputs are on them, which outputs may be.
        let lane_in = |slot: usize| step.opt_input(slot).is_some_and(|id| acts[id].lanes);
        let lane_ok = |id: ValueId| ws.lane_plan.as_ref().is_some_and(|p| p.2[id]);
        let lane_aware = matches!(
            step.kind,
            Kind::Conv(_) | Kind::BatchNorm { .. } | Kind::Relu | Kind::Add { .. } | Kind::GlobalAveragePool
        );
        if !lane_aware && step.inputs.iter().flatten().any(|&id| acts[id].lanes) {
            return Err(step.unsupported("an input is on batch lanes (internal error: the lane plan let it through)"));
        }
        out.lanes = false;
        let mut set_shape = |shape: Vec<usize>| {
            out.data.resize(numel(&shape), T::ZERO);
            out.shape = shape;
        };
        let mut saved = Saved::Nothing;
        match &step.kind {
            Kind::Conv(c) => {
                let (wsh, w) = self.real(acts, step.input(1)?)?;
                let b = step.opt_input(2).map(|id| self.real(acts, id)).transpose()?;
                if let Some((bs, _)) = b {
                    if bs.len() != 1 {
                        return Err(e(OpError::shape(format!("B has shape {bs:?}, expected [M]"))));
                    }
                }
                let geom = conv_geometry(&c.window, c.group, xs, wsh, b.map(|b| b.1.len())).map_err(e)?;
                set_shape(geom.out_shape.clone());
                let x_lanes = lane_in(0);
                // A network's first conv starts the lanes when its output may stay there: its
                // few input channels are cheap to transpose, and mnist-v1's stage 1 then runs on
                // lanes at 28×28 (its convs no faster than the direct kernel's, but no
                // transposes into stage 2; 2 % per step over 4 alternated runs, within noise).
                let lanes_start =
                    |g: &ConvGeometry| g.c <= 4 && lanes::accepts_lanes(g) && step.output().is_ok_and(&lane_ok);
                if x_lanes && !lanes::accepts_lanes(&geom) {
                    return Err(step.unsupported("input on batch lanes the conv cannot take (internal error)"));
                }
                match (self.winograd && !x_lanes && conv::winograd_applies(&geom), T::as_f32(x), T::as_f32(w)) {
                    (true, Some(x), Some(w)) => {
                        let mut fast = match std::mem::take(&mut ws.saved[si]) {
                            Saved::Winograd(f) if f.fits(&geom) => f,
                            _ => Box::new(conv::FastConv::new(&geom)),
                        };
                        let b = b.and_then(|b| T::as_f32(b.1));
                        fast.forward(&geom, x, w, b, T::as_f32_mut(&mut out.data).expect("f32 program"));
                        saved = Saved::Winograd(fast);
                    }
                    (_, Some(x32), Some(w32)) if x_lanes || lanes::lanes_applies(&geom) || lanes_start(&geom) => {
                        let mut l = match std::mem::take(&mut ws.saved[si]) {
                            Saved::Lanes(l) if l.fits(&geom) => l,
                            _ => Box::new(lanes::LaneConv::new(&geom)),
                        };
                        let b = b.and_then(|b| T::as_f32(b.1));
                        let y_lanes = lane_ok(step.output()?) && lanes::lane_batch(geom.n);
                        let y = T::as_f32_mut(&mut out.data).expect("f32 program");
                        l.forward(&geom, x32, x_lanes, w32, b, y, y_lanes);
                        out.lanes = y_lanes;
                        saved = Saved::Lanes(l);
                    }
                    (_, Some(x32), Some(w32)) if conv::direct_applies(&geom) => {
                        let direct = match std::mem::take(&mut ws.saved[si]) {
                            Saved::Direct(d) if d.fits(&geom) => Some(d),
                            _ => conv::DirectTrain::new(&geom).map(Box::new),
                        };
                        match direct {
                            Some(mut d) => {
                                let b = b.and_then(|b| T::as_f32(b.1));
                                d.forward(&geom, x32, w32, b, T::as_f32_mut(&mut out.data).expect("f32 program"));
                                saved = Saved::Direct(d);
                            }
                            None => {
                                conv::forward(&ConvDims::new(&geom), x, w, b.map(|b| b.1), &mut out.data, &mut ws.conv)
                            }
                        }
                    }
                    _ => conv::forward(&ConvDims::new(&geom), x, w, b.map(|b| b.1), &mut out.data, &mut ws.conv),
                }
            }
            Kind::BatchNorm { epsilon, inference, relu } => {
                let d = bn_view(xs, lane_in(0)).map_err(e)?;
                out.lanes = lane_in(0);
                let p = self.bn_operands(acts, step, d.c)?;
                set_shape(xs.to_vec());
                match mode {
                    Mode::Train { .. } if !inference => {
                        if d.n * d.plane < 2 {
                            return Err(e(OpError::shape(format!(
                                "training-mode BatchNormalization needs more than one value per channel, X is {xs:?}"
                            ))));
                        }
                        let stats = batchnorm::forward_train(d, x, p[0], p[1], *epsilon, *relu, &mut out.data);
                        saved = Saved::BatchNorm(stats);
                    }
                    _ => batchnorm::forward_inference(d, x, p[0], p[1], p[2], p[3], *epsilon, *relu, &mut out.data),
                }
            }
            Kind::Relu => {
                set_shape(xs.to_vec());
                elementwise::relu_forward(x, &mut out.data);
                out.lanes = lane_in(0);
            }
            Kind::MaxPool(window) => {
                let (axes, shape) = pool_axes(window, xs).map_err(e)?;
                let len = numel(&shape);
                set_shape(shape);
                let mut argmax = match std::mem::take(&mut ws.saved[si]) {
                    Saved::Argmax(v) => v,
                    _ => Vec::new(),
                };
                argmax.resize(len, 0);
                pool::max_forward(&axes, x, &mut out.data, &mut argmax);
                saved = Saved::Argmax(argmax);
            }
            Kind::AveragePool { window, count_include_pad } => {
                let (axes, shape) = pool_axes(window, xs).map_err(e)?;
                set_shape(shape);
                pool::avg_forward(&axes, &pool::avg_divisors(&axes, *count_include_pad), x, &mut out.data);
            }
            Kind::GlobalAveragePool => {
                spatial_input(xs).map_err(e)?;
                let mut shape = xs[..2].to_vec();
                shape.resize(xs.len(), 1);
                set_shape(shape);
                let plane = xs[2..].iter().product();
                match (lane_in(0), T::as_f32(x)) {
                    (true, Some(x)) => lanes::global_avg_forward(
                        xs[0],
                        xs[1],
                        plane,
                        x,
                        T::as_f32_mut(&mut out.data).expect("f32 program"),
                    ),
                    _ => pool::global_avg_forward(plane, x, &mut out.data),
                }
            }
            Kind::Add { relu } => {
                let (bs, b) = self.real(acts, step.input(1)?)?;
                let (la, lb) = (lane_in(0), lane_in(1));
                if xs == bs && la != lb {
                    // One operand on batch lanes: the other joins it there.
                    set_shape(xs.to_vec());
                    let (on, off) = if la { (x, b) } else { (b, x) };
                    let (Some(on), Some(off), Ok(shape)) = (T::as_f32(on), T::as_f32(off), <[usize; 4]>::try_from(xs))
                    else {
                        unreachable!("batch lanes hold 4-D f32 tensors")
                    };
                    lanes::nchw_to_lanes(off, shape, &mut ws.lane_tmp);
                    let y = T::as_f32_mut(&mut out.data).expect("f32 program");
                    elementwise::add_forward(on, &ws.lane_tmp, *relu, y);
                    out.lanes = true;
                } else if xs == bs {
                    set_shape(xs.to_vec());
                    elementwise::add_forward(x, b, *relu, &mut out.data);
                    out.lanes = la;
                } else if la || lb {
                    return Err(step.unsupported("a broadcast operand on batch lanes (internal error)"));
                } else {
                    let shape = crate::ops::binary::broadcast_concrete(&[xs, bs]).map_err(e)?;
                    set_shape(shape.clone());
                    elementwise::add_broadcast_forward(x, xs, b, bs, &shape, &mut out.data);
                    if *relu {
                        elementwise::relu_in_place(&mut out.data);
                    }
                }
            }
            Kind::View => {
                let shape = self.view_shape(ws, step, xs)?;
                if numel(&shape) != x.len() {
                    return Err(e(OpError::shape(format!("cannot view {xs:?} as {shape:?}"))));
                }
                out.shape = shape;
                out.data.clear();
                out.data.extend_from_slice(x);
            }
            Kind::Dropout { ratio } => {
                set_shape(xs.to_vec());
                match mode {
                    Mode::Train { counter } if *ratio > 0.0 => {
                        let key = elementwise::dropout_key(self.seed, step.node_index, counter);
                        elementwise::dropout_forward(key, *ratio, x, &mut out.data);
                        saved = Saved::Dropout { key };
                    }
                    _ => out.data.copy_from_slice(x),
                }
            }
            Kind::Gemm(gm) => {
                let (bs, b) = self.real(acts, step.input(1)?)?;
                let c = step.opt_input(2).map(|id| self.real(acts, id)).transpose()?;
                if c.is_none() && gm.c_required {
                    return Err(e(OpError::MissingInput(2)));
                }
                let d = gemm_dims(gm, xs, bs, c.map(|c| c.0)).map_err(e)?;
                set_shape(vec![d.m, d.n]);
                dense::forward(&d, x, b, c.map(|c| c.1), &mut out.data);
            }
            Kind::MatMul => {
                let (bs, b) = self.real(acts, step.input(1)?)?;
                let (d, shape) = matmul_dims(xs, bs).map_err(e)?;
                set_shape(shape);
                dense::forward(&d, x, b, None, &mut out.data);
            }
            Kind::Reference => unreachable!("handled by forward_reference"),
        }
        ws.saved[si] = saved;
        Ok(())
    }

    /// scale, B, mean, var of a BatchNormalization, each checked to hold `c` values.
    fn bn_operands<'a>(&'a self, acts: &'a [Act<T>], step: &Step, c: usize) -> Result<[&'a [T]; 4], TrainError> {
        let mut out: [&[T]; 4] = [&[]; 4];
        for (i, name) in ["scale", "B", "mean", "var"].iter().enumerate() {
            let (s, v) = self.real(acts, step.input(i + 1)?)?;
            if v.len() != c {
                return Err(step.err(OpError::shape(format!(
                    "{name} has shape {s:?}; training supports per-channel statistics [{c}] only"
                ))));
            }
            out[i] = v;
        }
        Ok(out)
    }

    /// The output shape of a view op, from the op's own shape inference on concrete facts.
    fn view_shape(&self, ws: &Workspace<T>, step: &Step, xs: &[usize]) -> Result<Vec<usize>, TrainError> {
        let facts: Vec<Option<Fact>> = step
            .inputs
            .iter()
            .enumerate()
            .map(|(slot, id)| {
                id.map(|id| match (&self.sources[id], slot) {
                    (_, 0) => Fact::known(DType::F32, xs),
                    (Source::Const { tensor, .. }, _) => Fact::constant(tensor.clone()),
                    _ => Fact::constant(Arc::new(self.tensor(ws, id))),
                })
            })
            .collect();
        let refs: Vec<Option<&Fact>> = facts.iter().map(Option::as_ref).collect();
        let out = step.op.def().infer(&refs).map_err(|e| step.err(e))?;
        out.first()
            .and_then(Fact::concrete_shape)
            .ok_or_else(|| step.unsupported("the output shape is not known from the input shape and constants"))
    }

    fn forward_reference(&self, ws: &mut Workspace<T>, step: &Step) -> Result<(), TrainError> {
        if step.inputs.iter().flatten().any(|&id| ws.acts[id].lanes) {
            return Err(step.unsupported("an input is on batch lanes (internal error: the lane plan let it through)"));
        }
        let tensors: Vec<Option<Tensor>> = step.inputs.iter().map(|id| id.map(|id| self.tensor(ws, id))).collect();
        let refs: Vec<Option<&Tensor>> = tensors.iter().map(Option::as_ref).collect();
        let results = step.op.def().eval(&refs).map_err(|e| step.err(e))?;
        for (slot, t) in step.outputs.iter().zip(results) {
            let Some(id) = *slot else { continue };
            match t.data() {
                TensorData::F32(v) => {
                    ws.aux.remove(&id);
                    ws.acts[id] = Act { shape: t.shape().to_vec(), data: to_real(v), lanes: false };
                }
                _ => {
                    ws.aux.insert(id, t);
                }
            }
        }
        Ok(())
    }

    /// The loss of the logits in `ws` (and `∂loss/∂logits` when `with_grad`).
    fn loss_of(
        &self,
        ws: &Workspace<T>,
        batch: usize,
        labels: &[usize],
        with_grad: bool,
    ) -> Result<(crate::train::loss::LossValue, Option<Vec<T>>), TrainError> {
        if labels.len() != batch {
            return Err(TrainError::LabelCount { got: labels.len(), batch });
        }
        let (shape, logits) = self.real(&ws.acts, self.logits)?;
        if shape.first() != Some(&batch) || (batch == 0 && !logits.is_empty()) {
            return Err(TrainError::Logits { name: self.logits_name.clone(), shape: shape.to_vec(), batch });
        }
        let k = logits.len().checked_div(batch).unwrap_or(0);
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= k) {
            return Err(TrainError::LabelRange { label, index, classes: k });
        }
        let mut grad = with_grad.then(|| vec![T::ZERO; logits.len()]);
        let value = softmax_cross_entropy(logits, batch, k, labels, self.label_smoothing, grad.as_deref_mut());
        Ok((value, grad))
    }

    // ---- backward --------------------------------------------------------------------------

    fn backward(
        &self,
        ws: &mut Workspace<T>,
        pgrads: &mut [Vec<T>],
        dlogits: Vec<T>,
        mode: Mode,
    ) -> Result<(), TrainError> {
        let start = std::time::Instant::now();
        let grads = &mut ws.grads;
        grads.bufs.resize_with(self.sources.len(), Vec::new);
        grads.fresh.clear();
        grads.fresh.resize(self.sources.len(), false);
        for (id, g) in grads.bufs.iter_mut().enumerate() {
            if self.needs_grad[id] && matches!(self.sources[id], Source::Act) {
                // Kept across steps, reallocated only when the size changes; not zeroed: the
                // first contribution overwrites it.
                let len = ws.acts[id].data.len();
                if g.len() != len {
                    g.clear();
                    g.resize(len, T::ZERO);
                }
                grads.fresh[id] = true;
            }
        }
        if !self.needs_grad[self.logits] {
            return Ok(());
        }
        grads.bufs[self.logits] = dlogits;
        grads.fresh[self.logits] = false;
        if let Some(p) = ws.profile.as_mut() {
            p[self.steps.len()][1] += start.elapsed().as_secs_f64();
        }
        for (si, step) in self.steps.iter().enumerate().rev().filter(|(_, s)| s.backward) {
            let start = std::time::Instant::now();
            let out = step.output()?;
            if std::mem::replace(&mut ws.grads.fresh[out], false) {
                // No consumer contributed: the gradient is zero.
                zeroed(&mut ws.grads.bufs[out], true);
            }
            let mut dy = std::mem::take(&mut ws.grads.bufs[out]);
            if matches!(step.kind, Kind::BatchNorm { relu: true, .. } | Kind::Add { relu: true }) {
                // The fused Relu's backward, in place: this node is the only user of `dy`.
                elementwise::relu_mask_in_place(&ws.acts[out].data, &mut dy);
            }
            let result = self.backward_step(ws, pgrads, si, step, &dy, mode);
            ws.grads.bufs[out] = dy;
            result?;
            if let Some(p) = ws.profile.as_mut() {
                p[si][1] += start.elapsed().as_secs_f64();
            }
        }
        Ok(())
    }

    /// Takes the gradient buffer of input `slot` out (None when it needs no gradient), with
    /// whether it is fresh (param gradients never are: they are zeroed once per step).
    fn take_grad(&self, step: &Step, slot: usize, grads: &mut Grads<T>, pgrads: &mut [Vec<T>]) -> Option<Taken<T>> {
        let id = step.opt_input(slot)?;
        if !step.kind.differentiable(slot) {
            return None;
        }
        match self.sources[id] {
            Source::Act if self.needs_grad[id] => Some((id, std::mem::take(&mut grads.bufs[id]), grads.fresh[id])),
            Source::Param(p) if self.params[p].trainable => Some((id, std::mem::take(&mut pgrads[p]), false)),
            _ => None,
        }
    }

    /// Puts a taken buffer back; it now holds a contribution (no longer fresh).
    fn put_grad(&self, taken: Option<Taken<T>>, grads: &mut Grads<T>, pgrads: &mut [Vec<T>]) {
        if let Some((id, g, _)) = taken {
            match self.sources[id] {
                Source::Param(p) => pgrads[p] = g,
                _ => {
                    grads.bufs[id] = g;
                    grads.fresh[id] = false;
                }
            }
        }
    }

    fn backward_step(
        &self,
        ws: &mut Workspace<T>,
        pgrads: &mut [Vec<T>],
        si: usize,
        step: &Step,
        dy: &[T],
        mode: Mode,
    ) -> Result<(), TrainError> {
        let Workspace { acts, grads, saved, conv: conv_scratch, .. } = ws;
        let acts: &[Act<T>] = acts;
        let (xs, x) = self.real(acts, step.input(0)?)?;
        let e = |err| step.err(err);
        match &step.kind {
            Kind::Conv(c) => {
                let (wsh, w) = self.real(acts, step.input(1)?)?;
                let bias_len = step.opt_input(2).map(|id| self.real(acts, id).map(|b| b.1.len())).transpose()?;
                let geom = conv_geometry(&c.window, c.group, xs, wsh, bias_len).map_err(e)?;
                let mut gx = self.take_grad(step, 0, grads, pgrads);
                let mut gw = self.take_grad(step, 1, grads, pgrads);
                let mut gb = self.take_grad(step, 2, grads, pgrads);
                let dx_fresh = gx.as_ref().is_some_and(|g| g.2);
                // Batch lanes when the forward ran so: dX and dW there, dB below.
                if let Saved::Lanes(l) = &mut saved[si] {
                    let (Some(x32), Some(w32), Some(dy32)) = (T::as_f32(x), T::as_f32(w), T::as_f32(dy)) else {
                        unreachable!("batch lanes run in f32 programs only")
                    };
                    let (x_lanes, dy_lanes) = (acts[step.input(0)?].lanes, acts[step.output()?].lanes);
                    let dx = gx.as_mut().map(|g| T::as_f32_mut(&mut g.1).expect("f32 program"));
                    let dw = gw.as_mut().map(|g| T::as_f32_mut(&mut g.1).expect("f32 program"));
                    l.backward(&geom, x32, w32, dy32, dy_lanes, dx, x_lanes, dx_fresh, dw);
                    if let Some(g) = gb.as_mut() {
                        if dy_lanes {
                            lanes::bias_grad(dy32, geom.m, T::as_f32_mut(&mut g.1).expect("f32 program"));
                        } else {
                            let d = ConvDims::new(&geom);
                            conv::backward(&d, x, w, dy, None, false, None, Some(g.1.as_mut_slice()), conv_scratch);
                        }
                    }
                    for t in [gx, gw, gb] {
                        self.put_grad(t, grads, pgrads);
                    }
                    return Ok(());
                }
                // Winograd when the forward ran so: dW (and dB) by im2col, then dX. The direct
                // kernel when the forward ran it: dW from it, dX too where it applies.
                let (fast, mut direct) = match &mut saved[si] {
                    Saved::Winograd(f) => (Some(f), None),
                    Saved::Direct(d) => (None, Some(d)),
                    _ => (None, None),
                };
                let kernel_dx = fast.is_some() || direct.as_ref().is_some_and(|d| d.has_input_grad());
                let (gx_exact, gx_kernel) = if kernel_dx { (None, gx.as_mut()) } else { (gx.as_mut(), None) };
                let (gw_exact, gw_kernel) = if direct.is_some() { (None, gw.as_mut()) } else { (gw.as_mut(), None) };
                conv::backward(
                    &ConvDims::new(&geom),
                    x,
                    w,
                    dy,
                    gx_exact.map(|g| g.1.as_mut_slice()),
                    dx_fresh,
                    gw_exact.map(|g| g.1.as_mut_slice()),
                    gb.as_mut().map(|g| g.1.as_mut_slice()),
                    conv_scratch,
                );
                if gx_kernel.is_some() || gw_kernel.is_some() {
                    let (Some(x), Some(w), Some(dy)) = (T::as_f32(x), T::as_f32(w), T::as_f32(dy)) else {
                        unreachable!("Winograd and the direct kernel run in f32 programs only")
                    };
                    if let Some(g) = gx_kernel {
                        let dx = T::as_f32_mut(&mut g.1).expect("f32 program");
                        match (fast, direct.as_deref_mut()) {
                            (Some(fast), _) => fast.input_grad(&geom, w, dy, dx, dx_fresh),
                            (None, Some(direct)) => direct.input_grad(&geom, w, dy, dx, dx_fresh),
                            (None, None) => unreachable!("kernel_dx only with one of them"),
                        }
                    }
                    if let (Some(g), Some(direct)) = (gw_kernel, direct) {
                        direct.filter_grad(&geom, x, dy, T::as_f32_mut(&mut g.1).expect("f32 program"));
                    }
                }
                for t in [gx, gw, gb] {
                    self.put_grad(t, grads, pgrads);
                }
            }
            Kind::BatchNorm { epsilon, inference, .. } => {
                let d = bn_view(xs, acts[step.input(0)?].lanes).map_err(e)?;
                let p = self.bn_operands(acts, step, d.c)?;
                let mut gx = self.take_grad(step, 0, grads, pgrads);
                let mut gg = self.take_grad(step, 1, grads, pgrads);
                let mut gb = self.take_grad(step, 2, grads, pgrads);
                let dx_fresh = gx.as_ref().is_some_and(|g| g.2);
                let (dx, dg, db) = (
                    gx.as_mut().map(|g| g.1.as_mut_slice()),
                    gg.as_mut().map(|g| g.1.as_mut_slice()),
                    gb.as_mut().map(|g| g.1.as_mut_slice()),
                );
                match (&saved[si], mode) {
                    (Saved::BatchNorm(stats), Mode::Train { .. }) if !inference => {
                        batchnorm::backward_train(d, x, p[0], stats, dy, dx, dx_fresh, dg, db)
                    }
                    _ => batchnorm::backward_inference(d, x, p[0], p[2], p[3], *epsilon, dy, dx, dx_fresh, dg, db),
                }
                for t in [gx, gg, gb] {
                    self.put_grad(t, grads, pgrads);
                }
            }
            Kind::Relu => {
                self.with_grad(step, 0, grads, pgrads, |dx, fresh| elementwise::relu_backward(x, dy, dx, fresh))
            }
            Kind::MaxPool(window) => {
                let (axes, _) = pool_axes(window, xs).map_err(e)?;
                let Saved::Argmax(argmax) = &saved[si] else {
                    return Err(step.unsupported("backward without a training forward"));
                };
                self.with_grad(step, 0, grads, pgrads, |dx, fresh| pool::max_backward(&axes, argmax, dy, dx, fresh));
            }
            Kind::AveragePool { window, count_include_pad } => {
                let (axes, _) = pool_axes(window, xs).map_err(e)?;
                let divisors = pool::avg_divisors(&axes, *count_include_pad);
                self.with_grad(step, 0, grads, pgrads, |dx, fresh| {
                    pool::avg_backward(&axes, &divisors, dy, zeroed(dx, fresh))
                });
            }
            Kind::GlobalAveragePool => {
                let plane = xs[2..].iter().product();
                let on_lanes = acts[step.input(0)?].lanes;
                self.with_grad(step, 0, grads, pgrads, |dx, fresh| match (on_lanes, T::as_f32(dy)) {
                    (true, Some(dy)) => {
                        let dx = T::as_f32_mut(dx).expect("f32 program");
                        lanes::global_avg_backward(xs[0], xs[1], plane, dy, dx, fresh)
                    }
                    _ => pool::global_avg_backward(plane, dy, dx, fresh),
                });
            }
            Kind::Add { .. } => {
                // With a fused Relu, `dy` arrives masked (see `backward`).
                let out = &acts[step.output()?];
                let out_shape = &out.shape;
                for slot in 0..2 {
                    let id = step.input(slot)?;
                    let (s, _) = self.real(acts, id)?;
                    let s = s.to_vec();
                    let moved = out.lanes && !acts[id].lanes;
                    self.with_grad(step, slot, grads, pgrads, |dx, fresh| {
                        if moved {
                            // An NCHW operand the forward moved onto lanes: its gradient back.
                            let (Some(dy), Ok(shape)) = (T::as_f32(dy), <[usize; 4]>::try_from(s.as_slice())) else {
                                unreachable!("batch lanes hold 4-D f32 tensors")
                            };
                            lanes::lanes_to_nchw(dy, shape, T::as_f32_mut(dx).expect("f32 program"), !fresh)
                        } else if s == *out_shape {
                            elementwise::accumulate(dy, dx, fresh)
                        } else {
                            elementwise::broadcast_backward(&s, out_shape, dy, zeroed(dx, fresh))
                        }
                    });
                }
            }
            Kind::View => self.with_grad(step, 0, grads, pgrads, |dx, fresh| elementwise::accumulate(dy, dx, fresh)),
            Kind::Dropout { ratio } => {
                let key = match &saved[si] {
                    Saved::Dropout { key } => Some(*key),
                    _ => None,
                };
                self.with_grad(step, 0, grads, pgrads, |dx, fresh| match key {
                    Some(key) => elementwise::dropout_backward(key, *ratio, dy, zeroed(dx, fresh)),
                    None => elementwise::accumulate(dy, dx, fresh),
                });
            }
            Kind::Gemm(gm) => {
                let (bs, b) = self.real(acts, step.input(1)?)?;
                let c_shape = step.opt_input(2).map(|id| self.real(acts, id).map(|c| c.0.to_vec())).transpose()?;
                let d = gemm_dims(gm, xs, bs, c_shape.as_deref()).map_err(e)?;
                self.with_grad(step, 0, grads, pgrads, |da, fresh| dense::backward_a(&d, b, dy, zeroed(da, fresh)));
                self.with_grad(step, 1, grads, pgrads, |db, fresh| dense::backward_b(&d, x, dy, zeroed(db, fresh)));
                self.with_grad(step, 2, grads, pgrads, |dc, fresh| dense::backward_c(&d, dy, zeroed(dc, fresh)));
            }
            Kind::MatMul => {
                let (bs, b) = self.real(acts, step.input(1)?)?;
                let (d, _) = matmul_dims(xs, bs).map_err(e)?;
                self.with_grad(step, 0, grads, pgrads, |da, fresh| dense::backward_a(&d, b, dy, zeroed(da, fresh)));
                self.with_grad(step, 1, grads, pgrads, |db, fresh| dense::backward_b(&d, x, dy, zeroed(db, fresh)));
            }
            Kind::Reference => {
                return Err(TrainError::NoBackward { node: step.name.clone(), op: step.op.onnx_type().into() })
            }
        }
        Ok(())
    }

    /// Runs `f` on the gradient buffer of input `slot` and whether it is fresh (`f` must
    /// then overwrite it), if it needs one.
    fn with_grad(
        &self,
        step: &Step,
        slot: usize,
        grads: &mut Grads<T>,
        pgrads: &mut [Vec<T>],
        f: impl FnOnce(&mut [T], bool),
    ) {
        let mut taken = self.take_grad(step, slot, grads, pgrads);
        if let Some((_, g, fresh)) = taken.as_mut() {
            f(g, *fresh);
        }
        self.put_grad(taken, grads, pgrads);
    }

    /// `running = momentum·running + (1 − momentum)·batch`, with the unbiased variance.
    fn update_running_stats(&mut self, ws: &Workspace<T>) {
        let m = self.bn_momentum;
        for (si, step) in self.steps.iter().enumerate() {
            let (Kind::BatchNorm { inference: false, .. }, Some(Saved::BatchNorm(stats))) =
                (&step.kind, ws.saved.get(si))
            else {
                continue;
            };
            let count = step
                .inputs
                .first()
                .copied()
                .flatten()
                .map(|x| {
                    ws.acts[x].shape.iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, &d)| d).product::<usize>()
                })
                .unwrap_or(0) as f64;
            let unbias = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
            for (slot, batch, factor) in [(3, &stats.mean, 1.0), (4, &stats.var, unbias)] {
                let Some(Source::Buffer(b)) = step.opt_input(slot).map(|id| &self.sources[id]) else { continue };
                for (r, &s) in self.buffers[*b].value.iter_mut().zip(batch) {
                    *r = T::from_f64(m * r.to_f64() + (1.0 - m) * s * factor);
                }
            }
        }
    }
}

/// The f64 nearest to the decimal an f32 prints as: 0.9f32 becomes 0.9, not 0.8999999761…,
/// so an f64 program uses exactly the momentum and smoothing the user wrote.
fn decimal_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// The dropout ratio of a node: the `ratio` attribute (opset < 12) or the constant input 1
/// (opset ≥ 12; 0.5 when absent).
fn dropout_ratio(g: &Graph, node: &crate::graph::Node, d: &crate::ops::dropout::Dropout) -> Result<f64, TrainError> {
    let unsupported =
        |detail: String| TrainError::Unsupported { node: node.name.clone(), op: node.op.onnx_type().into(), detail };
    let ratio = if d.takes_ratio_input {
        match node.inputs.get(1).copied().flatten() {
            None => 0.5,
            Some(id) => match g.values[id].fact.value.as_deref().and_then(Tensor::as_f32) {
                Some([r]) => *r as f64,
                _ => return Err(unsupported("the ratio input must be a constant float scalar".into())),
            },
        }
    } else {
        d.ratio as f64
    };
    if !(0.0..1.0).contains(&ratio) {
        return Err(unsupported(format!("ratio {ratio} is outside [0, 1)")));
    }
    Ok(ratio)
}

impl<T: Real> Drop for TrainProgram<T> {
    /// With `RESNET_TRAIN_PROFILE` set, prints the time per step of every node (forward,
    /// backward) and the totals per op type to stderr, averaged over every step but the first.
    fn drop(&mut self) {
        let Some(profile) = self.ws.profile.as_ref() else { return };
        let steps = self.ws.profiled_steps.unwrap_or(0).max(1) as f64;
        let mut by_op: Vec<(String, [f64; 2])> = Vec::new();
        eprintln!("{:<40} {:<20} {:>22} {:>9} {:>9}", "node", "op", "input", "fwd ms", "bwd ms");
        for (step, t) in self.steps.iter().zip(profile) {
            let shape = step.inputs.first().copied().flatten().map(|id| format!("{:?}", self.ws.acts[id].shape));
            eprintln!(
                "{:<40} {:<20} {:>22} {:>9.3} {:>9.3}",
                step.name,
                step.op.onnx_type(),
                shape.unwrap_or_default(),
                1e3 * t[0] / steps,
                1e3 * t[1] / steps
            );
            let op = step.op.onnx_type().to_string();
            match by_op.iter_mut().find(|(o, _)| *o == op) {
                Some((_, acc)) => (0..2).for_each(|i| acc[i] += t[i]),
                None => by_op.push((op, *t)),
            }
        }
        if let Some(setup) = profile.last() {
            by_op.push(("(loss, zeroing grads)".into(), *setup));
        }
        eprintln!("per op type, ms per step:");
        for (op, t) in by_op {
            eprintln!("{op:<24} fwd {:>9.3} bwd {:>9.3}", 1e3 * t[0] / steps, 1e3 * t[1] / steps);
        }
    }
}
