//! Optimizers (MXNet NAG and SGD, checked against hand-computed steps and PyTorch's Nesterov
//! SGD) and learning-rate schedules (the zoo recipe, cosine, warm-up, parsing).

use resnet_engine::train::{
    LrDecay, LrSchedule, OptimError, Optimizer, OptimizerConfig, OptimizerKind, Param, ParamRole,
};

fn param(name: &str, role: ParamRole, value: &[f32]) -> Param<f32> {
    Param {
        name: name.to_string(),
        shape: vec![value.len()],
        value: value.to_vec(),
        grad: vec![0.0; value.len()],
        role,
        trainable: true,
    }
}

fn config(kind: OptimizerKind, momentum: f32, weight_decay: f32) -> OptimizerConfig {
    OptimizerConfig { kind, momentum, weight_decay, no_wd_bias_norm: false }
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tolerance = 1e-6 * w.abs().max(1.0);
        assert!((f64::from(g) - w).abs() <= tolerance, "{what}[{k}]: got {g}, expected {w}");
    }
}

fn momentum_of(optimizer: &Optimizer, name: &str) -> Vec<f32> {
    optimizer.state().into_iter().find(|(n, _)| n == name).map(|(_, v)| v).expect("state for the param")
}

#[test]
fn nag_matches_two_hand_computed_steps() {
    // m = 0.9, d = 0.1, lr = 0.5. Element 0: w = 1, g = 0.5 then −1.
    //   step 1: g+dw = 0.6, s = 0.6, w = 1 − 0.5·(0.6 + 0.54) = 0.43
    //   step 2: g+dw = −0.957, s = 0.54 − 0.957 = −0.417, w = 0.43 − 0.5·(−0.957 − 0.3753) = 1.09615
    // Element 1: w = −2, g = 1 then 0.25.
    //   step 1: g+dw = 0.8, s = 0.8, w = −2 − 0.5·(0.8 + 0.72) = −2.76
    //   step 2: g+dw = −0.026, s = 0.694, w = −2.76 − 0.5·(−0.026 + 0.6246) = −3.0593
    let mut params = vec![param("w", ParamRole::Weight, &[1.0, -2.0])];
    let mut optimizer = Optimizer::new(config(OptimizerKind::Nag, 0.9, 0.1), &params);
    params[0].grad = vec![0.5, 1.0];
    optimizer.step(&mut params, 0.5);
    assert_close(&params[0].value, &[0.43, -2.76], "w after step 1");
    assert_close(&momentum_of(&optimizer, "w"), &[0.6, 0.8], "state after step 1");
    params[0].grad = vec![-1.0, 0.25];
    optimizer.step(&mut params, 0.5);
    assert_close(&params[0].value, &[1.09615, -3.0593], "w after step 2");
    assert_close(&momentum_of(&optimizer, "w"), &[-0.417, 0.694], "state after step 2");
}

#[test]
fn nag_equals_pytorch_nesterov_sgd_with_weight_decay() {
    // torch.optim.SGD(lr, momentum=m, nesterov=True, weight_decay=d, dampening=0):
    //   g' = g + d·w; buf = g' on the first step, else m·buf + g'; w −= lr·(g' + m·buf)
    let (m, d) = (0.9f64, 2e-4f64);
    let lrs = [0.1f64, 0.05, 0.01];
    let start: Vec<f32> = (0..37).map(|k| ((k * 7 % 11) as f32 - 5.0) * 0.3).collect();
    let grads: Vec<Vec<f32>> =
        (0..3).map(|s| (0..37).map(|k| (((k + 3 * s) * 5 % 13) as f32 - 6.0) * 0.1).collect()).collect();

    let mut params = vec![param("conv.weight", ParamRole::Weight, &start)];
    let mut optimizer = Optimizer::new(config(OptimizerKind::Nag, m as f32, d as f32), &params);
    let mut torch_w: Vec<f64> = start.iter().map(|&v| f64::from(v)).collect();
    let mut torch_buf: Option<Vec<f64>> = None;
    for (grad, &lr) in grads.iter().zip(&lrs) {
        params[0].grad = grad.clone();
        optimizer.step(&mut params, lr as f32);

        let g: Vec<f64> = grad.iter().zip(&torch_w).map(|(&g, &w)| f64::from(g) + d * w).collect();
        let buf = match torch_buf.take() {
            None => g.clone(),
            Some(buf) => buf.iter().zip(&g).map(|(b, g)| m * b + g).collect(),
        };
        for ((w, g), b) in torch_w.iter_mut().zip(&g).zip(&buf) {
            *w -= lr * (g + m * b);
        }
        torch_buf = Some(buf);
    }
    assert_close(&params[0].value, &torch_w, "NAG vs PyTorch nesterov");
}

