//! The ten zoo architectures (ResNet v1/v2 × 18/34/50/101/152, SPEC §1) built natively as a
//! [`Graph`] with exactly the zoo files' structure and names (SPEC §2), and the reverse:
//! recognising a zoo-shaped graph. Beyond the zoo, the same builder makes Gluon's small-input
//! variants (`thumbnail=True`, other channel lists and input channels), such as the
//! [`SMALL_NAMES`] presets for 28×28 MNIST.
//!
//! ```
//! use resnet_zoo::arch::{build, ArchSpec, Init};
//! let spec = ArchSpec::from_name("resnet18-v2")?;
//! let graph = build(&spec, Init::Zeros)?;
//! assert_eq!(graph.nodes.len(), 69);
//! assert_eq!(graph.values[graph.outputs[0]].name, "resnetv22_dense0_fwd");
//! # Ok::<(), resnet_zoo::arch::ArchError>(())
//! ```
//!
//! Names, node order and Add operand order follow Gluon and the MXNet exporter (the rules
//! are in [`gluon`]); weights are either zeros or seeded random values initialised as the
//! zoo's training recipe does (SPEC §6.1).

use std::fmt;

use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};
use resnet_engine::{Graph, Op, Tensor};

pub mod gluon;

use gluon::{Builder, ParamRole, INPUT_NAME};

/// v1 (post-activation, "Deep Residual Learning") or v2 (pre-activation, "Identity Mappings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn number(self) -> u32 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// The depths of the zoo.
pub const DEPTHS: [usize; 5] = [18, 34, 50, 101, 152];

/// The ten zoo names, v1 first.
pub const NAMES: [&str; 10] = [
    "resnet18-v1",
    "resnet34-v1",
    "resnet50-v1",
    "resnet101-v1",
    "resnet152-v1",
    "resnet18-v2",
    "resnet34-v2",
    "resnet50-v2",
    "resnet101-v2",
    "resnet152-v2",
];

/// Small-input presets beyond the zoo: Gluon ResNetV1/V2 with the depth-18 layout,
/// `thumbnail=True`, one input channel, channels [`MNIST_CHANNELS`], 10 classes, input 28×28.
pub const SMALL_NAMES: [&str; 2] = ["mnist-v1", "mnist-v2"];

/// Channels `[stem, stage1..stage4]` of the `mnist-v*` presets: a quarter of ResNet-18's
/// `[64, 64, 128, 256, 512]` (≈ 0.7 M parameters instead of 11 M, plenty for 28×28 digits).
pub const MNIST_CHANNELS: [usize; 5] = [16, 16, 32, 64, 128];

/// Which network to build. The zoo's ten are [`ArchSpec::new`] / [`ArchSpec::from_name`] with
/// the last three fields at their defaults (3, `false`, `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchSpec {
    pub version: Version,
    /// 18, 34, 50, 101 or 152.
    pub depth: usize,
    /// Output units of the dense layer (1000 in the zoo).
    pub classes: usize,
    /// Height and width of the declared input `[N,3,S,S]` (224 in the zoo).
    pub input_size: usize,
    /// Gluon's model-instance counter in the prefix `resnetv<version><counter>_`; `None` takes
    /// the zoo file's (v1: 15–19, v2: 22, 23, 24, 25, 27; SPEC §2.3).
    pub prefix_counter: Option<u32>,
    /// Channels `C` of the declared input `[N,C,S,S]` (3 in the zoo, 1 for MNIST).
    pub in_channels: usize,
    /// Gluon's `thumbnail=True`: the stem is one 3×3 convolution, stride 1, pad 1, no bias —
    /// no 7×7/stride-2 conv, no BatchNorm/ReLU after it and no max-pool, so a 28×28 input
    /// reaches stage 4 at 4×4 instead of 1×1. v2 keeps its input BatchNorm in front of it.
    pub thumbnail: bool,
    /// Output channels `[stem, stage1..stage4]`; `None` takes the depth's standard list
    /// (SPEC §1.2). Bottleneck depths (50+) need stage channels divisible by 4 (the 1×1/3×3
    /// width is a quarter), and stages 2–4 must change the channel count (Gluon adds a
    /// projection shortcut only then, and their first block has stride 2).
    pub channels: Option<[usize; 5]>,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error("unknown architecture '{0}' (choose from: {names}, or small: {small})",
        names = NAMES.join(", "), small = SMALL_NAMES.join(", "))]
    UnknownName(String),
    #[error("invalid architecture: {0}")]
    Invalid(String),
    #[error("invalid architecture: input channels must be at least 1, got {0}")]
    InputChannels(usize),
    #[error("invalid architecture: channels {channels:?} for depth {depth}: {reason}")]
    Channels { depth: usize, channels: [usize; 5], reason: String },
    #[error("the built graph does not check out: {0}")]
    Engine(#[from] resnet_engine::Error),
}

