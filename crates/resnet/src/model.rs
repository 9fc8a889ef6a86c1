//! [`Model`]: a loaded graph and the executor that runs it.

use std::path::{Path, PathBuf};

use resnet_engine::{exec, onnx, Dim, Graph, Tensor};

use crate::error::Result;

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
}

impl Model {
    /// Loads an ONNX file (memory-mapped; weights are decoded once).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let graph = onnx::load_model(path)?;
        Ok(Model { graph, path: Some(path.to_path_buf()) })
    }

    /// Wraps a graph built in memory.
    pub fn from_graph(graph: Graph) -> Model {
        Model { graph, path: None }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs the model on its runtime inputs (in declaration order) with the reference
    /// executor and returns its outputs.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(exec::run(&self.graph, inputs)?)
    }

    /// Declares a new shape for runtime input `index` (e.g. `[N,3,288,288]` to run a
    /// 224×224 ResNet at 288×288) and re-checks every shape in the graph.
    pub fn set_input_shape(&mut self, index: usize, shape: Vec<Dim>) -> Result<()> {
        self.graph.set_input_shape(index, shape);
        self.graph.infer_facts().map_err(|e| match &self.path {
            Some(p) => e.in_file(p),
            None => e,
        })?;
        Ok(())
    }
}