#[test]
fn sgd_momentum_matches_three_hand_computed_steps_with_changing_lr() {
    // MXNet SGD: s = m·s − lr·(g + d·w); w += s. m = 0.9, d = 0.1; lr 0.5, 0.25, 0.25.
    // Element 0: w = 1, g = 0.5, −1, 0:
    //   s = −0.3, w = 0.7; s = −0.27 + 0.2325 = −0.0375, w = 0.6625;
    //   s = −0.03375 − 0.0165625 = −0.0503125, w = 0.6121875
    // Element 1: w = −2, g = 1, 0.25, 0:
    //   s = −0.4, w = −2.4; s = −0.36 − 0.0025 = −0.3625, w = −2.7625;
    //   s = −0.32625 + 0.0690625 = −0.2571875, w = −3.0196875
    let mut params = vec![param("w", ParamRole::Weight, &[1.0, -2.0])];
    let mut optimizer = Optimizer::new(config(OptimizerKind::Sgd, 0.9, 0.1), &params);
    // (gradient, lr, expected w, expected state) per step
    type Step = ([f32; 2], f32, [f64; 2], [f64; 2]);
    let steps: [Step; 3] = [
        ([0.5, 1.0], 0.5, [0.7, -2.4], [-0.3, -0.4]),
        ([-1.0, 0.25], 0.25, [0.6625, -2.7625], [-0.0375, -0.3625]),
        ([0.0, 0.0], 0.25, [0.6121875, -3.0196875], [-0.0503125, -0.2571875]),
    ];
    for (k, (grad, lr, want_w, want_s)) in steps.iter().enumerate() {
        params[0].grad = grad.to_vec();
        optimizer.step(&mut params, *lr);
        assert_close(&params[0].value, want_w, &format!("w after step {}", k + 1));
        assert_close(&momentum_of(&optimizer, "w"), want_s, &format!("state after step {}", k + 1));
    }
}

#[test]
fn sgd_without_momentum_is_plain_gradient_descent() {
    let mut params = vec![param("w", ParamRole::Weight, &[1.0, 3.0])];
    let mut optimizer = Optimizer::new(config(OptimizerKind::Sgd, 0.0, 0.5), &params);
    params[0].grad = vec![0.5, -1.0];
    optimizer.step(&mut params, 0.1);
    // w − lr·(g + d·w): 1 − 0.1·(0.5 + 0.5) = 0.9; 3 − 0.1·(−1 + 1.5) = 2.95
    assert_close(&params[0].value, &[0.9, 2.95], "w");
    params[0].grad = vec![0.0, 0.0];
    optimizer.step(&mut params, 0.1);
    // No momentum carried over: only the decay acts. 0.9·(1 − 0.05) = 0.855; 2.95·0.95 = 2.8025
    assert_close(&params[0].value, &[0.855, 2.8025], "w after a zero-gradient step");
}

#[test]
fn chunked_updates_equal_the_scalar_formula_at_every_length() {
    for kind in [OptimizerKind::Nag, OptimizerKind::Sgd] {
        for len in [0usize, 1, 15, 16, 17, 33, 100] {
            let start: Vec<f32> = (0..len).map(|k| (k as f32 * 0.37).sin()).collect();
            let mut params = vec![param("p", ParamRole::Weight, &start)];
            let (m, d, lr) = (0.9f32, 1e-3f32, 0.05f32);
            let mut optimizer = Optimizer::new(config(kind, m, d), &params);
            let mut w = start.clone();
            let mut s = vec![0.0f32; len];
            for step in 0..3 {
                let grad: Vec<f32> = (0..len).map(|k| ((k + step) as f32 * 0.11).cos()).collect();
                params[0].grad = grad.clone();
                optimizer.step(&mut params, lr);
                for k in 0..len {
                    match kind {
                        OptimizerKind::Nag => {
                            let decayed = grad[k] + d * w[k];
                            s[k] = m * s[k] + decayed;
                            w[k] -= lr * (decayed + m * s[k]);
                        }
                        OptimizerKind::Sgd => {
                            s[k] = m * s[k] - lr * (grad[k] + d * w[k]);
                            w[k] += s[k];
                        }
                    }
                }
            }
            assert_eq!(params[0].value, w, "{kind}, length {len}: values");
            assert_eq!(momentum_of(&optimizer, "p"), s, "{kind}, length {len}: state");
        }
    }
}

