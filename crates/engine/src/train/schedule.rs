//! Learning-rate schedules, per iteration, as GluonCV's `LRSequential` of a linear warm-up and
//! an `LRScheduler` (`gluoncv/utils/lr_scheduler.py`, SPEC §6.2).
//!
//! With `W = warmup_epochs·iters_per_epoch` warm-up iterations, `D = (epochs −
//! warmup_epochs)·iters_per_epoch` decay iterations and `i` the iteration (from 0 over the
//! whole run):
//!
//! * warm-up (`i < W`): `base_lr·i/(W−1)`, from 0 up to exactly `base_lr` at the last warm-up
//!   iteration;
//! * then, with `t = i − W` clamped to `[0, D−1]` (GluonCV's `N = niters − 1`):
//!   * constant: `base_lr`;
//!   * step: `base_lr·factor^k`, `k` = number of decay epochs `e` with `e·iters_per_epoch ≤ i`:
//!     decay epochs count from the start of training, warm-up included (GluonCV shifts its
//!     `--lr-decay-epoch` list by the warm-up for the same effect). The zoo recipe
//!     (`step:30,60,90`, base 0.01, no warm-up) gives 0.01 for epochs 0–29, 0.001 from the
//!     first iteration of epoch 30, 1e-4 from epoch 60 and 1e-5 from epoch 90;
//!   * cosine: `base_lr·(1 + cos(π·t/(D−1)))/2`, from `base_lr` down to 0 at the last
//!     iteration.
//!
//! A one-iteration ramp or decay (where `W−1` or `D−1` is 0) divides by 1 instead of 0, so
//! every schedule is defined for every iteration; iterations past the end keep the last value.

use std::fmt;
use std::str::FromStr;

/// How the learning rate decays after the warm-up.
#[derive(Debug, Clone, PartialEq)]
pub enum LrDecay {
    /// `base_lr` throughout.
    Constant,
    /// Multiply by `factor` at the start of each of `epochs` (strictly increasing, counted from
    /// the start of training).
    Step { epochs: Vec<usize>, factor: f32 },
    /// Half a cosine from `base_lr` to 0 over the post-warm-up iterations.
    Cosine,
}

/// The step factor when `step:` names none (GluonCV's `--lr-decay` default, the zoo's).
pub const DEFAULT_STEP_FACTOR: f32 = 0.1;

/// A decay spec that does not parse; displayed as one line quoting the text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("learning-rate decay '{text}': {reason} (expected constant, cosine, step:30,60,90 or step:30,60,90@0.1)")]
pub struct LrDecayParseError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for LrDecay {
    type Err = LrDecayParseError;

    /// `constant`, `cosine`, `step:E1,E2,…` (factor 0.1) or `step:E1,E2,…@FACTOR`.
    fn from_str(text: &str) -> Result<LrDecay, LrDecayParseError> {
        let fail = |reason: String| LrDecayParseError { text: text.to_string(), reason };
        let spec = text.trim().to_ascii_lowercase();
        match spec.as_str() {
            "constant" => return Ok(LrDecay::Constant),
            "cosine" => return Ok(LrDecay::Cosine),
            _ => {}
        }
        let Some(rest) = spec.strip_prefix("step:") else {
            return Err(fail("unknown kind".to_string()));
        };
        let (list, factor) = match rest.split_once('@') {
            Some((list, factor)) => {
                let value: f32 =
                    factor.trim().parse().map_err(|_| fail(format!("factor '{}' is not a number", factor.trim())))?;
                if !(value.is_finite() && value > 0.0) {
                    return Err(fail(format!("factor {value} must be a positive number")));
                }
                (list, value)
            }
            None => (rest, DEFAULT_STEP_FACTOR),
        };
        let mut epochs: Vec<usize> = Vec::new();
        for item in list.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(fail("empty epoch in the list".to_string()));
            }
            let epoch: usize = item.parse().map_err(|_| fail(format!("epoch '{item}' is not a whole number")))?;
            if let Some(&previous) = epochs.last() {
                if epoch <= previous {
                    return Err(fail(format!("epochs must increase ({epoch} after {previous})")));
                }
            }
            epochs.push(epoch);
        }
        Ok(LrDecay::Step { epochs, factor })
    }
}

impl fmt::Display for LrDecay {
    /// The text [`FromStr`] reads back (`step:30,60,90@0.1` always names its factor).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrDecay::Constant => f.write_str("constant"),
            LrDecay::Cosine => f.write_str("cosine"),
            LrDecay::Step { epochs, factor } => {
                f.write_str("step:")?;
                for (k, epoch) in epochs.iter().enumerate() {
                    if k > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{epoch}")?;
                }
                write!(f, "@{factor}")
            }
        }
    }
}

/// A learning rate for every iteration of a run: warm-up, then [`LrDecay`].
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    /// Learning rate after the warm-up and before any decay.
    pub base_lr: f32,
    pub decay: LrDecay,
    /// Epochs of linear warm-up from 0 (0: none).
    pub warmup_epochs: usize,
    /// Epochs of the whole run, warm-up included.
    pub epochs: usize,
    /// Optimizer steps per epoch (images // global batch with `last_batch='discard'`).
    pub iters_per_epoch: usize,
}

impl LrSchedule {
    /// The zoo recipe (SPEC §6.1): 0.01, ×0.1 at epochs 30, 60 and 90, no warm-up, 150 epochs.
    pub fn zoo(iters_per_epoch: usize) -> LrSchedule {
        LrSchedule {
            base_lr: 0.01,
            decay: LrDecay::Step { epochs: vec![30, 60, 90], factor: DEFAULT_STEP_FACTOR },
            warmup_epochs: 0,
            epochs: 150,
            iters_per_epoch,
        }
    }

    /// Iterations in the whole run (`epochs·iters_per_epoch`).
    pub fn total_iterations(&self) -> usize {
        self.epochs.saturating_mul(self.iters_per_epoch)
    }

    /// The learning rate of iteration `iteration` (0-based over the whole run).
    pub fn lr_at(&self, iteration: usize) -> f32 {
        let base = f64::from(self.base_lr);
        let warmup = self.warmup_epochs.saturating_mul(self.iters_per_epoch);
        if iteration < warmup {
            return (base * iteration as f64 / (warmup - 1).max(1) as f64) as f32;
        }
        let decay_iters = self.total_iterations().saturating_sub(warmup);
        let last = decay_iters.saturating_sub(1);
        let t = (iteration - warmup).min(last);
        let lr = match &self.decay {
            LrDecay::Constant => base,
            LrDecay::Step { epochs, factor } => {
                // GluonCV counts milestones against the clamped t, shifted back by the warm-up.
                let i = warmup + t;
                let passed = epochs.iter().filter(|&&e| e.saturating_mul(self.iters_per_epoch) <= i).count();
                base * f64::from(*factor).powi(passed as i32)
            }
            LrDecay::Cosine => base * (1.0 + (std::f64::consts::PI * t as f64 / last.max(1) as f64).cos()) / 2.0,
        };
        lr as f32
    }
}
