//! `TrainProgram` behaviour beyond gradients: BatchNorm running statistics, inference
//! against the reference executor, writing weights back, thread-count independence, a tiny
//! end-to-end SGD run, and typed errors.

mod train_support;

use resnet_engine::train::{TrainError, TrainOptions, TrainProgram};
use resnet_engine::{exec, Graph, Tensor};
use train_support::{batch, Net};

const CLASSES: usize = 3;

/// conv → BN → relu → maxpool → conv → BN → relu (+ residual) → head.
fn small_net(seed: u64) -> Graph {
    let mut net = Net::new(None, 3, 6, 6, 13, seed);
    let x = net.x;
    let a = net.conv(x, 3, 4, 3, 1, 1, false);
    let a = net.bn(a, 4);
    let a = net.relu(a);
    let a = net.maxpool(a, 3, 2, 1, false);
    let b = net.conv(a, 4, 4, 3, 1, 1, true);
    let b = net.bn(b, 4);
    let s = net.add(b, a);
    let s = net.relu(s);
    let out = net.head(s, 4, CLASSES);
    net.finish(out)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn batchnorm_running_statistics_follow_momentum_and_the_unbiased_variance() {
    let mut net = Net::new(None, 2, 3, 3, 15, 1);
    let x = net.x;
    let b = net.bn(x, 2);
    let out = net.head(b, 2, CLASSES);
    let g = net.finish(out);
    let mut p = TrainProgram::<f64>::new(&g, TrainOptions { threads: 1, ..TrainOptions::default() }).unwrap();
    let (xb, labels) = batch::<f64>(3, [4, 2, 3, 3], CLASSES);
    let (mean0, var0) = (p.buffers()[0].value.clone(), p.buffers()[1].value.clone());
    p.step(&xb, [4, 2, 3, 3], &labels).unwrap();
    let count = 4 * 9;
    for c in 0..2 {
        let vals: Vec<f64> = (0..4).flat_map(|n| xb[(n * 2 + c) * 9..][..9].to_vec()).collect();
        let mean = vals.iter().sum::<f64>() / count as f64;
        let unbiased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1) as f64;
        let want_mean = 0.9 * mean0[c] + 0.1 * mean;
        let want_var = 0.9 * var0[c] + 0.1 * unbiased;
        assert!(
            rel(p.buffers()[0].value[c], want_mean) < 1e-12,
            "running mean of channel {c}: {} vs {want_mean} (mean {mean}, was {})",
            p.buffers()[0].value[c],
            mean0[c]
        );
        assert!(rel(p.buffers()[1].value[c], want_var) < 1e-12, "running var of channel {c}");
    }
    // loss() leaves them alone; a BN in inference mode never moves them.
    let before = p.buffers()[0].value.clone();
    p.loss(&xb, [4, 2, 3, 3], &labels).unwrap();
    assert_eq!(p.buffers()[0].value, before);
    let bn = net_bn_name(&g);
    let mut q =
        TrainProgram::<f64>::new(&g, TrainOptions { bn_inference: [bn].into(), ..TrainOptions::default() }).unwrap();
    let frozen_before = q.buffers()[1].value.clone();
    q.step(&xb, [4, 2, 3, 3], &labels).unwrap();
    assert_eq!(q.buffers()[1].value, frozen_before);
}

fn net_bn_name(g: &Graph) -> String {
    g.nodes.iter().find(|n| n.op.onnx_type() == "BatchNormalization").unwrap().name.clone()
}

#[test]
fn predict_matches_the_reference_executor_and_write_to_graph_round_trips() {
    let g = small_net(2);
    let mut p = TrainProgram::<f32>::new(&g, TrainOptions::default()).unwrap();
    let shape = [3, 3, 6, 6];
    let (xb, labels) = batch::<f32>(4, shape, CLASSES);
    let want = exec::run(&g, vec![Tensor::from_f32(shape.to_vec(), xb.clone())]).unwrap();
    let got = p.predict(&xb, shape).unwrap();
    let want = want[0].as_f32().unwrap();
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "predict {a} vs exec {b}");
    }
    // Train a few steps (running statistics and weights move), then write back.
    for _ in 0..3 {
        p.step(&xb, shape, &labels).unwrap();
        for q in p.params_mut() {
            for (v, g) in q.value.iter_mut().zip(&q.grad) {
                *v -= 0.1 * g;
            }
        }
    }
    let trained = p.predict(&xb, shape).unwrap();
    assert!(trained.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-3), "training changed the logits");
    let mut g2 = g.clone();
    p.write_to_graph(&mut g2).unwrap();
    let run = exec::run(&g2, vec![Tensor::from_f32(shape.to_vec(), xb.clone())]).unwrap();
    for (a, b) in trained.iter().zip(run[0].as_f32().unwrap()) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "predict {a} vs exec after write_to_graph {b}");
    }
}

