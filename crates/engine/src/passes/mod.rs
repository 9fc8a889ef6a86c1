//! Graph-to-graph optimization passes: each rewrites a [`Graph`] into an equivalent one in
//! standard ONNX ops, so the reference executor can run the result and every pass can be
//! checked against the graph it started from.
//!
//! The passes are listed, in the order [`optimize`] runs them, in [`PASSES`]. Each is a small
//! named function `fn(&mut Graph) -> Result<bool>` (true when it changed the graph), tested
//! alone in `tests/passes.rs`. Passes keep nodes in topological order and keep every fact
//! valid; [`optimize`] re-runs shape inference after each pass that changed something, so a
//! pass that broke the graph fails there, naming the node.
//!
//! # What is deliberately not a pass here
//!
//! **v2's input BatchNormalization** (the zoo's v2 ResNets start with a BN on `data`, right
//! before the zero-padded 7×7 conv) is *not* folded into that conv. Folding a BN into the conv
//! that *follows* it is exact only inside the image: at the borders the conv reads padding
//! zeros, which the unfolded graph feeds through the conv *after* the BN (so they stay zeros)
//! but a folded conv would have to treat as `shift/scale` (ECOSYSTEM §A.8). There is no
//! standard-op rewrite that is exact and cheaper, so that BN (like v2's post-Add BN+ReLU,
//! whose un-normalized input must also survive for the next shortcut) is left to the compiled
//! plan, which runs it as a per-channel affine fused with the following ReLU — the post-Add
//! ones in the step of the conv that makes the sum, as its second output.
//! [`fold_batchnorm_into_conv`] therefore only folds a BN into the conv that *produces* its
//! input.
//!
//! The Conv+bias+Add+ReLU epilogue is fused by the compiled plan, not here: no standard ONNX
//! op expresses it.

mod batchnorm;
mod constants;
mod dead;
mod identity;

use crate::error::Result;
use crate::graph::Graph;

pub use batchnorm::fold_batchnorm_into_conv;
pub use constants::{fold_constants, MAX_FOLD_INPUT_ELEMENTS};
pub use dead::remove_dead_values;
pub use identity::eliminate_identity_like;

/// One named pass.
pub struct Pass {
    /// The pass's function name, used by `--skip-pass`-style options and listings.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Rewrites the graph in place; returns whether it changed anything.
    pub run: fn(&mut Graph) -> Result<bool>,
}

/// Every pass, in the order [`optimize`] runs them. Constant folding comes first so that
/// shape chains (`Shape → Gather → Concat → Reshape`) are constants before the no-op check
/// looks at Reshape; dead values are dropped last, after the passes that orphan them.
pub static PASSES: &[Pass] = &[
    Pass {
        name: "fold_constants",
        summary: "nodes whose inputs are all constants become initializers",
        run: fold_constants,
    },
    Pass {
        name: "eliminate_identity_like",
        summary: "remove Identity, inference Dropout, and Flatten/Reshape that keep the shape",
        run: eliminate_identity_like,
    },
    Pass {
        name: "fold_batchnorm_into_conv",
        summary: "Conv → BatchNormalization becomes one Conv with scaled weights and a bias",
        run: fold_batchnorm_into_conv,
    },
    Pass {
        name: "remove_dead_values",
        summary: "drop nodes and values (initializers included) no graph output depends on",
        run: remove_dead_values,
    },
];

/// Looks a pass up by name.
pub fn find_pass(name: &str) -> Option<&'static Pass> {
    PASSES.iter().find(|p| p.name == name)
}

/// Which passes [`optimize`] runs. The default runs all of them.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// Names of passes to skip (see [`PASSES`]); names that are no pass are ignored, so check
    /// user input with [`find_pass`].
    pub skip: Vec<String>,
}

impl PassOptions {
    /// Options that skip every pass: `optimize` then only re-checks the graph.
    pub fn none() -> PassOptions {
        PassOptions { skip: PASSES.iter().map(|p| p.name.to_string()).collect() }
    }
}

/// Runs every pass of [`PASSES`] not skipped by `opts`, in order, once each, and returns the
/// optimized graph. Its outputs equal the input graph's within float rounding (BN folding
/// reassociates a multiply; see [`fold_batchnorm_into_conv`]).
pub fn optimize(mut graph: Graph, opts: &PassOptions) -> Result<Graph> {
    for pass in PASSES {
        if opts.skip.iter().any(|s| s == pass.name) {
            continue;
        }
        if (pass.run)(&mut graph)? {
            graph.infer_facts()?;
        }
    }
    Ok(graph)
}
