//! BatchNormalization forward and backward over `[N, C, plane]` tensors.
//!
//! Training mode normalises with the batch statistics of each channel (mean and the BIASED
//! variance over the `N · plane` values, as every framework does) and saves the mean and
//! `1 / sqrt(var + ε)` for backward; the running statistics are updated by the program, not
//! here. Inference mode uses the running statistics, which then are constants.
//!
//! With `relu` the node is BatchNormalization followed by its only consumer, a Relu (fused by
//! the program): forward writes `max(y, 0)` directly, so the BN output is never stored nor
//! read again; backward receives `dy` already masked by the program (from the fused output:
//! `max(y, 0) > 0 ⇔ y > 0`).
//!
//! Channel reductions run one channel per task in a fixed order, so they do not depend on
//! the thread count: each `[n, c]` plane is summed in `T` over 8 interleaved lanes (so the
//! loop vectorises; converting every element to f64 made the pass several times slower) in
//! blocks of 4096 values, and the block sums are accumulated in f64. A tensor on batch lanes
//! (`train::lanes`) comes as `[1, C, N·H·W]`: one plane per channel.

use rayon::prelude::*;

use crate::train::real::Real;

/// Per-channel statistics of one training-mode forward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchStats {
    pub mean: Vec<f64>,
    /// Biased batch variance.
    pub var: Vec<f64>,
    /// `1 / sqrt(var + ε)`.
    pub inv_std: Vec<f64>,
}

/// Sizes of one call: `x` is `[n, c, plane]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BnDims {
    pub n: usize,
    pub c: usize,
    pub plane: usize,
}

impl BnDims {
    fn count(&self) -> usize {
        self.n * self.plane
    }
}

/// Elements summed in `T` before the partial sums move to f64: a plane on batch lanes holds
/// a whole channel (`N·H·W` values, 100 Ki for mnist-v1's first stage).
const BLOCK: usize = 4096;

/// `Σ f(a_i, b_i)` over two equally long slices, in 8 lanes of `T` per [`BLOCK`], returned
/// as f64.
#[inline]
fn lane_sum<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Copy) -> f64 {
    a.chunks(BLOCK).zip(b.chunks(BLOCK)).map(|(a, b)| lane_sum_block(a, b, f)).sum()
}

#[inline]
fn lane_sum_block<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> f64 {
    let mut acc = [T::ZERO; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (ca, cb) in ac.zip(bc) {
        for j in 0..8 {
            acc[j] += f(ca[j], cb[j]);
        }
    }
    let mut total = 0.0f64;
    for (&x, &y) in ar.iter().zip(br) {
        total += f(x, y).to_f64();
    }
    total + acc.iter().map(|v| v.to_f64()).sum::<f64>()
}

/// `(Σ a_i, Σ a_i·(b_i − shift))` in one pass, each in 8 lanes of `T` per [`BLOCK`],
/// returned as f64.
#[inline]
fn lane_sums_dy<T: Real>(a: &[T], b: &[T], shift: T) -> (f64, f64) {
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .map(|(a, b)| lane_sums_dy_block(a, b, shift))
        .fold((0.0, 0.0), |s, t| (s.0 + t.0, s.1 + t.1))
}

#[inline]
fn lane_sums_dy_block<T: Real>(a: &[T], b: &[T], shift: T) -> (f64, f64) {
    let (mut s1, mut s2) = ([T::ZERO; 8], [T::ZERO; 8]);
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (ca, cb) in ac.zip(bc) {
        for j in 0..8 {
            s1[j] += ca[j];
            s2[j] += ca[j] * (cb[j] - shift);
        }
    }
    let (mut t1, mut t2) = (0.0f64, 0.0f64);
    for (&x, &y) in ar.iter().zip(br) {
        t1 += x.to_f64();
        t2 += (x * (y - shift)).to_f64();
    }
    (t1 + s1.iter().map(|v| v.to_f64()).sum::<f64>(), t2 + s2.iter().map(|v| v.to_f64()).sum::<f64>())
}

/// Per-channel `(Σ f(a), Σ g(a, b))`-style reduction: `f(ch, plane_slice_index)` over every
/// plane of channel `ch`, in image order.
fn per_channel<R: Send>(d: BnDims, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    (0..d.c).into_par_iter().map(f).collect()
}

/// Training-mode forward: `y = γ · (x − μ_B) / sqrt(σ²_B + ε) + β` (`max(y, 0)` with
/// `relu`); returns the statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_train<T: Real>(
    d: BnDims,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    eps: f64,
    relu: bool,
    y: &mut [T],
) -> BatchStats {
    let count = d.count() as f64;
    let moments = per_channel(d, |ch| {
        let mut sum = 0.0f64;
        for img in 0..d.n {
            let xp = &x[(img * d.c + ch) * d.plane..][..d.plane];
            sum += lane_sum(xp, xp, |v, _| v);
        }
        let mean = sum / count;
        let mean_t = T::from_f64(mean);
        let mut sq = 0.0f64;
        for img in 0..d.n {
            let xp = &x[(img * d.c + ch) * d.plane..][..d.plane];
            sq += lane_sum(xp, xp, |v, _| {
                let t = v - mean_t;
                t * t
            });
        }
        (mean, sq / count)
    });
    let mean: Vec<f64> = moments.iter().map(|m| m.0).collect();
    let var: Vec<f64> = moments.iter().map(|m| m.1).collect();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let scale: Vec<T> = (0..d.c).map(|ch| T::from_f64(gamma[ch].to_f64() * inv_std[ch])).collect();
    let shift: Vec<T> = (0..d.c).map(|ch| T::from_f64(beta[ch].to_f64() - mean[ch] * scale[ch].to_f64())).collect();
    affine(d, x, &scale, &shift, relu, y);
    BatchStats { mean, var, inv_std }
}