#[test]
fn f32_and_f64_programs_agree_on_the_loss() {
    let g = small_net(3);
    let shape = [2, 3, 6, 6];
    let (x64, labels) = batch::<f64>(5, shape, CLASSES);
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    let l64 = TrainProgram::<f64>::new(&g, TrainOptions::default()).unwrap().loss(&x64, shape, &labels).unwrap();
    let l32 = TrainProgram::<f32>::new(&g, TrainOptions::default()).unwrap().loss(&x32, shape, &labels).unwrap();
    assert!(rel(l32, l64) < 1e-5, "f32 {l32} vs f64 {l64}");
}

#[test]
fn one_and_two_threads_agree_and_one_thread_is_bit_reproducible() {
    let g = small_net(4);
    let shape = [5, 3, 6, 6];
    let (xb, labels) = batch::<f32>(6, shape, CLASSES);
    let run = |threads: usize| {
        let mut p = TrainProgram::<f32>::new(&g, TrainOptions { threads, ..TrainOptions::default() }).unwrap();
        let mut losses = Vec::new();
        for _ in 0..3 {
            losses.push(p.step(&xb, shape, &labels).unwrap().loss);
            for q in p.params_mut() {
                for (v, g) in q.value.iter_mut().zip(&q.grad) {
                    *v -= 0.05 * g;
                }
            }
        }
        let grads: Vec<Vec<f32>> = p.params().iter().map(|q| q.grad.clone()).collect();
        (losses, grads)
    };
    let (l1, g1) = run(1);
    let (l1b, g1b) = run(1);
    assert_eq!(l1, l1b, "threads=1 is bit-reproducible");
    assert_eq!(g1, g1b);
    let (l2, g2) = run(2);
    for (a, b) in l1.iter().zip(&l2) {
        assert!(rel(*a, *b) < 1e-6, "1 thread {a} vs 2 threads {b}");
    }
    for (a, b) in g1.iter().flatten().zip(g2.iter().flatten()) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1e-2), "gradient {a} vs {b}");
    }
}

#[test]
fn plain_sgd_on_a_separable_problem_drives_the_loss_down() {
    // Class k: channel means (cos, sin)(2πk/4) plus noise — separable after a global pool.
    let mut net = Net::new(None, 2, 6, 6, 13, 7);
    let x = net.x;
    let a = net.conv(x, 2, 4, 3, 1, 1, true);
    let a = net.bn(a, 4);
    let a = net.relu(a);
    let out = net.head(a, 4, 4);
    let g = net.finish(out);
    let mut p = TrainProgram::<f32>::new(&g, TrainOptions { threads: 1, ..TrainOptions::default() }).unwrap();
    let mut rng = train_support::Rng::new(8);
    let n = 16;
    let labels: Vec<usize> = (0..n).map(|i| i % 4).collect();
    let mut xb = vec![0f32; n * 72];
    for (i, &l) in labels.iter().enumerate() {
        let angle = std::f64::consts::FRAC_PI_2 * l as f64;
        for (c, m) in [angle.cos(), angle.sin()].into_iter().enumerate() {
            for v in &mut xb[(i * 2 + c) * 36..][..36] {
                *v = (m + rng.uniform(-0.3, 0.3)) as f32;
            }
        }
    }
    let shape = [n, 2, 6, 6];
    let first = p.loss(&xb, shape, &labels).unwrap();
    for _ in 0..60 {
        p.step(&xb, shape, &labels).unwrap();
        for q in p.params_mut() {
            for (v, g) in q.value.iter_mut().zip(&q.grad) {
                *v -= 0.5 * g;
            }
        }
    }
    let last = p.loss(&xb, shape, &labels).unwrap();
    assert!(last * 5.0 < first, "loss went from {first} to {last}");
    let out = p.step(&xb, shape, &labels).unwrap();
    assert_eq!((out.correct_top1, out.batch), (n, n));
}

