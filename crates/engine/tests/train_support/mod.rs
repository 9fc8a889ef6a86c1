//! Shared by the `train_*` tests: a builder for small hand-made graphs (Conv, BN, Relu,
//! pools, Add, Gemm, …) with seeded random initializers, and the finite-difference checker.

#![allow(dead_code)]

use resnet_engine::ops::{self, AttrValue, Attrs};
use resnet_engine::train::{TrainOptions, TrainProgram};
use resnet_engine::{Dim, Fact, Graph, Node, Tensor, ValueId};

/// splitmix64-based generator: deterministic test data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi) as f32).collect()
    }
}

pub fn ints(v: &[i64]) -> AttrValue {
    AttrValue::Ints(v.to_vec())
}

/// A graph under construction: one input `x [N, C, H, W]` (N symbolic unless `batch` is
/// given).
pub struct Net {
    pub g: Graph,
    pub x: ValueId,
    pub rng: Rng,
    count: usize,
}

impl Net {
    pub fn new(batch: Option<usize>, c: usize, h: usize, w: usize, opset: i64, seed: u64) -> Net {
        let mut g = Graph { opset, ir_version: 8, name: "train-test".into(), ..Graph::default() };
        let n = batch.map_or(Dim::Sym("N".into()), Dim::Known);
        let x = g.add_value("x", Fact::new(resnet_engine::DType::F32, vec![n, c.into(), h.into(), w.into()]));
        g.inputs.push(x);
        Net { g, x, rng: Rng::new(seed), count: 0 }
    }

    fn fresh(&mut self, base: &str) -> String {
        self.count += 1;
        format!("{base}{}", self.count)
    }

    /// A random initializer `U(lo, hi)`.
    pub fn init(&mut self, base: &str, shape: &[usize], lo: f64, hi: f64) -> ValueId {
        let n = shape.iter().product();
        let data = self.rng.vec(n, lo, hi);
        let name = self.fresh(base);
        self.g.add_initializer(name, Tensor::from_f32(shape.to_vec(), data))
    }

    pub fn constant(&mut self, base: &str, t: Tensor) -> ValueId {
        let name = self.fresh(base);
        self.g.add_initializer(name, t)
    }

    /// Adds a node; returns its first output.
    pub fn node(&mut self, op_type: &str, attrs: Vec<(&str, AttrValue)>, inputs: Vec<Option<ValueId>>) -> ValueId {
        let attrs = Attrs::new(attrs.into_iter().map(|(n, v)| (n.to_string(), v)).collect());
        let op = ops::parse(op_type, &attrs, self.g.opset).expect("known op").expect("valid attributes");
        let name = self.fresh(&op_type.to_lowercase());
        let y = self.g.add_value(format!("{name}_out"), Fact::unknown());
        self.g.nodes.push(Node { name, op, inputs, outputs: vec![Some(y)] });
        y
    }

    /// The name of the node that produced `y`.
    pub fn node_name(&self, y: ValueId) -> String {
        self.g.nodes.iter().find(|n| n.outputs.contains(&Some(y))).expect("produced").name.clone()
    }

    pub fn name(&self, id: ValueId) -> String {
        self.g.values[id].name.clone()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv_full(
        &mut self,
        x: ValueId,
        cin: usize,
        cout: usize,
        k: [usize; 2],
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
        group: usize,
        bias: bool,
    ) -> ValueId {
        let fan_in = (cin / group * k[0] * k[1]) as f64;
        let a = (3.0 / fan_in).sqrt();
        let w = self.init("w", &[cout, cin / group, k[0], k[1]], -a, a);
        let b = bias.then(|| self.init("b", &[cout], -0.2, 0.2));
        let attrs = vec![
            ("kernel_shape", ints(&[k[0] as i64, k[1] as i64])),
            ("strides", ints(&[stride[0] as i64, stride[1] as i64])),
            ("pads", ints(&pads.map(|p| p as i64))),
            ("dilations", ints(&[dilation[0] as i64, dilation[1] as i64])),
            ("group", AttrValue::Int(group as i64)),
        ];
        self.node("Conv", attrs, vec![Some(x), Some(w), b])
    }

    /// A square conv with symmetric padding, dilation 1, group 1.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: ValueId,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> ValueId {
        self.conv_full(x, cin, cout, [k, k], [stride, stride], [pad; 4], [1, 1], 1, bias)
    }

    /// BatchNormalization with random gamma/beta/mean and positive var.
    pub fn bn(&mut self, x: ValueId, c: usize) -> ValueId {
        let gamma = self.init("gamma", &[c], 0.5, 1.5);
        let beta = self.init("beta", &[c], -0.5, 0.5);
        let mean = self.init("mean", &[c], -0.3, 0.3);
        let var = self.init("var", &[c], 0.5, 2.0);
        let mut attrs = vec![("epsilon", AttrValue::Float(1e-5))];
        if self.g.opset < 9 {
            // The zoo's opset-7 files: spatial=0 with per-channel statistics.
            attrs.push(("spatial", AttrValue::Int(0)));
        }
        self.node("BatchNormalization", attrs, vec![Some(x), Some(gamma), Some(beta), Some(mean), Some(var)])
    }

    pub fn relu(&mut self, x: ValueId) -> ValueId {
        self.node("Relu", vec![], vec![Some(x)])
    }

