//! `TensorProto` ⇄ [`Tensor`]: initializers, tensor attributes and the `input_N.pb` /
//! `output_N.pb` files of ONNX test data sets.
//!
//! Reading copies the data exactly once: `raw_data` is a zero-copy slice of the (usually
//! memory-mapped) model bytes, and is copied into the tensor's `Vec` as bytes (`bytemuck`;
//! the slice has no alignment guarantee, so it is never reinterpreted in place), its
//! little-endian words swapped afterwards on a big-endian CPU. Decoding element by element
//! with `from_le_bytes` took 117 of Keras ResNet-50's ~120 ms of loading. Nothing is
//! allocated from a declared shape before the data's length has been checked against it, so
//! a lying header cannot make us allocate.

use std::path::Path;

use bytes::Bytes;
use prost::Message;

use crate::error::{Error, Result};
use crate::onnx::proto::tensor_proto::DataLocation;
use crate::onnx::proto::TensorProto;
use crate::tensor::{DType, Tensor, TensorData};

/// Converts a `TensorProto` into a [`Tensor`]. Errors name the tensor (`t.name`).
pub fn tensor_from_proto(t: TensorProto) -> Result<Tensor> {
    let name = t.name.clone();
    tensor_from_proto_named(t, &name)
}

/// Like [`tensor_from_proto`], naming the tensor `name` in errors (tensor attributes often
/// carry no name of their own).
pub fn tensor_from_proto_named(mut t: TensorProto, name: &str) -> Result<Tensor> {
    let fail = |detail: String| Error::Tensor { name: name.to_string(), detail };
    if t.data_location == DataLocation::External as i32 || !t.external_data.is_empty() {
        return Err(Error::ExternalData { name: name.to_string() });
    }
    if t.segment.is_some() {
        return Err(fail("segmented tensors (TensorProto.segment) are not supported".into()));
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| fail(format!("negative dimension {d} in shape {:?}", t.dims))))
        .collect::<Result<Vec<usize>>>()?;
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| fail(format!("shape {shape:?} has more elements than fit in memory")))?;
    let dtype = DType::from_onnx(t.data_type);
    // `raw_data` wins when present (the ONNX rule); otherwise the type-specific field.
    let raw = std::mem::take(&mut t.raw_data);
    let data = match dtype {
        DType::F32 if raw.is_empty() => {
            typed(std::mem::take(&mut t.float_data), "float_data", numel, &shape).map(TensorData::F32)
        }
        DType::I64 if raw.is_empty() => {
            typed(std::mem::take(&mut t.int64_data), "int64_data", numel, &shape).map(TensorData::I64)
        }
        DType::I32 if raw.is_empty() => {
            typed(std::mem::take(&mut t.int32_data), "int32_data", numel, &shape).map(TensorData::I32)
        }
        DType::F32 => from_raw::<f32>(&raw, numel, &shape, dtype).map(TensorData::F32),
        DType::I64 => from_raw::<i64>(&raw, numel, &shape, dtype).map(TensorData::I64),
        DType::I32 => from_raw::<i32>(&raw, numel, &shape, dtype).map(TensorData::I32),
        DType::Unsupported(_) => {
            Err(format!("element type {dtype} is not supported (only float32, int64 and int32 are)"))
        }
    }
    .map_err(fail)?;
    Ok(Tensor::new(shape, data).expect("length checked against the shape above"))
}

/// Decodes little-endian `raw_data` after checking its length against the shape.
fn from_raw<T: bytemuck::Pod>(
    raw: &[u8],
    numel: usize,
    shape: &[usize],
    dtype: DType,
) -> std::result::Result<Vec<T>, String> {
    let n = std::mem::size_of::<T>();
    if numel.checked_mul(n) != Some(raw.len()) {
        return Err(format!(
            "raw_data holds {} bytes, but shape {shape:?} of {dtype} needs {} elements of {n} bytes",
            raw.len(),
            numel
        ));
    }
    let mut values = vec![T::zeroed(); numel];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut values);
    bytes.copy_from_slice(raw);
    if cfg!(target_endian = "big") {
        bytes.chunks_exact_mut(n).for_each(<[u8]>::reverse);
    }
    Ok(values)
}

/// Checks a type-specific data field (`float_data`, …) against the shape.
fn typed<T>(values: Vec<T>, field: &str, numel: usize, shape: &[usize]) -> std::result::Result<Vec<T>, String> {
    if values.len() != numel {
        return Err(format!(
            "{field} holds {} values (and raw_data is empty), but shape {shape:?} needs {numel}",
            values.len()
        ));
    }
    Ok(values)
}

