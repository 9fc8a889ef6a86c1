//! The plan keeps one copy of a direct conv's filters (the direct kernel's packing). When the
//! ISA cap is lowered after compiling — to AVX2 the direct kernels run their AVX2 copies, below
//! it they no longer apply — the conv falls back to im2col + `gemm` with the filters unpacked
//! from that packing; a Winograd conv's products move from the AVX-512 panel micro-kernel to
//! the AVX2 one, then to `gemm`. Its own test binary: the cap is process-wide, and the other
//! plan tests assert which kernel a conv compiles to.

mod build;
use build::{node, tensor};

use resnet_engine::ops::conv::Conv;
use resnet_engine::ops::padding::Window;
use resnet_engine::plan::direct::AVX2_POINTWISE_MIN_FILTERS;
use resnet_engine::plan::kernels::{self, Isa};
use resnet_engine::plan::{Mode, Plan, PlanOptions};
use resnet_engine::testdata::{self, Tolerance};
use resnet_engine::{exec, Dim, Fact, Graph, Op, Tensor};

/// `[1, c, side, side]` → conv `m` filters `k×k`, stride `s`, pad `k/2`, with bias.
fn conv(c: usize, m: usize, side: usize, k: usize, s: usize) -> (Graph, Vec<Tensor>) {
    let mut g = Graph { opset: 13, ..Graph::default() };
    let x = g.add_value(
        "x",
        Fact::new(resnet_engine::DType::F32, vec![Dim::Known(1), Dim::Known(c), Dim::Known(side), Dim::Known(side)]),
    );
    g.inputs.push(x);
    let w = g.add_initializer("w", tensor(&[m, c, k, k], 2));
    let b = g.add_initializer("b", tensor(&[m], 3));
    let window = Window {
        kernel_shape: Some(vec![k, k]),
        strides: Some(vec![s, s]),
        pads: Some(vec![k / 2; 4]),
        ..Window::default()
    };
    let y = node(&mut g, "conv", Op::Conv(Conv { window, group: 1 }), &[x, w, b], "y");
    g.outputs = vec![y];
    g.infer_facts().expect("conv infers");
    (g, vec![tensor(&[1, c, side, side], 1)])
}

/// The tests here lower the process-wide cap in turn (the harness runs tests in parallel).
static CAP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(got: &[Tensor], want: &[Tensor], what: &str) {
    check_within(got, want, what, 1e-5);
}

fn check_within(got: &[Tensor], want: &[Tensor], what: &str, of_max: f64) {
    let r = testdata::compare(what.to_string(), &got[0], &want[0], Tolerance::OfMax(of_max));
    assert!(r.passed, "{what}: {:?} (max abs err {:e})", r.problem, r.max_abs_err);
}

#[test]
fn direct_convs_run_their_avx2_copies_then_im2col_with_their_own_filters_as_the_isa_cap_drops() {
    let _cap = CAP.lock().unwrap_or_else(|e| e.into_inner());
    // 3×3 over 20×20 (position kernel), 3×3 over 7×7 (narrow-plane kernel), 7×7/2 (phase
    // grid), 1×1 over 7×7 (pointwise narrow-plane kernel; it keeps the [M, C] filters), 1×1
    // with 136 filters over 300 channels on 20×20 (the wide-plane kernel; on AVX2 its strips
    // of 24 and 16 and passes of 128 channels).
    for (c, m, side, k, s) in
        [(40, 24, 20, 3, 1), (48, 72, 7, 3, 1), (3, 16, 30, 7, 2), (64, 48, 7, 1, 1), (300, 136, 20, 1, 1)]
    {
        let what = format!("c {c} m {m} side {side} k {k} s {s}");
        let (g, feeds) = conv(c, m, side, k, s);
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        let plan = Plan::compile(&g, &PlanOptions { threads: 2, ..PlanOptions::default() }).expect("compiles");
        let direct = plan.step_summaries()[0].kind.ends_with("direct");
        // 1×1 convs have direct kernels on AVX2 from AVX2_POINTWISE_MIN_FILTERS filters, on
        // AVX-512 always; the others on AVX2 too.
        let isa = if k == 1 && m < AVX2_POINTWISE_MIN_FILTERS { Isa::Avx512 } else { Isa::Avx2 };
        assert_eq!(direct, kernels::active_isa() >= isa, "{what}: {}", plan.step_summaries()[0].kind);
        let full = plan.run(feeds.clone()).expect("runs");
        check(&full, &want, &format!("{what}, compiled ISA"));
        // AVX2 (on an AVX-512 CPU): the position kernel's AVX2 copy, the same sums in the same
        // order, so the same bits (planes over 14 wide: no narrow-plane kernel at full width);
        // the other calls, and every call without AVX2, take the im2col path.
        kernels::set_isa_cap(Isa::Avx2);
        let avx2 = plan.run(feeds.clone());
        kernels::set_isa_cap(Isa::Portable);
        let capped = plan.run(feeds.clone());
        kernels::set_isa_cap(Isa::Avx512);
        let avx2 = avx2.expect("runs");
        check(&avx2, &want, &format!("{what}, ISA capped at AVX2"));
        // The same for the wide-plane 1×1 kernel (its AVX2 form sums channel by channel
        // too, its partial sums kept exactly between passes).
        let wide_1x1 = k == 1 && m >= AVX2_POINTWISE_MIN_FILTERS && side * side > 49;
        if direct && (wide_1x1 || (k > 1 && (side + 2 * (k / 2) - k) / s + 1 > 14)) {
            let bits = |t: &[Tensor]| t[0].as_f32().expect("f32").iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(&avx2) == bits(&full), "{what}: the AVX2 direct kernels' bits differ");
        }
        check(&capped.expect("runs"), &want, &format!("{what}, ISA capped at the portable copy"));
        // And once more at full width (the unpacked copy changes nothing for the direct path).
        check(&plan.run(feeds).expect("runs"), &want, &format!("{what}, ISA restored"));
    }
}

