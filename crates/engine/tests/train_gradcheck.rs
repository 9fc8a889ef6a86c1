//! Every backward op of `engine::train` against central finite differences in f64.
//!
//! Each graph puts a trainable 1×1 conv (with bias) in front of the op under test, so the
//! pre-conv's gradients check the op's INPUT gradient, and ends in a dense head, so the loss
//! is the program's real softmax cross-entropy. Shapes are small and seeded.

mod train_support;

use resnet_engine::ops::AttrValue;
use resnet_engine::train::{TrainOptions, TrainProgram};
use resnet_engine::Tensor;
use train_support::{batch, check_param_grads, gradcheck, ints, Entries, Net, Rng};

const CLASSES: usize = 3;

/// input → 1×1 pre-conv (bias) → `body` → GAP → Flatten → Gemm; `body` returns its output
/// and channel count.
fn around(
    c: usize,
    h: usize,
    w: usize,
    seed: u64,
    body: impl FnOnce(&mut Net, usize) -> (usize, usize),
) -> resnet_engine::Graph {
    let mut net = Net::new(None, c, h, w, 13, seed);
    let x = net.x;
    let pre = net.conv(x, c, c, 1, 1, 0, true);
    let (y, cy) = body(&mut net, pre);
    let out = net.head(y, cy, CLASSES);
    net.finish(out)
}

#[test]
fn conv_gradients_with_strides_pads_dilations_groups_and_bias() {
    let mut rng = Rng::new(7);
    for case in 0..24u64 {
        let group = [1, 1, 2, 3][rng.below(4)];
        let cin = group * (1 + rng.below(2));
        let cout = group * (1 + rng.below(2));
        let k = [1 + rng.below(3), 1 + rng.below(3)];
        let stride = [1 + rng.below(2), 1 + rng.below(2)];
        let dilation = [1 + rng.below(2), 1 + rng.below(2)];
        let pads = [rng.below(2), rng.below(3), rng.below(2), rng.below(3)];
        let bias = rng.below(2) == 1;
        let (h, w) = (4 + rng.below(3), 4 + rng.below(4));
        let n = 1 + rng.below(3);
        let g = around(cin, h, w, case, |net, x| {
            let y = net.conv_full(x, cin, cout, k, stride, pads, dilation, group, bias);
            (y, cout)
        });
        gradcheck(&g, TrainOptions::default(), [n, cin, h, w], CLASSES, Entries::All, case);
    }
}

#[test]
fn pointwise_conv_skips_im2col_and_still_matches() {
    let g = around(3, 5, 4, 1, |net, x| (net.conv(x, 3, 4, 1, 1, 0, true), 4));
    gradcheck(&g, TrainOptions::default(), [2, 3, 5, 4], CLASSES, Entries::All, 1);
}

#[test]
fn batchnorm_training_mode_gradients() {
    for (seed, opset) in [(1, 15), (2, 7), (3, 13)] {
        let mut net = Net::new(None, 3, 4, 5, opset, seed);
        let x = net.x;
        let pre = net.conv(x, 3, 3, 1, 1, 0, true);
        let b = net.bn(pre, 3);
        let out = net.head(b, 3, CLASSES);
        let g = net.finish(out);
        gradcheck(&g, TrainOptions::default(), [3, 3, 4, 5], CLASSES, Entries::All, seed);
    }
}

#[test]
fn batchnorm_inference_mode_gradients() {
    let mut net = Net::new(None, 3, 4, 4, 15, 4);
    let x = net.x;
    let pre = net.conv(x, 3, 3, 1, 1, 0, true);
    let b = net.bn(pre, 3);
    let bn_name = net.node_name(b);
    let out = net.head(b, 3, CLASSES);
    let g = net.finish(out);
    let options = TrainOptions { bn_inference: [bn_name].into(), ..TrainOptions::default() };
    gradcheck(&g, options, [2, 3, 4, 4], CLASSES, Entries::All, 4);
}

#[test]
fn relu_gradients() {
    let g = around(3, 4, 4, 5, |net, x| (net.relu(x), 3));
    gradcheck(&g, TrainOptions::default(), [2, 3, 4, 4], CLASSES, Entries::All, 5);
}

