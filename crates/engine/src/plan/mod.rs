//! The compiled plan: the production executor beside the reference interpreter
//! ([`crate::exec`]). [`Plan::compile`] walks a graph once (after whatever passes the caller
//! ran) and emits `Step`s: convolutions with packed filters and a fused bias / residual Add
//! / ReLU epilogue ([`conv`]), the FC Gemm on `gemm`, BatchNorm as a per-channel affine with
//! an optional fused ReLU (computed by the conv step that makes its input, as a second
//! output from a pass over it, when it reads a conv's result: ResNet v2's post-Add BN+ReLU;
//! `Step::post`), ReLU, Add, MaxPool and GlobalAveragePool as vectorized loops
//! ([`kernels`]); every other node runs its reference kernel, so every graph the reference
//! runs, the plan runs.
//!
//! Memory: buffer lifetimes are computed at compile time (the step after which each value
//! is dead); dead f32 buffers the pool lent go back to it and are reused by later steps and
//! later runs (the caller's inputs and reference-kernel outputs are dropped, so the pool does
//! not grow run after run). In the steady state a run allocates only its exact-size output
//! tensors, the per-call bookkeeping vectors, whatever reference-kernel fallbacks allocate
//! (none in a ResNet: Flatten/Reshape reuse their input's buffer), and the `gemm` crate's
//! packing workspace; im2col scratch is per thread and kept.
//!
//! Threads: the plan owns a rayon pool of `threads` workers; [`Plan::run`] runs inside it.
//! A batch of at least `threads` images runs as one part per thread, each part's steps on
//! its thread alone with a buffer pool of its own, when every step works image by image
//! ([`Plan::splits_batches`]; Keras ResNet-50 at batch 8 on 2 threads: 5–7 % faster than
//! splitting each step). Otherwise each step is split: convolutions into tiles (image ×
//! group × column panel × filter chunk), `gemm` single-threaded inside a tile, never nested.
//! On one thread (a plan of one, or one part of a split batch) the steps whose planes are at
//! least [`BY_IMAGE_MIN_PLANE`] positions run image by image, the rest batched: one image's
//! activations stay in the caches from one step to the next.

pub mod conv;
pub mod direct;
pub mod kernels;
mod team;
pub mod winograd;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use gemm::Parallelism;
use rayon::prelude::*;

use crate::error::{Error, OpError, Result};
use crate::exec::check_inputs;
use crate::fact::{Dim, Fact};
use crate::graph::{Graph, ValueId};
use crate::ops::binary::BinaryKind;
use crate::ops::global_pool::PoolKind;
use crate::ops::padding::{lift_to_3d, Window};
use crate::ops::shape::i64_list;
use crate::ops::Op;
use crate::plan::kernels::Residual;
use crate::tensor::{numel, DType, Tensor};

use conv::ConvKernel;
use winograd::Winograd;

/// How to compile a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Worker threads of the plan's pool; 0 = one per available core.
    pub threads: usize,
    /// Arithmetic of the convolutions.
    pub mode: Mode,
    /// [`Mode::Fast`]: fewest output tiles (of the conv's variant, 4×4 or 2×2; all images of
    /// a call together) for which a conv runs as Winograd; `None`: [`winograd::MIN_TILES`].
    /// Smaller calls run exact.
    pub winograd_min_tiles: Option<usize>,
    /// [`Mode::Fast`]: the Winograd variant of every conv that runs as Winograd, 4 for
    /// F(4×4, 3×3) or 2 for F(2×2, 3×3) (tests, experiments); `None`: F(4×4).
    pub winograd_tile: Option<usize>,
    /// [`Mode::Fast`]: whether a conv whose declared output has fewer than the minimum of
    /// 4×4 tiles per image (ResNet's 7×7 layers at 224×224) also gets F(2×2), for the calls
    /// with too few 4×4 tiles but enough 2×2 ones (see `winograd_filters`); without it those
    /// calls run exact. `None`: yes, unless [`kernels::fma512_full_rate`] — with two 512-bit
    /// FMAs a cycle (and the AVX-512 kernels running) the direct kernel outruns F(2×2)'s
    /// transforms there.
    pub winograd_small_f2: Option<bool>,
    /// Run every batch as one, each step split over the threads, even where [`Plan::run`]
    /// would run one part of the batch per thread ([`Plan::splits_batches`]), and every step
    /// on the whole batch (or part) even where it would run the large-plane steps image by
    /// image ([`BY_IMAGE_MIN_PLANE`]): tests of the kernels on several images, and
    /// comparisons.
    pub whole_batches: bool,
}

/// Arithmetic of the plan's convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Direct fp32 products (im2col + GEMM): within 1e-4 of max|y| of the reference.
    #[default]
    Exact,
    /// 3×3 stride-1 convolutions with at least [`winograd::MIN_CHANNELS`] input and output
    /// channels (and at most [`winograd::MAX_CHANNEL_PRODUCT`] of both multiplied) run as
    /// Winograd F(4×4,3×3) ([`winograd`]) when a call has at least [`winograd::MIN_TILES`]
    /// 4×4 output tiles: 2.25 instead of 9 multiplications per output and tap, with a larger
    /// rounding error; everything else as `Exact`.
    Fast,
    /// `Fast`, and the unpadded 1×1 convs and the F(2×2) Winograd products
    /// ([`Winograd::use_bf16`]; 3×3 convs of at least [`BF16_F2_CHANNELS`] channels take
    /// F(2×2) only) multiply in bfloat16: filters and inputs rounded to 8
    /// significant bits, products summed in float32 ([`direct::bf16`]; `vdpbf16ps`, twice the
    /// multiply-adds per instruction). Needs AVX-512 BF16 ([`Plan::compile`] refuses it
    /// elsewhere). Changes results by far more than `Fast` does: opt-in only. Rounding every
    /// 1×1 input also magnifies `Fast`'s small dependence on the batch (a call's tile count
    /// picks its Winograd variant): the same image's outputs may differ by ~1e-3 relative
    /// between batch sizes or thread counts.
    Bf16,
}

impl Mode {
    /// Whether 3×3 stride-1 convs may run as Winograd (`Fast` and `Bf16`).
    pub fn winograd(self) -> bool {
        self != Mode::Exact
    }
}

/// Smallest input plane (positions per channel) of the steps that a run on one thread takes
/// image by image when it has several images: from the first step up to the first that
/// reads a smaller plane (or no plane), each image runs alone ([`Plan::run`]), then the
/// values the rest reads are joined into a batch again. One image's activations stay in L2
/// and L3 from one step to the next where a batch of them would not (Keras ResNet-50's 56×56
/// × 256 is 3.2 MB per image), while the small planes keep the batch, where Winograd needs
/// the tiles of several images (ResNet at 224×224: the 56×56, 28×28 and 14×14 stages by
/// image, the 7×7 one batched). Batch 8 on 2 threads (one part of 4 images per thread),
/// `scripts/ab_bench.py`, against every step batched: Keras ResNet-50 fast 0.967 (5 rounds),
/// exact 0.981, bf16 0.926; resnet50-v2 fast 0.989, exact 0.979, bf16 0.925; ResNet-18 fast
/// 0.975. Where to stop (Keras, fast): everything by image measured 1.032 (the 7×7 layers'
/// Winograd at 4 tiles per image), through the 56×56 stage 0.990, through 28×28 0.954,
/// through 14×14 0.950–0.977; bf16: through 7×7 1.024 and through 56×56 1.048 against this.
pub const BY_IMAGE_MIN_PLANE: usize = 14 * 14;

/// What one step computes.
#[derive(Debug)]
enum Kind {
    /// inputs: `[X, W (run-time only), B (run-time only), residual]`.
    Conv(ConvKernel),
    /// A Conv in [`Mode::Fast`] with its Winograd filters, one kernel per variant in order of
    /// preference (F(4×4), then F(2×2) for small planes): a call runs on the first that
    /// [`Winograd::applies`], or on the exact kernel when none does. Inputs as `Conv`.
    Winograd(ConvKernel, Vec<Winograd>),
    /// `Y = alpha·A·op(B) + beta·C` with op(B) `[K, N]` packed in column panels
    /// ([`kernels::fc_panels_with`]) and `beta·C` a row `[N]` or a scalar.
    Fc {
        b: Vec<f32>,
        k: usize,
        n: usize,
        c: Option<Vec<f32>>,
        alpha: f32,
    },
    /// Per-channel affine (inference BatchNorm), optional ReLU; always a new buffer (in v2
    /// the un-normalized input is still needed by the next shortcut).
    Affine(Affine),
    Relu,
    /// Same-shape Add (broadcasting ones run the reference kernel), optional ReLU.
    Add {
        relu: bool,
        op: Op,
    },
    MaxPool {
        window: Window,
    },
    GlobalAverage {
        op: Op,
    },
    /// The node's reference kernel.
    Reference(Op),
}

/// One step of the plan.
#[derive(Debug)]
struct Step {
    /// The (first) node's name and op type, for errors and [`Plan::describe`].
    name: String,
    op_type: &'static str,
    /// The graph nodes folded into this step, in order (for `describe`).
    fused: Vec<&'static str>,
    kind: Kind,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    /// A conv step's second output: the BatchNorm (+ ReLU) that reads its result (ResNet
    /// v2's after each residual Add, whose sum the next shortcut still reads), computed in
    /// the same step by a vectorized pass over the finished output; `outputs[1]` is its
    /// value. The wide 1×1 kernel used to write it from its accumulators in the epilogue (a
    /// third stream of stores, the accumulators spilled for an out-of-line store): the pass
    /// measured faster on every configuration, resnet50-v2 fast b1/2t 0.983 (minima
    /// 0.979), b1/1t 0.993, b8/2t 0.974, exact b1/2t 0.952 (`scripts/ab_bench.py`, 3–6
    /// rounds), its 56×56 steps 2.71 → 2.59–2.62 ms in the quiet state and 6.4 → 5.1 in
    /// the noisy one (`--profile`).
    post: Option<Affine>,
    /// A strided unpadded 1×1 conv whose input another such conv subsamples the same way
    /// (ResNet v1's first block of a stage: the main branch and the projection shortcut):
    /// `(share, users)`: the subsampled input is made once per run in cache slot `share` and
    /// kept for the `users` steps that read it ([`Plan::run_steps`]).
    subsample_share: Option<(usize, usize)>,
}

