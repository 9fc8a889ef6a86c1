//! Training (`resnet train`, issue #7): data pipeline, and the pieces built on it.

pub mod data;