/// SPEC §1.2: depth → (bottleneck?, blocks per stage, standard channels `[stem, s1..s4]`).
fn layout(depth: usize) -> (bool, [usize; 4], [usize; 5]) {
    match depth {
        18 => (false, [2, 2, 2, 2], [64, 64, 128, 256, 512]),
        34 => (false, [3, 4, 6, 3], [64, 64, 128, 256, 512]),
        50 => (true, [3, 4, 6, 3], [64, 256, 512, 1024, 2048]),
        101 => (true, [3, 4, 23, 3], [64, 256, 512, 1024, 2048]),
        152 => (true, [3, 8, 36, 3], [64, 256, 512, 1024, 2048]),
        _ => unreachable!("depth checked by ArchSpec::validate"),
    }
}

impl ArchSpec {
    /// The zoo configuration (1000 classes, 224×224, the zoo's prefix).
    pub fn new(version: Version, depth: usize) -> ArchSpec {
        ArchSpec {
            version,
            depth,
            classes: 1000,
            input_size: 224,
            prefix_counter: None,
            in_channels: 3,
            thumbnail: false,
            channels: None,
        }
    }

    /// The `mnist-v1` / `mnist-v2` preset: depth-18 layout, thumbnail stem, 1 input channel,
    /// channels [`MNIST_CHANNELS`], 10 classes, input 28×28, prefix `resnetv10_` / `resnetv20_`
    /// (the counter a fresh Gluon process gives its first network).
    pub fn mnist(version: Version) -> ArchSpec {
        ArchSpec {
            classes: 10,
            input_size: 28,
            prefix_counter: Some(0),
            in_channels: 1,
            thumbnail: true,
            channels: Some(MNIST_CHANNELS),
            ..ArchSpec::new(version, 18)
        }
    }

    /// `"resnet50-v2"` → v2, depth 50, zoo defaults; `"mnist-v1"` → [`ArchSpec::mnist`].
    pub fn from_name(name: &str) -> Result<ArchSpec, ArchError> {
        match name {
            "mnist-v1" => return Ok(ArchSpec::mnist(Version::V1)),
            "mnist-v2" => return Ok(ArchSpec::mnist(Version::V2)),
            _ => {}
        }
        let unknown = || ArchError::UnknownName(name.to_string());
        let (depth, version) = name.strip_prefix("resnet").and_then(|r| r.split_once("-v")).ok_or_else(unknown)?;
        let depth: usize = depth.parse().map_err(|_| unknown())?;
        let version = match version {
            "1" => Version::V1,
            "2" => Version::V2,
            _ => return Err(unknown()),
        };
        if !DEPTHS.contains(&depth) {
            return Err(unknown());
        }
        Ok(ArchSpec::new(version, depth))
    }

    /// `resnet50-v2`, or `mnist-v1` for a spec with the preset's layout (depth 18, thumbnail,
    /// 1 input channel, [`MNIST_CHANNELS`]) whatever its classes, input size and prefix —
    /// as a zoo name does not carry those either. Other non-zoo options are not in the name
    /// (see `Display`).
    pub fn name(&self) -> String {
        if self.has_mnist_layout() {
            format!("mnist-v{}", self.version.number())
        } else {
            format!("resnet{}-v{}", self.depth, self.version.number())
        }
    }

