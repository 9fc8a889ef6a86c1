//! [`Classifier`]: the whole zoo pipeline for images — decode, resize and crop as Pillow
//! does, normalize, run the model, softmax, rank, label.

use rayon::prelude::*;
use resnet_engine::{Dim, Tensor};
use resnet_vision::{DecodeOptions, Labels, Preprocess, RgbImage};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::postprocess::{softmax, top_k};

/// One ranked class.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Class index: the row of the labels file (the model's output position).
    pub index: usize,
    /// WordNet id, e.g. `n06874185`, when the label line starts with one.
    pub wnid: Option<String>,
    /// Human-readable names, e.g. `traffic light, traffic signal, stoplight`.
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

/// The model's answer for one image: softmax probabilities over all classes.
#[derive(Debug, Clone)]
pub struct Classification {
    pub probabilities: Vec<f32>,
    labels: std::sync::Arc<Labels>,
}

impl Classification {
    /// The `k` most probable classes, most probable first.
    pub fn top(&self, k: usize) -> Vec<Prediction> {
        top_k(&self.probabilities, k)
            .into_iter()
            .map(|index| {
                let label = self.labels.get(index);
                Prediction {
                    index,
                    wnid: label.and_then(|l| l.wnid.clone()),
                    label: label.map(|l| l.name.clone()).unwrap_or_else(|| format!("class {index}")),
                    probability: self.probabilities[index],
                }
            })
            .collect()
    }
}

/// A model plus the zoo's preprocessing and the class labels.
///
/// ```
/// use resnet::{Classifier, Model};
/// # let Some(model_path) = resnet_test_support::shared_asset("models/resnet50-v1-keras/model.onnx") else { return Ok(()) };
/// # let Some(image_path) = resnet_test_support::shared_asset("data/imagenet-samples/images/n01440764_tench.JPEG") else { return Ok(()) };
/// let classifier = Classifier::new(Model::load(model_path)?)?;
/// let bytes = std::fs::read(image_path).unwrap();
/// let best = &classifier.classify_bytes(&bytes)?.top(1)[0];
/// println!("{:.4} {} ({:?})", best.probability, best.label, best.wnid);
/// assert_eq!(best.index, 0); // tench
/// # Ok::<(), resnet::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Classifier {
    model: Model,
    preprocess: Preprocess,
    labels: std::sync::Arc<Labels>,
    decode: DecodeOptions,
}

impl Classifier {
    /// A classifier with the ImageNet labels and the zoo preprocessing at the model's input
    /// size (224×224 when the model does not fix it).
    pub fn new(model: Model) -> Result<Classifier> {
        Classifier::with_label_set(model, Labels::imagenet())
    }

    /// As [`Classifier::new`] with another label set (one label per line, in output order),
    /// e.g. the `labels.txt` of a model `resnet train` fine-tuned.
    pub fn with_label_set(model: Model, labels: Labels) -> Result<Classifier> {
        let crop = declared_square_size(&model)?.unwrap_or(224);
        let c = Classifier {
            model,
            preprocess: Preprocess::for_crop(crop),
            labels: std::sync::Arc::new(labels),
            decode: DecodeOptions::default(),
        };
        c.check_labels()?;
        Ok(c)
    }

    /// Uses another label set (one label per line, in output order).
    pub fn with_labels(mut self, labels: Labels) -> Result<Classifier> {
        self.labels = std::sync::Arc::new(labels);
        self.check_labels()?;
        Ok(self)
    }

    /// Runs at another square input size (≥ 224 for the zoo's models): the image is resized
    /// so its shorter side is `size·256/224`, then center-cropped to `size`.
    pub fn with_input_size(mut self, size: u32) -> Result<Classifier> {
        let n = self.input_dims()?[0].clone();
        self.model.set_input_shape(0, vec![n, Dim::Known(3), Dim::Known(size as usize), Dim::Known(size as usize)])?;
        self.preprocess = Preprocess::for_crop(size);
        Ok(self)
    }