#[test]
fn frozen_params_are_left_untouched_and_have_no_state() {
    let mut frozen = param("frozen", ParamRole::Weight, &[1.0, 2.0]);
    frozen.trainable = false;
    frozen.grad = vec![10.0, 10.0];
    let mut params = vec![frozen, param("live", ParamRole::Weight, &[1.0])];
    params[1].grad = vec![1.0];
    for kind in [OptimizerKind::Nag, OptimizerKind::Sgd] {
        let mut optimizer = Optimizer::new(config(kind, 0.9, 0.1), &params);
        let before = params[1].value.clone();
        optimizer.step(&mut params, 0.1);
        assert_eq!(params[0].value, vec![1.0, 2.0], "{kind}: frozen param changed");
        assert_ne!(params[1].value, before, "{kind}: trainable param did not change");
        let names: Vec<String> = optimizer.state().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["live".to_string()], "{kind}: state names");
    }
}

#[test]
fn no_wd_exempts_biases_and_batchnorm_by_role() {
    // Zero gradients: only weight decay moves a value.
    let make = || {
        vec![
            param("conv.weight", ParamRole::Weight, &[1.0]),
            param("conv.bias", ParamRole::Bias, &[1.0]),
            param("bn.gamma", ParamRole::Gamma, &[1.0]),
            param("bn.beta", ParamRole::Beta, &[1.0]),
        ]
    };
    for kind in [OptimizerKind::Nag, OptimizerKind::Sgd] {
        let mut params = make();
        let cfg = OptimizerConfig { no_wd_bias_norm: true, ..config(kind, 0.9, 0.1) };
        let mut optimizer = Optimizer::new(cfg, &params);
        optimizer.step(&mut params, 0.5);
        assert!(params[0].value[0] < 1.0, "{kind}: the weight must decay");
        for p in &params[1..] {
            assert_eq!(p.value, vec![1.0], "{kind}: {} must not decay under no_wd", p.name);
        }

        let mut params = make();
        let mut optimizer = Optimizer::new(config(kind, 0.9, 0.1), &params);
        optimizer.step(&mut params, 0.5);
        let decayed = params[0].value[0];
        for p in &params {
            assert_eq!(p.value, vec![decayed], "{kind}: {} must decay like the weight by default", p.name);
        }
    }
}

#[test]
fn state_round_trip_continues_identically() {
    let start = [0.5f32, -1.5, 2.0];
    let mut a = vec![param("a", ParamRole::Weight, &start), param("b", ParamRole::Bias, &[0.25])];
    let mut opt_a = Optimizer::new(OptimizerConfig::default(), &a);
    for step in 0..2 {
        a[0].grad = vec![0.1 * step as f32, -0.2, 0.3];
        a[1].grad = vec![0.05];
        opt_a.step(&mut a, 0.01);
    }
    let saved = opt_a.state();

    let mut b = a.clone();
    let mut opt_b = Optimizer::new(OptimizerConfig::default(), &b);
    let mut reversed = saved.clone();
    reversed.reverse();
    opt_b.load_state(reversed).expect("load the saved state");
    assert_eq!(opt_b.state(), saved);

    a[0].grad = vec![1.0, 1.0, 1.0];
    b[0].grad = vec![1.0, 1.0, 1.0];
    opt_a.step(&mut a, 0.01);
    opt_b.step(&mut b, 0.01);
    assert_eq!(a[0].value, b[0].value);
    assert_eq!(a[1].value, b[1].value);
}

