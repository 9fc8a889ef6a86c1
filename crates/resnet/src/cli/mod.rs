//! Subcommands of the `resnet` binary and what they share.

pub mod bench;
pub mod check;
pub mod classify;
pub mod export;
pub mod inspect;
pub mod models;
pub mod prep;
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

/// `--engine`: which executor runs the model.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct EngineArgs {
    /// Executor: `plan` (compiled: BatchNorm folded, fused conv epilogues, pre-packed weights;
    /// within 1e-4 of max|y| of the reference) or `reference` (the naive interpreter that is
    /// the oracle).
    #[arg(long, value_enum, default_value_t = EngineChoice::Plan)]
    pub engine: EngineChoice,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Plan,
    Reference,
}

impl EngineArgs {
    /// The model set up to run on the chosen engine with `threads` (0: all cores).
    pub fn apply(self, model: resnet::Model, threads: Option<usize>) -> resnet::Model {
        let engine = match self.engine {
            EngineChoice::Plan => resnet::Engine::Plan,
            EngineChoice::Reference => resnet::Engine::Reference,
        };
        model.with_engine(engine).with_threads(threads.unwrap_or(0))
    }
}