/// Inference BatchNorm as a per-channel `x · scale + shift`, optionally followed by ReLU: a
/// step of its own ([`Kind::Affine`]) or a conv step's second output ([`Step::post`]).
#[derive(Debug)]
struct Affine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

/// One run's subsampled inputs of shared strided 1×1 convs ([`Step::subsample_share`]):
/// per share, the buffer and how many of its steps have yet to read it.
struct SubsampleCache {
    buffers: Vec<Option<(Vec<f32>, usize)>>,
}

/// Marks the conv steps that subsample the same input the same way (1×1 filters of the
/// direct kernels, equal strides above 1, no pads) as sharing it, and returns the number of
/// shares. Whether a call subsamples is decided at run time (`ConvKernel::subsampled`);
/// a step of a share that does not leaves the buffer to the others, and a buffer nobody
/// takes up goes back to the pool at the end of the run.
fn share_subsamples(steps: &mut [Step]) -> usize {
    let key = |step: &Step| -> Option<(ValueId, Vec<usize>)> {
        let k = match &step.kind {
            Kind::Conv(k) => k,
            _ => return None,
        };
        let w = k.w_shape.as_deref()?;
        let strides = k.window.strides.clone()?;
        let unpadded = k.window.pads.as_ref().is_none_or(|p| p.iter().all(|&v| v == 0))
            && k.window.auto_pad == crate::ops::padding::AutoPad::NotSet;
        let pointwise = w.len() == 4 && w[2] == 1 && w[3] == 1;
        (k.direct.is_some() && k.group == 1 && pointwise && unpadded && strides.iter().any(|&v| v > 1))
            .then_some((step.inputs.first().copied().flatten()?, strides))
    };
    let mut groups: HashMap<(ValueId, Vec<usize>), Vec<usize>> = HashMap::new();
    for (si, step) in steps.iter().enumerate() {
        if let Some(k) = key(step) {
            groups.entry(k).or_default().push(si);
        }
    }
    let mut shared: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    shared.sort();
    for (i, group) in shared.iter().enumerate() {
        for &si in group {
            steps[si].subsample_share = Some((i, group.len()));
        }
    }
    shared.len()
}

/// Inference BatchNorm as `x · scale + shift` per channel, when its statistics are constants
/// of `c` values each.
fn batchnorm_affine(graph: &Graph, node: &crate::graph::Node, epsilon: f32, c: usize) -> Option<(Vec<f32>, Vec<f32>)> {
    if node.inputs.len() != 5 || node.outputs.len() != 1 {
        return None;
    }
    let st: Vec<Vec<f32>> = (1..5).map(|s| const_f32(graph, node.inputs[s])).collect::<Option<_>>()?;
    if !st.iter().all(|v| v.len() == c) {
        return None;
    }
    let scale: Vec<f32> = (0..c).map(|i| st[0][i] / (st[3][i] + epsilon).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|i| st[1][i] - st[2][i] * scale[i]).collect();
    Some((scale, shift))
}

/// One step of a compiled plan, for profiles and `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// The name of the graph node the step computes (the first of its fused nodes).
    pub name: String,
    /// Kernel and static shape, e.g. `conv W[64, 64, 3, 3] group 1`, `fc 2048->1000`.
    pub kind: String,
    /// The op types fused into the step, e.g. `["Conv", "Add", "Relu"]`.
    pub fused: Vec<&'static str>,
}

/// A compiled graph; see the module docs. `Send + Sync`: one plan serves many threads.
pub struct Plan {
    /// The source graph's inputs/outputs/facts (for [`check_inputs`] and names) and constants.
    graph: Graph,
    steps: Vec<Step>,
    /// Per value: the last step that reads it (freed after it); `None` = never freed.
    last_use: Vec<Option<usize>>,
    pool: rayon::ThreadPool,
    threads: usize,
    /// One pool per part of a split batch ([`Plan::run_steps`]); a whole batch uses the first.
    buffers: Vec<Mutex<BufferPool>>,
    /// Whether [`Plan::run`] splits a batch of at least `threads` images into one part per
    /// thread ([`images_independent`], more than one thread).
    split: bool,
    /// Whether a run on one thread takes its large-plane steps image by image
    /// ([`BY_IMAGE_MIN_PLANE`]; [`images_independent`], not [`PlanOptions::whole_batches`]).
    by_image: bool,
    /// Subsampled inputs shared by strided 1×1 convs ([`Step::subsample_share`]).
    shares: usize,
}

/// Activation buffers between runs. The pool takes back only buffers it lent (by address):
/// a caller's input tensor or a reference kernel's fresh output is dropped when dead rather
/// than kept, so the pool holds what the plan's own steps need and does not grow run after
/// run (it did by one input buffer per run before, ~0.6 MB for a 224×224 image).
#[derive(Default)]
struct BufferPool {
    /// Free buffers, each with the length of its initialized prefix (the longest it was
    /// ever lent at): a buffer lent shorter than that needs no zeroing.
    free: Vec<(Vec<f32>, usize)>,
    /// Addresses of the buffers lent out and not yet back, with their initialized lengths.
    lent: HashMap<usize, usize>,
}

impl BufferPool {
    /// A buffer of `len` floats: the smallest free one that holds them, else the largest
    /// (grown), else a new one. Its contents are unspecified (steps overwrite their output).
    fn take(&mut self, len: usize) -> Vec<f32> {
        let free = &mut self.free;
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, (b, _))| b.capacity() >= len)
            .min_by_key(|(_, (b, _))| b.capacity())
            .map(|(i, _)| i)
            .or_else(|| free.iter().enumerate().max_by_key(|(_, (b, _))| b.capacity()).map(|(i, _)| i));
        let (mut v, init) = best.map(|i| free.swap_remove(i)).unwrap_or_default();
        if init >= len {
            // SAFETY: `len ≤ init ≤ capacity`, and the first `init` elements were written
            // when the buffer was last that long (truncating f32s leaves them as they were).
            unsafe { v.set_len(len) };
        } else {
            // Zeroes only past the initialized prefix: a buffer lent at 0.8 MB and then at
            // 3.2 MB was zeroed from its old length on every run (0.7 % of a ResNet-50 run's
            // samples at batch 4); now only until it has once been that long.
            // SAFETY: as above, for the first `init ≤ capacity` elements.
            unsafe { v.set_len(init) };
            v.resize(len, 0.0);
        }
        if v.capacity() > 0 {
            self.lent.insert(v.as_ptr() as usize, init.max(len));
        }
        v
    }

    /// Takes back `v` if this pool lent it (else drops it).
    fn give(&mut self, v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        if let Some(init) = self.lent.remove(&(v.as_ptr() as usize)) {
            // A step may have resized its buffer in place: what it holds now is
            // initialized, and what lay past it before still is (within the capacity).
            let init = init.max(v.len()).min(v.capacity());
            self.free.push((v, init));
        }
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("steps", &self.steps.len()).field("threads", &self.threads).finish()
    }
}

/// A value during one run.
enum Slot<'a> {
    Empty,
    Borrowed(&'a Tensor),
    Owned(Tensor),
}

impl Slot<'_> {
    /// A run value's tensor, its slot left empty; `None` (slot unchanged) for the others.
    fn take_owned(&mut self) -> Option<Tensor> {
        if !matches!(self, Slot::Owned(_)) {
            return None;
        }
        match std::mem::replace(self, Slot::Empty) {
            Slot::Owned(t) => Some(t),
            _ => None,
        }
    }

    fn tensor(&self) -> Option<&Tensor> {
        match self {
            Slot::Empty => None,
            Slot::Borrowed(t) => Some(t),
            Slot::Owned(t) => Some(t),
        }
    }
}

fn constant(graph: &Graph, id: ValueId) -> Option<&Arc<Tensor>> {
    let v = &graph.values[id];
    v.initializer.as_ref().or(v.fact.value.as_ref())
}

fn const_f32(graph: &Graph, id: Option<ValueId>) -> Option<Vec<f32>> {
    constant(graph, id?)?.as_f32().map(<[f32]>::to_vec)
}

fn is_f32(f: &Fact) -> bool {
    f.dtype.is_none_or(|d| d == DType::F32)
}

/// Both shapes known and equal dim by dim (a shared symbol such as `N` counts as equal).
fn same_shape(a: &Fact, b: &Fact) -> bool {
    match (&a.shape, &b.shape) {
        (Some(x), Some(y)) => x == y && !x.contains(&Dim::unknown()),
        _ => false,
    }
}

impl Plan {
    /// Compiles `graph` (nodes topologically sorted, facts inferred — as the importer leaves it).
    pub fn compile(graph: &Graph, opts: &PlanOptions) -> Result<Plan> {
        Plan::compile_owned(graph.clone(), opts)
    }