    fn has_mnist_layout(&self) -> bool {
        self.depth == 18 && self.thumbnail && self.in_channels == 1 && self.channels == Some(MNIST_CHANNELS)
    }

    /// The channels `[stem, stage1..stage4]` the network gets: [`ArchSpec::channels`] or the
    /// depth's standard list (`None` for a depth outside the zoo's).
    pub fn stage_channels(&self) -> Option<[usize; 5]> {
        match self.channels {
            Some(c) => Some(c),
            None => DEPTHS.contains(&self.depth).then(|| layout(self.depth).2),
        }
    }

    /// The zoo file's Gluon instance counter (SPEC §2.3; 152-v2 really skips 26).
    pub fn zoo_prefix_counter(version: Version, depth: usize) -> u32 {
        let i = DEPTHS.iter().position(|&d| d == depth).unwrap_or(0);
        match version {
            Version::V1 => [5, 6, 7, 8, 9][i],
            Version::V2 => [2, 3, 4, 5, 7][i],
        }
    }

    /// The name prefix, e.g. `resnetv24_`.
    pub fn prefix(&self) -> String {
        let k = self.prefix_counter.unwrap_or_else(|| Self::zoo_prefix_counter(self.version, self.depth));
        format!("resnetv{}{k}_", self.version.number())
    }

