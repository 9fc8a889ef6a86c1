//! The plan's element-wise and pooling kernels, every compiled copy (portable, AVX2, AVX-512:
//! each one the CPU has) against a naive scalar reference on random shapes and data. The
//! copies must agree bit for bit; the reference within float rounding of a different sum
//! order (global average) or exactly (everything else).

use proptest::prelude::*;
use resnet_engine::ops::padding::Axis;
use resnet_engine::plan::kernels::{self, Isa};

/// The cap is process-wide: tests that change or read it take turns.
static CAP_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` once per instruction set (capped with `set_isa_cap`) and returns what it produced
/// under each copy the CPU actually has, tagged with the copy.
fn per_isa<T>(mut f: impl FnMut() -> T) -> Vec<(Isa, T)> {
    let _cap = CAP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut out: Vec<(Isa, T)> = Vec::new();
    for cap in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
        kernels::set_isa_cap(cap);
        let isa = kernels::active_isa();
        if out.iter().all(|(i, _)| *i != isa) {
            out.push((isa, f()));
        }
    }
    kernels::set_isa_cap(Isa::Avx512);
    out
}

/// Every copy bit-identical to `want`.
fn assert_all_eq(got: Vec<(Isa, Vec<f32>)>, want: &[f32], what: &str) {
    for (isa, y) in got {
        assert_eq!(y.len(), want.len());
        for (i, (a, b)) in y.iter().zip(want).enumerate() {
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what} {isa:?} [{i}]: {a} vs {b}");
        }
    }
}

fn data(len: usize) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(-4.0f32..4.0, len)
}

fn axis(input: usize, kernel: usize, stride: usize, pad: usize) -> Axis {
    let output = (input + 2 * pad).saturating_sub(kernel) / stride + 1;
    Axis { input, output, kernel, stride, dilation: 1, pad_begin: pad, pad_end: pad }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn elementwise_kernels_match_scalar_loops(
        (a, b) in (0usize..200).prop_flat_map(|n| (data(n), data(n))),
        relu in any::<bool>(),
        bias in -1.0f32..1.0,
    ) {
        let r = |v: f32| if relu { v.max(0.0) } else { v };
        let want: Vec<f32> = a.iter().map(|v| v.max(0.0)).collect();
        assert_all_eq(per_isa(|| { let mut y = a.clone(); kernels::relu_in_place(&mut y); y }), &want, "relu_in_place");
        assert_all_eq(per_isa(|| { let mut y = vec![0.0; a.len()]; kernels::relu_into(&a, &mut y); y }), &want, "relu_into");

        let want: Vec<f32> = a.iter().zip(&b).map(|(u, v)| r(u + v)).collect();
        assert_all_eq(per_isa(|| { let mut y = a.clone(); kernels::add_in_place(&mut y, &b, relu); y }), &want, "add_in_place");
        assert_all_eq(per_isa(|| { let mut y = vec![0.0; a.len()]; kernels::add_into(&a, &b, &mut y, relu); y }), &want, "add_into");

        let want: Vec<f32> = a.iter().zip(&b).map(|(u, v)| r(u + bias + v)).collect();
        assert_all_eq(per_isa(|| { let mut y = a.clone(); kernels::conv_epilogue_row(&mut y, bias, Some(&b), relu); y }), &want, "epilogue+residual");
        let want: Vec<f32> = a.iter().map(|u| r(u + bias)).collect();
        assert_all_eq(per_isa(|| { let mut y = a.clone(); kernels::conv_epilogue_row(&mut y, bias, None, relu); y }), &want, "epilogue");
    }

    #[test]
    fn affine_and_global_average_match_scalar_loops(
        (channels, plane, n) in (1usize..6, 1usize..70, 1usize..3),
        relu in any::<bool>(),
        seed in data(512),
    ) {
        let len = n * channels * plane;
        let x: Vec<f32> = (0..len).map(|i| seed[i % seed.len()] + i as f32 * 1e-3).collect();
        let scale: Vec<f32> = seed[..channels].to_vec();
        let shift: Vec<f32> = seed[channels..2 * channels].to_vec();
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / plane) % channels;
                let y = v * scale[c] + shift[c];
                if relu { y.max(0.0) } else { y }
            })
            .collect();
        assert_all_eq(
            per_isa(|| { let mut y = vec![0.0; len]; kernels::affine_into(&x, &mut y, &scale, &shift, plane, relu); y }),
            &want,
            "affine_into",
        );

        let got = per_isa(|| { let mut y = vec![0.0; n * channels]; kernels::global_average(&x, &mut y, plane); y });
        let first = got[0].1.clone();
        assert_all_eq(got, &first, "global_average copies");
        for (i, (g, xp)) in first.iter().zip(x.chunks_exact(plane)).enumerate() {
            let mean = xp.iter().map(|&v| v as f64).sum::<f64>() / plane as f64;
            prop_assert!((*g as f64 - mean).abs() <= 1e-5 * (1.0 + mean.abs()), "plane {i}: {g} vs {mean}");
        }
    }

    #[test]
    fn max_pool_matches_a_window_scan(
        (h, w) in (1usize..20, 1usize..80),
        (k, s, pad) in (1usize..=4, 1usize..=3, 0usize..=2),
        seed in data(400),
    ) {
        prop_assume!(pad < k && k <= h + 2 * pad && k <= w + 2 * pad);
        let x: Vec<f32> = (0..h * w).map(|i| seed[i % seed.len()] - (i / seed.len()) as f32).collect();
        let axes = [Axis::UNIT, axis(h, k, s, pad), axis(w, k, s, pad)];
        let (oh, ow) = (axes[1].output, axes[2].output);
        let mut want = vec![f32::NEG_INFINITY; oh * ow];
        for (o, m) in want.iter_mut().enumerate() {
            for kh in 0..k {
                for kw in 0..k {
                    let (ih, iw) = ((o / ow * s + kh) as isize - pad as isize, (o % ow * s + kw) as isize - pad as isize);
                    if (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw) {
                        *m = m.max(x[ih as usize * w + iw as usize]);
                    }
                }
            }
        }
        assert_all_eq(per_isa(|| { let mut y = vec![0.0; oh * ow]; kernels::max_pool_plane(&x, &mut y, &axes); y }), &want, "max_pool_plane");
    }
}

/// The 3×3/2 pool (ResNet's stem pool; vector code with masked loads at the row ends on
/// AVX-512) on every row width up to 4 vectors of outputs and both paddings, with NaN and
/// -inf among the inputs: NaN never wins, a window of only NaN or padding gives -inf, and
/// every copy gives the window scan's bits.
#[test]
fn max_pool_3x3_stride_2_ignores_nan_at_every_width() {
    for pad in 0..=1 {
        for h in 2..=5 {
            for w in 2..=140 {
                let x: Vec<f32> = (0..h * w)
                    .map(|i| match i % 11 {
                        3 => f32::NAN,
                        7 => f32::NEG_INFINITY,
                        _ => ((i * 37) % 101) as f32 - 50.5,
                    })
                    .collect();
                let axes = [Axis::UNIT, axis(h, 3, 2, pad), axis(w, 3, 2, pad)];
                let (oh, ow) = (axes[1].output, axes[2].output);
                let mut want = vec![f32::NEG_INFINITY; oh * ow];
                for (o, m) in want.iter_mut().enumerate() {
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let (ih, iw) =
                                ((o / ow * 2 + kh) as isize - pad as isize, (o % ow * 2 + kw) as isize - pad as isize);
                            if (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw) {
                                *m = m.max(x[ih as usize * w + iw as usize]);
                            }
                        }
                    }
                }
                assert!(want.iter().all(|v| !v.is_nan()));
                let got = per_isa(|| {
                    let mut y = vec![0.0; oh * ow];
                    kernels::max_pool_plane(&x, &mut y, &axes);
                    y
                });
                assert_all_eq(got, &want, &format!("max_pool_plane {h}x{w} pad {pad}"));
            }
        }
    }
}

#[test]
fn the_widest_copy_the_cpu_has_is_the_default() {
    let _cap = CAP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let isa = kernels::active_isa();
    #[cfg(target_arch = "x86_64")]
    {
        let expected = if std::arch::is_x86_feature_detected!("avx512f") {
            Isa::Avx512
        } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            Isa::Avx2
        } else {
            Isa::Portable
        };
        assert_eq!(isa, expected);
    }
    #[cfg(not(target_arch = "x86_64"))]
    assert_eq!(isa, Isa::Portable);
}
