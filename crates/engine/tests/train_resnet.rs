//! Whole small ResNets in f64 against finite differences: a v1 basic-block stack and a v2
//! pre-activation stack, each with an identity and a projection shortcut, the stem
//! conv+BN+relu+maxpool, a global pool and a Gemm head.

mod train_support;

use resnet_engine::train::TrainOptions;
use resnet_engine::{Graph, Tensor, ValueId};
use train_support::{gradcheck, Entries, Net};

const CLASSES: usize = 4;

fn basic_v1(net: &mut Net, x: ValueId, cin: usize, c: usize, stride: usize) -> ValueId {
    let a = net.conv(x, cin, c, 3, stride, 1, false);
    let a = net.bn(a, c);
    let a = net.relu(a);
    let a = net.conv(a, c, c, 3, 1, 1, false);
    let a = net.bn(a, c);
    let shortcut = if stride != 1 || cin != c {
        let s = net.conv(x, cin, c, 1, stride, 0, false);
        net.bn(s, c)
    } else {
        x
    };
    let sum = net.add(a, shortcut);
    net.relu(sum)
}

fn basic_v2(net: &mut Net, x: ValueId, cin: usize, c: usize, stride: usize) -> ValueId {
    let pre = net.bn(x, cin);
    let pre = net.relu(pre);
    let a = net.conv(pre, cin, c, 3, stride, 1, false);
    let a = net.bn(a, c);
    let a = net.relu(a);
    let a = net.conv(a, c, c, 3, 1, 1, false);
    let shortcut = if stride != 1 || cin != c { net.conv(pre, cin, c, 1, stride, 0, false) } else { x };
    net.add(a, shortcut)
}

/// Stem conv 3×3 (3→4) + BN + relu + maxpool 3/2, two blocks (4→4 identity, 4→8 stride-2
/// projection), global pool, head.
fn resnet(v2: bool, opset: i64, seed: u64) -> (Graph, Vec<String>) {
    let mut net = Net::new(None, 3, 8, 8, opset, seed);
    let mut frozen = Vec::new();
    let mut x = net.x;
    if v2 {
        // The data BN: Gluon's scale=False, center=False — gamma/beta exist but are frozen.
        x = net.bn(x, 3);
        let node = net.g.nodes.last().unwrap();
        frozen = vec![net.name(node.inputs[1].unwrap()), net.name(node.inputs[2].unwrap())];
    }
    let s = net.conv(x, 3, 4, 3, 1, 1, false);
    let s = net.bn(s, 4);
    let s = net.relu(s);
    let s = net.maxpool(s, 3, 2, 1, false);
    let block = if v2 { basic_v2 } else { basic_v1 };
    let b = block(&mut net, s, 4, 4, 1);
    let mut b = block(&mut net, b, 4, 8, 2);
    if v2 {
        b = net.bn(b, 8);
        b = net.relu(b);
    }
    let p = net.gap(b);
    let f = if v2 {
        let shape = net.constant("shape", Tensor::from_i64(vec![2], vec![0, -1]));
        net.node("Reshape", vec![], vec![Some(p), Some(shape)])
    } else {
        net.flatten(p)
    };
    let out = net.dense(f, 8, CLASSES);
    (net.finish(out), frozen)
}

#[test]
fn small_resnet_v1_parameter_gradients_match_finite_differences() {
    let (g, _) = resnet(false, 13, 1);
    let checked = gradcheck(&g, TrainOptions::default(), [3, 3, 8, 8], CLASSES, Entries::Sample(24), 1);
    assert!(checked > 200, "only {checked} entries checked");
}

#[test]
fn small_resnet_v2_with_a_frozen_data_bn_parameter_gradients_match_finite_differences() {
    let (g, frozen) = resnet(true, 7, 2);
    let options = TrainOptions { frozen: frozen.into_iter().collect(), ..TrainOptions::default() };
    let checked = gradcheck(&g, options, [3, 3, 8, 8], CLASSES, Entries::Sample(24), 2);
    assert!(checked > 200, "only {checked} entries checked");
}