    /// [`Plan::compile`] taking the graph: each constant filter tensor leaves it as its conv
    /// is packed and is freed there unless the caller still shares it (a model's own graph
    /// shares the filters the passes left alone, not the ones BatchNorm folding made). So
    /// compiling does not hold every filter in both forms at its peak, and the plan keeps
    /// only the packed ones (ResNet-50: ~100 MB).
    pub fn compile_owned(mut graph: Graph, opts: &PlanOptions) -> Result<Plan> {
        if opts.mode == Mode::Bf16 && !(kernels::active_isa() == kernels::Isa::Avx512 && direct::bf16::supported()) {
            return Err(crate::error::Error::Bf16Unsupported);
        }
        // Values read only as some convs' W (not outputs): taken out of the graph, with the
        // number of convs still to pack them; what is left after the walk (a conv that runs
        // its reference kernel, say) goes back.
        let mut filters: HashMap<ValueId, (Arc<Tensor>, usize)> = HashMap::new();
        {
            let mut readers = vec![(0usize, 0usize); graph.values.len()];
            for n in &graph.nodes {
                for (slot, v) in n.inputs.iter().enumerate() {
                    if let Some(v) = *v {
                        readers[v].0 += 1;
                        readers[v].1 += usize::from(slot == 1 && matches!(n.op, Op::Conv(_)));
                    }
                }
            }
            for (v, &(all, as_w)) in readers.iter().enumerate() {
                if all > 0 && all == as_w && !graph.outputs.contains(&v) {
                    let value = &mut graph.values[v];
                    if let Some(t) = value.initializer.take() {
                        value.fact.value = None;
                        filters.insert(v, (t, as_w));
                    }
                }
            }
        }
        let mut plan = Plan::compile_walk(&graph, opts, &mut filters)?;
        for (v, (t, _)) in filters {
            plan.graph.values[v].initializer = Some(t);
        }
        let independent = images_independent(&plan.graph, &plan.steps);
        plan.split = !opts.whole_batches && plan.threads > 1 && independent;
        plan.by_image = !opts.whole_batches && independent;
        Ok(plan)
    }

    fn compile_walk(
        graph: &Graph,
        opts: &PlanOptions,
        filters: &mut HashMap<ValueId, (Arc<Tensor>, usize)>,
    ) -> Result<Plan> {
        let threads =
            if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("resnet-plan-{i}"))
            .build()
            .map_err(|e| Error::Input {
                name: "threads".into(),
                detail: format!("cannot start {threads} threads: {e}"),
            })?;
        if let Some(t) = opts.winograd_tile.filter(|t| ![2, 4].contains(t)) {
            return Err(Error::Input {
                name: "winograd_tile".into(),
                detail: format!("{t}: the Winograd variants are F(2×2) (2) and F(4×4) (4)"),
            });
        }

