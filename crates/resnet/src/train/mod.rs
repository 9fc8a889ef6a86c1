//! Training (`resnet train`, issue #7) around the engine's autograd and optimizers: the data
//! pipeline ([`data`]), the training loop ([`trainer`]), checkpoints that resume a run exactly
//! ([`checkpoint`]), the per-epoch metrics log ([`metrics`]) and its training-curve plots
//! ([`plot`]).

pub mod checkpoint;
pub mod data;
pub mod metrics;
pub mod plot;
pub mod trainer;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointMeta, NamedTensor};
pub use metrics::{read_log, truncate_after, EpochRecord, MetricsError, MetricsLog};
pub use plot::{plot_log, PlotError};
