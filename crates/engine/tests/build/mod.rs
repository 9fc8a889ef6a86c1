//! Graph-building helpers shared by the plan and Winograd tests (`mod build;`).

use resnet_engine::{Fact, Graph, Node, Op, Tensor};

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_f32(shape.to_vec(), values(shape.iter().product(), seed))
}

pub fn node(g: &mut Graph, name: &str, op: Op, inputs: &[usize], out_name: &str) -> usize {
    let out = g.add_value(out_name, Fact::unknown());
    g.nodes.push(Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|&i| Some(i)).collect(),
        outputs: vec![Some(out)],
    });
    out
}

/// Routes graph input `r` through `Add(r, r)` placed first in the graph, so its readers read
/// a value the plan computes into a pooled buffer of its own (a Relu or a one-sided Add would
/// reuse the graph input's buffer): then a conv whose fused Add is that value's last reader
/// gets its buffer as the output. The graph computes what the original does on the feed
/// `doubled(r)` (doubling is exact).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn route_through_double(g: &mut Graph, r: usize) {
    let sum = g.add_value("r_doubled", Fact::unknown());
    for n in &mut g.nodes {
        for i in n.inputs.iter_mut().flatten() {
            if *i == r {
                *i = sum;
            }
        }
    }
    let add = Op::Binary(resnet_engine::ops::binary::Binary { kind: resnet_engine::ops::binary::BinaryKind::Add });
    g.nodes.insert(
        0,
        Node { name: "r_doubled".into(), op: add, inputs: vec![Some(r), Some(r)], outputs: vec![Some(sum)] },
    );
    g.infer_facts().expect("graph infers");
}

/// `2·t` elementwise.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn doubled(t: &Tensor) -> Tensor {
    let v = t.as_f32().expect("f32 tensor");
    Tensor::from_f32(t.shape().to_vec(), v.iter().map(|x| 2.0 * x).collect())
}

/// The two graphs of an in-place residual test, from a graph whose last input is a conv's
/// residual (fed last): `separate`, that graph keeping the residual (also a graph output, so
/// the plan never lends its buffer) with the feeds' residual doubled; and `computed`, the
/// residual routed through [`route_through_double`] (the plan's own buffer, dead after the
/// conv) with the original feeds. Both compute the same.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn residual_pair(g: &Graph, feeds: &[Tensor]) -> ((Graph, Vec<Tensor>), (Graph, Vec<Tensor>)) {
    let r = *g.inputs.last().expect("residual input");
    let mut computed = g.clone();
    route_through_double(&mut computed, r);
    let mut separate = g.clone();
    separate.outputs.push(r);
    let mut doubled_feeds = feeds.to_vec();
    let last = doubled_feeds.len() - 1;
    doubled_feeds[last] = doubled(&feeds[last]);
    ((separate, doubled_feeds), (computed, feeds.to_vec()))
}

/// The bit patterns of an f32 tensor, for exact comparisons.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().expect("f32 tensor").iter().map(|v| v.to_bits()).collect()
}

/// A ResNet v2-style tail of `c` channels on `hw × hw` with `k × k` convs (pad `k/2`): the
/// sum `s = conv1(x) + x` feeds both `r = relu(bn(s))` (→ conv2) and the next shortcut, `out
/// = conv2(r) + s`; outputs `[out, s, r]`. Returns the graph and the BatchNorm's `[scale,
/// bias, mean, var]` (`epsilon` 1e-5), for [`check_post_bits`].
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn v2_tail(c: usize, k: usize, hw: usize) -> (Graph, Vec<Vec<f32>>) {
    use resnet_engine::ops::batchnorm::BatchNormalization;
    use resnet_engine::ops::binary::{Binary, BinaryKind};
    use resnet_engine::ops::conv::Conv;
    use resnet_engine::ops::padding::Window;
    use resnet_engine::ops::relu::Relu;
    use resnet_engine::Dim;
    let mut g = Graph { opset: 7, ..Graph::default() };
    let x = g.add_value(
        "x",
        Fact::new(resnet_engine::DType::F32, vec![Dim::Sym("N".into()), Dim::Known(c), Dim::Known(hw), Dim::Known(hw)]),
    );
    g.inputs.push(x);
    let conv = |g: &mut Graph, name: &str, input: usize, seed: u64| {
        let w = g.add_initializer(format!("{name}_w"), tensor(&[c, c, k, k], seed));
        let p = k / 2;
        let window = Window { kernel_shape: Some(vec![k, k]), pads: Some(vec![p, p, p, p]), ..Window::default() };
        node(g, name, Op::Conv(Conv { window, group: 1 }), &[input, w], &format!("{name}_y"))
    };
    let y1 = conv(&mut g, "conv1", x, 10);
    let s = node(&mut g, "add1", Op::Binary(Binary { kind: BinaryKind::Add }), &[y1, x], "s");
    let stats: Vec<Vec<f32>> = (0..4)
        .map(|i| {
            let mut v = values(c, 20 + i as u64);
            if i == 3 {
                v.iter_mut().for_each(|x| *x = x.abs() + 0.5);
            }
            v
        })
        .collect();
    let ids: Vec<usize> = stats
        .iter()
        .enumerate()
        .map(|(i, v)| g.add_initializer(format!("bn_{i}"), Tensor::from_f32(vec![c], v.clone())))
        .collect();
    let bn = BatchNormalization { epsilon: 1e-5, spatial: true };
    let b = node(&mut g, "bn", Op::BatchNormalization(bn), &[s, ids[0], ids[1], ids[2], ids[3]], "b");
    let r = node(&mut g, "relu", Op::Relu(Relu {}), &[b], "r");
    let y2 = conv(&mut g, "conv2", r, 11);
    let out = node(&mut g, "add2", Op::Binary(Binary { kind: BinaryKind::Add }), &[y2, s], "out");
    g.outputs = vec![out, s, r];
    g.infer_facts().expect("the v2 tail infers");
    (g, stats)
}

/// Asserts that a run of [`v2_tail`]'s graph gave `r` bit for bit as the BatchNorm + ReLU
/// pass computes it from the `s` it gave (`x · scale + shift`, then the max with 0).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn check_post_bits(got: &[Tensor], stats: &[Vec<f32>], plane: usize, what: &str) {
    let c = stats[0].len();
    let (sum, z) = (got[1].as_f32().expect("s"), got[2].as_f32().expect("r"));
    assert_eq!(sum.len(), z.len(), "{what}");
    for (i, (&sv, &zv)) in sum.iter().zip(z).enumerate() {
        let ch = i / plane % c;
        let scale = stats[0][ch] / (stats[3][ch] + 1e-5).sqrt();
        let shift = stats[1][ch] - stats[2][ch] * scale;
        assert_eq!(zv.to_bits(), (sv * scale + shift).max(0.0).to_bits(), "{what}: element {i}");
    }
}
