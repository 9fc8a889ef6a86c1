//! Tensors: a shape plus a flat, row-major buffer of one element type.
//!
//! ResNets compute in `f32`; `i64` carries shapes, axes and indices (Reshape, Gather, Shape);
//! `i32` appears as Gather indices and in integer arithmetic tests. Other ONNX element types
//! are recognised (so errors can name them) but cannot be stored.

use std::fmt;

/// Element types. Only the first three can hold data; the rest exist so that a model using
/// them gets an error that names the type instead of "unknown".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I64,
    I32,
    /// An ONNX element type we do not compute with (the ONNX enum value is kept).
    Unsupported(i32),
}

impl DType {
    /// Maps `TensorProto.DataType`.
    pub fn from_onnx(code: i32) -> DType {
        match code {
            1 => DType::F32,
            7 => DType::I64,
            6 => DType::I32,
            other => DType::Unsupported(other),
        }
    }

    pub fn to_onnx(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::I64 => 7,
            DType::I32 => 6,
            DType::Unsupported(code) => code,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::Unsupported(code) => onnx_type_name(code),
        }
    }
}

fn onnx_type_name(code: i32) -> &'static str {
    match code {
        0 => "undefined",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        _ => "an unknown element type",
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The buffer of a tensor.
#[derive(Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
        }
    }
}

/// A dense tensor. `shape` may be empty (a scalar holds one element).
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// The number of elements of a shape (1 for a scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Builds a tensor; `None` when the buffer length does not match the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Option<Tensor> {
        (shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) == Some(data.len()))
            .then_some(Tensor { shape, data })
    }

    /// An f32 tensor. Panics if `data.len()` differs from the shape's element count, which
    /// is a programming error in the caller (kernels compute the length from the shape).
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        assert_eq!(numel(&shape), data.len(), "f32 tensor buffer does not match shape {shape:?}");
        Tensor { shape, data: TensorData::F32(data) }
    }

    /// An i64 tensor; panics on a length mismatch like [`Tensor::from_f32`].
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Tensor {
        assert_eq!(numel(&shape), data.len(), "i64 tensor buffer does not match shape {shape:?}");
        Tensor { shape, data: TensorData::I64(data) }
    }

    /// An i32 tensor; panics on a length mismatch like [`Tensor::from_f32`].
    pub fn from_i32(shape: Vec<usize>, data: Vec<i32>) -> Tensor {
        assert_eq!(numel(&shape), data.len(), "i32 tensor buffer does not match shape {shape:?}");
        Tensor { shape, data: TensorData::I32(data) }
    }

    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let n = numel(&shape);
        Tensor::from_f32(shape, vec![0.0; n])
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            TensorData::I32(v) => Some(v),
            _ => None,
        }
    }

    pub fn into_f32(self) -> Option<Vec<f32>> {
        match self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Integer contents widened to i64 (shapes, axes, indices may come as i32 or i64).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        match &self.data {
            TensorData::I64(v) => Some(v.clone()),
            TensorData::I32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::F32(_) => None,
        }
    }

    /// The same buffer viewed with another shape of equal element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Option<Tensor> {
        Tensor::new(shape, self.data)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?}", self.dtype(), self.shape)?;
        let preview = |f: &mut fmt::Formatter<'_>, items: Vec<String>| {
            let more = if self.len() > items.len() { ", …" } else { "" };
            write!(f, " [{}{more}]", items.join(", "))
        };
        match &self.data {
            TensorData::F32(v) => preview(f, v.iter().take(8).map(|x| format!("{x}")).collect()),
            TensorData::I64(v) => preview(f, v.iter().take(8).map(|x| format!("{x}")).collect()),
            TensorData::I32(v) => preview(f, v.iter().take(8).map(|x| format!("{x}")).collect()),
        }
    }
}

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_buffer_that_does_not_match_shape() {
        assert!(Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 5])).is_none());
        assert!(Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 6])).is_some());
        assert!(Tensor::new(vec![], TensorData::I64(vec![7])).is_some());
    }

    #[test]
    fn new_rejects_overflowing_shapes() {
        assert!(Tensor::new(vec![usize::MAX, 2], TensorData::F32(vec![])).is_none());
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides(&[]), Vec::<usize>::new());
    }
}