#[test]
fn load_state_rejects_wrong_names_and_lengths_without_changing_anything() {
    let params = vec![param("a", ParamRole::Weight, &[1.0, 2.0]), param("b", ParamRole::Bias, &[1.0])];
    let mut optimizer = Optimizer::new(OptimizerConfig::default(), &params);
    let before = optimizer.state();
    let good = || vec![("a".to_string(), vec![0.5, 0.5]), ("b".to_string(), vec![0.5])];

    let mut unknown = good();
    unknown.push(("c".to_string(), vec![1.0]));
    assert_eq!(optimizer.load_state(unknown), Err(OptimError::UnknownParam("c".into())));

    let mut short = good();
    short[0].1.pop();
    let err = optimizer.load_state(short).unwrap_err();
    assert_eq!(err, OptimError::Length { name: "a".into(), expected: 2, got: 1 });
    assert!(err.to_string().contains("'a'") && err.to_string().contains('2'), "{err}");

    let missing = vec![good().remove(0)];
    assert_eq!(optimizer.load_state(missing), Err(OptimError::MissingParam("b".into())));

    let mut twice = good();
    twice.push(("b".to_string(), vec![0.25]));
    assert_eq!(optimizer.load_state(twice), Err(OptimError::DuplicateParam("b".into())));

    assert_eq!(optimizer.state(), before, "a refused load must leave the state alone");
    optimizer.load_state(good()).expect("a matching state loads");
    assert_eq!(optimizer.state(), good());
}

#[test]
fn optimizer_kind_parses_and_displays() {
    assert_eq!("nag".parse::<OptimizerKind>(), Ok(OptimizerKind::Nag));
    assert_eq!("SGD".parse::<OptimizerKind>(), Ok(OptimizerKind::Sgd));
    assert_eq!(OptimizerKind::Nag.to_string(), "nag");
    assert_eq!(OptimizerKind::Sgd.to_string(), "sgd");
    let err = "adam".parse::<OptimizerKind>().unwrap_err();
    assert_eq!(err, OptimError::UnknownKind("adam".into()));
    assert!(err.to_string().contains("'adam'"), "{err}");
    let zoo = OptimizerConfig::default();
    assert_eq!((zoo.kind, zoo.momentum, zoo.weight_decay, zoo.no_wd_bias_norm), (OptimizerKind::Nag, 0.9, 2e-4, false));
}

fn close(got: f32, want: f64) -> bool {
    (f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1e-12) + 1e-12
}

#[test]
fn zoo_step_schedule_decays_tenfold_at_epochs_30_60_90() {
    let ipe = 100;
    let schedule = LrSchedule::zoo(ipe);
    let cases = [
        (0, 0.01),
        (30 * ipe - 1, 0.01),
        (30 * ipe, 0.001),
        (60 * ipe - 1, 0.001),
        (60 * ipe, 1e-4),
        (90 * ipe - 1, 1e-4),
        (90 * ipe, 1e-5),
        (150 * ipe - 1, 1e-5),
        (1000 * ipe, 1e-5),
    ];
    for (iteration, want) in cases {
        let got = schedule.lr_at(iteration);
        assert!(close(got, want), "iteration {iteration}: got {got}, expected {want}");
    }
    assert_eq!(schedule.total_iterations(), 150 * ipe);
}

