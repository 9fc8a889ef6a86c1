//! Trainable parameters and training-updated buffers, as the optimizer and checkpoints see them.

/// What a parameter is, for per-role options such as "no weight decay on biases and BatchNorm".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// Conv or dense (Gemm/MatMul) weight.
    Weight,
    /// Conv or dense bias.
    Bias,
    /// BatchNormalization scale (`gamma`).
    Gamma,
    /// BatchNormalization shift (`beta`).
    Beta,
}

impl ParamRole {
    /// Biases and BatchNorm parameters: the ones GluonCV's `--no-wd` exempts from weight decay.
    pub fn is_bias_or_norm(self) -> bool {
        !matches!(self, ParamRole::Weight)
    }
}

/// One trainable tensor: a graph initializer with its gradient.
#[derive(Debug, Clone)]
pub struct Param<T = f32> {
    /// The graph initializer's name (kept on export, used as the checkpoint key).
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Vec<T>,
    /// Gradient of the mean batch loss with respect to `value` after the last backward pass;
    /// same length as `value`.
    pub grad: Vec<T>,
    pub role: ParamRole,
    /// `false`: frozen (no gradient is computed and optimizers leave it alone).
    pub trainable: bool,
}

/// A tensor that training updates without gradients: BatchNorm running mean and variance.
#[derive(Debug, Clone)]
pub struct Buffer<T = f32> {
    /// The graph initializer's name.
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Vec<T>,
}