#[test]
fn maxpool_gradients_with_pads_strides_and_ceil_mode() {
    for (seed, k, s, p, ceil) in [(1, 3, 2, 1, false), (2, 2, 2, 0, false), (3, 3, 1, 1, false), (4, 3, 2, 0, true)] {
        let g = around(2, 7, 6, seed, |net, x| (net.maxpool(x, k, s, p, ceil), 2));
        gradcheck(&g, TrainOptions::default(), [2, 2, 7, 6], CLASSES, Entries::All, seed);
    }
}

#[test]
fn averagepool_gradients_with_and_without_counting_pads() {
    for (seed, include) in [(1, 0), (2, 1)] {
        let g = around(2, 6, 5, seed, |net, x| {
            let attrs = vec![
                ("kernel_shape", ints(&[3, 2])),
                ("strides", ints(&[2, 1])),
                ("pads", ints(&[1, 0, 1, 1])),
                ("count_include_pad", AttrValue::Int(include)),
            ];
            (net.node("AveragePool", attrs, vec![Some(x)]), 2)
        });
        gradcheck(&g, TrainOptions::default(), [2, 2, 6, 5], CLASSES, Entries::All, seed);
    }
}

#[test]
fn global_average_pool_flatten_and_gemm_head_gradients() {
    // `around` already ends GAP → Flatten → Gemm; the body is empty.
    let g = around(4, 3, 3, 6, |_, x| (x, 4));
    gradcheck(&g, TrainOptions::default(), [3, 4, 3, 3], CLASSES, Entries::All, 6);
}

#[test]
fn residual_add_gradients() {
    let g = around(3, 4, 4, 7, |net, x| {
        let y = net.conv(x, 3, 3, 3, 1, 1, false);
        (net.add(y, x), 3)
    });
    gradcheck(&g, TrainOptions::default(), [2, 3, 4, 4], CLASSES, Entries::All, 7);
}

#[test]
fn reshape_with_a_constant_shape_gradients() {
    let mut net = Net::new(Some(2), 3, 2, 2, 13, 8);
    let x = net.x;
    let pre = net.conv(x, 3, 3, 1, 1, 0, true);
    let shape = net.constant("shape", Tensor::from_i64(vec![2], vec![0, -1]));
    let r = net.node("Reshape", vec![], vec![Some(pre), Some(shape)]);
    let out = net.dense(r, 12, CLASSES);
    let g = net.finish(out);
    gradcheck(&g, TrainOptions::default(), [2, 3, 2, 2], CLASSES, Entries::All, 8);
}

#[test]
fn gemm_gradients_with_transposes_alpha_beta_and_bias_shapes() {
    // A reaches Gemm as an activation: [N, F] (transA=0) or reshaped to [F, N] (transA=1).
    let (n, c, hw) = (3, 2, 2);
    let f = c * hw * hw;
    let mut case = 0;
    for trans_a in [0, 1] {
        for trans_b in [0, 1] {
            for c_shape in [vec![CLASSES], vec![1, CLASSES], vec![n, CLASSES], vec![]] {
                case += 1;
                let mut net = Net::new(Some(n), c, hw, hw, 13, case);
                let x = net.x;
                let pre = net.conv(x, c, c, 1, 1, 0, true);
                let a = if trans_a == 1 {
                    let s = net.constant("shape", Tensor::from_i64(vec![2], vec![f as i64, n as i64]));
                    net.node("Reshape", vec![], vec![Some(pre), Some(s)])
                } else {
                    net.flatten(pre)
                };
                let b_shape = if trans_b == 1 { [CLASSES, f] } else { [f, CLASSES] };
                let b = net.init("gemm_b", &b_shape, -0.5, 0.5);
                let cv = net.init("gemm_c", &c_shape, -0.5, 0.5);
                let attrs = vec![
                    ("transA", AttrValue::Int(trans_a)),
                    ("transB", AttrValue::Int(trans_b)),
                    ("alpha", AttrValue::Float(0.7)),
                    ("beta", AttrValue::Float(1.3)),
                ];
                let out = net.node("Gemm", attrs, vec![Some(a), Some(b), Some(cv)]);
                let g = net.finish(out);
                gradcheck(&g, TrainOptions::default(), [n, c, hw, hw], CLASSES, Entries::All, case);
            }
        }
    }
}

