//! The compiled plan against the reference interpreter: fused conv steps on random shapes
//! (proptest), every passing ONNX node test, the real ResNet-50 at batch 1 and 3 on 1 and 2
//! threads, and a hand-built v2-style block (post-Add BatchNorm+ReLU whose input sum feeds
//! the next shortcut). `plan_resnet50_timing` (ignored) measures the speed.

use resnet_test_support as common;

mod build;
use build::{node, tensor};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use resnet_engine::ops::binary::{Binary, BinaryKind};
use resnet_engine::ops::conv::Conv;
use resnet_engine::ops::padding::Window;
use resnet_engine::ops::relu::Relu;
use resnet_engine::plan::direct::bf16::{self, bf16_to_f32, round_bf16};
use resnet_engine::plan::direct::AVX2_POINTWISE_MIN_FILTERS;
use resnet_engine::plan::{Mode, Plan, PlanOptions};
use resnet_engine::testdata::{self, Tolerance};
use resnet_engine::{exec, onnx, Dim, Fact, Graph, Op, Tensor};

/// max |a − b| ≤ tol · max |b| over every output; panics with the numbers otherwise.
fn assert_close(got: &[Tensor], want: &[Tensor], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let r = testdata::compare(format!("output {i}"), g, w, Tolerance::OfMax(tol));
        assert!(r.passed, "{what}: output {i}: {:?} (max abs err {:e}, rel {:e})", r.problem, r.max_abs_err, r.rel_err);
    }
}

#[derive(Debug, Clone)]
struct ConvCase {
    n: usize,
    c_per_group: usize,
    m_per_group: usize,
    group: usize,
    spatial: Vec<usize>,
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    pads: Vec<usize>,
    bias: bool,
    const_weights: bool,
    residual: bool,
    relu: bool,
    threads: usize,
    /// `PlanOptions::whole_batches`: every step over all threads even when the batch could
    /// run as one part per thread.
    whole_batches: bool,
}

impl ConvCase {
    /// A 2-D conv of `n` images, `cin` → `m` channels on an `hw` plane, a `k`×`k` kernel at
    /// stride `stride` with `pad` on every side: group 1, dilation 1, a bias, constant
    /// weights and a ReLU, no residual, one thread, batches split as the plan chooses. The
    /// fixed cases below change what they test from this.
    fn conv2d(n: usize, cin: usize, m: usize, hw: [usize; 2], k: usize, stride: usize, pad: usize) -> ConvCase {
        ConvCase {
            n,
            c_per_group: cin,
            m_per_group: m,
            group: 1,
            spatial: hw.to_vec(),
            kernel: vec![k, k],
            stride: vec![stride, stride],
            dilation: vec![1, 1],
            pads: vec![pad; 4],
            bias: true,
            const_weights: true,
            residual: false,
            relu: true,
            threads: 1,
            whole_batches: false,
        }
    }
}

fn plan_options(c: &ConvCase) -> PlanOptions {
    PlanOptions { threads: c.threads, whole_batches: c.whole_batches, ..PlanOptions::default() }
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (1usize..=3).prop_flat_map(|rank| {
        (
            (1usize..=3, 1usize..=4, 1usize..=5, 1usize..=3),
            proptest::collection::vec((1usize..=9, 1usize..=3, 1usize..=3, 1usize..=2, 0usize..=2, 0usize..=2), rank),
            (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), 1usize..=3, any::<bool>()),
        )
            .prop_map(
                |((n, cg, mg, group), axes, (bias, const_weights, residual, relu, threads, whole_batches))| {
                    // Keep the kernel's dilated extent within the padded input.
                    let mut c = ConvCase {
                        n,
                        c_per_group: cg,
                        m_per_group: mg,
                        group,
                        spatial: vec![],
                        kernel: vec![],
                        stride: vec![],
                        dilation: vec![],
                        pads: vec![0; 2 * axes.len()],
                        bias,
                        const_weights,
                        residual,
                        relu,
                        threads,
                        whole_batches,
                    };
                    let r = axes.len();
                    for (i, &(len, k, s, d, pb, pe)) in axes.iter().enumerate() {
                        let k = if (k - 1) * d + 1 > len + pb + pe { 1 } else { k };
                        c.spatial.push(len);
                        c.kernel.push(k);
                        c.stride.push(s);
                        c.dilation.push(d);
                        c.pads[i] = pb;
                        c.pads[r + i] = pe;
                    }
                    c
                },
            )
    })
}

/// Conv (+ residual Add) (+ Relu), the pattern the plan fuses into one step.
fn conv_graph(c: &ConvCase) -> (Graph, Vec<Tensor>) {
    let mut g = Graph { opset: 13, ..Graph::default() };
    let (cin, m) = (c.c_per_group * c.group, c.m_per_group * c.group);
    let mut xs = vec![Dim::Sym("N".into()), Dim::Known(cin)];
    xs.extend(c.spatial.iter().map(|&d| Dim::Known(d)));
    let x = g.add_value("x", Fact::new(resnet_engine::DType::F32, xs));
    g.inputs.push(x);
    let mut feeds = vec![tensor(&[&[c.n, cin][..], &c.spatial].concat(), 1)];
    let mut ws = vec![m, c.c_per_group];
    ws.extend(&c.kernel);
    let w_t = tensor(&ws, 2);
    let w = if c.const_weights {
        g.add_initializer("w", w_t)
    } else {
        let w = g.add_value("w", Fact::known(resnet_engine::DType::F32, &ws));
        g.inputs.push(w);
        feeds.push(w_t);
        w
    };
    let mut inputs = vec![x, w];
    if c.bias {
        inputs.push(g.add_initializer("b", tensor(&[m], 3)));
    }
    let window = Window {
        kernel_shape: Some(c.kernel.clone()),
        strides: Some(c.stride.clone()),
        dilations: Some(c.dilation.clone()),
        pads: Some(c.pads.clone()),
        ..Window::default()
    };
    let mut cur = node(&mut g, "conv", Op::Conv(Conv { window, group: c.group }), &inputs, "y");
    if c.residual {
        // The residual is a graph input of the conv output's shape (known after inference).
        g.outputs = vec![cur];
        g.infer_facts().expect("conv infers");
        let shape = g.values[cur].fact.shape.clone().expect("conv shape");
        let r = g.add_value("r", Fact::new(resnet_engine::DType::F32, shape.clone()));
        g.inputs.push(r);
        let concrete: Vec<usize> = std::iter::once(c.n).chain(shape[1..].iter().map(|d| d.known().unwrap())).collect();
        feeds.push(tensor(&concrete, 4));
        cur = node(&mut g, "add", Op::Binary(Binary { kind: BinaryKind::Add }), &[r, cur], "sum");
    }
    if c.relu {
        cur = node(&mut g, "relu", Op::Relu(Relu {}), &[cur], "out");
    }
    g.outputs = vec![cur];
    g.infer_facts().expect("graph infers");
    (g, feeds)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn fused_conv_step_matches_the_reference(c in conv_case()) {
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        let plan = Plan::compile(&g, &plan_options(&c)).expect("compiles");
        prop_assert!(plan.describe()[0].contains("conv"), "{:?}", plan.describe());
        if c.residual || c.relu {
            prop_assert_eq!(plan.describe().len(), 1, "fused into one step: {:?}", plan.describe());
        }
        let got = plan.run(feeds).expect("plan runs");
        assert_close(&got, &want, 1e-5, &format!("{c:?}"));
    }
}