/// ResNet v2's post-Add BatchNorm + ReLU, a 1×1 conv's second output (a pass over the
/// finished sum), on every ISA: the sum from the wide 1×1 kernel (AVX-512, AVX2) or the
/// im2col path, the pass's own copy for each; bit for bit what the pass computes from the
/// sum, and within 1e-5 of the reference. 128 channels (the AVX2 kernel's least) on 28×28
/// (the pass cut by channels on AVX-512, by positions below it).
#[test]
fn v2_post_batchnorm_relu_matches_its_sum_on_every_isa() {
    let _cap = CAP.lock().unwrap_or_else(|e| e.into_inner());
    let c = AVX2_POINTWISE_MIN_FILTERS;
    let (g, stats) = build::v2_tail(c, 1, 28);
    for (n, threads) in [(1, 1), (1, 2), (2, 2)] {
        let feeds = vec![tensor(&[n, c, 28, 28], 5)];
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        let plan = Plan::compile(&g, &PlanOptions { threads, ..PlanOptions::default() }).expect("compiles");
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Portable] {
            let what = format!("batch {n}, {threads} threads, ISA capped at {isa:?}");
            kernels::set_isa_cap(isa);
            let got = plan.run(feeds.clone());
            kernels::set_isa_cap(Isa::Avx512);
            let got = got.expect("runs");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                check(std::slice::from_ref(a), std::slice::from_ref(b), &format!("{what}, output {i}"));
            }
            build::check_post_bits(&got, &stats, 28 * 28, &what);
        }
    }
}

#[test]
fn winograd_convs_give_the_same_results_on_every_isa() {
    let _cap = CAP.lock().unwrap_or_else(|e| e.into_inner());
    // 72 output channels: two full panels of 32 and a zero-padded one; 20×20 is 25 tiles of
    // F(4×4) and 100 of F(2×2).
    for (c, m, side, threads, tile) in [(40, 72, 20, 1, 4), (16, 40, 14, 2, 4), (40, 72, 20, 2, 2), (24, 16, 7, 1, 2)] {
        let what = format!("winograd F({tile}×{tile}) c {c} m {m} side {side} threads {threads}");
        let (g, feeds) = conv(c, m, side, 3, 1);
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        let opts = PlanOptions {
            threads,
            mode: Mode::Fast,
            winograd_tile: Some(tile),
            winograd_min_tiles: Some(1),
            ..PlanOptions::default()
        };
        let plan = Plan::compile(&g, &opts).expect("compiles");
        assert!(plan.describe()[0].contains("winograd"), "{what}: {:?}", plan.describe());
        let full = plan.run(feeds.clone()).expect("runs");
        // The documented bound of one Winograd conv (tests/winograd.rs).
        check_within(&full, &want, &format!("{what}, compiled ISA"), 1e-4);
        for isa in [Isa::Avx2, Isa::Portable] {
            kernels::set_isa_cap(isa);
            let capped = plan.run(feeds.clone());
            kernels::set_isa_cap(Isa::Avx512);
            check_within(&capped.expect("runs"), &want, &format!("{what}, ISA capped at {isa:?}"), 1e-4);
        }
    }
}

/// bf16 mode needs AVX-512 BF16 kernels: compiled under a lower cap it is refused with a
/// typed error; compiled at full width and run under a lower cap, its 1×1 and F(2×2) convs
/// fall back to the float32 kernels (float32 results, as the reference's).
#[test]
fn bf16_mode_is_refused_below_avx512_and_falls_back_to_float32_when_capped_after_compiling() {
    let _cap = CAP.lock().unwrap_or_else(|e| e.into_inner());
    let bf16 =
        |threads| PlanOptions { threads, mode: Mode::Bf16, winograd_min_tiles: Some(1), ..PlanOptions::default() };
    // A 1×1 conv over 20×20 (wide-plane kernel) and over 7×7 (narrow-plane), and a 3×3 of 128
    // channels (F(2×2) in bf16).
    for (c, m, side, k) in [(64, 40, 20, 1), (64, 48, 7, 1), (128, 128, 8, 3)] {
        let what = format!("bf16 c {c} m {m} side {side} k {k}");
        let (g, feeds) = conv(c, m, side, k, 1);
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        kernels::set_isa_cap(Isa::Avx2);
        let refused = Plan::compile(&g, &bf16(2));
        kernels::set_isa_cap(Isa::Avx512);
        let e = refused.map(|_| ()).expect_err("bf16 below AVX-512: refused");
        assert!(matches!(e, resnet_engine::Error::Bf16Unsupported), "{what}: {e}");
        if !resnet_engine::plan::direct::bf16::supported() {
            continue;
        }
        let plan = Plan::compile(&g, &bf16(2)).expect("compiles");
        assert!(plan.describe()[0].contains("bf16"), "{what}: {:?}", plan.describe());
        let full = plan.run(feeds.clone()).expect("runs");
        // bfloat16 operands: within bf16's bound, and not float32's (the bf16 kernels ran).
        check_within(&full, &want, &format!("{what}, compiled ISA"), 2e-2);
        let r = testdata::compare(what.clone(), &full[0], &want[0], Tolerance::OfMax(1e-4));
        assert!(!r.passed, "{what}: bf16 results equal float32's");
        kernels::set_isa_cap(Isa::Avx2);
        let capped = plan.run(feeds.clone());
        kernels::set_isa_cap(Isa::Avx512);
        check_within(&capped.expect("runs"), &want, &format!("{what}, ISA capped at AVX2"), 1e-4);
    }
}