        let nv = graph.values.len();
        let outputs: HashSet<ValueId> = graph.outputs.iter().copied().collect();
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nv];
        for (i, n) in graph.nodes.iter().enumerate() {
            for &v in n.inputs.iter().flatten() {
                consumers[v].push(i);
            }
        }
        // The one node reading `v`, when `v` is not a graph output and has one reader.
        let single_consumer = |v: ValueId| -> Option<usize> {
            (!outputs.contains(&v) && consumers[v].len() == 1).then(|| consumers[v][0])
        };
        let mut materialized = vec![false; nv];
        for (i, v) in graph.values.iter().enumerate() {
            materialized[i] = v.initializer.is_some();
        }
        for &i in &graph.inputs {
            materialized[i] = true;
        }
        let mut skip = vec![false; graph.nodes.len()];
        let mut steps = Vec::new();

        for (i, node) in graph.nodes.iter().enumerate() {
            if skip[i] {
                continue;
            }
            let fact = |slot: usize| node.inputs.get(slot).copied().flatten().map(|v| &graph.values[v].fact);
            let out0 = node.outputs.first().copied().flatten();
            // Follows `v` into a single-consumer ReLU; returns the value after it.
            let fuse_relu = |v: ValueId, skip: &mut Vec<bool>, fused: &mut Vec<&'static str>| -> (ValueId, bool) {
                if let Some(j) = single_consumer(v) {
                    if matches!(graph.nodes[j].op, Op::Relu(_)) && !skip[j] {
                        if let Some(Some(r)) = graph.nodes[j].outputs.first() {
                            skip[j] = true;
                            fused.push("Relu");
                            return (*r, true);
                        }
                    }
                }
                (v, false)
            };
            let mut fused = vec![node.op.onnx_type()];
            let mut post = None;
            let step = match (&node.op, out0) {
                (Op::Conv(c), Some(out))
                    if node.inputs.len() >= 2
                        && fact(0).is_some_and(is_f32)
                        && node.inputs[1].is_some()
                        && node.outputs.len() == 1 =>
                {
                    let w_id = node.inputs[1].expect("checked");
                    let b_id = node.inputs.get(2).copied().flatten();
                    let packed = filters
                        .get(&w_id)
                        .map(|(t, _)| t)
                        .or_else(|| constant(graph, w_id))
                        .filter(|t| t.as_f32().is_some())
                        .cloned();
                    let bias = const_f32(graph, b_id);
                    let holds_filters = packed.is_some();
                    let mut inputs = vec![node.inputs[0], (!holds_filters).then_some(w_id), None, None];
                    if bias.is_none() {
                        inputs[2] = b_id;
                    }
                    // Conv → Add(other) with `other` already computed and of the same shape.
                    let mut cur = out;
                    if let Some(j) = single_consumer(out) {
                        let add = &graph.nodes[j];
                        if let (Op::Binary(b), [Some(a0), Some(a1)]) = (&add.op, add.inputs.as_slice()) {
                            let other = if *a0 == out { *a1 } else { *a0 };
                            if b.kind == BinaryKind::Add
                                && !skip[j]
                                && other != out
                                && materialized[other]
                                && same_shape(&graph.values[out].fact, &graph.values[other].fact)
                            {
                                if let Some(Some(sum)) = add.outputs.first() {
                                    skip[j] = true;
                                    fused.push("Add");
                                    inputs[3] = Some(other);
                                    cur = *sum;
                                }
                            }
                        }
                    }
                    let (cur, relu) = fuse_relu(cur, &mut skip, &mut fused);
                    // ResNet v2: the sum's BatchNorm (+ ReLU) in the same step, as a second
                    // output (the sum itself still feeds the next shortcut).
                    let channels = graph.values[cur].fact.shape.as_ref().and_then(|s| s.get(1)).and_then(Dim::known);
                    let bn = consumers[cur].iter().copied().find_map(|j| match (&graph.nodes[j].op, channels) {
                        (Op::BatchNormalization(b), Some(c))
                            if !skip[j] && graph.nodes[j].inputs.first() == Some(&Some(cur)) =>
                        {
                            let out = graph.nodes[j].outputs.first().copied().flatten()?;
                            batchnorm_affine(graph, &graph.nodes[j], b.epsilon, c).map(|st| (j, out, st))
                        }
                        _ => None,
                    });
                    let mut outs = vec![Some(cur)];
                    if let Some((j, out, (scale, shift))) = bn {
                        skip[j] = true;
                        fused.push("BatchNormalization");
                        let (z, relu) = fuse_relu(out, &mut skip, &mut fused);
                        outs.push(Some(z));
                        post = Some(Affine { scale, shift, relu });
                    }
                    let kernel = ConvKernel {
                        window: c.window.clone(),
                        group: c.group,
                        weights: None,
                        w_shape: None,
                        bias,
                        relu,
                        direct: None,
                    };
                    let mut kernel = match &packed {
                        Some(t) => kernel.with_filters(t.as_f32().expect("f32"), t.shape()),
                        None => kernel,
                    };
                    if opts.mode == Mode::Bf16 {
                        if let Some(d) = kernel.direct.as_deref_mut() {
                            d.use_bf16(packed.as_ref().and_then(|t| t.as_f32()));
                        }
                    }
                    let out_shape = graph.values[out].fact.shape.as_deref();
                    let kind =
                        match winograd_filters(&kernel, packed.as_ref().and_then(|t| t.as_f32()), opts, out_shape) {
                            Some(wgs) => Kind::Winograd(kernel, wgs),
                            None => Kind::Conv(kernel),
                        };
                    // The kernel holds the filters now (packed, or as its `weights`): the
                    // graph's tensor goes once the last conv reading it has them.
                    if let Some((_, left)) = filters.get_mut(&w_id).filter(|_| holds_filters) {
                        *left -= 1;
                        if *left == 0 {
                            filters.remove(&w_id);
                        }
                    }
                    (kind, inputs, outs)
                }
                (Op::Gemm(gm), Some(out))
                    if !gm.trans_a
                        && fact(0).is_some_and(is_f32)
                        && node.inputs.get(1).copied().flatten().and_then(|b| constant(graph, b)).is_some() =>
                {
                    let b = constant(graph, node.inputs[1].expect("checked")).expect("checked");
                    let c = node.inputs.get(2).copied().flatten();
                    match (b.as_f32(), b.shape(), c.map(|c| constant(graph, c))) {
                        (Some(bd), &[b0, b1], cst) if cst.is_none() || cst.is_some_and(|c| c.is_some()) => {
                            let (k, n) = if gm.trans_b { (b1, b0) } else { (b0, b1) };
                            // op(B) straight into column panels: no `[K, N]` copy made to be
                            // repacked (8 MB more peak RSS for ResNet's FC).
                            let packed = if gm.trans_b {
                                kernels::fc_panels_with(k, n, |kk, j| bd[j * k + kk])
                            } else {
                                kernels::fc_panels_with(k, n, |kk, j| bd[kk * n + j])
                            };
                            let row = match cst.flatten() {
                                None => Some(None),
                                Some(ct) => match (ct.as_f32(), ct.shape()) {
                                    (Some(d), s) if d.len() == 1 && s.len() <= 2 => Some(Some(vec![gm.beta * d[0]; n])),
                                    (Some(d), [cn]) | (Some(d), [1, cn]) if *cn == n => {
                                        Some(Some(d.iter().map(|v| gm.beta * v).collect()))
                                    }
                                    _ => None,
                                },
                            };
                            match row {
                                Some(c) => (
                                    Kind::Fc { b: packed, k, n, c, alpha: gm.alpha },
                                    vec![node.inputs[0]],
                                    vec![Some(out)],
                                ),
                                None => reference(node),
                            }
                        }
                        _ => reference(node),
                    }
                }
                (Op::BatchNormalization(bn), Some(out)) if node.inputs.len() == 5 && node.outputs.len() == 1 => {
                    let c = fact(0).and_then(|f| f.shape.as_ref()).and_then(|s| s.get(1)).and_then(Dim::known);
                    match c.and_then(|c| batchnorm_affine(graph, node, bn.epsilon, c)) {
                        Some((scale, shift)) if fact(0).is_some_and(is_f32) => {
                            let (cur, relu) = fuse_relu(out, &mut skip, &mut fused);
                            (Kind::Affine(Affine { scale, shift, relu }), vec![node.inputs[0]], vec![Some(cur)])
                        }
                        _ => reference(node),
                    }
                }
                (Op::Relu(_), Some(out)) if fact(0).is_some_and(|f| f.dtype == Some(DType::F32)) => {
                    (Kind::Relu, node.inputs.clone(), vec![Some(out)])
                }
                (Op::Binary(b), Some(out))
                    if b.kind == BinaryKind::Add
                        && node.inputs.len() == 2
                        && fact(0).is_some_and(|f| f.dtype == Some(DType::F32)) =>
                {
                    let (cur, relu) = fuse_relu(out, &mut skip, &mut fused);
                    (Kind::Add { relu, op: node.op.clone() }, node.inputs.clone(), vec![Some(cur)])
                }
                (Op::MaxPool(mp), Some(out))
                    if node.outputs.get(1).copied().flatten().is_none() && fact(0).is_some_and(is_f32) =>
                {
                    (Kind::MaxPool { window: mp.window.clone() }, node.inputs.clone(), vec![Some(out)])
                }
                (Op::GlobalPool(gp), Some(out)) if gp.kind == PoolKind::Average && fact(0).is_some_and(is_f32) => {
                    (Kind::GlobalAverage { op: node.op.clone() }, node.inputs.clone(), vec![Some(out)])
                }
                _ => reference(node),
            };
            let (kind, inputs, outs) = step;
            if let Kind::Reference(_) = kind {
                fused.truncate(1);
            }
            for &o in outs.iter().flatten() {
                materialized[o] = true;
            }
            steps.push(Step {
                name: node.name.clone(),
                op_type: node.op.onnx_type(),
                fused,
                kind,
                inputs,
                outputs: outs,
                post,
                subsample_share: None,
            });
        }
        let shares = share_subsamples(&mut steps);

        let mut last_use: Vec<Option<usize>> = vec![None; nv];
        for (si, s) in steps.iter().enumerate() {
            for &v in s.inputs.iter().flatten() {
                last_use[v] = Some(si);
            }
            // A value nobody reads dies right after the step that makes it.
            for &v in s.outputs.iter().flatten() {
                if last_use[v].is_none() {
                    last_use[v] = Some(si);
                }
            }
        }
        for &o in &graph.outputs {
            last_use[o] = None;
        }
        for (i, v) in graph.values.iter().enumerate() {
            if v.initializer.is_some() {
                last_use[i] = None;
            }
        }
        Ok(Plan {
            graph: graph.clone(),
            steps,
            last_use,
            pool,
            threads,
            buffers: (0..threads).map(|_| Mutex::default()).collect(),
            split: false,
            by_image: false,
            shares,
        })
    }

    /// Bytes held by the buffer pool between runs (diagnostics: it must stay flat over runs).
    pub fn pooled_bytes(&self) -> usize {
        let bytes = |pool: &BufferPool| pool.free.iter().map(|(b, _)| b.capacity() * size_of::<f32>()).sum::<usize>();
        self.buffers.iter().map(|p| bytes(&p.lock().unwrap_or_else(|e| e.into_inner()))).sum()
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// One line per step: index, kind, fused nodes, node name.
    pub fn describe(&self) -> Vec<String> {
        self.step_summaries()
            .into_iter()
            .enumerate()
            .map(|(i, s)| format!("{i:>4} {:<28} [{}] '{}'", s.kind, s.fused.join("+"), s.name))
            .collect()
    }

    /// What each step runs, in run order (the same order as [`Plan::run_profiled`]'s times).
    pub fn step_summaries(&self) -> Vec<StepSummary> {
        self.steps
            .iter()
            .map(|s| {
                let kind = match &s.kind {
                    Kind::Conv(c) => {
                        let w = c.w_shape.as_ref().map_or("runtime W".to_string(), |w| format!("W{w:?}"));
                        let direct = match c.direct.as_deref() {
                            Some(d) if d.runs_bf16() => " pointwise-direct bf16",
                            Some(d) if d.is_pointwise() => " pointwise-direct",
                            Some(_) => " direct",
                            None => "",
                        };
                        format!("conv {w} group {}{direct}", c.group)
                    }
                    Kind::Winograd(c, wgs) => {
                        let f2 = match wgs.iter().map(Winograd::tile).collect::<Vec<_>>()[..] {
                            [2] => " F(2×2)",
                            [4, 2] => " F(4×4)+F(2×2)",
                            _ => "",
                        };
                        let bf = if wgs.iter().any(Winograd::runs_bf16) { " bf16" } else { "" };
                        format!("winograd{f2}{bf} W{:?}", c.w_shape.as_deref().unwrap_or_default())
                    }
                    Kind::Fc { k, n, .. } => format!("fc {k}->{n}"),
                    Kind::Affine(_) => "affine".into(),
                    Kind::Relu => "relu".into(),
                    Kind::Add { .. } => "add".into(),
                    Kind::MaxPool { .. } => "maxpool".into(),
                    Kind::GlobalAverage { .. } => "global-average".into(),
                    Kind::Reference(_) => "reference".into(),
                };
                StepSummary { name: s.name.clone(), kind, fused: s.fused.clone() }
            })
            .collect()
    }

    /// Runs the plan: same contract as [`crate::exec::run`] (inputs in the order of the
    /// graph's inputs; any batch size the graph's symbolic dims allow).
    ///
    /// A batch of at least as many images as the plan has threads runs as one part per
    /// thread, each part's steps on that thread alone (`⌊N / threads⌋` images each; the
    /// `N mod threads` left over then run together over all threads), when every step
    /// computes each image from that image alone ([`Plan::splits_batches`]): no step waits
    /// for another thread and every kernel runs at its one-thread speed. Otherwise, and for
    /// fewer images, every step is split over the threads (output tiles, channels). On one
    /// thread (a plan of one, or each part) the steps that read planes of at least
    /// [`BY_IMAGE_MIN_PLANE`] positions run image by image, the rest on the batch.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        check_inputs(&self.graph, &inputs)?;
        self.pool.install(|| match self.part_images(&inputs) {
            Some(per) => self.run_split(inputs, per),
            None => team::with_team(|| self.run_steps(0, inputs, None)),
        })
    }

    /// Whether [`Plan::run`] runs a batch of at least [`Plan::threads`] images as one part
    /// per thread: more than one thread, not [`PlanOptions::whole_batches`], and every step
    /// works image by image (convolutions with constant filters, the FC Gemm, BatchNorm,
    /// ReLU, Add, the poolings, Flatten and Softmax from axis 1 on, Reshape to a constant
    /// `[0, …]`, Identity) on computed values only (a constant could hold a batch of its
    /// own), with every graph output computed.
    pub fn splits_batches(&self) -> bool {
        self.split
    }

    /// Whether [`Plan::run`] runs a batch of `n` images (f32 inputs) as one part per thread.
    pub fn splits_batch_of(&self, n: usize) -> bool {
        self.split && n >= self.threads
    }

    /// Images per part when [`Plan::run`] splits this call's batch: all inputs f32 with the
    /// same batch `N` ([`Plan::splits_batch_of`]).
    fn part_images(&self, inputs: &[Tensor]) -> Option<usize> {
        let n = *inputs.first()?.shape().first()?;
        let same = inputs.iter().all(|t| t.as_f32().is_some() && t.shape().first() == Some(&n));
        (same && self.splits_batch_of(n)).then_some(n / self.threads)
    }

    /// [`Plan::run`] of `threads` parts of `per` images, each on one thread, then the images
    /// left over on all threads; the outputs joined along axis 0.
    fn run_split(&self, inputs: Vec<Tensor>, per: usize) -> Result<Vec<Tensor>> {
        let n = inputs[0].shape()[0];
        let slice = |part: usize, i0: usize, i1: usize| -> Vec<Tensor> {
            inputs.iter().map(|t| self.images(part, t, i0, i1)).collect()
        };
        let mut parts: Vec<(usize, Result<Vec<Tensor>>)> = (0..self.threads)
            .into_par_iter()
            .with_max_len(1)
            .map(|p| (per, kernels::alone(|| self.run_steps(p, slice(p, p * per, (p + 1) * per), None))))
            .collect();
        let done = per * self.threads;
        if done < n {
            let rest = slice(0, done, n);
            parts.push((n - done, team::with_team(|| self.run_steps(0, rest, None))));
        }
        let mut outs: Vec<Vec<Tensor>> = Vec::with_capacity(parts.len());
        for (images, part) in parts {
            let part = part?;
            if part.iter().any(|t| t.as_f32().is_none() || t.shape().first() != Some(&images)) {
                // Not image by image after all (a graph `images_independent` misjudged):
                // the whole batch together.
                return team::with_team(|| self.run_steps(0, inputs, None));
            }
            outs.push(part);
        }
        Ok((0..outs[0].len())
            .map(|o| {
                let mut shape = outs[0][o].shape().to_vec();
                shape[0] = n;
                let data =
                    outs.iter().flat_map(|part| part[o].as_f32().expect("checked f32").iter().copied()).collect();
                Tensor::from_f32(shape, data)
            })
            .collect())
    }

    /// [`Plan::run`], also returning the wall time of each step in milliseconds (in the
    /// order of [`Plan::describe`]): the per-layer profile. The batch runs as one, every
    /// step split over the threads (on one thread the large-plane steps image by image, as
    /// in [`Plan::run`], their times summed over the images).
    pub fn run_profiled(&self, inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, Vec<f64>)> {
        check_inputs(&self.graph, &inputs)?;
        let mut times = vec![0.0; self.steps.len()];
        let out = self.pool.install(|| team::with_team(|| self.run_steps(0, inputs, Some(&mut times))))?;
        Ok((out, times))
    }

    /// Images `i0..i1` of the f32 tensor `t` (along axis 0), in a buffer of pool `part` (it
    /// goes back there when dead, so a steady-state run allocates none).
    fn images(&self, part: usize, t: &Tensor, i0: usize, i1: usize) -> Tensor {
        let image = numel(&t.shape()[1..]);
        let mut shape = t.shape().to_vec();
        shape[0] = i1 - i0;
        let mut b = self.take_buffer(part, (i1 - i0) * image);
        b.copy_from_slice(&t.as_f32().expect("checked f32")[i0 * image..i1 * image]);
        Tensor::from_f32(shape, b)
    }

    /// A buffer of `len` floats from part `part`'s pool (see [`Plan::run_steps`]).
    fn take_buffer(&self, part: usize, len: usize) -> Vec<f32> {
        self.buffers[part].lock().unwrap_or_else(|e| e.into_inner()).take(len)
    }

    fn give_back(&self, part: usize, t: Tensor) {
        if let Some(v) = t.into_f32() {
            self.buffers[part].lock().unwrap_or_else(|e| e.into_inner()).give(v);
        }
    }

    /// Runs every step on `inputs`, with buffers from pool `part` (0 for a whole batch; part
    /// `p` of a split batch uses pool `p`, so parts running at once never take each other's
    /// buffers and each pool settles at what its part needs). `times` (one per step) get each
    /// step's wall time added.
    fn run_steps(&self, part: usize, inputs: Vec<Tensor>, mut times: Option<&mut Vec<f64>>) -> Result<Vec<Tensor>> {
        let g = &self.graph;
        let mut slots = self.initial_slots();
        let first = match self.run_prefix_by_image(part, &inputs, &mut slots, times.as_deref_mut())? {
            Some(k) => {
                for t in inputs {
                    self.give_back(part, t);
                }
                k
            }
            None => {
                for (&id, t) in g.inputs.iter().zip(inputs) {
                    slots[id] = Slot::Owned(t);
                }
                0
            }
        };
        if let Err(e) = self.run_range(part, &mut slots, first..self.steps.len(), |_, _| false, times) {
            self.clear_owned(part, &mut slots);
            return Err(e);
        }
        let mut outs = Vec::with_capacity(g.outputs.len());
        for (i, &id) in g.outputs.iter().enumerate() {
            let last = !g.outputs[i + 1..].contains(&id);
            let t = match std::mem::replace(&mut slots[id], Slot::Empty) {
                // The caller keeps outputs: an exact-size copy leaves the pooled buffer (often
                // larger) in the pool, so the next run allocates nothing.
                Slot::Owned(t) if last => match t.as_f32() {
                    Some(data) => {
                        let exact = Tensor::from_f32(t.shape().to_vec(), data.to_vec());
                        self.give_back(part, t);
                        exact
                    }
                    None => t,
                },
                Slot::Owned(t) => {
                    let c = t.clone();
                    slots[id] = Slot::Owned(t);
                    c
                }
                Slot::Borrowed(t) => t.clone(),
                Slot::Empty => return Err(Error::DanglingOutput(g.values[id].name.clone())),
            };
            outs.push(t);
        }
        // Intermediates still held (graph inputs never read, say) go back to the pool.
        self.clear_owned(part, &mut slots);
        Ok(outs)
    }

    /// The slots of a run before its inputs are set: the initializers, borrowed.
    fn initial_slots(&self) -> Vec<Slot<'_>> {
        self.graph.values.iter().map(|v| v.initializer.as_deref().map_or(Slot::Empty, Slot::Borrowed)).collect()
    }

    /// Empties the slots holding run values, their buffers back to pool `part`.
    fn clear_owned(&self, part: usize, slots: &mut [Slot]) {
        for t in slots.iter_mut().filter_map(Slot::take_owned) {
            self.give_back(part, t);
        }
    }

    /// Runs the steps of `range` on `slots`, or those before the first that `stop` (given
    /// the step and the slots) holds for; returns the index after the last step run.
    fn run_range(
        &self,
        part: usize,
        slots: &mut [Slot],
        range: std::ops::Range<usize>,
        stop: impl Fn(&Step, &[Slot]) -> bool,
        mut times: Option<&mut Vec<f64>>,
    ) -> Result<usize> {
        let mut subsampled = SubsampleCache { buffers: (0..self.shares).map(|_| None).collect() };
        let mut end = range.end;
        for si in range {
            let step = &self.steps[si];
            if stop(step, slots) {
                end = si;
                break;
            }
            let wrap = |source| Error::Node { node: step.name.clone(), op: step.op_type.to_string(), source };
            let start = times.is_some().then(std::time::Instant::now);
            let results = self.run_step(part, si, step, slots, &mut subsampled);
            if results.is_err() {
                self.return_subsampled(part, &mut subsampled);
            }
            let results = results.map_err(wrap)?;
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                times[si] += start.elapsed().as_secs_f64() * 1e3;
            }
            for (slot, t) in step.outputs.iter().zip(results) {
                if let Some(id) = *slot {
                    slots[id] = Slot::Owned(t);
                }
            }
            for &id in step.inputs.iter().chain(&step.outputs).flatten() {
                if self.last_use[id] == Some(si) {
                    if let Some(t) = slots[id].take_owned() {
                        self.give_back(part, t);
                    }
                }
            }
        }
        // A shared subsampled input whose later users declined it (other shapes, or steps
        // past the range) goes back.
        self.return_subsampled(part, &mut subsampled);
        Ok(end)
    }

    /// On one thread, with several images: runs the steps before the first whose input is
    /// not a plane of at least [`BY_IMAGE_MIN_PLANE`] positions image by image, and leaves in
    /// `slots` the values the rest of the run reads, joined into a batch again; returns the
    /// index of the first step left. `None`: nothing left in `slots` (the whole batch runs
    /// from the first step). Image 0's run finds where to stop; the others run as many steps.
    fn run_prefix_by_image(
        &self,
        part: usize,
        inputs: &[Tensor],
        slots: &mut [Slot],
        mut times: Option<&mut Vec<f64>>,
    ) -> Result<Option<usize>> {
        let g = &self.graph;
        let Some(n) = inputs.first().and_then(|t| t.shape().first().copied()) else { return Ok(None) };
        if !self.by_image
            || n < 2
            || kernels::threads() != 1
            || !inputs.iter().all(|t| t.as_f32().is_some() && t.shape().first() == Some(&n))
        {
            return Ok(None);
        }
        let small = |step: &Step, slots: &[Slot]| {
            slot_input(step, slots, 0).is_none_or(|x| x.rank() < 3 || numel(&x.shape()[2..]) < BY_IMAGE_MIN_PLANE)
        };
        // Per value the rest of the run reads: its batched shape and buffer. Each image runs
        // in `slots` itself (one slot table per run: the steady state allocates little).
        let mut live: Vec<(ValueId, Vec<usize>, Vec<f32>)> = Vec::new();
        let drop_live = |live: Vec<(ValueId, Vec<usize>, Vec<f32>)>| {
            for (_, _, b) in live {
                self.give_back(part, Tensor::from_f32(vec![b.len()], b));
            }
        };
        let mut end = self.steps.len();
        for i in 0..n {
            for (&id, t) in g.inputs.iter().zip(inputs) {
                slots[id] = Slot::Owned(self.images(part, t, i, i + 1));
            }
            let ran = if i == 0 {
                self.run_range(part, slots, 0..end, small, times.as_deref_mut())
            } else {
                self.run_range(part, slots, 0..end, |_, _| false, times.as_deref_mut())
            };
            end = match ran {
                // No step reads a large plane: the whole batch from the first step.
                Ok(0) => {
                    self.clear_owned(part, slots);
                    return Ok(None);
                }
                Ok(e) => e,
                Err(e) => {
                    self.clear_owned(part, slots);
                    drop_live(live);
                    return Err(e);
                }
            };
            let mut fits = true;
            let mut k = 0;
            for (id, s) in slots.iter_mut().enumerate() {
                let Some(t) = s.take_owned() else { continue };
                if let (Some(data), Some(&1)) = (t.as_f32(), t.shape().first()) {
                    if i == 0 {
                        let mut shape = t.shape().to_vec();
                        shape[0] = n;
                        live.push((id, shape, self.take_buffer(part, n * data.len())));
                    }
                    match live.get_mut(k) {
                        Some((lid, shape, b)) if *lid == id && numel(&shape[1..]) == data.len() => {
                            b[i * data.len()..(i + 1) * data.len()].copy_from_slice(data);
                        }
                        _ => fits = false,
                    }
                } else {
                    fits = false;
                }
                k += 1;
                self.give_back(part, t);
            }
            if !fits || k != live.len() {
                // Not image by image after all: the whole batch from the first step.
                drop_live(live);
                return Ok(None);
            }
        }
        for (id, shape, b) in live {
            slots[id] = Slot::Owned(Tensor::from_f32(shape, b));
        }
        Ok(Some(end))
    }

    /// Takes input `slot`'s buffer for in-place use when this step is its last reader and
    /// the step reads it once.
    /// Flatten / Reshape without a copy when this step is the input's last reader: the
    /// output is the input's buffer under the new shape. `None`: not applicable (the input
    /// lives on, or Reshape's target is missing) — the reference op runs instead.
    fn reshape_in_place(
        &self,
        si: usize,
        step: &Step,
        op: &Op,
        slots: &mut [Slot],
    ) -> std::result::Result<Option<Tensor>, OpError> {
        let shape = {
            let Some(x) = slot_input(step, slots, 0) else { return Ok(None) };
            match op {
                Op::Flatten(f) => {
                    let k = f.split(x.rank())?;
                    vec![numel(&x.shape()[..k]), numel(&x.shape()[k..])]
                }
                Op::Reshape(r) => {
                    let Some(target) = slot_input(step, slots, 1) else { return Ok(None) };
                    let dims: Vec<Dim> = x.shape().iter().map(|&d| Dim::Known(d)).collect();
                    let out = r.resolve(&dims, i64_list(target, 1)?)?;
                    match out.iter().map(Dim::known).collect::<Option<Vec<usize>>>() {
                        Some(shape) if numel(&shape) == x.len() => shape,
                        // Let the reference op report the mismatch in its words.
                        _ => return Ok(None),
                    }
                }
                _ => return Ok(None),
            }
        };
        Ok(self.take_if_dead(si, step, 0, slots).and_then(|t| t.reshaped(shape)))
    }

    fn take_if_dead(&self, si: usize, step: &Step, slot: usize, slots: &mut [Slot]) -> Option<Tensor> {
        let id = step.inputs.get(slot).copied().flatten()?;
        if self.last_use[id] != Some(si) || step.inputs.iter().flatten().filter(|&&v| v == id).count() != 1 {
            return None;
        }
        match std::mem::replace(&mut slots[id], Slot::Empty) {
            Slot::Owned(t) if t.as_f32().is_some() => Some(t),
            other => {
                slots[id] = other;
                None
            }
        }
    }

    fn return_subsampled(&self, part: usize, cache: &mut SubsampleCache) {
        for (xs, _) in cache.buffers.iter_mut().filter_map(Option::take) {
            self.give_back(part, Tensor::from_f32(vec![xs.len()], xs));
        }
    }

    fn run_step(
        &self,
        part: usize,
        si: usize,
        step: &Step,
        slots: &mut [Slot],
        subsampled: &mut SubsampleCache,
    ) -> std::result::Result<Vec<Tensor>, OpError> {
        let f32_of = |t: &Tensor, i: usize| -> std::result::Result<Vec<usize>, OpError> {
            match t.as_f32() {
                Some(_) => Ok(t.shape().to_vec()),
                None => Err(OpError::DType { input: i, dtype: t.dtype(), expected: "float32" }),
            }
        };
        match &step.kind {
            Kind::Reference(op) => {
                // Flatten and Reshape of a dead input keep its buffer (the reference op copies).
                if matches!(op, Op::Flatten(_) | Op::Reshape(_)) {
                    if let Some(out) = self.reshape_in_place(si, step, op, slots)? {
                        return Ok(vec![out]);
                    }
                }
                let args: Vec<Option<&Tensor>> = (0..step.inputs.len()).map(|i| slot_input(step, slots, i)).collect();
                op.def().eval(&args)
            }
            Kind::Conv(k) | Kind::Winograd(k, _) => {
                let wgs = match &step.kind {
                    Kind::Winograd(_, wgs) => &wgs[..],
                    _ => &[],
                };
                let (geo, winograd, in_place) = {
                    let x = slot_input(step, slots, 0).ok_or(OpError::MissingInput(0))?;
                    let xs = f32_of(x, 0)?;
                    let w_rt = slot_input(step, slots, 1);
                    let ws = match (&k.w_shape, w_rt) {
                        (Some(s), _) => s.clone(),
                        (None, Some(w)) => f32_of(w, 1)?,
                        (None, None) => return Err(OpError::MissingInput(1)),
                    };
                    let b_rt = slot_input(step, slots, 2);
                    if let Some(b) = b_rt {
                        f32_of(b, 2)?;
                        if b.rank() != 1 {
                            return Err(OpError::shape(format!("B has shape {:?}, expected [M]", b.shape())));
                        }
                    }
                    let bias_len = k.bias.as_ref().map(Vec::len).or(b_rt.map(Tensor::len));
                    let geo = k.geometry(&xs, &ws, bias_len)?;
                    let res = slot_input(step, slots, 3);
                    if let Some(r) = res {
                        if r.shape() != geo.out_shape.as_slice() || r.as_f32().is_none() {
                            return Err(OpError::shape(format!(
                                "fused residual Add: {:?} does not match the conv output {:?}",
                                r.shape(),
                                geo.out_shape
                            )));
                        }
                    }
                    let winograd = wgs.iter().find(|wg| wg.applies(&geo));
                    let in_place = res.is_some() && (winograd.is_some() || k.residual_in_output(&geo));
                    (geo, winograd, in_place)
                };
                // When this conv is the residual's last reader, its buffer becomes the output.
                let held = if in_place { self.take_if_dead(si, step, 3, slots) } else { None };
                let x = slot_input(step, slots, 0).and_then(Tensor::as_f32).expect("checked");
                let b_rt = slot_input(step, slots, 2).and_then(Tensor::as_f32);
                let (mut y, residual) = match held {
                    Some(t) => (t.into_f32().expect("take_if_dead returns f32 tensors"), Residual::InOutput),
                    None => (
                        self.take_buffer(part, numel(&geo.out_shape)),
                        Residual::of(slot_input(step, slots, 3).and_then(Tensor::as_f32)),
                    ),
                };
                let channels = geo.out_shape.get(1).copied().unwrap_or(0);
                let mut z = match &step.post {
                    Some(p) if p.scale.len() != channels => {
                        return Err(OpError::shape(format!(
                            "fused BatchNormalization: {} channels, the conv output {:?}",
                            p.scale.len(),
                            geo.out_shape
                        )))
                    }
                    Some(_) => Some(self.take_buffer(part, y.len())),
                    None => None,
                };
                if let Some(wg) = winograd {
                    // Its accumulating form adds `y`'s contents after bias and residual.
                    let (res, acc) = match residual {
                        Residual::InOutput => (None, true),
                        r => (r.tensor(), false),
                    };
                    wg.prepare(|| k.filters().expect("a Winograd step's filters are packed").into_owned());
                    wg.run(&geo, x, k.bias.as_deref().or(b_rt), res, k.relu, acc, &mut y);
                } else {
                    let w_rt = slot_input(step, slots, 1).and_then(Tensor::as_f32);
                    if let Some(sub) = k.subsampled(&geo) {
                        let len = sub.n * sub.c * sub.input_plane();
                        let (xs, left) = match step.subsample_share.and_then(|(i, _)| subsampled.buffers[i].take()) {
                            // Made by an earlier step of the share from the same input and
                            // strides, so the same shape: used as it is.
                            Some((xs, left)) if xs.len() == len => (xs, left),
                            stale => {
                                if let Some((xs, _)) = stale {
                                    self.give_back(part, Tensor::from_f32(vec![xs.len()], xs));
                                }
                                let mut xs = self.take_buffer(part, len);
                                conv::subsample(x, &geo, &mut xs);
                                (xs, step.subsample_share.map_or(1, |(_, users)| users))
                            }
                        };
                        k.run(&sub, &xs, w_rt.unwrap_or_default(), b_rt, residual, &mut y);
                        match step.subsample_share {
                            Some((i, _)) if left > 1 => subsampled.buffers[i] = Some((xs, left - 1)),
                            _ => self.give_back(part, Tensor::from_f32(vec![xs.len()], xs)),
                        }
                    } else {
                        k.run(&geo, x, w_rt.unwrap_or_default(), b_rt, residual, &mut y);
                    }
                }
                let mut outs = Vec::with_capacity(2);
                if let (Some(a), Some(z)) = (&step.post, z.as_deref_mut()) {
                    // A pass over the finished sum: the 1×1 kernel's epilogue once wrote `z`
                    // from its accumulators too, which measured slower (see `Step::post`).
                    self.affine_into(a, &y, z, &geo.out_shape);
                }
                let shape = geo.out_shape;
                outs.push(Tensor::from_f32(shape.clone(), y));
                if let Some(z) = z {
                    outs.push(Tensor::from_f32(shape, z));
                }
                Ok(outs)
            }
            Kind::Fc { b, k, n, c, alpha } => {
                let a = slot_input(step, slots, 0).ok_or(OpError::MissingInput(0))?;
                let s = f32_of(a, 0)?;
                if s.len() != 2 || s[1] != *k {
                    return Err(OpError::shape(format!("A has shape {s:?}, expected [M, {k}]")));
                }
                let m = s[0];
                let mut y = self.take_buffer(part, m * n);
                if let Some(c) = c {
                    for row in y.chunks_exact_mut(*n) {
                        row.copy_from_slice(c);
                    }
                }
                if m > 0 && m <= kernels::FC_SMALL_ROWS && *n > 0 {
                    let a = a.as_f32().expect("checked");
                    kernels::fc_small(a, m, *k, b, *n, *alpha, c.is_some(), &mut y);
                } else if m > 0 && *n > 0 && *k > 0 {
                    let threads = kernels::threads();
                    let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
                    let a = a.as_f32().expect("checked");
                    for j0 in (0..*n).step_by(kernels::FC_PANEL) {
                        let w = kernels::FC_PANEL.min(*n - j0);
                        let panel = &b[*k * j0..*k * (j0 + w)];
                        // SAFETY: y is [m, n] and its columns `j0..j0 + w` are written (row
                        // stride n); A is [m, k]; the panel is [k, w]; all row-major, in bounds.
                        unsafe {
                            gemm::gemm(
                                m,
                                w,
                                *k,
                                y.as_mut_ptr().add(j0),
                                1,
                                *n as isize,
                                c.is_some(),
                                a.as_ptr(),
                                1,
                                *k as isize,
                                panel.as_ptr(),
                                1,
                                w as isize,
                                1.0,
                                *alpha,
                                false,
                                false,
                                false,
                                par,
                            );
                        }
                    }
                } else if c.is_none() {
                    y.fill(0.0);
                }
                Ok(vec![Tensor::from_f32(vec![m, *n], y)])
            }
            Kind::Affine(a) => {
                let x = slot_input(step, slots, 0).ok_or(OpError::MissingInput(0))?;
                let s = f32_of(x, 0)?;
                if s.len() < 2 || s[1] != a.scale.len() {
                    return Err(OpError::shape(format!("X has shape {s:?}, expected [N, {}, ...]", a.scale.len())));
                }
                let mut y = self.take_buffer(part, x.len());
                self.affine_into(a, x.as_f32().expect("checked"), &mut y, &s);
                Ok(vec![Tensor::from_f32(s, y)])
            }
            Kind::Relu => {
                if let Some(t) = self.take_if_dead(si, step, 0, slots) {
                    return Ok(vec![map_f32(t, kernels::relu_in_place)]);
                }
                let x = slot_input(step, slots, 0).ok_or(OpError::MissingInput(0))?;
                let s = f32_of(x, 0)?;
                let mut y = self.take_buffer(part, x.len());
                kernels::relu_into(x.as_f32().expect("checked"), &mut y);
                Ok(vec![Tensor::from_f32(s, y)])
            }
            Kind::Add { relu, op } => {
                let same = {
                    let (a, b) = (slot_input(step, slots, 0), slot_input(step, slots, 1));
                    matches!((a, b), (Some(a), Some(b)) if a.shape() == b.shape() && a.as_f32().is_some() && b.as_f32().is_some())
                };
                if !same {
                    let (a, b) = (slot_input(step, slots, 0), slot_input(step, slots, 1));
                    let args = [a, b];
                    let out = op.def().eval(&args)?;
                    if !*relu {
                        return Ok(out);
                    }
                    let sum: Vec<Option<&Tensor>> = out.iter().map(Some).collect();
                    return crate::ops::OpDef::eval(&crate::ops::relu::Relu {}, &sum[..1]);
                }
                for (slot, other) in [(0, 1), (1, 0)] {
                    if let Some(t) = self.take_if_dead(si, step, slot, slots) {
                        let o = slot_input(step, slots, other).expect("checked").as_f32().expect("checked");
                        return Ok(vec![map_f32(t, |y| kernels::add_in_place(y, o, *relu))]);
                    }
                }
                let (a, b) =
                    (slot_input(step, slots, 0).expect("checked"), slot_input(step, slots, 1).expect("checked"));
                let mut y = self.take_buffer(part, a.len());
                kernels::add_into(a.as_f32().expect("checked"), b.as_f32().expect("checked"), &mut y, *relu);
                Ok(vec![Tensor::from_f32(a.shape().to_vec(), y)])
            }
            Kind::MaxPool { window } => {
                let x = slot_input(step, slots, 0).ok_or(OpError::MissingInput(0))?;
                let xs = f32_of(x, 0)?;
                let kernel = window.kernel_shape.as_deref().unwrap_or_default();
                if !(3..=5).contains(&xs.len()) || xs.len() != kernel.len() + 2 {
                    return Err(OpError::shape(format!(
                        "input shape {xs:?} does not fit kernel_shape {kernel:?}: expected [N,C] and one dim per kernel axis"
                    )));
                }
                let axes = lift_to_3d(&window.axes(kernel, &xs[2..])?)?;
                let mut out_shape = xs[..2].to_vec();
                out_shape.extend(window.axes(kernel, &xs[2..])?.iter().map(|a| a.output));
                let (in_plane, out_plane): (usize, usize) =
                    (xs[2..].iter().product(), axes.iter().map(|a| a.output).product());
                let mut y = self.take_buffer(part, numel(&out_shape));
                let xd = x.as_f32().expect("checked");
                if in_plane > 0 && out_plane > 0 {
                    let one = |(xp, yp): (&[f32], &mut [f32])| kernels::max_pool_plane(xp, yp, &axes);
                    if kernels::threads() > 1 {
                        xd.par_chunks(in_plane).zip(y.par_chunks_mut(out_plane)).for_each(one);
                    } else {
                        xd.chunks(in_plane).zip(y.chunks_mut(out_plane)).for_each(one);
                    }
                } else {
                    y.fill(f32::NEG_INFINITY);
                }
                Ok(vec![Tensor::from_f32(out_shape, y)])
            }
            Kind::GlobalAverage { op } => {
                let x = slot_input(step, slots, 0).ok_or(OpError::MissingInput(0))?;
                let xs = f32_of(x, 0)?;
                if xs.len() < 3 {
                    return op.def().eval(&[Some(x)]);
                }
                let plane: usize = xs[2..].iter().product();
                let mut out_shape = xs[..2].to_vec();
                out_shape.extend(std::iter::repeat_n(1, xs.len() - 2));
                let mut y = self.take_buffer(part, xs[0] * xs[1]);
                kernels::global_average(x.as_f32().expect("checked"), &mut y, plane);
                Ok(vec![Tensor::from_f32(out_shape, y)])
            }
        }
    }

    /// `y = relu?(x · scale + shift)` per channel of `x`, `shape` `[N, C, ...]` with `C` the
    /// affine's channels (checked by the callers).
    fn affine_into(&self, a: &Affine, x: &[f32], y: &mut [f32], shape: &[usize]) {
        let plane: usize = shape[2..].iter().product();
        self.par_parts(x, y, shape[1], plane, |cs, len, xc, yc| {
            kernels::affine_into(xc, yc, &a.scale[cs.clone()], &a.shift[cs], len, a.relu)
        });
    }

    /// Runs `f(channels, len, x part, y part)` over every image of `x` and `y` (`[N,
    /// channels, plane]`, `len` positions per channel in the parts), each image cut into one
    /// part per thread when the plan has several (batch 1 too: ResNet v2's 17
    /// BatchNorm+ReLU passes ran on one thread there). Planes of at least
    /// [`position_parts_plane`] positions are cut into position ranges (`f` called per
    /// channel), smaller ones into channel ranges: the parts the convs before the pass give
    /// each thread (see `team`), so that each reads what it wrote itself.
    fn par_parts(
        &self,
        x: &[f32],
        y: &mut [f32],
        channels: usize,
        plane: usize,
        f: impl Fn(std::ops::Range<usize>, usize, &[f32], &mut [f32]) + Sync,
    ) {
        let image = channels * plane;
        if image == 0 || x.is_empty() {
            return;
        }
        assert!(x.len().is_multiple_of(image) && y.len() == x.len(), "[N, C, plane] buffers");
        let by_position = plane >= position_parts_plane();
        let parts = kernels::threads().clamp(1, if by_position { plane } else { channels });
        let tasks = x.len() / image * parts;
        if tasks == 1 {
            f(0..channels, plane, x, y);
            return;
        }
        let out = kernels::OutPtr(y.as_mut_ptr());
        kernels::for_each_task(tasks, |t| {
            let (img, pi) = (t / parts, t % parts);
            if !by_position {
                let (c0, c1) = (channels * pi / parts, channels * (pi + 1) / parts);
                let (off, len) = (img * image + c0 * plane, (c1 - c0) * plane);
                // SAFETY: image `img`'s channels `c0..c1`, in `y` (same length as `x`) and
                // written by this task only.
                let yc = unsafe { std::slice::from_raw_parts_mut(out.at(off), len) };
                f(c0..c1, plane, &x[off..off + len], yc);
                return;
            }
            let (p0, p1) = (plane * pi / parts, plane * (pi + 1) / parts);
            for c in 0..channels {
                let off = img * image + c * plane + p0;
                // SAFETY: positions `p0..p1` of channel `c` of image `img`, in `y` (same length
                // as `x`) and written by this task only.
                let yc = unsafe { std::slice::from_raw_parts_mut(out.at(off), p1 - p0) };
                f(c..c + 1, p1 - p0, &x[off..off + (p1 - p0)], yc);
            }
        });
    }
}

