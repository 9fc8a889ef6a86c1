//! Optimizers that update [`Param`]s from their gradients: MXNet's NAG (the zoo recipe's) and
//! MXNet's SGD with momentum (SPEC §6.1).
//!
//! With `g` the gradient, `w` the value, `m` the momentum, `d` the weight decay (0 for a
//! parameter exempt from it) and `s` the per-parameter momentum buffer (zeros at first):
//!
//! * **NAG** (`mxnet.optimizer.NAG`, 1.2.0): `s = m·s + g + d·w; w -= lr·(g + d·w + m·s)`.
//!   This is exactly PyTorch's `SGD(momentum=m, nesterov=True, weight_decay=d, dampening=0)`:
//!   PyTorch folds the decay into the gradient first (`g' = g + d·w`), keeps `b = m·b + g'`
//!   (its first step sets `b = g'`, which is `m·0 + g'`), and steps by `g' + m·b`.
//! * **SGD** (`mxnet.optimizer.SGD`): `s = m·s − lr·(g + d·w); w += s`; with `m = 0` this is
//!   plain SGD. Unlike PyTorch's SGD the learning rate lives inside the momentum buffer, so a
//!   learning-rate change takes effect gradually, as in MXNet.
//!
//! The learning rate is passed to every [`Optimizer::step`] (a [`crate::train::schedule`]
//! decides it); everything else is fixed by the [`OptimizerConfig`]. The update loops walk
//! fixed-width chunks of the three slices so the compiler turns them into SIMD code; a
//! ResNet-50 update (25.6 M values) is memory-bound and small next to a backward pass, so it
//! runs on the calling thread.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::param::Param;

/// Which update rule an [`Optimizer`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OptimizerKind {
    /// Nesterov accelerated gradient, MXNet's form (the zoo recipe's `nag`).
    #[default]
    Nag,
    /// Stochastic gradient descent with MXNet's momentum form (`sgd`).
    Sgd,
}

impl OptimizerKind {
    /// The names [`FromStr`] accepts, for help texts and error messages.
    pub const NAMES: [&'static str; 2] = ["nag", "sgd"];
}

impl FromStr for OptimizerKind {
    type Err = OptimError;

    fn from_str(text: &str) -> Result<OptimizerKind, OptimError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "nag" => Ok(OptimizerKind::Nag),
            "sgd" => Ok(OptimizerKind::Sgd),
            _ => Err(OptimError::UnknownKind(text.to_string())),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptimizerKind::Nag => "nag",
            OptimizerKind::Sgd => "sgd",
        })
    }
}

/// Hyper-parameters of an [`Optimizer`] other than the learning rate.
///
/// `Default` is the zoo recipe (SPEC §6.1): NAG, momentum 0.9, weight decay 2e-4 on every
/// trainable parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Momentum `m` (0.9 in the zoo recipe); 0 turns both rules into plain gradient descent.
    pub momentum: f32,
    /// L2 weight decay `d`, added to the gradient as `d·w` (2e-4 in the zoo recipe).
    pub weight_decay: f32,
    /// GluonCV's `--no-wd`: no weight decay on biases and BatchNorm `gamma`/`beta`
    /// ([`super::ParamRole::is_bias_or_norm`]). Off in the zoo recipe.
    pub no_wd_bias_norm: bool,
}

impl Default for OptimizerConfig {
    fn default() -> OptimizerConfig {
        OptimizerConfig { kind: OptimizerKind::Nag, momentum: 0.9, weight_decay: 2e-4, no_wd_bias_norm: false }
    }
}

impl OptimizerConfig {
    /// The weight decay applied to `param`: 0 for biases and BatchNorm parameters under
    /// `no_wd_bias_norm`, else `weight_decay`.
    pub fn weight_decay_for(&self, param: &Param<f32>) -> f32 {
        if self.no_wd_bias_norm && param.role.is_bias_or_norm() {
            0.0
        } else {
            self.weight_decay
        }
    }
}

/// Why optimizer input was refused; displayed as one line naming the parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimError {
    #[error("unknown optimizer '{0}' (expected one of: nag, sgd)")]
    UnknownKind(String),
    #[error("optimizer state names parameter '{0}', which this model does not train")]
    UnknownParam(String),
    #[error("optimizer state has no momentum buffer for parameter '{0}'")]
    MissingParam(String),
    #[error("optimizer state lists parameter '{0}' twice")]
    DuplicateParam(String),
    #[error("optimizer state for parameter '{name}' has {got} values, the parameter has {expected}")]
    Length { name: String, expected: usize, got: usize },
}

/// One momentum buffer, tied to a parameter by name.
#[derive(Debug, Clone)]
struct Slot {
    name: String,
    momentum: Vec<f32>,
}

/// A NAG or SGD optimizer: the config plus one momentum buffer per trainable parameter.
#[derive(Debug, Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    slots: Vec<Slot>,
    /// Parameter name → index into `slots`.
    by_name: HashMap<String, usize>,
}

impl Optimizer {
    /// An optimizer for `params`, with a zeroed momentum buffer for each trainable one (frozen
    /// parameters get none and are never updated).
    pub fn new(config: OptimizerConfig, params: &[Param<f32>]) -> Optimizer {
        let mut optimizer = Optimizer { config, slots: Vec::new(), by_name: HashMap::new() };
        for param in params.iter().filter(|p| p.trainable) {
            optimizer.slot_for(usize::MAX, &param.name, param.value.len());
        }
        optimizer
    }