#[test]
fn cosine_runs_from_base_to_zero_through_half_at_the_midpoint() {
    // 101 decay iterations: t/(D−1) is exactly 1/2 at iteration 50.
    let schedule =
        LrSchedule { base_lr: 0.4, decay: LrDecay::Cosine, warmup_epochs: 0, epochs: 1, iters_per_epoch: 101 };
    assert!(close(schedule.lr_at(0), 0.4), "start: {}", schedule.lr_at(0));
    assert!(close(schedule.lr_at(50), 0.2), "midpoint: {}", schedule.lr_at(50));
    assert!(schedule.lr_at(100).abs() < 1e-9, "end: {}", schedule.lr_at(100));
    assert!(schedule.lr_at(500).abs() < 1e-9, "past the end: {}", schedule.lr_at(500));
    let quarter = 0.4 * (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0;
    assert!(close(schedule.lr_at(25), quarter), "quarter: {}", schedule.lr_at(25));
    for i in 1..=100 {
        assert!(schedule.lr_at(i) <= schedule.lr_at(i - 1), "cosine must not increase at {i}");
    }
}

#[test]
fn warmup_ramps_linearly_from_zero_then_hands_over_to_the_decay() {
    // 2 warm-up epochs of 5 iterations: lr = base·i/9 for i in 0..10, then cosine over 8·5 = 40.
    let schedule =
        LrSchedule { base_lr: 0.9, decay: LrDecay::Cosine, warmup_epochs: 2, epochs: 10, iters_per_epoch: 5 };
    assert_eq!(schedule.lr_at(0), 0.0);
    assert!(close(schedule.lr_at(3), 0.3), "{}", schedule.lr_at(3));
    assert!(close(schedule.lr_at(9), 0.9), "{}", schedule.lr_at(9));
    assert!(close(schedule.lr_at(10), 0.9), "{}", schedule.lr_at(10));
    let mid = 0.9 * (1.0 + (std::f64::consts::PI * 20.0 / 39.0).cos()) / 2.0;
    assert!(close(schedule.lr_at(30), mid), "{}", schedule.lr_at(30));
    assert!(schedule.lr_at(49).abs() < 1e-9, "{}", schedule.lr_at(49));
    for i in 1..10 {
        assert!(schedule.lr_at(i) > schedule.lr_at(i - 1), "warm-up must increase at {i}");
    }
}

#[test]
fn step_epochs_count_from_the_start_of_training_even_with_warmup() {
    let schedule = LrSchedule {
        base_lr: 1.0,
        decay: LrDecay::Step { epochs: vec![3, 5], factor: 0.5 },
        warmup_epochs: 1,
        epochs: 8,
        iters_per_epoch: 4,
    };
    assert!(close(schedule.lr_at(3), 1.0)); // end of warm-up
    assert!(close(schedule.lr_at(4), 1.0));
    assert!(close(schedule.lr_at(11), 1.0));
    assert!(close(schedule.lr_at(12), 0.5)); // epoch 3 starts
    assert!(close(schedule.lr_at(19), 0.5));
    assert!(close(schedule.lr_at(20), 0.25)); // epoch 5 starts
    assert!(close(schedule.lr_at(31), 0.25));
    let constant = LrSchedule { decay: LrDecay::Constant, ..schedule };
    assert!(close(constant.lr_at(0), 0.0) && close(constant.lr_at(3), 1.0) && close(constant.lr_at(31), 1.0));
}

#[test]
fn decay_specs_parse_and_display_round_trip() {
    let cases = [
        ("constant", LrDecay::Constant),
        (" Cosine ", LrDecay::Cosine),
        ("step:30,60,90", LrDecay::Step { epochs: vec![30, 60, 90], factor: 0.1 }),
        ("step:30,60,90@0.2", LrDecay::Step { epochs: vec![30, 60, 90], factor: 0.2 }),
        ("step: 40 , 60 @ 0.5", LrDecay::Step { epochs: vec![40, 60], factor: 0.5 }),
    ];
    for (text, want) in cases {
        let got: LrDecay = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(got, want, "{text}");
        assert_eq!(got.to_string().parse::<LrDecay>().unwrap(), want, "display of {text}");
    }
    assert_eq!(LrDecay::Step { epochs: vec![30, 60], factor: 0.1 }.to_string(), "step:30,60@0.1");
}

#[test]
fn bad_decay_specs_are_typed_errors_naming_the_text() {
    let cases = [
        ("linear", "unknown kind"),
        ("step:", "empty epoch"),
        ("step:30,,90", "empty epoch"),
        ("step:30,x", "'x'"),
        ("step:60,30", "must increase"),
        ("step:30@zero", "'zero'"),
        ("step:30@0", "positive"),
        ("step:30@-1", "positive"),
    ];
    for (text, reason) in cases {
        let err = text.parse::<LrDecay>().unwrap_err();
        assert_eq!(err.text, text);
        assert!(err.reason.contains(reason), "{text}: reason '{}' lacks '{reason}'", err.reason);
        let line = err.to_string();
        assert!(line.contains(&format!("'{text}'")) && !line.contains('\n'), "{line}");
    }
}