/// Smallest plane [`Plan::par_parts`] cuts by positions on AVX-512, so that each thread
/// reads what the conv before it wrote on the same thread (see `team`). ResNet's 56×56
/// planes are (their 1×1 convs run position panels, one range per thread); its 28×28, 14×14
/// and 7×7 ones are cut by channels: there a 1×1 conv of one image takes the whole plane and
/// splits the filters (`whole_panel_floats` in `direct::pointwise`). On AVX2, whose 1×1
/// kernel keeps position panels at 28×28, the cut by positions starts there
/// ([`position_parts_plane`]). ResNet-50 v2, fast, batch 1, two threads on two dies,
/// `resnet bench --profile` twice each: by positions everywhere, the 56×56 256 ← 64 + Add +
/// BatchNorm steps 3.93–3.99 → 3.27–3.29 ms but the 14×14 1024 ← 256 ones 3.42–3.44 → 4.70
/// and the 7×7 ones 2.4 → 3.2. The 28×28 planes by channels rather than by positions (on a
/// Zen 4, one die, alternated three times): the three 512 ← 128 + Add + BatchNorm + ReLU
/// steps 1.66 → 1.57 ms, and in a busy spell 3.02 → 2.21 and 2.98 → 2.24. A size, not the
/// conv's own cut: with each conv reporting how it cut its step and the pass following it
/// (positions when it ran at least as many position ranges as filter chunks), the one step
/// that changed — v2's strided 512 ← 256 projection at 28×28, four position panels on two
/// threads — took 1.12–1.17 ms against 1.05–1.11 by channels in the quiet runs of seven
/// alternated pairs (`--profile`, fast, one die): there a thread's part of a channel is 392
/// positions, and one long run per thread beat reading what the same core wrote.
const POSITION_PARTS_PLANE: usize = 56 * 56;

