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