#[test]
fn an_op_without_backward_on_the_gradient_path_is_a_typed_error_naming_the_node() {
    let mut net = Net::new(None, 2, 4, 4, 13, 9);
    let x = net.x;
    let a = net.conv(x, 2, 2, 3, 1, 1, false);
    let t = net.node("Transpose", vec![("perm", train_support::ints(&[0, 1, 3, 2]))], vec![Some(a)]);
    let name = net.node_name(t);
    let out = net.head(t, 2, CLASSES);
    let g = net.finish(out);
    match TrainProgram::<f32>::new(&g, TrainOptions::default()) {
        Err(e @ TrainError::NoBackward { .. }) => assert!(e.to_string().contains(&name), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("compiled a graph whose gradient crosses a Transpose"),
    }
}

#[test]
fn forward_only_ops_before_the_first_parameter_run_through_the_reference_kernels() {
    let mut net = Net::new(None, 2, 4, 4, 13, 10);
    let x = net.x;
    let t = net.node("Transpose", vec![("perm", train_support::ints(&[0, 1, 3, 2]))], vec![Some(x)]);
    let pads = net.constant("pads", Tensor::from_i64(vec![8], vec![0, 0, 1, 1, 0, 0, 1, 1]));
    let padded = net.node("Pad", vec![], vec![Some(t), Some(pads)]);
    let a = net.conv(padded, 2, 3, 3, 1, 0, true);
    let out = net.head(a, 3, CLASSES);
    let g = net.finish(out);
    let mut p = TrainProgram::<f32>::new(&g, TrainOptions::default()).unwrap();
    let shape = [2, 2, 4, 4];
    let (xb, labels) = batch::<f32>(11, shape, CLASSES);
    p.step(&xb, shape, &labels).unwrap();
    assert!(p.params().iter().all(|q| q.grad.iter().any(|&g| g != 0.0)));
    let want = exec::run(&g, vec![Tensor::from_f32(shape.to_vec(), xb.clone())]).unwrap();
    for (a, b) in p.predict(&xb, shape).unwrap().iter().zip(want[0].as_f32().unwrap()) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0));
    }
}

#[test]
fn bad_inputs_and_labels_are_typed_errors() {
    let g = small_net(12);
    let mut p = TrainProgram::<f32>::new(&g, TrainOptions::default()).unwrap();
    let shape = [2, 3, 6, 6];
    let (xb, labels) = batch::<f32>(13, shape, CLASSES);
    let e = p.step(&xb, [2, 3, 5, 6], &labels).unwrap_err();
    assert!(matches!(e, TrainError::Input { .. }), "{e}");
    let e = p.step(&xb[1..], shape, &labels).unwrap_err();
    assert!(matches!(e, TrainError::Input { .. }), "{e}");
    let e = p.step(&xb, shape, &[0]).unwrap_err();
    assert!(matches!(e, TrainError::LabelCount { got: 1, batch: 2 }), "{e}");
    let e = p.step(&xb, shape, &[0, CLASSES]).unwrap_err();
    assert!(matches!(e, TrainError::LabelRange { label: CLASSES, index: 1, classes: CLASSES }), "{e}");
    assert!(p.loss(&xb, shape, &[7, 0]).is_err());
    // The program still works after the errors, and grads keep their lengths.
    p.step(&xb, shape, &labels).unwrap();
    assert!(p.params().iter().all(|q| q.grad.len() == q.value.len()));
    let unknown = TrainOptions { frozen: ["nope".to_string()].into(), ..TrainOptions::default() };
    assert!(matches!(TrainProgram::<f32>::new(&g, unknown), Err(TrainError::UnknownName { .. })));
    let mut two_outputs = g.clone();
    two_outputs.outputs.push(two_outputs.outputs[0]);
    assert!(matches!(TrainProgram::<f32>::new(&two_outputs, TrainOptions::default()), Err(TrainError::OutputCount(2))));
}