/// Shapes for the direct kernels (CPUs with AVX2 and FMA, or AVX-512): channel counts that span several
/// 32-channel K chunks and partial 8- and 32-filter blocks, kernels up to 5×5 (some 1×k or
/// k×1, some 1×1: the pointwise kernels, see [`pointwise_case`]),
/// strides 1–3 per axis (the strided phase grid), dilation, asymmetric pads, planes narrower
/// and wider than one 32/48-position strip and than the narrow-plane kernel's 14.
fn direct_case() -> impl Strategy<Value = ConvCase> {
    (
        (1usize..=3, 1usize..=70, 1usize..=40),
        (
            (1usize..=20, 1usize..=5, 1usize..=2, 0usize..=3, 0usize..=3),
            (1usize..=20, 1usize..=5, 1usize..=2, 0usize..=3, 0usize..=3),
        ),
        (any::<bool>(), any::<bool>(), any::<bool>(), 1usize..=3, (1usize..=3, 1usize..=3), any::<bool>()),
    )
        .prop_map(|((n, cin, m), (ah, aw), (bias, residual, relu, threads, (sh, sw), whole_batches))| {
            let fit = |(len, k, d, pb, pe): (usize, usize, usize, usize, usize)| {
                let k = if (k - 1) * d + 1 > len + pb + pe { 1 } else { k };
                (len, k, d, pb, pe)
            };
            let (ah, aw) = (fit(ah), fit(aw));
            ConvCase {
                n,
                c_per_group: cin,
                m_per_group: m,
                group: 1,
                spatial: vec![ah.0, aw.0],
                kernel: vec![ah.1, aw.1],
                stride: vec![sh, sw],
                dilation: vec![ah.2, aw.2],
                pads: vec![ah.3, aw.3, ah.4, aw.4],
                bias,
                const_weights: true,
                residual,
                relu,
                threads,
                whole_batches,
            }
        })
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the plan's direct kernels run here: AVX-512, or AVX2 with FMA (see
/// [`has_pointwise`] for 1×1 convs).
fn has_direct() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a 1×1 conv of `m` filters has the pointwise kernels here: AVX-512, or AVX2 with
/// FMA from [`AVX2_POINTWISE_MIN_FILTERS`] filters.
fn has_pointwise(m: usize) -> bool {
    has_avx512() || (has_direct() && m >= AVX2_POINTWISE_MIN_FILTERS)
}

/// 3×3 convs of 44–52 channels on planes of 112–124 square (stride 1 or 2, pads 0–1): a
/// padded plane past the narrow-plane kernel's 2 MiB band budget, so on AVX2 the position
/// kernel's (which the narrow-plane kernel otherwise takes everywhere), with strips cut
/// across rows and bands.
fn large_plane_case() -> impl Strategy<Value = ConvCase> {
    (
        (44usize..=52, 1usize..=8),
        (112usize..=124, 112usize..=124, 1usize..=2, 0usize..=1),
        (any::<bool>(), any::<bool>(), 1usize..=3),
    )
        .prop_map(|((cin, m), (h, w, s, pad), (residual, relu, threads))| ConvCase {
            residual,
            relu,
            threads,
            whole_batches: true,
            ..ConvCase::conv2d(1, cin, m, [h, w], 3, s, pad)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The direct kernels on planes past the AVX2 narrow-plane kernel's budget (the position
    /// kernel there) against the reference.
    #[test]
    fn large_plane_direct_conv_matches_the_reference(c in large_plane_case()) {
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        let plan = Plan::compile(&g, &plan_options(&c)).expect("compiles");
        let kind = &plan.step_summaries()[0].kind;
        prop_assert_eq!(kind.ends_with("direct"), has_direct(), "{}", kind);
        let got = plan.run(feeds).expect("plan runs");
        assert_close(&got, &want, 1e-5, &format!("{c:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The direct kernel (on CPUs with AVX-512 or AVX2; elsewhere the same cases check the
    /// im2col path) against the reference interpreter.
    #[test]
    fn direct_conv_matches_the_reference(c in direct_case()) {
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        let plan = Plan::compile(&g, &plan_options(&c)).expect("compiles");
        let kind = &plan.step_summaries()[0].kind;
        // 1×1 convs have the pointwise kernels (padded ones run the im2col path with them).
        let pointwise = c.kernel == [1, 1];
        let held = has_direct() && (!pointwise || has_pointwise(c.m_per_group));
        prop_assert_eq!(kind.ends_with("direct"), held, "{}", kind);
        prop_assert_eq!(kind.ends_with("pointwise-direct"), held && pointwise, "{}", kind);
        let got = plan.run(feeds).expect("plan runs");
        assert_close(&got, &want, 1e-5, &format!("{c:?}"));
    }

    /// The 1×1 kernels (the wide-plane kernel at any stride — on AVX2 its strips of 8–24
    /// positions —, on AVX-512 the narrow-plane one on small planes at stride 1, the im2col
    /// path when padded) against the reference.
    #[test]
    fn pointwise_conv_matches_the_reference(c in pointwise_case()) {
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        let plan = Plan::compile(&g, &plan_options(&c)).expect("compiles");
        let got = plan.run(feeds).expect("plan runs");
        assert_close(&got, &want, 1e-5, &format!("{c:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// 1×1 convs of about [`AVX2_POINTWISE_MIN_FILTERS`] filters (on AVX2 the pointwise
    /// kernel from there, `gemm` below) and up to 300 channels (the AVX2 kernel's passes of
    /// 128, with partial sums between them): strips of 24, 16 and 8 positions, strides, a
    /// residual, one to three threads, against the reference.
    #[test]
    fn many_filter_pointwise_conv_matches_the_reference(c in many_filter_pointwise_case()) {
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).expect("reference runs");
        let plan = Plan::compile(&g, &plan_options(&c)).expect("compiles");
        let kind = &plan.step_summaries()[0].kind;
        prop_assert_eq!(kind.ends_with("pointwise-direct"), has_pointwise(c.m_per_group), "{}", kind);
        let got = plan.run(feeds).expect("plan runs");
        assert_close(&got, &want, 1e-5, &format!("{c:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A residual the plan computes, whose last reader is the conv's fused Add, is added in
    /// the conv's output buffer (the direct kernels, on AVX-512 or AVX2): the same bits as the
    /// residual given as a separate tensor, and one pooled buffer (the im2col path, a padded
    /// 1×1 conv or any conv without AVX2, takes a second).
    #[test]
    fn residual_added_in_the_output_buffer_matches_a_separate_one(
        c in prop_oneof![direct_case(), pointwise_case(), many_filter_pointwise_case()]
    ) {
        // Whole batches: parts on several threads would pool a buffer set each.
        let c = ConvCase { residual: true, whole_batches: true, ..c };
        let (g, feeds) = conv_graph(&c);
        let ((g, feeds), (computed, raw)) = build::residual_pair(&g, &feeds);
        let opts = plan_options(&c);
        let separate = Plan::compile(&g, &opts).expect("compiles");
        let want = separate.run(feeds).expect("plan runs");
        let plan = Plan::compile(&computed, &opts).expect("compiles");
        let got = plan.run(raw).expect("plan runs");
        prop_assert!(build::bits(&got[0]) == build::bits(&want[0]), "{:?}: outputs differ", c);
        let in_place = if c.kernel == [1, 1] {
            has_pointwise(c.m_per_group) && c.pads.iter().all(|&p| p == 0)
        } else {
            has_direct()
        };
        // `separate` pools exactly one buffer, of the output's length.
        let one = separate.pooled_bytes();
        prop_assert_eq!(plan.pooled_bytes(), if in_place { one } else { 2 * one }, "{:?}", c);
    }
}

/// The graph with its filters and its input `x` rounded to bfloat16 (bias and residual
/// left as they are): what the bf16 kernel multiplies, summed exactly in float32.
fn bf16_rounded(g: &Graph, feeds: &[Tensor]) -> (Graph, Vec<Tensor>) {
    let round = |t: &Tensor| {
        let v = t.as_f32().expect("f32").iter().map(|&v| bf16_to_f32(round_bf16(v))).collect();
        Tensor::from_f32(t.shape().to_vec(), v)
    };
    let mut g = g.clone();
    for v in &mut g.values {
        if v.name == "w" {
            let t = v.initializer.as_deref().expect("constant filters");
            v.initializer = Some(Arc::new(round(t)));
        }
    }
    let mut feeds = feeds.to_vec();
    feeds[0] = round(&feeds[0]);
    (g, feeds)
}

/// Which output positions of a 1×1 conv `Mode::Bf16` multiplies in bfloat16: none when
/// padded (the float32 im2col path), else all (the wide-plane kernel's strips, a last
/// partial one too, and the narrow-plane kernel on planes of at most 49 positions; strided
/// convs run at stride 1 on their subsampled input).
fn bf16_positions(c: &ConvCase, plane: usize) -> std::ops::Range<usize> {
    if c.pads.iter().any(|&p| p > 0) {
        return 0..0;
    }
    0..plane
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `Mode::Bf16` (on CPUs with AVX-512 BF16; elsewhere the plan refuses the mode): the 1×1
    /// convs the wide-plane kernel runs equal the conv of the bfloat16-rounded filters and
    /// input, and the positions it leaves to the float32 kernels the float32 conv.
    #[test]
    fn bf16_pointwise_conv_matches_the_bf16_rounded_reference(c in pointwise_case()) {
        let (g, feeds) = conv_graph(&c);
        let opts = PlanOptions { mode: Mode::Bf16, ..plan_options(&c) };
        if !bf16::supported() || !has_avx512() {
            let e = Plan::compile(&g, &opts).expect_err("no AVX-512 BF16: refused");
            prop_assert!(matches!(e, resnet_engine::Error::Bf16Unsupported), "{e}");
            return Ok(());
        }
        let plan = Plan::compile(&g, &opts).expect("compiles");
        let kind = &plan.step_summaries()[0].kind;
        // (Padded 1×1 convs hold the bf16 filters too but run the float32 im2col path.)
        prop_assert!(kind.ends_with("pointwise-direct bf16"), "{}", kind);
        let exact = exec::run(&g, feeds.clone()).expect("reference runs");
        let (rg, rfeeds) = bf16_rounded(&g, &feeds);
        let rounded = exec::run(&rg, rfeeds).expect("reference runs");
        // Per output plane: the bf16 positions from `rounded`, the others from `exact`.
        let shape = exact[0].shape().to_vec();
        let plane: usize = shape[2..].iter().product();
        let bf = bf16_positions(&c, plane);
        let want: Vec<f32> = exact[0].as_f32().unwrap().iter().zip(rounded[0].as_f32().unwrap()).enumerate()
            .map(|(i, (&e, &r))| if bf.contains(&(i % plane)) { r } else { e }).collect();
        let got = plan.run(feeds).expect("plan runs");
        assert_close(&got, &[Tensor::from_f32(shape, want)], 1e-5, &format!("{c:?}"));
    }
}

/// The bf16 kernel really multiplies in bfloat16: against the float32 plan a 1×1 conv over
/// 64 channels on a 20×20 plane (8 full strips and one of 16) differs by more than float32
/// summation order could make it (> 1e-4 of max|y|) and by less than bfloat16's rounding
/// bounds (1e-2), on 1 and 2 threads, at batch 1 and 3. Compiled in `Mode::Bf16` only on CPUs
/// with AVX-512 BF16; elsewhere the error names what is missing.
#[test]
fn bf16_mode_rounds_and_stays_near_float32() {
    let c = ConvCase { residual: true, relu: false, ..ConvCase::conv2d(3, 64, 40, [20, 20], 1, 1, 0) };
    let (g, feeds) = conv_graph(&c);
    let bf = PlanOptions { mode: Mode::Bf16, ..plan_options(&c) };
    if !(bf16::supported() && has_avx512()) {
        let e = Plan::compile(&g, &bf).expect_err("refused");
        assert!(e.to_string().contains("AVX-512 BF16"), "{e}");
        return;
    }
    let exact = Plan::compile(&g, &plan_options(&c)).unwrap().run(feeds.clone()).unwrap();
    for threads in [1, 2] {
        let plan = Plan::compile(&g, &PlanOptions { threads, ..bf.clone() }).unwrap();
        for n in [1, 3] {
            let part: Vec<Tensor> = feeds
                .iter()
                .map(|t| {
                    let per = t.len() / 3;
                    let mut s = t.shape().to_vec();
                    s[0] = n;
                    Tensor::from_f32(s, t.as_f32().unwrap()[..n * per].to_vec())
                })
                .collect();
            let got = plan.run(part).unwrap();
            let (g0, e0) = (got[0].as_f32().unwrap(), &exact[0].as_f32().unwrap()[..got[0].len()]);
            let max = e0.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = g0.iter().zip(e0).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / max;
            assert!(err > 1e-4 && err < 1e-2, "threads {threads} batch {n}: {err:e} of max|y|");
        }
    }
}

/// 1×1 convs: channel counts across several 32-channel K chunks, filter counts with partial
/// 8- and 32-filter blocks, planes from one position to several 48-position strips and
/// several input panels (60×60 at 70 channels: 3 panels of ~1392 positions), strides 1–3
/// per axis, and now and then pads.
fn pointwise_case() -> impl Strategy<Value = ConvCase> {
    (
        (1usize..=2, 1usize..=70, 1usize..=40),
        (1usize..=60, 1usize..=60, 1usize..=3, 1usize..=3, prop::bool::weighted(0.15)),
        (any::<bool>(), any::<bool>(), any::<bool>(), 1usize..=3, any::<bool>()),
    )
        .prop_map(|((n, cin, m), (h, w, sh, sw, padded), (bias, residual, relu, threads, whole_batches))| {
            ConvCase {
                n,
                c_per_group: cin,
                m_per_group: m,
                group: 1,
                spatial: vec![h, w],
                kernel: vec![1, 1],
                stride: vec![sh, sw],
                dilation: vec![1, 1],
                pads: if padded { vec![1, 0, 0, 1] } else { vec![0; 4] },
                bias,
                const_weights: true,
                residual,
                relu,
                threads,
                whole_batches,
            }
        })
}

/// 1×1 convs with [`AVX2_POINTWISE_MIN_FILTERS`] filters give or take 8, 1–300 channels,
/// planes up to 24×24, strides 1–2, no pads.
fn many_filter_pointwise_case() -> impl Strategy<Value = ConvCase> {
    (
        (1usize..=2, 1usize..=300, AVX2_POINTWISE_MIN_FILTERS - 8..=AVX2_POINTWISE_MIN_FILTERS + 8),
        (1usize..=24, 1usize..=24, 1usize..=2, 1usize..=2),
        (any::<bool>(), any::<bool>(), any::<bool>(), 1usize..=3, any::<bool>()),
    )
        .prop_map(|((n, cin, m), (h, w, sh, sw), (bias, residual, relu, threads, whole_batches))| ConvCase {
            n,
            c_per_group: cin,
            m_per_group: m,
            group: 1,
            spatial: vec![h, w],
            kernel: vec![1, 1],
            stride: vec![sh, sw],
            dilation: vec![1, 1],
            pads: vec![0; 4],
            bias,
            const_weights: true,
            residual,
            relu,
            threads,
            whole_batches,
        })
}

/// A 1×1 conv whose plane ends in a strip of a few positions (14×14: 196 = 4·48 + 4; 10×10:
/// 100 = 2·48 + 4; 7 positions after 48 on 5×11) runs that strip with the filter-vector
/// kernel on AVX-512: groups of 4 filter blocks and a single one (40 filters), with a
/// residual, at stride 1 and 2 (the plan subsamples the input first), on one and two threads.
#[test]
fn pointwise_conv_with_a_few_positions_left_matches_the_reference() {
    for (hw, stride, threads) in
        [([14, 14], 1, 1), ([14, 14], 1, 2), ([20, 20], 2, 2), ([5, 11], 1, 1), ([28, 28], 2, 1)]
    {
        let c = ConvCase {
            residual: true,
            threads,
            whole_batches: threads == 1,
            ..ConvCase::conv2d(2, 70, 40, hw, 1, stride, 0)
        };
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).unwrap();
        let got = Plan::compile(&g, &plan_options(&c)).unwrap().run(feeds).unwrap();
        assert_close(&got, &want, 1e-5, &format!("{hw:?} stride {stride} threads {threads}"));
    }
}

/// On AVX2 a tile whose positions end 1 or 2 past a strip of 24 (7×7: 49 = 2·24 + 1; 5×5;
/// 2×13) runs those with the filters along the vectors (`avx2::pointwise_tail`), in groups
/// of up to 4 filter blocks (136 filters: 4 + 4 + 4 + 4 + 1), over channel passes whose sums
/// carry from pass to pass (300 channels: 3 passes), with a residual, on one and two threads
/// and at stride 2 (7×7 from 13×13).
/// 1×1 convs with four or more input channels per filter on planes of 50–196 positions,
/// which on AVX-512 CPUs with half-rate 512-bit FMAs (Zen 4) run the narrow-plane kernel
/// (`POINTWISE_DEEP_PLANE`), elsewhere the wide one: 14-position runs across row ends, a
/// partial 32-filter block, K of 1024 in one call.
#[test]
fn deep_pointwise_conv_on_a_narrow_plane_matches_the_reference() {
    for (hw, cin, m, threads) in
        [([14, 14], 1024, 40, 1), ([14, 14], 160, 40, 2), ([13, 11], 200, 50, 1), ([7, 8], 96, 24, 2)]
    {
        let c = ConvCase { residual: true, threads, ..ConvCase::conv2d(2, cin, m, hw, 1, 1, 0) };
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).unwrap();
        let got = Plan::compile(&g, &plan_options(&c)).unwrap().run(feeds).unwrap();
        assert_close(&got, &want, 1e-5, &format!("{hw:?} {cin} → {m}, threads {threads}"));
    }
}

#[test]
fn pointwise_conv_with_one_or_two_positions_past_a_strip_matches_the_reference() {
    for (hw, stride, threads, residual) in [
        ([7, 7], 1, 1, true),
        ([7, 7], 1, 2, false),
        ([5, 5], 1, 1, true),
        ([2, 13], 1, 2, true),
        ([13, 13], 2, 1, true),
    ] {
        let c = ConvCase { residual, threads, whole_batches: true, ..ConvCase::conv2d(1, 300, 136, hw, 1, stride, 0) };
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).unwrap();
        let plan = Plan::compile(&g, &plan_options(&c)).unwrap();
        assert_eq!(plan.step_summaries()[0].kind.ends_with("pointwise-direct"), has_pointwise(136));
        let got = plan.run(feeds).unwrap();
        assert_close(&got, &want, 1e-5, &format!("{hw:?} stride {stride} threads {threads}"));
    }
}

/// A stem-like 7×7/2 conv of 3 channels to a 70×70 plane (4900 positions, 40 filters): on
/// AVX2 the narrow-plane kernel in bands of rows (its accumulators per block past 128 Ki
/// floats), also one band per thread, with and without a residual.
#[test]
fn stem_like_conv_in_bands_of_rows_matches_the_reference() {
    for (threads, residual) in [(1, false), (2, true), (3, false)] {
        let c = ConvCase { residual, threads, whole_batches: true, ..ConvCase::conv2d(1, 3, 40, [140, 140], 7, 2, 3) };
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).unwrap();
        let plan = Plan::compile(&g, &plan_options(&c)).unwrap();
        assert_eq!(plan.step_summaries()[0].kind.ends_with("direct"), has_direct());
        let got = plan.run(feeds).unwrap();
        assert_close(&got, &want, 1e-5, &format!("threads {threads} residual {residual}"));
    }
}

/// 3×3 convs on narrow planes, which on AVX-512 CPUs leave out the products of taps that
/// read the padding (rows 8–14 wide one per call, 4–7 wide two per call, rows 28, 42 and 56
/// wide in segments of 14, with the plane's first and last rows; widths 1–3 and 15 the full
/// kernels), padded by one on every side at stride 1 and 2 (from even sizes the last row
/// and column read no padding) and unpadded: 37 channels (a K chunk of 32 and one of 5), 40
/// filters (a partial block), with a residual and without, one and two threads, batch 2.
#[test]
fn three_by_three_convs_on_narrow_planes_skip_only_padding_taps() {
    let sizes = [(14, 14), (7, 7), (1, 10), (2, 5), (3, 8), (5, 13), (6, 4), (9, 6), (4, 3), (15, 15), (11, 2)];
    let same = sizes.into_iter().chain([(28, 28), (3, 42), (56, 56), (1, 28)]).map(|hw| (hw, 1, 1));
    // Stride 2 (from even sizes the last row and column read no padding), and no padding.
    let other =
        [((28, 28), 2, 1), ((14, 14), 2, 1), ((56, 56), 2, 1), ((15, 15), 2, 1), ((9, 16), 2, 1), ((16, 16), 1, 0)];
    for ((h, w), stride, pad) in same.chain(other) {
        // One image on two threads: a band of rows per thread where the plane is large (the
        // strided ones), the padding taps left out by the plane's rows, not the band's.
        for (threads, residual, n) in [(1, false, 2), (2, true, 2), (2, false, 1)] {
            let c = ConvCase { residual, threads, ..ConvCase::conv2d(n, 37, 40, [h, w], 3, stride, pad) };
            let (g, feeds) = conv_graph(&c);
            let want = exec::run(&g, feeds.clone()).unwrap();
            let plan = Plan::compile(&g, &plan_options(&c)).unwrap();
            assert_eq!(plan.step_summaries()[0].kind.ends_with("direct"), has_direct());
            let got = plan.run(feeds).unwrap();
            assert_close(
                &got,
                &want,
                1e-5,
                &format!("{h}×{w} stride {stride} pad {pad}, threads {threads}, batch {n}, residual {residual}"),
            );
        }
    }
}

#[test]
fn wide_conv_splits_into_panels_and_matches_the_reference() {
    // 3×3 pad 1 over 40×40 with 80 input channels: K = 720, so several column panels; also
    // batch 2 and a strided variant.
    for (stride, threads) in [(1, 1), (1, 2), (2, 2)] {
        let c = ConvCase {
            residual: stride == 1,
            threads,
            // Both images through every step's tiles on both threads.
            whole_batches: true,
            ..ConvCase::conv2d(2, 80, 24, [40, 40], 3, stride, 1)
        };
        let (g, feeds) = conv_graph(&c);
        let want = exec::run(&g, feeds.clone()).unwrap();
        let got = Plan::compile(&g, &plan_options(&c)).unwrap().run(feeds).unwrap();
        assert_close(&got, &want, 1e-5, &format!("stride {stride} threads {threads}"));
    }
}

/// A v2-style tail: `s = conv(x) + x` feeds both `relu(bn(s))` (→ next conv) and the next
/// shortcut `conv2(...) + s`, so the BN+ReLU must write a new buffer and keep `s`. The plan
/// computes it in the conv's step as a second output, by a pass over the finished sum (1×1
/// convs on 10×10, 28×28 and 56×56, the wide kernel; 3×3 on 6×6; the pass cut by channels
/// below 56×56 on AVX-512, 28×28 elsewhere, and by positions from there on; 14×14 with 40
/// channels, the wide kernel's last strip of 4 positions on its filter-vector kernel): bit
/// for bit what the separate pass computes from `s`, and within 1e-5 of the reference — in
/// bf16 mode (where the CPU has it) `z` still matches its `s` bit for bit.
#[test]
fn v2_post_add_batchnorm_relu_fuses_into_the_conv_and_keeps_the_sum() {
    for (k, hw, c) in [(3, 6, 8), (1, 10, 8), (1, 28, 8), (1, 56, 8), (1, 14, 40)] {
        let (g, stats) = build::v2_tail(c, k, hw);
        for (n, threads) in [(1, 1), (3, 2), (1, 2), (1, 3)] {
            for mode in [Mode::Exact, Mode::Bf16] {
                let what = format!("{k}×{k} on {hw}×{hw}, {c} channels, batch {n}, {threads} threads, {mode:?}");
                let feeds = vec![tensor(&[n, c, hw, hw], 5)];
                let Ok(plan) = Plan::compile(&g, &PlanOptions { threads, mode, ..PlanOptions::default() }) else {
                    assert_eq!(mode, Mode::Bf16, "{what}: only bf16 mode may be refused");
                    continue;
                };
                let steps = plan.describe();
                assert_eq!(steps.len(), 2, "conv1+add1+bn+relu, conv2+add2 ({what}): {steps:?}");
                assert!(steps[0].contains("[Conv+Add+BatchNormalization+Relu]"), "{what}: {steps:?}");
                let got = plan.run(feeds.clone()).unwrap();
                if mode == Mode::Exact {
                    assert_close(&got, &exec::run(&g, feeds).unwrap(), 1e-5, &what);
                }
                build::check_post_bits(&got, &stats, hw * hw, &what);
            }
        }
    }
}

/// Two strided 1×1 convs of one input (ResNet v1's main branch and projection shortcut)
/// subsample it once per run and share it; a third with other strides does its own (odd
/// widths: the last row of the last plane ends on a kept column at stride 2). Against
/// the reference at batch sizes that change between runs of one plan (the shared buffer's
/// size with them), whole and split batches, and the pool flat from run to run.
#[test]
fn strided_pointwise_convs_share_their_subsampled_input() {
    let c = 8;
    let mut g = Graph { opset: 7, ..Graph::default() };
    let x = g.add_value(
        "x",
        Fact::new(resnet_engine::DType::F32, vec![Dim::Sym("N".into()), Dim::Known(c), Dim::Known(13), Dim::Known(13)]),
    );
    g.inputs.push(x);
    let conv = |g: &mut Graph, name: &str, m: usize, stride: usize, seed: u64| {
        let w = g.add_initializer(format!("{name}_w"), tensor(&[m, c, 1, 1], seed));
        let window =
            Window { kernel_shape: Some(vec![1, 1]), strides: Some(vec![stride, stride]), ..Window::default() };
        node(g, name, Op::Conv(Conv { window, group: 1 }), &[x, w], &format!("{name}_y"))
    };
    let a = conv(&mut g, "main", 16, 2, 30);
    let b = conv(&mut g, "shortcut", 16, 2, 31);
    let other = conv(&mut g, "other", 4, 3, 32);
    let sum = node(&mut g, "add", Op::Binary(Binary { kind: BinaryKind::Add }), &[a, b], "sum");
    g.outputs = vec![sum, other];
    g.infer_facts().unwrap();
    for threads in [1, 2] {
        let plan = Plan::compile(&g, &PlanOptions { threads, ..PlanOptions::default() }).unwrap();
        let mut pooled = Vec::new();
        for n in [1, 3, 2, 3, 3] {
            let feeds = vec![tensor(&[n, c, 13, 13], 40 + n as u64)];
            let want = exec::run(&g, feeds.clone()).unwrap();
            let got = plan.run(feeds).unwrap();
            assert_close(&got, &want, 1e-5, &format!("batch {n}, {threads} threads"));
            pooled.push(plan.pooled_bytes());
        }
        assert_eq!(pooled[3], pooled[4], "{threads} threads: the pool grows run after run: {pooled:?}");
    }
}

/// A fully connected layer (Gemm with constant B and C) through the plan: its filters in
/// column panels of 512, run by the small-batch kernel up to 8 rows and `gemm` above, with
/// `transB`, alpha and beta, on one and two threads, against the reference.
#[test]
fn fully_connected_layers_match_the_reference() {
    use resnet_engine::ops::gemm::Gemm;
    for (m, k, n, trans_b) in [(1, 64, 1000, true), (3, 33, 700, false), (8, 17, 512, true), (11, 40, 1030, true)] {
        let mut g = Graph { opset: 7, ..Graph::default() };
        let x = g.add_value("x", Fact::new(resnet_engine::DType::F32, vec![Dim::Known(m), Dim::Known(k)]));
        g.inputs.push(x);
        let b_shape = if trans_b { [n, k] } else { [k, n] };
        let b = g.add_initializer("b", tensor(&b_shape, 50));
        let c = g.add_initializer("c", tensor(&[n], 51));
        let gm = Gemm { alpha: 0.5, beta: 2.0, trans_a: false, trans_b, c_required: true };
        let y = node(&mut g, "fc", Op::Gemm(gm), &[x, b, c], "y");
        g.outputs = vec![y];
        g.infer_facts().unwrap();
        for threads in [1, 2] {
            let plan = Plan::compile(&g, &PlanOptions { threads, ..PlanOptions::default() }).unwrap();
            assert!(plan.describe().iter().any(|s| s.contains(&format!("fc {k}->{n}"))), "{:?}", plan.describe());
            let feeds = vec![tensor(&[m, k], 52)];
            let want = exec::run(&g, feeds.clone()).unwrap();
            let got = plan.run(feeds).unwrap();
            assert_close(&got, &want, 1e-5, &format!("{m}×{k} · {k}×{n}, {threads} threads"));
        }
    }
}

/// `Plan::compile_owned` frees each constant filter once its conv has packed it (the plan
/// keeps one copy), keeps a filter something else reads too, and leaves a graph the caller
/// still holds (`compile(&g)`) untouched; all three plans compute what the reference does.
#[test]
fn compile_owned_frees_packed_filters_and_keeps_shared_ones() {
    let c = 8;
    let build = || {
        let mut g = Graph { opset: 7, ..Graph::default() };
        let x = g.add_value(
            "x",
            Fact::new(
                resnet_engine::DType::F32,
                vec![Dim::Sym("N".into()), Dim::Known(c), Dim::Known(6), Dim::Known(6)],
            ),
        );
        g.inputs.push(x);
        let window = Window { kernel_shape: Some(vec![3, 3]), pads: Some(vec![1, 1, 1, 1]), ..Window::default() };
        let w1 = g.add_initializer("w1", tensor(&[c, c, 3, 3], 31));
        let w2 = g.add_initializer("w2", tensor(&[c, c, 3, 3], 32));
        let y1 = node(&mut g, "conv1", Op::Conv(Conv { window: window.clone(), group: 1 }), &[x, w1], "y1");
        let y2 = node(&mut g, "conv2", Op::Conv(Conv { window, group: 1 }), &[y1, w2], "y2");
        // w2 is also read by a ReLU whose result is an output: not only a conv's filter.
        let r = node(&mut g, "relu_w2", Op::Relu(Relu {}), &[w2], "r");
        g.outputs = vec![y2, r];
        g.infer_facts().unwrap();
        (g, w1, w2)
    };
    let feeds = vec![tensor(&[2, c, 6, 6], 33)];
    let (g, w1, w2) = build();
    let want = exec::run(&g, feeds.clone()).unwrap();
    let weak = |g: &Graph, v: usize| Arc::downgrade(g.values[v].initializer.as_ref().unwrap());

    // Borrowed: the caller's graph keeps both filters.
    let plan = Plan::compile(&g, &PlanOptions::default()).unwrap();
    assert!(g.values[w1].initializer.is_some() && g.values[w2].initializer.is_some());
    assert_close(&plan.run(feeds.clone()).unwrap(), &want, 1e-5, "compile(&g)");

    // Owned: w1 is freed once packed, w2 (read by the ReLU too) stays.
    let (w1_weak, w2_weak) = (weak(&g, w1), weak(&g, w2));
    drop(plan);
    let plan = Plan::compile_owned(g, &PlanOptions::default()).unwrap();
    assert!(w1_weak.upgrade().is_none(), "w1 is packed: the graph's tensor must be gone");
    assert!(w2_weak.upgrade().is_some(), "w2 is read by the ReLU too");
    assert_close(&plan.run(feeds.clone()).unwrap(), &want, 1e-5, "compile_owned");
    assert_close(&plan.run(feeds).unwrap(), &want, 1e-5, "compile_owned, second run");
}

// ---- ONNX node tests ------------------------------------------------------------------

const MANIFEST: &str = include_str!("node_tests.txt");

fn passing_cases() -> Vec<String> {
    MANIFEST
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("pass "))
        .map(|c| c.split('#').next().unwrap_or("").trim().to_string())
        .collect()
}

fn numbered_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..).map(|i| dir.join(format!("{prefix}_{i}.pb"))).take_while(|p| p.exists()).collect()
}

fn run_node_case(dir: &Path) -> Result<(), String> {
    let graph = onnx::load_model(dir.join("model.onnx")).map_err(|e| format!("load: {}", e.root()))?;
    let data = dir.join("test_data_set_0");
    let read = |p: &PathBuf| onnx::read_tensor_pb(p).map(|(_, t)| t).map_err(|e| format!("test data: {}", e.root()));
    let inputs: Vec<Tensor> = numbered_files(&data, "input").iter().map(read).collect::<Result<_, _>>()?;
    let expected: Vec<Tensor> = numbered_files(&data, "output").iter().map(read).collect::<Result<_, _>>()?;
    let plan = Plan::compile(&graph, &PlanOptions { threads: 2, ..PlanOptions::default() })
        .map_err(|e| format!("compile: {e}"))?;
    let outputs = plan.run(inputs).map_err(|e| format!("run: {e}"))?;
    if outputs.len() != expected.len() {
        return Err(format!("{} outputs instead of {}", outputs.len(), expected.len()));
    }
    for (i, (got, want)) in outputs.iter().zip(&expected).enumerate() {
        let r = testdata::compare(format!("output {i}"), got, want, Tolerance::Elementwise { rtol: 1e-3, atol: 1e-7 });
        if !r.passed {
            return Err(format!("output {i}: {:?} max |error| {:.3e}", r.problem, r.max_abs_err));
        }
    }
    Ok(())
}

#[test]
fn node_tests_in_the_manifest_pass_through_the_plan() {
    let Some(root) = common::shared_asset("data/onnx-node-tests") else { return };
    let cases = passing_cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| run_node_case(&root.join(case)).err().map(|why| format!("  {case}: {why}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} node tests failed through the plan:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---- the real model ----------------------------------------------------------------------

fn keras() -> Option<(Graph, PathBuf)> {
    let dir = common::shared_asset("models/resnet50-v1-keras")?;
    let graph = onnx::load_model(testdata::find_model(&dir).unwrap()).unwrap();
    Some((graph, dir))
}

/// Concatenates single-image inputs along the batch axis.
fn stack(images: &[Tensor]) -> Tensor {
    let mut shape = images[0].shape().to_vec();
    shape[0] = images.iter().map(|t| t.shape()[0]).sum();
    Tensor::from_f32(shape, images.iter().flat_map(|t| t.as_f32().unwrap().iter().copied()).collect())
}

#[test]
fn resnet50_keras_through_the_plan_matches_the_data_sets_and_the_reference() {
    let Some((graph, dir)) = keras() else { return };
    let sets = testdata::data_sets(&dir).unwrap();
    let mut images = Vec::new();
    let mut expected = Vec::new();
    for set in &sets {
        let inputs = testdata::read_numbered(set, "input").unwrap();
        images.push(inputs.into_iter().next().unwrap().1);
        expected.push(testdata::read_numbered(set, "output").unwrap().into_iter().next().unwrap().1);
    }
    for threads in [1, 2] {
        let plan = Plan::compile(&graph, &PlanOptions { threads, ..PlanOptions::default() }).unwrap();
        assert_eq!(plan.splits_batches(), threads > 1, "ResNet-50 works image by image");
        // Batch 1: each data set against its output_0.pb and the reference.
        for (img, want) in images.iter().zip(&expected) {
            let got = plan.run(vec![img.clone()]).unwrap();
            let r = testdata::compare("fc".into(), &got[0], want, Tolerance::Elementwise { rtol: 1e-3, atol: 1e-5 });
            assert!(r.passed, "threads {threads}: vs output_0.pb: {r:?}");
            let reference = exec::run(&graph, vec![img.clone()]).unwrap();
            assert_close(&got, &reference, 1e-4, &format!("threads {threads}, batch 1"));
        }
        // Batch 3: the images stacked (the first one twice); on 2 threads one image per
        // thread, then the third on both.
        let batch = stack(&[images[0].clone(), images[images.len() - 1].clone(), images[0].clone()]);
        let got = plan.run(vec![batch.clone()]).unwrap();
        let reference = exec::run(&graph, vec![batch]).unwrap();
        assert_eq!(got[0].shape()[0], 3);
        assert_close(&got, &reference, 1e-4, &format!("threads {threads}, batch 3"));
    }
}

/// The conv graph of `conv_graph` (3×3 on 6×6, bias, residual graph input, ReLU) for `n`
/// images, then `tail(graph, conv output)` as the graph's output.
fn split_case(n: usize, const_weights: bool, tail: impl Fn(&mut Graph, usize) -> usize) -> (Graph, Vec<Tensor>) {
    let c = ConvCase { const_weights, residual: true, ..ConvCase::conv2d(n, 3, 4, [6, 6], 3, 1, 1) };
    let (mut g, feeds) = conv_graph(&c);
    let conv_out = g.outputs[0];
    let out = tail(&mut g, conv_out);
    g.outputs = vec![out];
    g.infer_facts().expect("graph infers");
    (g, feeds)
}

#[test]
fn a_batch_runs_one_part_per_thread_when_every_step_works_image_by_image() {
    use resnet_engine::ops::flatten::Flatten;
    let flatten = |axis| move |g: &mut Graph, v| node(g, "flatten", Op::Flatten(Flatten { axis }), &[v], "flat");
    let opts = |threads| PlanOptions { threads, ..PlanOptions::default() };
    for n in [1, 2, 3, 5, 7] {
        let (g, feeds) = split_case(n, true, flatten(1));
        let want = exec::run(&g, feeds.clone()).unwrap();
        let one = Plan::compile(&g, &opts(1)).unwrap();
        assert!(!one.splits_batches(), "one thread: nothing to split");
        let single = one.run(feeds.clone()).unwrap();
        for threads in [2, 3] {
            let plan = Plan::compile(&g, &opts(threads)).unwrap();
            assert!(plan.splits_batches(), "conv + residual + relu + flatten work image by image");
            let got = plan.run(feeds.clone()).unwrap();
            assert_eq!(got[0].shape(), want[0].shape());
            // Parts joined in the wrong order, or an image computed twice, are far off.
            assert_close(&got, &single, 1e-6, &format!("batch {n}, {threads} threads vs one thread"));
            assert_close(&got, &want, 1e-5, &format!("batch {n}, {threads} threads vs the reference"));
        }
    }
    // Not image by image: run-time filters (a graph input, not cut per image), Flatten of
    // axis 0 (mixes the images), an Add of a constant holding a batch of its own.
    let batch_constant = |g: &mut Graph, v| {
        let k = g.add_initializer("k", tensor(&[3, 4, 6, 6], 11));
        let add = Op::Binary(Binary { kind: BinaryKind::Add });
        node(g, "add_k", add, &[v, k], "plus_k")
    };
    let cases: [(&str, (Graph, Vec<Tensor>)); 3] = [
        ("run-time filters", split_case(3, false, |_, v| v)),
        ("flatten axis 0", split_case(3, true, flatten(0))),
        ("constant batch", split_case(3, true, batch_constant)),
    ];
    for (what, (g, feeds)) in cases {
        let plan = Plan::compile(&g, &opts(2)).unwrap();
        assert!(!plan.splits_batches(), "{what}: the batch runs whole");
        assert_close(&plan.run(feeds.clone()).unwrap(), &exec::run(&g, feeds).unwrap(), 1e-5, what);
    }
}

/// On one thread (a plan of one, or each part of a split batch) the steps that read planes
/// of at least `BY_IMAGE_MIN_PLANE` positions run image by image, the rest batched. A 3×3
/// conv on 16×16 (its output also a graph output, so it crosses the boundary), a strided
/// 3×3 conv to 8×8 (still reading 16×16: by image), and a 3×3 conv on 8×8 with the strided
/// one's output as residual (batched). Fast mode with Winograd from 17 4×4 tiles per call
/// shows which way a step ran: one 16×16 image has 16 tiles (exact), a batch more.
#[test]
fn large_planes_run_image_by_image_on_one_thread() {
    use resnet_engine::plan::BY_IMAGE_MIN_PLANE;
    const { assert!(BY_IMAGE_MIN_PLANE <= 16 * 16 && BY_IMAGE_MIN_PLANE > 8 * 8) };
    let c = 16;
    let mut g = Graph { opset: 13, ..Graph::default() };
    let x = g.add_value(
        "x",
        Fact::new(resnet_engine::DType::F32, vec![Dim::Sym("N".into()), Dim::Known(c), Dim::Known(16), Dim::Known(16)]),
    );
    g.inputs.push(x);
    let conv = |g: &mut Graph, name: &str, x: usize, stride: usize, seed: u64| {
        let w = g.add_initializer(format!("{name}_w"), tensor(&[c, c, 3, 3], seed));
        let b = g.add_initializer(format!("{name}_b"), tensor(&[c], seed + 1));
        let window = Window {
            kernel_shape: Some(vec![3, 3]),
            strides: Some(vec![stride, stride]),
            pads: Some(vec![1; 4]),
            ..Window::default()
        };
        node(g, name, Op::Conv(Conv { window, group: 1 }), &[x, w, b], &format!("{name}_y"))
    };
    let a = conv(&mut g, "a", x, 1, 50);
    let a = node(&mut g, "relu_a", Op::Relu(Relu {}), &[a], "a_relu");
    let b = conv(&mut g, "b", a, 2, 52);
    let d = conv(&mut g, "d", b, 1, 54);
    let sum = node(&mut g, "add", Op::Binary(Binary { kind: BinaryKind::Add }), &[d, b], "sum");
    let out = node(&mut g, "relu", Op::Relu(Relu {}), &[sum], "out");
    g.outputs = vec![out, a];
    g.infer_facts().unwrap();
    let opts = |threads, mode, whole_batches| PlanOptions {
        threads,
        mode,
        whole_batches,
        winograd_min_tiles: Some(17),
        ..PlanOptions::default()
    };
    let bits = |t: &Tensor| t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for threads in [1, 2] {
        let fast = Plan::compile(&g, &opts(threads, Mode::Fast, false)).unwrap();
        let exact = Plan::compile(&g, &opts(threads, Mode::Exact, false)).unwrap();
        let whole = Plan::compile(&g, &opts(threads, Mode::Fast, true)).unwrap();
        assert!(fast.describe()[0].contains("winograd"), "{:?}", fast.describe());
        let mut pooled = Vec::new();
        for n in [1, 2, 3, 5, 4, 4] {
            let what = format!("batch {n}, {threads} threads");
            let feeds = vec![tensor(&[n, c, 16, 16], 60 + n as u64)];
            let want = exec::run(&g, feeds.clone()).unwrap();
            let got = fast.run(feeds.clone()).unwrap();
            assert_close(&got, &want, 1e-5, &what);
            assert_close(&exact.run(feeds.clone()).unwrap(), &want, 1e-5, &what);
            let batched = whole.run(feeds.clone()).unwrap();
            assert_close(&batched, &want, 1e-5, &what);
            // The 16×16 conv ran one image at a time: exact (16 tiles per call), the same
            // bits as each image run alone (on two threads each part of a split batch runs
            // by image, an image left over alone); with the whole batch in one call as
            // Winograd.
            let alone: Vec<u32> = (0..n)
                .flat_map(|i| {
                    let image = Tensor::from_f32(
                        vec![1, c, 16, 16],
                        feeds[0].as_f32().unwrap()[i * c * 256..(i + 1) * c * 256].to_vec(),
                    );
                    bits(&fast.run(vec![image]).unwrap()[1])
                })
                .collect();
            assert!(bits(&got[1]) == alone, "{what}: the 16×16 conv by image");
            if n > 1 {
                assert!(bits(&batched[1]) != alone, "{what}: whole batches run the 16×16 conv as Winograd");
            }
            pooled.push(fast.pooled_bytes());
        }
        assert_eq!(pooled[4], pooled[5], "{threads} threads: the pool grows run after run: {pooled:?}");
    }
}

#[test]
fn one_plan_serves_several_threads_at_once() {
    let Some((graph, dir)) = keras() else { return };
    let set = &testdata::data_sets(&dir).unwrap()[0];
    let img = testdata::read_numbered(set, "input").unwrap().remove(0).1;
    let plan = Arc::new(Plan::compile(&graph, &PlanOptions { threads: 1, ..PlanOptions::default() }).unwrap());
    let first = plan.run(vec![img.clone()]).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (plan, img) = (plan.clone(), img.clone());
            std::thread::spawn(move || plan.run(vec![img]).unwrap())
        })
        .collect();
    for h in handles {
        assert_close(&h.join().unwrap(), &first, 0.0, "concurrent run");
    }
}

/// `cargo test --release -p resnet-engine --test plan -- --ignored --nocapture`
#[test]
#[ignore = "timing: run explicitly in release"]
fn plan_resnet50_timing() {
    let Some((graph, dir)) = keras() else { return };
    let set = &testdata::data_sets(&dir).unwrap()[0];
    let img = testdata::read_numbered(set, "input").unwrap().remove(0).1;
    let runs: usize = std::env::var("PLAN_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let threads: usize = std::env::var("PLAN_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let batch: usize = std::env::var("PLAN_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let input = stack(&vec![img; batch]);
    let optimized = resnet_engine::passes::optimize(graph.clone(), &Default::default()).unwrap();
    let t0 = std::time::Instant::now();
    let plan = Plan::compile(&optimized, &PlanOptions { threads, ..PlanOptions::default() }).unwrap();
    println!("compile {:.1} ms, {} steps", t0.elapsed().as_secs_f64() * 1e3, plan.describe().len());
    let unoptimized = Plan::compile(&graph, &PlanOptions { threads, ..PlanOptions::default() }).unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let time = |f: &dyn Fn()| {
        f();
        median(
            (0..runs)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let gflop = 3.858 * 2.0 * batch as f64;
    println!("resnet50-v1-keras batch {batch} threads {threads}, {runs} runs (median/min/max ms):");
    let report = |name: &str, (m, lo, hi): (f64, f64, f64)| {
        println!("  {name:<22} {m:8.2} {lo:8.2} {hi:8.2}   {:6.1} GFLOP/s", gflop / m * 1e3)
    };
    // Interleave the plan and the reference so drift on the shared machine hits both.
    for _ in 0..2 {
        report("plan (after passes)", time(&|| drop(plan.run(vec![input.clone()]).unwrap())));
        report("plan (no passes)", time(&|| drop(unoptimized.run(vec![input.clone()]).unwrap())));
    }
    report("exec::run", time(&|| drop(pool.install(|| exec::run(&graph, vec![input.clone()]).unwrap()))));
    if std::env::var_os("PLAN_PROFILE").is_some() {
        let mut total = vec![0.0; plan.describe().len()];
        for _ in 0..runs {
            let (_, t) = plan.run_profiled(vec![input.clone()]).unwrap();
            total.iter_mut().zip(t).for_each(|(a, b)| *a += b / runs as f64);
        }
        for (line, ms) in plan.describe().iter().zip(total) {
            println!("{ms:8.3} ms  {line}");
        }
    }
}