    pub fn with_decode_options(mut self, decode: DecodeOptions) -> Classifier {
        self.decode = decode;
        self
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    pub fn decode_options(&self) -> &DecodeOptions {
        &self.decode
    }

    /// Decodes and preprocesses one encoded image into the CHW float tensor data.
    pub fn prepare_bytes(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        let img = resnet_vision::decode_rgb8(bytes, &self.decode)?;
        self.prepare(&img)
    }

    /// Preprocesses one decoded image into CHW float data.
    pub fn prepare(&self, img: &RgbImage) -> Result<Vec<f32>> {
        let crop = self.preprocess.crop_rgb8(img)?;
        Ok(self.preprocess.tensor_chw(&crop))
    }

    /// Classifies one encoded image (JPEG or PNG).
    pub fn classify_bytes(&self, bytes: &[u8]) -> Result<Classification> {
        let x = self.prepare_bytes(bytes)?;
        Ok(self.classify_prepared(vec![x])?.remove(0))
    }

    /// Classifies one decoded image.
    pub fn classify(&self, img: &RgbImage) -> Result<Classification> {
        Ok(self.classify_batch(std::slice::from_ref(img))?.remove(0))
    }

    /// Classifies several images in one batched run (preprocessing in parallel).
    pub fn classify_batch(&self, images: &[RgbImage]) -> Result<Vec<Classification>> {
        let prepared = images.par_iter().map(|img| self.prepare(img)).collect::<Result<Vec<_>>>()?;
        self.classify_prepared(prepared)
    }

    /// Runs already-preprocessed images (each `3·size·size` floats, CHW) as one batch.
    pub fn classify_prepared(&self, images: Vec<Vec<f32>>) -> Result<Vec<Classification>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let size = self.preprocess.crop as usize;
        let per_image = 3 * size * size;
        let n = images.len();
        let mut data = Vec::with_capacity(n * per_image);
        for img in images {
            if img.len() != per_image {
                return Err(Error::NotAClassifier(format!(
                    "a prepared image has {} values, expected 3×{size}×{size} = {per_image}",
                    img.len()
                )));
            }
            data.extend_from_slice(&img);
        }
        let x = Tensor::from_f32(vec![n, 3, size, size], data);
        let out = self
            .model
            .run(vec![x])?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotAClassifier("the model has no output".into()))?;
        let shape = out.shape().to_vec();
        let logits = out.into_f32().ok_or_else(|| Error::NotAClassifier("the model output is not float32".into()))?;
        let classes = logits.len() / n.max(1);
        if shape.first() != Some(&n) || classes * n != logits.len() {
            return Err(Error::NotAClassifier(format!("expected output [{n}, classes], got {shape:?}")));
        }
        Ok(logits
            .chunks(classes)
            .map(|row| Classification { probabilities: softmax(row), labels: self.labels.clone() })
            .collect())
    }

    fn input_dims(&self) -> Result<Vec<Dim>> {
        input_dims(&self.model)
    }

    fn check_labels(&self) -> Result<()> {
        let graph = self.model.graph();
        let out = graph.outputs.first().ok_or_else(|| Error::NotAClassifier("the model has no output".into()))?;
        if let Some(Dim::Known(classes)) = graph.values[*out].fact.shape.as_ref().and_then(|s| s.last().cloned()) {
            if classes != self.labels.len() {
                return Err(Error::NotAClassifier(format!(
                    "the model has {classes} classes but the labels have {}; pass a labels file with one line per class (--labels FILE)",
                    self.labels.len()
                )));
            }
        }
        Ok(())
    }
}

/// The model's single image input `[N, 3, H, W]`.
fn input_dims(model: &Model) -> Result<Vec<Dim>> {
    let graph = model.graph();
    if graph.inputs.len() != 1 {
        return Err(Error::NotAClassifier(format!(
            "an image classifier takes one input, this model takes {}",
            graph.inputs.len()
        )));
    }
    let fact = &graph.values[graph.inputs[0]].fact;
    match &fact.shape {
        Some(dims) if dims.len() == 4 && matches!(dims[1], Dim::Known(3) | Dim::Sym(_)) => Ok(dims.clone()),
        _ => Err(Error::NotAClassifier(format!(
            "an image classifier takes an input [N,3,H,W], this model's input is {fact}"
        ))),
    }
}

/// `Some(size)` when the model fixes a square spatial size.
fn declared_square_size(model: &Model) -> Result<Option<u32>> {
    let dims = input_dims(model)?;
    match (&dims[2], &dims[3]) {
        (Dim::Known(h), Dim::Known(w)) if h == w => Ok(Some(*h as u32)),
        // Not square, or not fixed: the caller picks a size (224 by default); a fixed
        // non-square input then fails at run time with a message naming both shapes.
        _ => Ok(None),
    }
}

/// The labels file that belongs to a model file, if there is one: `labels.txt` in the model's
/// folder, as `resnet train` writes it beside `model.onnx`. `classify`, `validate` and `serve`
/// use it when no `--labels` is given.
pub fn labels_beside(model_path: &std::path::Path) -> Option<std::path::PathBuf> {
    let candidate = model_path.parent()?.join("labels.txt");
    candidate.is_file().then_some(candidate)
}