/// Winograd (`TrainOptions::winograd`) against the exact products (on AVX-512 CPUs the
/// direct kernel's forward and input gradient, elsewhere im2col) and against the
/// f64 program: loss, every parameter gradient and the running statistics after one step of
/// a net whose 3×3 stride-1 convs qualify (64 channels; 2 images of 16×16 are 32 tiles).
/// Covers a conv whose input also feeds another Winograd conv (the second input gradient is
/// added), asymmetric padding (`pads` 0 / 2: the input gradient's padding is 2 / 0) and a
/// bias.
#[test]
fn winograd_training_matches_the_exact_convolutions() {
    let mut net = Net::new(None, 64, 16, 16, 13, 11);
    let x = net.x;
    let a = net.conv(x, 64, 64, 3, 1, 1, false);
    let a = net.bn(a, 64);
    let a = net.relu(a);
    let b = net.conv(a, 64, 64, 3, 1, 1, true);
    let c = net.conv_full(a, 64, 64, [3, 3], [1, 1], [0, 0, 2, 2], [1, 1], 1, false);
    let s = net.add(b, c);
    let s = net.bn(s, 64);
    let s = net.relu(s);
    let out = net.head(s, 64, CLASSES);
    let g = net.finish(out);
    let shape = [2, 64, 16, 16];
    let (x64, labels) = batch::<f64>(21, shape, CLASSES);
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();

    let mut truth = TrainProgram::<f64>::new(&g, TrainOptions { threads: 1, ..TrainOptions::default() }).unwrap();
    let want = truth.step(&x64, shape, &labels).unwrap();
    let mut results = Vec::new();
    for winograd in [false, true] {
        let mut p =
            TrainProgram::<f32>::new(&g, TrainOptions { threads: 2, winograd, ..TrainOptions::default() }).unwrap();
        let got = p.step(&x32, shape, &labels).unwrap();
        assert!(rel(got.loss, want.loss) < 1e-5, "winograd {winograd}: loss {} vs {}", got.loss, want.loss);
        // Each gradient within 1e-4 of its tensor's largest entry (f64 is the truth), plus
        // 1e-6 of the largest gradient overall: the bias before BatchNorm has a zero gradient
        // in exact arithmetic, so f32 leaves only its rounding there.
        let max_abs = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let global = truth.params().iter().map(|p| max_abs(&p.grad)).fold(0.0, f64::max);
        for (p32, p64) in p.params().iter().zip(truth.params()) {
            let bound = 1e-4 * max_abs(&p64.grad) + 1e-6 * global;
            let worst = p32.grad.iter().zip(&p64.grad).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < bound, "winograd {winograd}: {} gradient off by {worst} (bound {bound})", p64.name);
        }
        for (b32, b64) in p.buffers().iter().zip(truth.buffers()) {
            for (&a, &b) in b32.value.iter().zip(&b64.value) {
                assert!((a as f64 - b).abs() < 1e-5 * b.abs().max(1.0), "{}: {a} vs {b}", b64.name);
            }
        }
        results.push(p.params().iter().map(|p| p.grad.clone()).collect::<Vec<_>>());
    }
    // Winograd really ran: its rounding differs from the exact products somewhere.
    assert_ne!(results[0], results[1], "the Winograd path was not taken");
}

/// One f32 step against the f64 program: loss within 1e-5, every parameter gradient within
/// 1e-4 of its tensor's largest entry (plus 1e-6 of the largest gradient overall, for the
/// pre-BatchNorm biases whose exact gradient is 0). Returns the f32 gradients.
fn step_against_f64(g: &Graph, shape: [usize; 4], threads: usize, what: &str) -> Vec<Vec<f32>> {
    let (x64, labels) = batch::<f64>(33, shape, CLASSES);
    let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
    let mut truth = TrainProgram::<f64>::new(g, TrainOptions { threads: 1, ..TrainOptions::default() }).unwrap();
    let want = truth.step(&x64, shape, &labels).unwrap();
    let mut p = TrainProgram::<f32>::new(g, TrainOptions { threads, ..TrainOptions::default() }).unwrap();
    let got = p.step(&x32, shape, &labels).unwrap();
    assert!(rel(got.loss, want.loss) < 1e-5, "{what}: loss {} vs {}", got.loss, want.loss);
    let max_abs = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let global = truth.params().iter().map(|p| max_abs(&p.grad)).fold(0.0, f64::max);
    for (p32, p64) in p.params().iter().zip(truth.params()) {
        let bound = 1e-4 * max_abs(&p64.grad) + 1e-6 * global;
        let worst = p32.grad.iter().zip(&p64.grad).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst < bound, "{what}: {} gradient off by {worst} (bound {bound})", p64.name);
    }
    p.params().iter().map(|p| p.grad.clone()).collect()
}