/// Inference-mode forward with running statistics (`max(y, 0)` with `relu`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_inference<T: Real>(
    d: BnDims,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    var: &[T],
    eps: f64,
    relu: bool,
    y: &mut [T],
) {
    let (scale, shift) = inference_affine(d, gamma, beta, mean, var, eps);
    affine(d, x, &scale, &shift, relu, y);
}

/// The per-channel `(scale, shift)` of inference mode.
fn inference_affine<T: Real>(d: BnDims, gamma: &[T], beta: &[T], mean: &[T], var: &[T], eps: f64) -> (Vec<T>, Vec<T>) {
    let scale: Vec<T> = (0..d.c).map(|ch| T::from_f64(gamma[ch].to_f64() / (var[ch].to_f64() + eps).sqrt())).collect();
    let shift: Vec<T> = (0..d.c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    (scale, shift)
}

/// `y = scale[c] · x + shift[c]` (`max(…, 0)` with `relu`), one plane per task.
fn affine<T: Real>(d: BnDims, x: &[T], scale: &[T], shift: &[T], relu: bool, y: &mut [T]) {
    if d.plane == 0 {
        return;
    }
    y.par_chunks_mut(d.plane).zip(x.par_chunks(d.plane)).enumerate().for_each(|(i, (yp, xp))| {
        let (s, b) = (scale[i % d.c], shift[i % d.c]);
        if relu {
            yp.iter_mut().zip(xp).for_each(|(y, &x)| {
                let v = s * x + b;
                *y = v.keep_if(v > T::ZERO);
            });
        } else {
            yp.iter_mut().zip(xp).for_each(|(y, &x)| *y = s * x + b);
        }
    });
}

/// Training-mode backward. Adds `dγ`, `dβ` and `dx` (each only when asked for; `dx_fresh`:
/// `dx` holds no gradient yet and is overwritten):
/// `dγ = Σ dy·x̂`, `dβ = Σ dy`, `dx = γ·inv_std · (dy − dβ/M − x̂·dγ/M)` with `M = N·plane`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_train<T: Real>(
    d: BnDims,
    x: &[T],
    gamma: &[T],
    stats: &BatchStats,
    dy: &[T],
    dx: Option<&mut [T]>,
    dx_fresh: bool,
    dgamma: Option<&mut [T]>,
    dbeta: Option<&mut [T]>,
) {
    let sums = channel_sums(d, x, dy, &stats.mean, &stats.inv_std);
    add_param_grads(&sums, dgamma, dbeta);
    if let Some(dx) = dx {
        let count = d.count() as f64;
        // dx = a·dy + b·x + c per channel, with x̂ = (x − μ)·inv_std expanded.
        let coef: Vec<(T, T, T)> = (0..d.c)
            .map(|ch| {
                let (sdy, sdyxh) = sums[ch];
                let k = gamma[ch].to_f64() * stats.inv_std[ch];
                let xh_coef = stats.inv_std[ch] * sdyxh / count;
                let a = k;
                let b = -k * xh_coef;
                let c = -k * sdy / count + k * xh_coef * stats.mean[ch];
                (T::from_f64(a), T::from_f64(b), T::from_f64(c))
            })
            .collect();
        add_planes(d, dx, |i, dxp| {
            let (a, b, c) = coef[i % d.c];
            let off = i * d.plane;
            let (dyp, xp) = (&dy[off..][..d.plane], &x[off..][..d.plane]);
            if dx_fresh {
                for ((g, &dy), &x) in dxp.iter_mut().zip(dyp).zip(xp) {
                    *g = a * dy + b * x + c;
                }
            } else {
                for ((g, &dy), &x) in dxp.iter_mut().zip(dyp).zip(xp) {
                    *g += a * dy + b * x + c;
                }
            }
        });
    }
}

