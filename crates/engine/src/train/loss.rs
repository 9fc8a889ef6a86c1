//! Softmax cross-entropy on logits `[N, K]`, with optional label smoothing, and top-1/top-5
//! counts.
//!
//! With smoothing ε the target is `(1 − ε)·onehot + ε/K`; the loss is the batch MEAN of
//! `−Σ_j target_j · log softmax(z)_j`, and its gradient `(softmax(z) − target) / N`. Computed
//! in f64 with the maximum subtracted first, so large logits do not overflow.

use crate::train::real::Real;

/// Loss and accuracy counts of one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LossValue {
    pub loss: f64,
    pub top1: usize,
    pub top5: usize,
}

/// The rank of the label's logit: how many logits beat it (larger, or equal at a smaller
/// index — the first of equal logits is the argmax).
fn label_rank<T: Real>(row: &[T], label: usize) -> usize {
    let v = row[label];
    row.iter().enumerate().filter(|&(j, &x)| x > v || (x == v && j < label)).count()
}

/// Computes the loss of `logits` (`n × k`, row-major) against `labels` (checked `< k` by the
/// caller); when `grad` is given, writes `∂loss/∂logits` into it.
pub(crate) fn softmax_cross_entropy<T: Real>(
    logits: &[T],
    n: usize,
    k: usize,
    labels: &[usize],
    smoothing: f64,
    mut grad: Option<&mut [T]>,
) -> LossValue {
    let mut total = 0.0f64;
    let (mut top1, mut top5) = (0, 0);
    let mut p = vec![0.0f64; k];
    for (i, &label) in labels.iter().enumerate().take(n) {
        let row = &logits[i * k..][..k];
        let max = row.iter().map(|v| v.to_f64()).fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for (pj, &z) in p.iter_mut().zip(row) {
            *pj = (z.to_f64() - max).exp();
            sum += *pj;
        }
        let log_sum = sum.ln();
        let off = smoothing / k as f64;
        for (j, &z) in row.iter().enumerate() {
            let target = if j == label { 1.0 - smoothing + off } else { off };
            if target != 0.0 {
                total -= target * (z.to_f64() - max - log_sum);
            }
        }
        if let Some(g) = grad.as_deref_mut() {
            for (j, (gj, pj)) in g[i * k..][..k].iter_mut().zip(&p).enumerate() {
                let target = if j == label { 1.0 - smoothing + off } else { off };
                *gj = T::from_f64((pj / sum - target) / n as f64);
            }
        }
        let rank = label_rank(row, label);
        top1 += usize::from(rank < 1);
        top5 += usize::from(rank < 5);
    }
    LossValue { loss: if n == 0 { 0.0 } else { total / n as f64 }, top1, top5 }
}