/// [`POSITION_PARTS_PLANE`] on AVX-512; 28×28 elsewhere (where the 1×1 convs of 28×28
/// planes run position panels).
fn position_parts_plane() -> usize {
    if kernels::active_isa() == kernels::Isa::Avx512 {
        POSITION_PARTS_PLANE
    } else {
        28 * 28
    }
}

/// Applies `f` to an f32 tensor's buffer in place (moves the buffer, no copy).
fn map_f32(t: Tensor, f: impl FnOnce(&mut [f32])) -> Tensor {
    let shape = t.shape().to_vec();
    let mut v = t.into_f32().expect("caller checked the dtype");
    f(&mut v);
    Tensor::from_f32(shape, v)
}

/// Step input `i` during a run (`None` for an absent optional input).
fn slot_input<'s>(step: &Step, slots: &'s [Slot], i: usize) -> Option<&'s Tensor> {
    step.inputs.get(i).copied().flatten().map(|id| slots[id].tensor().expect("inputs are computed first"))
}

/// Fewest input and output channels for which [`Mode::Bf16`] runs a 3×3 conv as F(2×2) in
/// bfloat16 rather than F(4×4) in float32. Keras ResNet-50 at batch 1, one thread (`resnet
/// bench --mode bf16 --profile --runs 20`): F(2×2) in bf16 against F(4×4) in float32, the six
/// 256 × 256 layers 6.3 → 3.8 ms, the four 128 × 128 ones 3.1 → 2.8, but the three 64 × 64
/// ones 2.5 → 3.2 (their transforms, 1.8× F(4×4)'s per output, outweigh the products); the
/// run 37.4 → 35.0 ms, batch 8 on two threads 149.4 → 143.7–146.7 ms (two alternated pairs).
pub const BF16_F2_CHANNELS: usize = 128;

