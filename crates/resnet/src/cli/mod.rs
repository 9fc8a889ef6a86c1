//! Subcommands of the `resnet` binary and what they share.

pub mod bench;
pub mod check;
pub mod classify;
pub mod export;
pub mod inspect;
pub mod models;
pub mod prep;
pub mod serve;
pub mod train;
pub mod validate;

/// Exit codes, shown under every `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 some images failed (classify) or outputs mismatched (check); 2 bad usage or a fatal error (unreadable model, …).";

/// An error and its causes on one line: `outer: inner: root`.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        // thiserror's `transparent` and `{source}` formatting already include the cause.
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// Sets the size of the thread pool that decoding and the kernels run on.
pub fn init_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global()?;
    }
    Ok(())
}

/// `--engine` and `--mode`: which executor runs the model, with which arithmetic.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct EngineArgs {
    /// Executor: `plan` (compiled: BatchNorm folded, fused conv epilogues, pre-packed weights;
    /// within 1e-4 of max|y| of the reference) or `reference` (the naive interpreter that is
    /// the oracle).
    #[arg(long, value_enum, default_value_t = EngineChoice::Plan)]
    pub engine: EngineChoice,
    #[doc = "Arithmetic of the plan's convolutions: `fast` (Winograd; the default of classify, validate, bench and serve) or `exact` (check's default)."]
    #[arg(long, value_enum, long_help = MODE_HELP)]
    pub mode: Option<ModeChoice>,
}

/// `--help` of `--mode`, shared by classify, validate, check, bench and serve.
pub const MODE_HELP: &str = "Arithmetic of the plan's convolutions.
  fast   3×3 stride-1 convolutions (16 to 512 input and output channels) run as Winograd
         F(4×4,3×3): 2.25 instead of 9 multiplications per output and tap, when a call has at
         least 16 4×4 output tiles (ResNet at batch 1: its 56×56, 28×28 and 14×14 layers;
         from batch 4 on its 7×7 ones too); layers with fewer than 16 4×4 tiles per image
         run as F(2×2,3×3) (4 multiplications) when a call has at least 16 2×2 tiles
         (ResNet's 7×7 layers at batches 1-3), except on CPUs with two 512-bit FMAs a cycle
         (Intel Xeon Scalable), where the direct kernel is faster there and those calls run
         as in exact; everything else as in exact. Measured accuracy
         (Keras ResNet-50, all 200 sample images, batches of 8 and of 2,
         crates/resnet/tests/fast_mode.rs): top-1 unchanged on all 200, logits within
         2.6e-6 of max|logit| of exact mode (bound asserted: 1e-3); a single Winograd conv
         stays within 1e-4 of max|y| of the reference (measured ≤ 1.2e-5,
         crates/engine/tests/winograd.rs).
  bf16   fast, and the unpadded 1×1 convs (about half of ResNet-50's multiply-adds) and the
         F(2×2,3×3) Winograd products multiply in bfloat16: operands rounded to 8
         significant bits, sums in float32 (vdpbf16ps: twice the multiply-adds of an fp32
         FMA per instruction). 3×3 convs with 128 channels or more run as F(2×2) in
         bfloat16, smaller ones as in fast (F(4×4) stays float32: its transforms magnified
         the rounding to ~4e-2 of max|y| per conv). Needs a CPU with AVX-512 BF16 (AMD Zen
         4, Intel Cooper Lake, Sapphire Rapids and later); refused elsewhere. Opt-in: it
         moves the logits far more than fast. Measured (Keras ResNet-50, all 200 sample
         images, batches of 8 and of 2, crates/resnet/tests/fast_mode.rs): top-1 unchanged
         on all 200 and top-1/top-5 183/199 as in exact, logits within 1.18e-2 of
         max|logit| of exact mode (bound asserted: 2e-2); about a third less time than fast
         (BENCHMARKS.md).
  exact  direct fp32 products (on AVX-512 CPUs direct convolution kernels, 1×1 convs on their
         own; im2col + GEMM otherwise), within 1e-4 of max|y| of the reference.
Default: fast for classify, validate, bench and serve (it met the issue's bar for the
default: top-1 unchanged and logits within 1e-3), exact for check (which compares with stored
outputs at tight tolerances) and always exact with --engine reference (fast and bf16 need
--engine plan).";

/// `--mode`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    Exact,
    Fast,
    Bf16,
}

impl ModeChoice {
    /// The name `--mode` takes.
    pub fn name(self) -> &'static str {
        match self {
            ModeChoice::Exact => "exact",
            ModeChoice::Fast => "fast",
            ModeChoice::Bf16 => "bf16",
        }
    }
}

impl From<ModeChoice> for resnet::Mode {
    fn from(m: ModeChoice) -> resnet::Mode {
        match m {
            ModeChoice::Exact => resnet::Mode::Exact,
            ModeChoice::Fast => resnet::Mode::Fast,
            ModeChoice::Bf16 => resnet::Mode::Bf16,
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Plan,
    Reference,
}

impl EngineArgs {
    /// Rejects combinations that make no sense: `--mode fast` (or bf16) needs `--engine plan`.
    pub fn validate(self) -> anyhow::Result<()> {
        if let (EngineChoice::Reference, Some(m @ (ModeChoice::Fast | ModeChoice::Bf16))) = (self.engine, self.mode) {
            anyhow::bail!("--mode {} needs --engine plan (the reference executor has exact arithmetic only)", m.name());
        }
        Ok(())
    }

    /// The mode: `--mode`, else `default` for the plan, exact for the reference executor.
    pub fn mode(self, default: ModeChoice) -> ModeChoice {
        match self.engine {
            EngineChoice::Plan => self.mode.unwrap_or(default),
            EngineChoice::Reference => ModeChoice::Exact,
        }
    }

    /// The chosen executor.
    pub fn engine(self) -> resnet::Engine {
        match self.engine {
            EngineChoice::Plan => resnet::Engine::Plan,
            EngineChoice::Reference => resnet::Engine::Reference,
        }
    }

    /// The model set up to run on the chosen engine with `threads` (0: all cores), in
    /// [`Self::mode`]`(default_mode)`.
    pub fn apply(self, model: resnet::Model, threads: Option<usize>, default_mode: ModeChoice) -> resnet::Model {
        model.with_engine(self.engine()).with_mode(self.mode(default_mode).into()).with_threads(threads.unwrap_or(0))
    }
}
