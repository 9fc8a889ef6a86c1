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