    fn validate(&self) -> Result<(), ArchError> {
        if !DEPTHS.contains(&self.depth) {
            return Err(ArchError::Invalid(format!("depth {} (choose from 18, 34, 50, 101, 152)", self.depth)));
        }
        if self.classes == 0 {
            return Err(ArchError::Invalid("classes must be at least 1".into()));
        }
        if self.input_size == 0 {
            return Err(ArchError::Invalid("input size must be at least 1".into()));
        }
        if self.in_channels == 0 {
            return Err(ArchError::InputChannels(self.in_channels));
        }
        if let Some(channels) = self.channels {
            let invalid = |reason: String| ArchError::Channels { depth: self.depth, channels, reason };
            if let Some(i) = channels.iter().position(|&c| c == 0) {
                return Err(invalid(format!("entry {i} is 0 (every stage needs at least 1 channel)")));
            }
            let (bottleneck, _, _) = layout(self.depth);
            if bottleneck {
                if let Some(&c) = channels[1..].iter().find(|c| !c.is_multiple_of(4)) {
                    return Err(invalid(format!(
                        "{c} is not divisible by 4 (a bottleneck block's inner width is a quarter of its output)"
                    )));
                }
            }
            for stage in 2..=4 {
                if channels[stage - 1] == channels[stage] {
                    return Err(invalid(format!(
                        "stage {stage} keeps {} channels, but its first block has stride 2 and Gluon adds a \
                         projection shortcut only where the channel count changes",
                        channels[stage]
                    )));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for ArchSpec {
    /// `resnet50-v2 (Gluon ResNetV2, prefix resnetv24_)`, plus non-zoo options, e.g.
    /// `mnist-v1 (Gluon ResNetV1, prefix resnetv10_, thumbnail stem, 1 input channel,
    /// channels [16, 16, 32, 64, 128], 10 classes, input 28x28)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (Gluon ResNetV{}, prefix {}", self.name(), self.version.number(), self.prefix())?;
        if self.thumbnail {
            f.write_str(", thumbnail stem")?;
        }
        if self.in_channels != 3 {
            let s = if self.in_channels == 1 { "" } else { "s" };
            write!(f, ", {} input channel{s}", self.in_channels)?;
        }
        if let Some(c) = self.channels {
            write!(f, ", channels {c:?}")?;
        }
        if self.classes != 1000 {
            write!(f, ", {} classes", self.classes)?;
        }
        if self.input_size != 224 {
            write!(f, ", input {0}x{0}", self.input_size)?;
        }
        f.write_str(")")
    }
}

/// Initial weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// The zoo recipe (SPEC §6.1) from a seed: conv and dense weights Xavier uniform with
    /// magnitude 2 and factor "avg", `U(−a, a)` with `a = sqrt(2 / ((fan_in + fan_out) / 2))`;
    /// biases 0; BatchNorm gamma 1, beta 0, running mean 0, running var 1. The same seed
    /// gives the same bytes on every platform (ChaCha8, drawn in initializer order).
    Seed(u64),
    /// Weights and biases 0, BatchNorm as above: a cheap graph for structural work.
    Zeros,
}

/// Builds the network; the graph has its facts inferred and runs in
/// [`resnet_engine::exec::run`].
pub fn build(spec: &ArchSpec, init: Init) -> Result<Graph, ArchError> {
    spec.validate()?;
    let (bottleneck, counts, standard) = layout(spec.depth);
    let channels = spec.channels.unwrap_or(standard);
    let cin = spec.in_channels;
    let mut b = Builder::new(&spec.prefix());
    b.set_input_channels(cin);
    let mut x = INPUT_NAME.to_string();
    let head = match spec.version {
        Version::V1 => {
            let stem = if spec.thumbnail {
                vec![b.conv(cin, channels[0], 3, 1, false)]
            } else {
                vec![
                    b.conv(cin, channels[0], 7, 2, false),
                    b.batchnorm(channels[0], false),
                    b.relu_layer(),
                    b.max_pool(),
                ]
            };
            x = b.seq(&stem, &x);
            x = stages(&mut b, x, spec.version, bottleneck, counts, channels);
            vec![b.global_avg_pool(), b.dense(channels[4], spec.classes)]
        }
        Version::V2 => {
            let mut stem = vec![b.batchnorm(cin, true)];
            if spec.thumbnail {
                stem.push(b.conv(cin, channels[0], 3, 1, false));
            } else {
                stem.extend([
                    b.conv(cin, channels[0], 7, 2, false),
                    b.batchnorm(channels[0], false),
                    b.relu_layer(),
                    b.max_pool(),
                ]);
            }
            x = b.seq(&stem, &x);
            x = stages(&mut b, x, spec.version, bottleneck, counts, channels);
            vec![
                b.batchnorm(channels[4], false),
                b.relu_layer(),
                b.global_avg_pool(),
                b.flatten_layer(),
                b.dense(channels[4], spec.classes),
            ]
        }
    };
    x = b.seq(&head, &x);
    let mut rng = match init {
        Init::Seed(seed) => Some(ChaCha8Rng::seed_from_u64(seed)),
        Init::Zeros => None,
    };
    let (mut graph, _) = b.emit(&x, spec.input_size, spec.version == Version::V1, &mut |shape, role| {
        init_tensor(shape, role, rng.as_mut())
    });
    graph.sort_topologically()?;
    graph.infer_facts()?;
    Ok(graph)
}

/// Residual stages (SPEC §1.2): stride 2 on the first block of stages 2–4, a projection
/// shortcut where the first block changes the channel count.
fn stages(b: &mut Builder, mut x: String, v: Version, bottleneck: bool, counts: [usize; 4], ch: [usize; 5]) -> String {
    for (i, &n) in counts.iter().enumerate() {
        b.push(&format!("stage{}_", i + 1));
        let (cin, c) = (ch[i], ch[i + 1]);
        for j in 0..n {
            let stride = if i > 0 && j == 0 { 2 } else { 1 };
            let block_in = if j == 0 { cin } else { c };
            let ds = j == 0 && cin != c;
            x = match (v, bottleneck) {
                (Version::V1, false) => basic_block_v1(b, &x, block_in, c, stride, ds),
                (Version::V1, true) => bottleneck_v1(b, &x, block_in, c, stride, ds),
                (Version::V2, false) => basic_block_v2(b, &x, block_in, c, stride, ds),
                (Version::V2, true) => bottleneck_v2(b, &x, block_in, c, stride, ds),
            };
        }
        b.pop();
    }
    x
}

/// BasicBlockV1 (SPEC §1.4): `relu(residual + body(x))` — Gluon writes `residual + x`.
fn basic_block_v1(b: &mut Builder, x: &str, cin: usize, c: usize, stride: usize, ds: bool) -> String {
    let body = [
        b.conv(cin, c, 3, stride, false),
        b.batchnorm(c, false),
        b.relu_layer(),
        b.conv(c, c, 3, 1, false),
        b.batchnorm(c, false),
    ];
    let down = if ds { vec![b.conv(cin, c, 1, stride, false), b.batchnorm(c, false)] } else { vec![] };
    let out = b.seq(&body, x);
    let residual = b.seq(&down, x);
    let sum = b.plus(&residual, &out);
    b.activation(&sum)
}

/// BottleneckV1: stride on the first 1×1, biased 1×1 convs; `relu(body(x) + residual)`.
fn bottleneck_v1(b: &mut Builder, x: &str, cin: usize, c: usize, stride: usize, ds: bool) -> String {
    let m = c / 4;
    let body = [
        b.conv(cin, m, 1, stride, true),
        b.batchnorm(m, false),
        b.relu_layer(),
        b.conv(m, m, 3, 1, false),
        b.batchnorm(m, false),
        b.relu_layer(),
        b.conv(m, c, 1, 1, true),
        b.batchnorm(c, false),
    ];
    let down = if ds { vec![b.conv(cin, c, 1, stride, false), b.batchnorm(c, false)] } else { vec![] };
    let out = b.seq(&body, x);
    let residual = b.seq(&down, x);
    let sum = b.plus(&out, &residual);
    b.activation(&sum)
}

/// BasicBlockV2: `a = relu(bn(x))`; `conv(relu(bn(conv(a)))) + (x or conv1x1(a))`.
fn basic_block_v2(b: &mut Builder, x: &str, cin: usize, c: usize, stride: usize, ds: bool) -> String {
    let (bn1, conv1) = (b.batchnorm(cin, false), b.conv(cin, c, 3, stride, false));
    let (bn2, conv2) = (b.batchnorm(c, false), b.conv(c, c, 3, 1, false));
    let down = ds.then(|| b.conv(cin, c, 1, stride, false));
    let pre = b.call(&bn1, x);
    let a = b.activation(&pre);
    let residual = match &down {
        Some(d) => b.call(d, &a),
        None => x.to_string(),
    };
    let h = b.seq(&[conv1, bn2], &a);
    let h = b.activation(&h);
    let out = b.call(&conv2, &h);
    b.plus(&out, &residual)
}

/// BottleneckV2: stride on the 3×3; no BN on the shortcut; no ReLU after the addition.
fn bottleneck_v2(b: &mut Builder, x: &str, cin: usize, c: usize, stride: usize, ds: bool) -> String {
    let m = c / 4;
    let (bn1, conv1) = (b.batchnorm(cin, false), b.conv(cin, m, 1, 1, false));
    let (bn2, conv2) = (b.batchnorm(m, false), b.conv(m, m, 3, stride, false));
    let (bn3, conv3) = (b.batchnorm(m, false), b.conv(m, c, 1, 1, false));
    let down = ds.then(|| b.conv(cin, c, 1, stride, false));
    let pre = b.call(&bn1, x);
    let a = b.activation(&pre);
    let residual = match &down {
        Some(d) => b.call(d, &a),
        None => x.to_string(),
    };
    let h = b.seq(&[conv1, bn2], &a);
    let h = b.activation(&h);
    let h = b.seq(&[conv2, bn3], &h);
    let h = b.activation(&h);
    let out = b.call(&conv3, &h);
    b.plus(&out, &residual)
}

/// One parameter's initial value (see [`Init`]).
fn init_tensor(shape: &[usize], role: ParamRole, rng: Option<&mut ChaCha8Rng>) -> Tensor {
    let n: usize = shape.iter().product();
    let fill = |v: f32| Tensor::from_f32(shape.to_vec(), vec![v; n]);
    match role {
        ParamRole::Gamma | ParamRole::FixedGamma | ParamRole::RunningVar => fill(1.0),
        ParamRole::Beta | ParamRole::FixedBeta | ParamRole::RunningMean | ParamRole::Bias => fill(0.0),
        ParamRole::Weight => match rng {
            None => fill(0.0),
            Some(rng) => {
                // MXNet Xavier: fan_in = shape[1]·receptive field, fan_out = shape[0]·receptive field.
                let receptive: usize = shape[2..].iter().product();
                let (fan_in, fan_out) = ((shape[1] * receptive) as f64, (shape[0] * receptive) as f64);
                let a = (2.0 / ((fan_in + fan_out) / 2.0)).sqrt() as f32;
                // 24 random bits → a uniform float in [0, 1), then [−a, a).
                let data =
                    (0..n).map(|_| ((rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * a).collect();
                Tensor::from_f32(shape.to_vec(), data)
            }
        },
    }
}

/// Parameter counts as SPEC §1.5 defines them: `(stored, trainable)`. Stored = elements of
/// every float initializer; trainable leaves out BatchNorm running statistics (inputs 3 and
/// 4 of every BatchNormalization) and the fixed gamma/beta of a BatchNormalization applied
/// directly to a graph input (the v2 data BN, Gluon's `scale=False, center=False`).
pub fn parameter_counts(graph: &Graph) -> (usize, usize) {
    let stored = graph.parameter_count();
    let mut frozen = vec![false; graph.values.len()];
    for node in &graph.nodes {
        if let Op::BatchNormalization(_) = node.op {
            let on_input = node.inputs.first().copied().flatten().is_some_and(|x| graph.inputs.contains(&x));
            for (slot, id) in node.inputs.iter().enumerate() {
                if let Some(id) = *id {
                    if slot >= 3 || (on_input && slot >= 1) {
                        frozen[id] = true;
                    }
                }
            }
        }
    }
    let frozen_count: usize = graph
        .values
        .iter()
        .zip(&frozen)
        .filter(|(v, &f)| f && v.initializer.as_ref().is_some_and(|t| t.as_f32().is_some()))
        .map(|(v, _)| v.initializer.as_ref().map_or(0, |t| t.len()))
        .sum();
    (stored, stored - frozen_count)
}

/// SPEC §2.4's per-architecture counts: `(nodes, Conv, BatchNormalization, Relu, Add)`.
pub fn expected_counts(version: Version, depth: usize) -> (usize, usize, usize, usize, usize) {
    let i = DEPTHS.iter().position(|&d| d == depth).expect("a zoo depth");
    match version {
        Version::V1 => [
            (69, 20, 20, 17, 8),
            (125, 36, 36, 33, 16),
            (175, 53, 53, 49, 16),
            (345, 104, 104, 100, 33),
            (515, 155, 155, 151, 50),
        ][i],
        Version::V2 => [
            (69, 20, 19, 18, 8),
            (125, 36, 35, 34, 16),
            (174, 53, 51, 50, 16),
            (344, 104, 102, 101, 33),
            (514, 155, 153, 152, 50),
        ][i],
    }
}

/// Recognises a zoo-shaped graph: the op counts of one of the ten architectures (SPEC §2.4:
/// Conv/BatchNormalization/Relu/Add, one MaxPool, GlobalAveragePool and Gemm, and a Flatten
/// for v1 or a Reshape for v2) and Gluon's naming (the stem conv's weight is
/// `resnetv<version><k>_conv0_weight`, the output `resnetv<version><k>_dense0_fwd`). Returns
/// the spec it would be built from (classes, input size, input channels and — where they
/// differ from the depth's standard list — stage channels read off the graph). Thumbnail
/// networks (no max-pool, fewer stem nodes) are not recognised.
pub fn recognize(graph: &Graph) -> Option<ArchSpec> {
    let count = |t: &str| graph.nodes.iter().filter(|n| n.op.onnx_type() == t).count();
    let (conv, bn, relu, add) = (count("Conv"), count("BatchNormalization"), count("Relu"), count("Add"));
    let singles = ["MaxPool", "GlobalAveragePool", "Gemm"].iter().all(|t| count(t) == 1);
    let (flatten, reshape) = (count("Flatten"), count("Reshape"));
    let version = match (flatten, reshape) {
        (1, 0) => Version::V1,
        (0, 1) => Version::V2,
        _ => return None,
    };
    let depth = *DEPTHS.iter().find(|&&d| expected_counts(version, d) == (graph.nodes.len(), conv, bn, relu, add))?;
    if !singles {
        return None;
    }
    // The prefix, from the stem conv's weight name.
    let v = version.number();
    let marker = format!("resnetv{v}");
    let counter = graph.values.iter().find_map(|val| {
        let rest = val.name.strip_prefix(&marker)?.strip_suffix("_conv0_weight")?;
        rest.parse::<u32>().ok()
    })?;
    let prefix = format!("resnetv{v}{counter}_");
    let output = graph.values.get(*graph.outputs.first()?)?;
    if output.name != format!("{prefix}dense0_fwd") {
        return None;
    }
    let gemm = graph.nodes.iter().find(|n| n.op.onnx_type() == "Gemm")?;
    let weight = graph.values.get(gemm.inputs.get(1).copied().flatten()?)?;
    let classes = *weight.initializer.as_ref()?.shape().first()?;
    let input = graph.values.get(*graph.inputs.first()?)?;
    let input_size = match input.fact.shape.as_deref() {
        Some([_, _, h, w]) if h == w => h.known().unwrap_or(224),
        _ => 224,
    };
    let shape_of = |name: &str| Some(graph.values.get(graph.value_id(name)?)?.initializer.as_ref()?.shape().to_vec());
    let stem = shape_of(&format!("{prefix}conv0_weight"))?;
    let (&stem_channels, &in_channels) = (stem.first()?, stem.get(1)?);
    let mut channels = [stem_channels, 0, 0, 0, 0];
    for (k, c) in channels.iter_mut().enumerate().skip(1) {
        // A stage's output width is its widest conv (the bottleneck's expanding 1×1).
        let scope = format!("{prefix}stage{k}_conv");
        *c = graph
            .values
            .iter()
            .filter(|v| v.name.starts_with(&scope) && v.name.ends_with("_weight"))
            .filter_map(|v| v.initializer.as_ref()?.shape().first().copied())
            .max()?;
    }
    let channels = (channels != layout(depth).2).then_some(channels);
    Some(ArchSpec {
        classes,
        input_size,
        prefix_counter: Some(counter),
        in_channels,
        channels,
        ..ArchSpec::new(version, depth)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for name in NAMES {
            assert_eq!(ArchSpec::from_name(name).unwrap().name(), name);
        }
        let e = ArchSpec::from_name("resnet51-v1").unwrap_err().to_string();
        assert!(e.contains("resnet18-v1") && e.contains("resnet152-v2"), "{e}");
        assert!(ArchSpec::from_name("resnet50-v3").is_err());
        assert_eq!(ArchSpec::from_name("resnet152-v2").unwrap().prefix(), "resnetv27_");
    }

    #[test]
    fn seeded_weights_are_reproducible_and_within_the_xavier_bound() {
        let spec = ArchSpec::from_name("resnet18-v1").unwrap();
        let a = build(&spec, Init::Seed(3)).unwrap();
        let b = build(&spec, Init::Seed(3)).unwrap();
        let w = |g: &Graph| g.initializers().next().unwrap().1.clone();
        assert_eq!(w(&a), w(&b));
        let w = w(&a);
        assert_eq!(w.shape(), &[64, 3, 7, 7]);
        let bound = (2.0f32 / ((3.0 * 49.0 + 64.0 * 49.0) / 2.0)).sqrt();
        let v = w.as_f32().unwrap();
        assert!(v.iter().all(|x| x.abs() <= bound));
        assert!(v.iter().any(|x| x.abs() > 0.9 * bound));
    }
}
