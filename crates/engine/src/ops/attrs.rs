//! Node attributes as ops read them: typed getters with the ONNX default at the call site,
//! and a check that every attribute the node carries was understood.
//!
//! The importer turns protobuf attributes into [`AttrValue`]s; ops never see protobuf.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::error::OpError;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    String(String),
    Tensor(Tensor),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<String>),
    /// A kind we never read (graphs, sparse tensors, type protos).
    Other(&'static str),
}

impl AttrValue {
    fn kind(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "int",
            AttrValue::Float(_) => "float",
            AttrValue::String(_) => "string",
            AttrValue::Tensor(_) => "tensor",
            AttrValue::Ints(_) => "ints",
            AttrValue::Floats(_) => "floats",
            AttrValue::Strings(_) => "strings",
            AttrValue::Other(kind) => kind,
        }
    }
}

/// The attributes of one node. Getters record what was read so that [`Attrs::finish`] can
/// reject attributes an op does not know (they would otherwise change semantics silently).
#[derive(Debug, Default)]
pub struct Attrs {
    items: Vec<(String, AttrValue)>,
    read: RefCell<BTreeSet<String>>,
}

impl Attrs {
    pub fn new(items: Vec<(String, AttrValue)>) -> Attrs {
        Attrs { items, read: RefCell::default() }
    }

    fn get(&self, name: &str) -> Option<&AttrValue> {
        self.read.borrow_mut().insert(name.to_string());
        self.items.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn wrong_kind(name: &str, want: &str, got: &AttrValue) -> OpError {
        OpError::attr(name, format!("expected {want}, found {}", got.kind()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int_opt(&self, name: &str) -> Result<Option<i64>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(Self::wrong_kind(name, "an int", other)),
        }
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, OpError> {
        Ok(self.int_opt(name)?.unwrap_or(default))
    }

    pub fn float_opt(&self, name: &str) -> Result<Option<f32>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Float(v)) => Ok(Some(*v)),
            Some(other) => Err(Self::wrong_kind(name, "a float", other)),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32, OpError> {
        Ok(self.float_opt(name)?.unwrap_or(default))
    }

    pub fn string_opt(&self, name: &str) -> Result<Option<String>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::String(v)) => Ok(Some(v.clone())),
            Some(other) => Err(Self::wrong_kind(name, "a string", other)),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String, OpError> {
        Ok(self.string_opt(name)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn ints_opt(&self, name: &str) -> Result<Option<Vec<i64>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(other) => Err(Self::wrong_kind(name, "a list of ints", other)),
        }
    }

    pub fn floats_opt(&self, name: &str) -> Result<Option<Vec<f32>>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v.clone())),
            Some(other) => Err(Self::wrong_kind(name, "a list of floats", other)),
        }
    }

    pub fn tensor_opt(&self, name: &str) -> Result<Option<Tensor>, OpError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Tensor(v)) => Ok(Some(v.clone())),
            Some(other) => Err(Self::wrong_kind(name, "a tensor", other)),
        }
    }

    /// Non-negative ints (kernel sizes, strides, pads, dilations).
    pub fn usizes_opt(&self, name: &str) -> Result<Option<Vec<usize>>, OpError> {
        match self.ints_opt(name)? {
            None => Ok(None),
            Some(v) => v
                .iter()
                .map(|&x| usize::try_from(x).map_err(|_| OpError::attr(name, format!("negative value {x}"))))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }

    /// Reads (and thereby accepts) an attribute whose value does not change inference
    /// semantics, such as BatchNormalization's `momentum`.
    pub fn ignore(&self, name: &str) {
        self.get(name);
    }

    /// Names of attributes the node carries (in file order).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(n, _)| n.as_str())
    }

    /// Fails on the first attribute no getter asked for.
    pub fn finish(&self) -> Result<(), OpError> {
        let read = self.read.borrow();
        match self.items.iter().find(|(n, _)| !read.contains(n)) {
            Some((name, _)) => Err(OpError::UnknownAttribute(name.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_apply_defaults_and_check_kinds() {
        let a = Attrs::new(vec![("group".into(), AttrValue::Int(2)), ("pads".into(), AttrValue::Floats(vec![1.0]))]);
        assert_eq!(a.int("group", 1).unwrap(), 2);
        assert_eq!(a.int("missing", 7).unwrap(), 7);
        assert!(matches!(a.ints_opt("pads"), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn finish_rejects_attributes_nobody_read() {
        let a = Attrs::new(vec![("axis".into(), AttrValue::Int(1)), ("bogus".into(), AttrValue::Int(0))]);
        a.int("axis", 0).unwrap();
        assert_eq!(a.finish(), Err(OpError::UnknownAttribute("bogus".into())));
    }
}
