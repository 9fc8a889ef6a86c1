//! [`Model`]: a loaded graph and the executor that runs it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use resnet_engine::passes::{self, PassOptions};
pub use resnet_engine::plan::Mode;
use resnet_engine::plan::{Plan, PlanOptions};
use resnet_engine::{exec, onnx, Dim, Graph, Tensor};

use crate::error::Result;

/// Which executor runs a [`Model`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The compiled plan: graph passes (BatchNorm folding, …), pre-packed weights, fused
    /// conv epilogues. Exact mode: results within 1e-4 of max|y| of the reference.
    #[default]
    Plan,
    /// The reference interpreter: the graph as written, naive kernels (the oracle).
    Reference,
}

/// A loaded model. Cheap to share between threads (`run` takes `&self`).
///
/// ```
/// use resnet::{Model, Tensor};
/// # let Some(path) = resnet_test_support::shared_asset("models/resnet50-v1-keras/model.onnx") else { return Ok(()) };
/// let model = Model::load(path)?; // e.g. "resnet50-v1-7.onnx"
/// let x = Tensor::zeros(vec![2, 3, 224, 224]); // a batch of two preprocessed images
/// let outputs = model.run(vec![x])?;
/// assert_eq!(outputs[0].shape(), &[2, 1000]); // logits
/// # Ok::<(), resnet::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Model {
    graph: Graph,
    path: Option<PathBuf>,
    engine: Engine,
    /// Threads of the plan's own pool (0: one per core).
    threads: usize,
    /// Arithmetic of the plan's convolutions.
    mode: Mode,
    /// Compiled on first use, so loading stays cheap for `inspect`; shared by clones.
    plan: Arc<Mutex<Option<Arc<Plan>>>>,
}

impl Model {
    /// Loads an ONNX file (memory-mapped; weights are decoded once).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let graph = onnx::load_model(path)?;
        Ok(Model { path: Some(path.to_path_buf()), ..Model::from_graph(graph) })
    }

    /// Wraps a graph built in memory.
    pub fn from_graph(graph: Graph) -> Model {
        Model { graph, path: None, engine: Engine::default(), threads: 0, mode: Mode::default(), plan: Arc::default() }
    }

    /// Chooses the executor (default: the compiled plan).
    pub fn with_engine(mut self, engine: Engine) -> Model {
        self.engine = engine;
        self
    }

    /// Threads the compiled plan uses (0, the default: one per core).
    pub fn with_threads(mut self, threads: usize) -> Model {
        self.threads = threads;
        self.plan = Arc::default();
        self
    }

    /// Arithmetic of the compiled plan's convolutions (default [`Mode::Exact`]):
    /// [`Mode::Fast`] runs 3×3 stride-1 convolutions as Winograd F(4×4,3×3); [`Mode::Bf16`]
    /// also multiplies most 1×1 convs in bfloat16 (opt-in; the plan, and so the first run,
    /// fails on CPUs without AVX-512 BF16). Ignored by the reference executor.
    pub fn with_mode(mut self, mode: Mode) -> Model {
        self.mode = mode;
        self.plan = Arc::default();
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The compiled plan, compiling it on first use.
    pub fn plan(&self) -> Result<Arc<Plan>> {
        let mut slot = self.plan.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(plan) = slot.as_ref() {
            return Ok(plan.clone());
        }
        let optimized = passes::optimize(self.graph.clone(), &PassOptions::default())?;
        let plan = Arc::new(Plan::compile_owned(
            optimized,
            &PlanOptions { threads: self.threads, mode: self.mode, ..PlanOptions::default() },
        )?);
        *slot = Some(plan.clone());
        Ok(plan)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs the model on its runtime inputs (in declaration order) with the chosen engine
    /// and returns its outputs.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        match self.engine {
            Engine::Plan => Ok(self.plan()?.run(inputs)?),
            Engine::Reference => Ok(exec::run(&self.graph, inputs)?),
        }
    }

    /// Declares a new shape for runtime input `index` (e.g. `[N,3,288,288]` to run a
    /// 224×224 ResNet at 288×288) and re-checks every shape in the graph.
    pub fn set_input_shape(&mut self, index: usize, shape: Vec<Dim>) -> Result<()> {
        self.graph.set_input_shape(index, shape);
        self.graph.infer_facts().map_err(|e| match &self.path {
            Some(p) => e.in_file(p),
            None => e,
        })?;
        self.plan = Arc::default(); // compiled for the old shapes
        Ok(())
    }
}