/// Converts a [`Tensor`] into a `TensorProto` with little-endian `raw_data`.
pub fn tensor_to_proto(name: &str, tensor: &Tensor) -> TensorProto {
    let raw: Vec<u8> = match tensor.data() {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    TensorProto {
        name: name.to_string(),
        dims: tensor.shape().iter().map(|&d| d as i64).collect(),
        data_type: tensor.dtype().to_onnx(),
        raw_data: Bytes::from(raw),
        ..TensorProto::default()
    }
}

/// Decodes a serialized `TensorProto` (the bytes of an `input_N.pb` file).
pub fn decode_tensor(bytes: Bytes) -> Result<(String, Tensor)> {
    let proto = TensorProto::decode(bytes).map_err(|e| Error::NotOnnx(e.to_string()))?;
    let name = proto.name.clone();
    Ok((name, tensor_from_proto(proto)?))
}

/// Reads an `input_N.pb` / `output_N.pb` file of an ONNX test data set: the tensor's name
/// (empty when the file has none) and its value. Errors carry the path.
pub fn read_tensor_pb(path: impl AsRef<Path>) -> Result<(String, Tensor)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    decode_tensor(Bytes::from(bytes)).map_err(|e| e.in_file(path))
}

/// Writes a tensor as a serialized `TensorProto` (the format of `input_N.pb`).
pub fn write_tensor_pb(path: impl AsRef<Path>, name: &str, tensor: &Tensor) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, tensor_to_proto(name, tensor).encode_to_vec())
        .map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(dtype: DType, dims: &[i64]) -> TensorProto {
        TensorProto { name: "w".into(), data_type: dtype.to_onnx(), dims: dims.to_vec(), ..TensorProto::default() }
    }

    #[test]
    fn float_raw_data_is_little_endian() {
        let mut t = proto(DType::F32, &[2]);
        t.raw_data = Bytes::from([1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
        assert_eq!(tensor_from_proto(t).unwrap().as_f32().unwrap(), &[1.5, -2.0]);
    }

    #[test]
    fn typed_fields_are_read_when_raw_data_is_empty() {
        let mut t = proto(DType::I64, &[1, 2]);
        t.int64_data = vec![3, -4];
        assert_eq!(tensor_from_proto(t).unwrap().as_i64().unwrap(), &[3, -4]);
        let mut t = proto(DType::I32, &[]);
        t.int32_data = vec![9];
        let s = tensor_from_proto(t).unwrap();
        assert_eq!((s.shape(), s.as_i32().unwrap()), (&[][..], &[9][..]));
    }

    #[test]
    fn round_trip_through_raw_data() {
        let t = Tensor::from_i32(vec![2, 2], vec![1, -2, 3, i32::MAX]);
        let back = tensor_from_proto(tensor_to_proto("x", &t)).unwrap();
        assert_eq!(back, t);
        let t = Tensor::from_i64(vec![3], vec![i64::MIN, -1, 1 << 40]);
        assert_eq!(tensor_from_proto(tensor_to_proto("z", &t)).unwrap(), t);
        let t = Tensor::from_f32(vec![3], vec![0.25, f32::MIN_POSITIVE, -7.0]);
        assert_eq!(decode_tensor(Bytes::from(tensor_to_proto("y", &t).encode_to_vec())).unwrap(), ("y".into(), t));
    }

    #[test]
    fn wrong_raw_length_is_an_error_naming_the_tensor() {
        let mut t = proto(DType::F32, &[4]);
        t.raw_data = Bytes::from_static(&[0; 15]);
        let e = tensor_from_proto(t).unwrap_err();
        assert!(matches!(&e, Error::Tensor { name, .. } if name == "w"), "{e}");
        assert!(e.to_string().contains("15 bytes"), "{e}");
    }

    #[test]
    fn huge_declared_shape_does_not_allocate() {
        let mut t = proto(DType::F32, &[1 << 40, 1 << 40]);
        t.raw_data = Bytes::from_static(&[0; 8]);
        assert!(matches!(tensor_from_proto(t), Err(Error::Tensor { .. })));
        let t = proto(DType::F32, &[i64::MAX, i64::MAX]);
        assert!(matches!(tensor_from_proto(t), Err(Error::Tensor { .. })));
    }

    #[test]
    fn negative_dims_and_unsupported_types_are_named() {
        assert!(tensor_from_proto(proto(DType::F32, &[-1])).unwrap_err().to_string().contains("negative dimension -1"));
        let e = tensor_from_proto(proto(DType::from_onnx(10), &[1])).unwrap_err();
        assert!(e.to_string().contains("float16"), "{e}");
    }

    #[test]
    fn external_data_is_refused() {
        let mut t = proto(DType::F32, &[1]);
        t.data_location = DataLocation::External as i32;
        assert!(matches!(tensor_from_proto(t), Err(Error::ExternalData { name }) if name == "w"));
    }
}
