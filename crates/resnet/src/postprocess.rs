//! From logits to ranked classes: softmax over the class axis and top-k (SPEC §4).

/// Softmax of one row of logits, computed stably (max subtracted) in f64 and returned as
/// f32 probabilities that sum to 1.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&x| ((x - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// Indices of the `k` largest values, largest first. Ties keep the lower index first, as a
/// stable descending sort does; NaN ranks last.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).expect("no NaN here"),
        }
    });
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 999.0, -1000.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[0] - 0.7310586).abs() < 1e-6);
        assert_eq!(p[2], 0.0);
    }

    #[test]
    fn top_k_orders_descending_with_stable_ties_and_nan_last() {
        assert_eq!(top_k(&[0.1, 0.5, 0.5, f32::NAN, 0.3], 5), vec![1, 2, 4, 0, 3]);
        assert_eq!(top_k(&[0.1, 0.2], 5), vec![1, 0]);
    }
}