/// [`PlanOptions::winograd_small_f2`]'s default: F(2×2) beside F(4×4) for small planes
/// unless the kernels run AVX-512 on a CPU with two 512-bit FMAs a cycle. Measured on an
/// Intel Xeon (Emerald Rapids, `scripts/ab_bench.py --rounds 6 --mode fast`, batch 1,
/// medians / minima): without F(2×2) Keras ResNet-50 0.941 / 0.977 of the time on one
/// thread, ResNet-18 0.968 / 0.988; the Keras model's three 512 × 512 layers at 7×7 took 5.57 ms
/// as F(2×2) and 5.06 exact (`scripts/layers_vs_ort.py`, one thread).
fn small_f2_default() -> bool {
    !(kernels::active_isa() == kernels::Isa::Avx512 && kernels::fma512_full_rate())
}

/// The Winograd kernels of a conv [`Mode::Fast`] runs as Winograd: constant `[M, C, 3, 3]`
/// filters, group 1, stride and dilation 1, both channel counts at least
/// [`winograd::MIN_CHANNELS`] and their product at most [`winograd::MAX_CHANNEL_PRODUCT`].
/// Whether a call runs as Winograd is decided per call (enough output tiles of the
/// variant). The variants: F(4×4); and when the conv's declared output (`out_shape`) has
/// fewer than `min_tiles` 4×4 tiles per image (ResNet's 7×7 layers at 224×224: 4), F(2×2)
/// too, for the calls with too few 4×4 tiles but enough 2×2 ones (those layers at batches
/// 1–3: 16 per image). F(4×4) is made at compile when one image of the declared size has
/// enough tiles; otherwise, and F(2×2) beside it always, the variant is
/// [`Winograd::deferred`] and its `U` made at its first call — so a plan run only at batch 8
/// never holds the F(2×2) filters, nor one run only at batch 1 the F(4×4) ones (ResNet-50:
/// 50 and 113 MB). [`PlanOptions::winograd_tile`] asks for one variant only. `w`: the
/// graph's filter tensor while the caller still has it (else the kernel's are unpacked).
///
/// In [`Mode::Bf16`] convs with at least [`BF16_F2_CHANNELS`] input and output channels
/// take F(2×2) only, its products in bfloat16 ([`Winograd::use_bf16`]): 4 bfloat16
/// multiplications per output and tap where F(4×4) (whose products stay float32) takes
/// 2.25 float32 ones, at twice the rate.
///
/// F(2×2) on those layers, measured on an AMD EPYC (Zen 4; `scripts/ab_bench.py --rounds 5`,
/// fast mode, batch 1, one thread): ResNet-18 23.35 → 21.33 ms, Keras ResNet-50 58.1–58.5 →
/// 56.2–57.2 ms (two threads: equal). On an Intel Xeon with two FMA ports, where the
/// direct kernels run near 175 GFLOP/s, F(2×2) on ResNet-50's 7×7 layers at batch 1 had
/// been 2 % slower than exact (44.81 → 43.74 ms when it was dropped, 7bf12a3): hence
/// [`small_f2_default`], which leaves F(2×2) out on such CPUs.
fn winograd_filters(
    k: &ConvKernel,
    w: Option<&[f32]>,
    opts: &PlanOptions,
    out_shape: Option<&[Dim]>,
) -> Option<Vec<Winograd>> {
    let ones = |v: &Option<Vec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&s| s == 1));
    let s = k.w_shape.as_ref()?;
    let applies = opts.mode.winograd()
        && k.group == 1
        && s.len() == 4
        && s[2] == 3
        && s[3] == 3
        && s[0] >= winograd::MIN_CHANNELS
        && s[1] >= winograd::MIN_CHANNELS
        && s[0] * s[1] <= winograd::MAX_CHANNEL_PRODUCT
        && ones(&k.window.strides)
        && ones(&k.window.dilations)
        && (k.weights.is_some() || k.direct.is_some());
    if !applies {
        // Checked first: `filters()` unpacks a direct kernel's filters into a new buffer.
        return None;
    }
    let min_tiles = opts.winograd_min_tiles.unwrap_or(winograd::MIN_TILES);
    // Tiles of `tile`×`tile` in one image at the graph's declared size (`None`: not known).
    let tiles = |tile: usize| match out_shape {
        Some([_, _, h, w]) => h.known().zip(w.known()).map(|(h, w)| h.div_ceil(tile) * w.div_ceil(tile)),
        _ => None,
    };
    let small = |tile: usize| tiles(tile).is_some_and(|t| t < min_tiles);
    let tiles_wanted: &[usize] = match opts.winograd_tile {
        None if opts.mode == Mode::Bf16 && s[0].min(s[1]) >= BF16_F2_CHANNELS => &[2],
        Some(2) => &[2],
        Some(_) => &[4],
        None if small(4) && opts.winograd_small_f2.unwrap_or_else(small_f2_default) => &[4, 2],
        None => &[4],
    };
    let mut filters = None;
    let wgs = tiles_wanted
        .iter()
        .map(|&tile| {
            // F(2×2) beside F(4×4) is for calls of 1–3 small images only: made at the first.
            if small(tile) || (tile == 2 && tiles_wanted.len() > 1) {
                Winograd::deferred(s[0], s[1], min_tiles, tile)
            } else {
                // The graph's tensor while the caller has it; else unpacked from the kernel.
                let w = filters.get_or_insert_with(|| match w {
                    Some(w) => std::borrow::Cow::Borrowed(w),
                    None => k.filters().expect("checked: packed filters"),
                });
                Winograd::with_tile(w, s[0], s[1], min_tiles, tile)
            }
        })
        .map(|mut wg| {
            if opts.mode == Mode::Bf16 {
                wg.use_bf16();
            }
            wg
        })
        .collect();
    Some(wgs)
}