#[test]
fn matmul_with_a_bias_add_gradients() {
    let mut net = Net::new(None, 2, 2, 2, 13, 9);
    let x = net.x;
    let pre = net.conv(x, 2, 2, 1, 1, 0, true);
    let f = net.flatten(pre);
    let w = net.init("mm_w", &[8, CLASSES], -0.5, 0.5);
    let m = net.node("MatMul", vec![], vec![Some(f), Some(w)]);
    let b = net.init("mm_b", &[CLASSES], -0.5, 0.5);
    let out = net.add(m, b);
    let g = net.finish(out);
    let p = TrainProgram::<f64>::new(&g, TrainOptions::default()).unwrap();
    assert_eq!(p.params().len(), 4, "pre-conv W/B, MatMul weight and the Add bias are learned");
    gradcheck(&g, TrainOptions::default(), [3, 2, 2, 2], CLASSES, Entries::All, 9);
}

#[test]
fn dropout_gradients_with_the_mask_of_the_step() {
    for (opset, seed) in [(11, 10), (13, 11)] {
        let mut net = Net::new(None, 3, 3, 3, opset, seed);
        let x = net.x;
        let pre = net.conv(x, 3, 3, 1, 1, 0, true);
        let d = if opset < 12 {
            net.node("Dropout", vec![("ratio", AttrValue::Float(0.3))], vec![Some(pre)])
        } else {
            let r = net.constant("ratio", Tensor::from_f32(vec![], vec![0.3]));
            net.node("Dropout", vec![], vec![Some(pre), Some(r)])
        };
        let out = net.head(d, 3, CLASSES);
        let g = net.finish(out);
        let options = TrainOptions { seed, ..TrainOptions::default() };
        gradcheck(&g, options.clone(), [4, 3, 3, 3], CLASSES, Entries::All, seed);
        // The mask is live: training-mode loss differs from the inference-mode one.
        let p = TrainProgram::<f64>::new(&g, options).unwrap();
        let (xb, labels) = batch::<f64>(seed, [4, 3, 3, 3], CLASSES);
        let train = p.loss(&xb, [4, 3, 3, 3], &labels).unwrap();
        let logits = p.predict(&xb, [4, 3, 3, 3]).unwrap();
        let mut q = TrainProgram::<f64>::new(&g, TrainOptions::default()).unwrap();
        q.set_step_count(5);
        assert_ne!(train, q.loss(&xb, [4, 3, 3, 3], &labels).unwrap(), "other step, other mask");
        assert_eq!(logits.len(), 4 * CLASSES);
    }
}

#[test]
fn loss_gradients_with_and_without_label_smoothing_and_an_output_softmax() {
    for (seed, smoothing, softmax) in [(12, 0.0, false), (13, 0.1, false), (14, 0.2, true)] {
        let mut net = Net::new(None, 2, 2, 2, 13, seed);
        let x = net.x;
        let f = net.flatten(x);
        let mut out = net.dense(f, 8, 5);
        if softmax {
            out = net.node("Softmax", vec![("axis", AttrValue::Int(1))], vec![Some(out)]);
        }
        let g = net.finish(out);
        let options = TrainOptions { label_smoothing: smoothing, ..TrainOptions::default() };
        gradcheck(&g, options, [4, 2, 2, 2], 5, Entries::All, seed);
    }
}

#[test]
fn frozen_parameters_get_no_gradient_and_the_rest_still_match() {
    let mut net = Net::new(None, 2, 4, 4, 13, 15);
    let x = net.x;
    let c = net.conv(x, 2, 3, 3, 1, 1, true);
    let w_name = net.name(net.g.nodes[0].inputs[1].unwrap());
    let b = net.bn(c, 3);
    let r = net.relu(b);
    let out = net.head(r, 3, CLASSES);
    let g = net.finish(out);
    let options = TrainOptions { frozen: [w_name.clone()].into(), ..TrainOptions::default() };
    let mut p = TrainProgram::<f64>::new(&g, TrainOptions { threads: 1, ..options }).unwrap();
    assert!(!p.params().iter().find(|q| q.name == w_name).unwrap().trainable);
    let (xb, labels) = batch::<f64>(15, [2, 2, 4, 4], CLASSES);
    check_param_grads(&mut p, &xb, [2, 2, 4, 4], &labels, Entries::All, 1e-6, 15);
}