    pub fn add(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.node("Add", vec![], vec![Some(a), Some(b)])
    }

    pub fn maxpool(&mut self, x: ValueId, k: usize, stride: usize, pad: usize, ceil: bool) -> ValueId {
        let attrs = vec![
            ("kernel_shape", ints(&[k as i64, k as i64])),
            ("strides", ints(&[stride as i64, stride as i64])),
            ("pads", ints(&[pad as i64; 4])),
            ("ceil_mode", AttrValue::Int(ceil as i64)),
        ];
        self.node("MaxPool", attrs, vec![Some(x)])
    }

    pub fn gap(&mut self, x: ValueId) -> ValueId {
        self.node("GlobalAveragePool", vec![], vec![Some(x)])
    }

    pub fn flatten(&mut self, x: ValueId) -> ValueId {
        self.node("Flatten", vec![("axis", AttrValue::Int(1))], vec![Some(x)])
    }

    /// Dense head `x [N, f] · Wᵀ + b` (Gemm, transB=1, as the zoo writes it).
    pub fn dense(&mut self, x: ValueId, f: usize, classes: usize) -> ValueId {
        let a = (3.0 / f as f64).sqrt();
        let w = self.init("fc_w", &[classes, f], -a, a);
        let b = self.init("fc_b", &[classes], -0.1, 0.1);
        self.node("Gemm", vec![("transB", AttrValue::Int(1))], vec![Some(x), Some(w), Some(b)])
    }

    /// GAP → Flatten → dense: the usual head.
    pub fn head(&mut self, x: ValueId, c: usize, classes: usize) -> ValueId {
        let p = self.gap(x);
        let f = self.flatten(p);
        self.dense(f, c, classes)
    }

    pub fn finish(mut self, out: ValueId) -> Graph {
        self.g.outputs = vec![out];
        self.g.infer_facts().expect("the test graph checks out");
        self.g
    }
}

/// A seeded random NCHW batch and labels.
pub fn batch<T: resnet_engine::train::Real>(seed: u64, shape: [usize; 4], classes: usize) -> (Vec<T>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let x = (0..shape.iter().product::<usize>()).map(|_| T::from_f64(rng.uniform(-1.0, 1.0))).collect();
    let labels = (0..shape[0]).map(|_| rng.below(classes)).collect();
    (x, labels)
}

/// How many entries of a parameter to check: all of it, or a seeded sample.
#[derive(Clone, Copy)]
pub enum Entries {
    All,
    /// At most this many per parameter (all of a parameter that has fewer).
    Sample(usize),
}

/// Central finite differences of `program.loss` for parameter entries, against the
/// gradients of one `step` (made on a clone of the parameters: the running statistics the
/// step updates do not affect a training-mode loss). Returns the number of entries checked.
pub fn check_param_grads(
    program: &mut TrainProgram<f64>,
    x: &[f64],
    shape: [usize; 4],
    labels: &[usize],
    entries: Entries,
    tol: f64,
    seed: u64,
) -> usize {
    let before = program.loss(x, shape, labels).expect("loss");
    let out = program.step(x, shape, labels).expect("step");
    assert!((out.loss - before).abs() <= 1e-12 * before.abs().max(1.0), "step loss {} != loss {before}", out.loss);
    // The step moved the counter (dropout masks) forward; go back to the masks it used.
    program.set_step_count(program.step_count() - 1);
    let mut rng = Rng::new(seed);
    let h = 1e-6;
    let mut checked = 0;
    let mut worst = (0.0f64, String::new());
    for pi in 0..program.params().len() {
        let p = &program.params()[pi];
        if !p.trainable {
            assert!(p.grad.iter().all(|&g| g == 0.0), "frozen {} has a gradient", p.name);
            continue;
        }
        let idx: Vec<usize> = match entries {
            Entries::Sample(k) if p.value.len() > k => (0..k).map(|_| rng.below(p.value.len())).collect(),
            _ => (0..p.value.len()).collect(),
        };
        for i in idx {
            let analytic = program.params()[pi].grad[i];
            let orig = program.params()[pi].value[i];
            program.params_mut()[pi].value[i] = orig + h;
            let lp = program.loss(x, shape, labels).expect("loss");
            program.params_mut()[pi].value[i] = orig - h;
            let lm = program.loss(x, shape, labels).expect("loss");
            program.params_mut()[pi].value[i] = orig;
            let numeric = (lp - lm) / (2.0 * h);
            let err = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-2);
            if err > worst.0 {
                worst =
                    (err, format!("{}[{i}]: analytic {analytic:e}, numeric {numeric:e}", program.params()[pi].name));
            }
            checked += 1;
        }
    }
    assert!(worst.0 <= tol, "relative error {:e} > {tol:e} at {}", worst.0, worst.1);
    assert!(checked > 0, "no trainable parameter was checked");
    checked
}

/// Builds an f64 program and checks every (or a sample of every) parameter gradient.
pub fn gradcheck(
    graph: &Graph,
    options: TrainOptions,
    shape: [usize; 4],
    classes: usize,
    entries: Entries,
    seed: u64,
) -> usize {
    let mut p = TrainProgram::<f64>::new(graph, TrainOptions { threads: 1, ..options }).expect("compiles");
    let (x, labels) = batch::<f64>(seed, shape, classes);
    check_param_grads(&mut p, &x, shape, &labels, entries, 1e-6, seed)
}