/// Whether every step computes each image (index along axis 0) from that image alone, so
/// that a batch can run as independent parts ([`Plan::splits_batches`]): each step's kind
/// works image by image and reads only computed values, and every graph output is computed.
fn images_independent(graph: &Graph, steps: &[Step]) -> bool {
    let computed = |v: &ValueId| constant(graph, *v).is_none();
    // Reshape to a constant target whose first dim is 0 ("copy N", ResNet v2's `[0, -1]`).
    let keeps_images = |step: &Step| {
        let target =
            step.inputs.get(1).copied().flatten().and_then(|t| constant(graph, t)).and_then(|t| t.to_i64_vec());
        step.inputs.len() == 2 && target.is_some_and(|t| t.first() == Some(&0))
    };
    fn data_inputs(step: &Step) -> &[Option<ValueId>] {
        match &step.kind {
            Kind::Reference(Op::Reshape(_)) => &step.inputs[..1],
            _ => &step.inputs[..],
        }
    }
    let per_image = |step: &Step| match &step.kind {
        // Filters and bias packed (run-time ones are step inputs 1 and 2).
        Kind::Conv(_) | Kind::Winograd(..) => step.inputs.get(1..3).is_some_and(|wb| wb.iter().all(Option::is_none)),
        Kind::Fc { .. } | Kind::Affine(_) | Kind::Relu | Kind::Add { .. } => true,
        Kind::MaxPool { .. } | Kind::GlobalAverage { .. } => true,
        Kind::Reference(Op::Flatten(f)) => f.axis > 0,
        Kind::Reference(Op::Softmax(s)) => s.axis > 0,
        Kind::Reference(Op::Identity(_)) => true,
        Kind::Reference(Op::Reshape(r)) => !r.allowzero && keeps_images(step),
        Kind::Reference(_) => false,
    };
    steps.iter().all(|s| per_image(s) && data_inputs(s).iter().flatten().all(computed))
        && graph.outputs.iter().all(computed)
}

fn reference(node: &crate::graph::Node) -> (Kind, Vec<Option<ValueId>>, Vec<Option<ValueId>>) {
    (Kind::Reference(node.op.clone()), node.inputs.clone(), node.outputs.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Plan>();
    }

    #[test]
    fn buffer_pool_reuses_buffers_and_zeroes_only_past_what_was_written() {
        let mut pool = BufferPool::default();
        let mut a = pool.take(100);
        assert_eq!(a, vec![0.0; 100], "a new buffer is zeroed");
        a.fill(7.0);
        let at = a.as_ptr();
        pool.give(a);
        // Shorter, then as long again: the same buffer, its old contents, nothing zeroed.
        let b = pool.take(40);
        assert_eq!((b.as_ptr(), b.len()), (at, 40));
        pool.give(b);
        let c = pool.take(100);
        assert_eq!((c.as_ptr(), &c[..]), (at, &[7.0; 100][..]));
        pool.give(c);
        // Longer than ever: the written prefix kept, the rest zeroed.
        let d = pool.take(300);
        assert_eq!(d.len(), 300);
        assert!(d[..100].iter().all(|&v| v == 7.0) && d[100..].iter().all(|&v| v == 0.0));
        pool.give(d);
        // A buffer the pool did not lend is not kept; one it lent comes back once.
        pool.give(vec![1.0; 10]);
        assert_eq!(pool.free.len(), 1);
        let e = pool.take(10);
        let f = pool.take(10);
        assert_ne!(e.as_ptr(), f.as_ptr());
        pool.give(e);
        pool.give(f);
        assert_eq!(pool.free.len(), 2);
        assert!(pool.lent.is_empty());
    }
}