/// Held by the tests that lower the kernels' ISA cap (a process-wide setting): run together,
/// one's cap would send the other's "fast path" step down the im2col path.
static ISA_CAP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The batch-lane convs of training (2-D convs wider than 1×1 with output planes under
/// 20×20 and at least 48 images, on AVX-512 CPUs) against the f64 program and the im2col
/// path (the kernels capped to AVX2, where lanes decline): 50 images (the last lane vector
/// part-filled), 3×3 pad 1 with and without bias, a conv whose input also feeds another (its
/// input gradient is added), asymmetric pads 0 / 2, a stride-2 3×3 conv (input gradient by
/// pixel classes) next to a stride-2 1×1 one (im2col), on 2 threads.
#[test]
fn lane_conv_training_matches_the_f64_program_and_the_im2col_path() {
    use resnet_engine::plan::kernels::{set_isa_cap, Isa};

    let _cap = ISA_CAP.lock().unwrap_or_else(|e| e.into_inner());
    let mut net = Net::new(None, 3, 9, 9, 13, 8);
    let x = net.x;
    let a = net.conv(x, 3, 16, 3, 1, 1, false);
    let a = net.bn(a, 16);
    let a = net.relu(a);
    let b = net.conv(a, 16, 16, 3, 1, 1, true);
    let c = net.conv_full(a, 16, 16, [3, 3], [1, 1], [0, 0, 2, 2], [1, 1], 1, false);
    let s = net.add(b, c);
    let d = net.conv_full(s, 16, 8, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1, false);
    let e = net.conv_full(s, 16, 8, [1, 1], [2, 2], [0, 0, 0, 0], [1, 1], 1, false);
    let d = net.add(d, e);
    let d = net.bn(d, 8);
    let d = net.relu(d);
    let out = net.head(d, 8, CLASSES);
    let g = net.finish(out);

    let shape = [50, 3, 9, 9];
    let lanes = step_against_f64(&g, shape, 2, "lanes");
    set_isa_cap(Isa::Avx2);
    let im2col = step_against_f64(&g, shape, 2, "lanes");
    set_isa_cap(Isa::Avx512);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_ne!(lanes, im2col, "the batch-lane path was not taken");
    }
    let _ = (lanes, im2col);
}

/// Activations kept on batch lanes between ops (a whole number of 16-image vectors, at
/// least 48): a first conv of 3 channels starting the lanes at 9×9, BatchNorm + Relu, an
/// identity Add, stride-2 3×3 and 1×1 convs (the 1×1 reading its input in place), an Add
/// whose other operand is NCHW (a dilated conv, which lanes decline), GlobalAveragePool;
/// against the f64 program and against the same f32 program with the kernels capped to
/// AVX2 (no lanes), in training and inference mode.
#[test]
fn activations_on_batch_lanes_match_the_f64_program_and_the_nchw_path() {
    use resnet_engine::plan::kernels::{set_isa_cap, Isa};

    let _cap = ISA_CAP.lock().unwrap_or_else(|e| e.into_inner());
    let mut net = Net::new(None, 3, 9, 9, 13, 9);
    let x = net.x;
    let a = net.conv(x, 3, 16, 3, 1, 1, false);
    // BatchNormalization + Relu run as one node, named after the BatchNormalization.
    let a_bn = net.bn(a, 16);
    let a = net.relu(a_bn);
    let b = net.conv(a, 16, 16, 3, 1, 1, false);
    let b = net.bn(b, 16);
    // Add + Relu also run as one node, named after the Add.
    let s_add = net.add(b, a);
    let s = net.relu(s_add);
    let d = net.conv_full(s, 16, 8, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1, false);
    let d = net.bn(d, 8);
    let e = net.conv_full(s, 16, 8, [1, 1], [2, 2], [0, 0, 0, 0], [1, 1], 1, true);
    let t_add = net.add(d, e);
    let t = net.relu(t_add);
    let dilated = net.conv_full(x, 3, 8, [3, 3], [2, 2], [2, 2, 2, 2], [2, 2], 1, false);
    let u = net.add(t, dilated);
    let u_bn = net.bn(u, 8);
    let u = net.relu(u_bn);
    let out = net.head(u, 8, CLASSES);
    let names: Vec<String> = [a_bn, s_add, d, e, t_add, u_bn, dilated].iter().map(|&v| net.node_name(v)).collect();
    let g = net.finish(out);

    let shape = [48, 3, 9, 9];
    let lanes = step_against_f64(&g, shape, 2, "lanes");
    let (x32, labels) = batch::<f32>(34, shape, CLASSES);
    let mut p = TrainProgram::<f32>::new(&g, TrainOptions { threads: 2, ..TrainOptions::default() }).unwrap();
    p.step(&x32, shape, &labels).unwrap();
    let predicted = p.predict(&x32, shape).unwrap();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let on: Vec<&str> = p.nodes_on_lanes();
        for name in &names[..6] {
            assert!(on.contains(&name.as_str()), "{name} not on lanes; on lanes: {on:?}");
        }
        assert!(!on.contains(&names[6].as_str()), "the dilated conv cannot run on lanes");
    }

    set_isa_cap(Isa::Avx2);
    let nchw = step_against_f64(&g, shape, 2, "nchw");
    let mut q = TrainProgram::<f32>::new(&g, TrainOptions { threads: 2, ..TrainOptions::default() }).unwrap();
    q.step(&x32, shape, &labels).unwrap();
    let want = q.predict(&x32, shape).unwrap();
    assert!(q.nodes_on_lanes().is_empty());
    set_isa_cap(Isa::Avx512);
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in predicted.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= 1e-4 * scale, "inference logit {i}: lanes {a} vs NCHW {b}");
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_ne!(lanes, nchw, "the batch-lane path was not taken");
    }
    let _ = (lanes, nchw);
}