/// Inference-mode backward: `dx (+)= dy · γ / sqrt(var + ε)`, `dγ += Σ dy·x̂`, `dβ += Σ dy`
/// (`dx_fresh`: `dx` is overwritten).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_inference<T: Real>(
    d: BnDims,
    x: &[T],
    gamma: &[T],
    mean: &[T],
    var: &[T],
    eps: f64,
    dy: &[T],
    dx: Option<&mut [T]>,
    dx_fresh: bool,
    dgamma: Option<&mut [T]>,
    dbeta: Option<&mut [T]>,
) {
    let mean64: Vec<f64> = mean.iter().map(|v| v.to_f64()).collect();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v.to_f64() + eps).sqrt()).collect();
    if dgamma.is_some() || dbeta.is_some() {
        let sums = channel_sums(d, x, dy, &mean64, &inv_std);
        add_param_grads(&sums, dgamma, dbeta);
    }
    if let Some(dx) = dx {
        let scale: Vec<T> = (0..d.c).map(|ch| T::from_f64(gamma[ch].to_f64() * inv_std[ch])).collect();
        add_planes(d, dx, |i, dxp| {
            let s = scale[i % d.c];
            for (g, &dy) in dxp.iter_mut().zip(&dy[i * d.plane..][..d.plane]) {
                *g = if dx_fresh { s * dy } else { *g + s * dy };
            }
        });
    }
}

/// Per channel `(Σ dy, Σ dy·x̂)` with `x̂ = (x − mean)·inv_std`.
fn channel_sums<T: Real>(d: BnDims, x: &[T], dy: &[T], mean: &[f64], inv_std: &[f64]) -> Vec<(f64, f64)> {
    per_channel(d, |ch| {
        let (mut sdy, mut sdyx) = (0.0f64, 0.0f64);
        let mean_t = T::from_f64(mean[ch]);
        for img in 0..d.n {
            let off = (img * d.c + ch) * d.plane;
            let (dyp, xp) = (&dy[off..][..d.plane], &x[off..][..d.plane]);
            let (a, b) = lane_sums_dy(dyp, xp, mean_t);
            sdy += a;
            sdyx += b;
        }
        (sdy, sdyx * inv_std[ch])
    })
}

fn add_param_grads<T: Real>(sums: &[(f64, f64)], dgamma: Option<&mut [T]>, dbeta: Option<&mut [T]>) {
    if let Some(dg) = dgamma {
        dg.iter_mut().zip(sums).for_each(|(g, s)| *g += T::from_f64(s.1));
    }
    if let Some(db) = dbeta {
        db.iter_mut().zip(sums).for_each(|(g, s)| *g += T::from_f64(s.0));
    }
}

/// Runs `f(plane_index, dx_plane)` over every `[n, c]` plane of `dx`, in parallel.
fn add_planes<T: Real>(d: BnDims, dx: &mut [T], f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if d.plane == 0 {
        return;
    }
    dx.par_chunks_mut(d.plane).enumerate().for_each(|(i, p)| f(i, p));
}