    /// The configuration this optimizer applies.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One update of every trainable parameter with learning rate `lr`; frozen parameters
    /// (`trainable == false`) are left alone.
    ///
    /// Parameters are matched to their momentum buffers by name (in the usual case, where
    /// `params` is the slice given to [`Optimizer::new`], by position without a lookup). A
    /// parameter this optimizer has not seen, or whose size changed, starts from a zero
    /// momentum buffer.
    ///
    /// # Panics
    /// If a trainable parameter's `grad` and `value` differ in length: the autograd broke
    /// [`Param`]'s invariant, which is a bug, not bad input.
    pub fn step(&mut self, params: &mut [Param<f32>], lr: f32) {
        let OptimizerConfig { kind, momentum, .. } = self.config;
        for (position, param) in params.iter_mut().enumerate() {
            if !param.trainable {
                continue;
            }
            assert_eq!(
                param.grad.len(),
                param.value.len(),
                "parameter '{}': gradient has {} values, the value has {}",
                param.name,
                param.grad.len(),
                param.value.len()
            );
            let decay = self.config.weight_decay_for(param);
            let slot = self.slot_for(position, &param.name, param.value.len());
            let state = &mut self.slots[slot].momentum;
            match kind {
                OptimizerKind::Nag => nag_update(&mut param.value, &param.grad, state, lr, momentum, decay),
                OptimizerKind::Sgd => sgd_update(&mut param.value, &param.grad, state, lr, momentum, decay),
            }
        }
    }

    /// The momentum buffers as `(parameter name, values)`, in the order of the parameters
    /// given to [`Optimizer::new`] (then any met later in [`Optimizer::step`]); for
    /// checkpoints.
    pub fn state(&self) -> Vec<(String, Vec<f32>)> {
        self.slots.iter().map(|slot| (slot.name.clone(), slot.momentum.clone())).collect()
    }

    /// Replaces the momentum buffers with `state` (as [`Optimizer::state`] returned it, in any
    /// order). The names must be exactly this optimizer's trainable parameters and each buffer
    /// must have its parameter's length; otherwise nothing changes and the error names the
    /// first offending parameter.
    pub fn load_state(&mut self, state: Vec<(String, Vec<f32>)>) -> Result<(), OptimError> {
        let mut incoming: Vec<Option<Vec<f32>>> = vec![None; self.slots.len()];
        for (name, values) in state {
            let Some(&index) = self.by_name.get(&name) else {
                return Err(OptimError::UnknownParam(name));
            };
            let expected = self.slots[index].momentum.len();
            if values.len() != expected {
                return Err(OptimError::Length { name, expected, got: values.len() });
            }
            if incoming[index].is_some() {
                return Err(OptimError::DuplicateParam(name));
            }
            incoming[index] = Some(values);
        }
        if let Some(missing) = incoming.iter().position(Option::is_none) {
            return Err(OptimError::MissingParam(self.slots[missing].name.clone()));
        }
        for (slot, values) in self.slots.iter_mut().zip(incoming) {
            slot.momentum = values.unwrap_or_default();
        }
        Ok(())
    }

    /// Index of `name`'s momentum buffer (`position` is tried first), created zeroed — or
    /// re-zeroed when its length is not `len` — as needed.
    fn slot_for(&mut self, position: usize, name: &str, len: usize) -> usize {
        let index = match self.slots.get(position) {
            Some(slot) if slot.name == name => position,
            _ => match self.by_name.get(name) {
                Some(&index) => index,
                None => {
                    self.slots.push(Slot { name: name.to_string(), momentum: Vec::new() });
                    self.by_name.insert(name.to_string(), self.slots.len() - 1);
                    self.slots.len() - 1
                }
            },
        };
        let momentum = &mut self.slots[index].momentum;
        if momentum.len() != len {
            *momentum = vec![0.0; len];
        }
        index
    }
}

/// Values per chunk of the update loops: 16 f32 = one AVX-512 register or two AVX2 ones, a
/// fixed trip count the compiler fully unrolls into vector code.
const LANES: usize = 16;

/// MXNet NAG: `s = m·s + g + d·w; w -= lr·(g + d·w + m·s)`.
fn nag_update(w: &mut [f32], g: &[f32], s: &mut [f32], lr: f32, m: f32, d: f32) {
    for_each_value(w, g, s, |w, g, s| {
        let decayed = g + d * *w;
        *s = m * *s + decayed;
        *w -= lr * (decayed + m * *s);
    });
}

/// MXNet SGD with momentum: `s = m·s − lr·(g + d·w); w += s`.
fn sgd_update(w: &mut [f32], g: &[f32], s: &mut [f32], lr: f32, m: f32, d: f32) {
    for_each_value(w, g, s, |w, g, s| {
        *s = m * *s - lr * (g + d * *w);
        *w += *s;
    });
}

/// Applies `update(w[i], g[i], s[i])` to every index, [`LANES`] values at a time (plus a
/// scalar tail), so the inlined closure is vectorised. The slices have equal lengths.
#[inline(always)]
fn for_each_value(w: &mut [f32], g: &[f32], s: &mut [f32], update: impl Fn(&mut f32, f32, &mut f32)) {
    let body = w.len() - w.len() % LANES;
    let (w_body, w_tail) = w.split_at_mut(body);
    let (g_body, g_tail) = g.split_at(body);
    let (s_body, s_tail) = s.split_at_mut(body);
    for ((w, g), s) in
        w_body.chunks_exact_mut(LANES).zip(g_body.chunks_exact(LANES)).zip(s_body.chunks_exact_mut(LANES))
    {
        for k in 0..LANES {
            update(&mut w[k], g[k], &mut s[k]);
        }
    }
    for ((w, &g), s) in w_tail.iter_mut().zip(g_tail).zip(s_tail) {
        update(w, g, s);
    }
}