/// The direct kernels of training (forward, input gradient and weight gradient of 2-D
/// stride-1 convs with planes of at least 20×20, on AVX-512 CPUs) against the f64 program,
/// and against the im2col path (the kernels capped to AVX2, where the direct ones decline):
/// 3×3 pad 1 with and without bias, a conv whose input also feeds another (its input
/// gradient is added), asymmetric pads 0 / 2, a 5×3 kernel dilated 2 along W (forward and
/// weight gradient direct, input gradient by im2col), 3 images on 2 threads (whole planes
/// grouped into one weight-gradient GEMM, split over two ranges); and a 64-channel 48×48
/// layer whose padded input exceeds one band (several bands per image).
#[test]
fn direct_conv_training_matches_the_f64_program_and_the_im2col_path() {
    use resnet_engine::plan::kernels::{set_isa_cap, Isa};

    let _cap = ISA_CAP.lock().unwrap_or_else(|e| e.into_inner());
    let mut net = Net::new(None, 6, 24, 24, 13, 5);
    let x = net.x;
    let a = net.conv(x, 6, 16, 3, 1, 1, false);
    let a = net.bn(a, 16);
    let a = net.relu(a);
    let b = net.conv(a, 16, 16, 3, 1, 1, true);
    let c = net.conv_full(a, 16, 16, [3, 3], [1, 1], [0, 0, 2, 2], [1, 1], 1, false);
    let s = net.add(b, c);
    let d = net.conv_full(s, 16, 8, [5, 3], [1, 1], [2, 2, 2, 2], [1, 2], 1, false);
    let d = net.bn(d, 8);
    let d = net.relu(d);
    let out = net.head(d, 8, CLASSES);
    let small = net.finish(out);

    let mut net = Net::new(None, 64, 48, 48, 13, 6);
    let x = net.x;
    let a = net.conv(x, 64, 8, 3, 1, 1, false);
    let a = net.bn(a, 8);
    let a = net.relu(a);
    let out = net.head(a, 8, CLASSES);
    let wide = net.finish(out);

    for (g, shape, what) in [(&small, [3, 6, 24, 24], "small"), (&wide, [1, 64, 48, 48], "wide")] {
        let fast = step_against_f64(g, shape, 2, what);
        set_isa_cap(Isa::Avx2);
        let im2col = step_against_f64(g, shape, 2, what);
        set_isa_cap(Isa::Avx512);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert_ne!(fast, im2col, "{what}: the direct path was not taken");
        }
        let _ = (fast, im2col);
    }
}
