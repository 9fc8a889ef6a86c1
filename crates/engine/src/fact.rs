//! What is known about a value before running: element type, shape (with symbolic
//! dimensions such as the batch `N`), and — for constants — the value itself.
//!
//! Shape inference works on facts, so a model is checked once at load time and errors name
//! the node whose shapes do not fit, instead of failing deep inside a kernel at run time.

use std::fmt;
use std::sync::Arc;

use crate::tensor::{DType, Tensor};

/// One dimension: a number, or a symbol (`N`, or `?` when nothing is known).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Sym(String),
}

impl Dim {
    pub fn unknown() -> Dim {
        Dim::Sym("?".to_string())
    }

    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(d) => Some(*d),
            Dim::Sym(_) => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(d: usize) -> Dim {
        Dim::Known(d)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(d) => write!(f, "{d}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// Formats a shape as `[N,3,224,224]`.
pub fn fmt_shape(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// What is known about a value.
#[derive(Clone, Debug, Default)]
pub struct Fact {
    /// `None` when the type is not known (only for values no op constrains).
    pub dtype: Option<DType>,
    /// `None` when even the rank is unknown.
    pub shape: Option<Vec<Dim>>,
    /// The value itself, when it is a constant (initializer, Constant, or folded).
    pub value: Option<Arc<Tensor>>,
}

impl Fact {
    pub fn new(dtype: DType, shape: Vec<Dim>) -> Fact {
        Fact { dtype: Some(dtype), shape: Some(shape), value: None }
    }

    /// A fact with a known dtype and fully known shape.
    pub fn known(dtype: DType, shape: &[usize]) -> Fact {
        Fact::new(dtype, shape.iter().map(|&d| Dim::Known(d)).collect())
    }

    pub fn unknown() -> Fact {
        Fact::default()
    }

    /// The fact of a constant tensor (dtype, shape and value known).
    pub fn constant(t: Arc<Tensor>) -> Fact {
        Fact { dtype: Some(t.dtype()), shape: Some(t.shape().iter().map(|&d| Dim::Known(d)).collect()), value: Some(t) }
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(|s| s.len())
    }

    /// The shape when every dimension is a number.
    pub fn concrete_shape(&self) -> Option<Vec<usize>> {
        self.shape.as_ref()?.iter().map(Dim::known).collect()
    }

    pub fn shape_string(&self) -> String {
        match &self.shape {
            Some(s) => fmt_shape(s),
            None => "[?]".to_string(),
        }
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dtype = self.dtype.map(|d| d.name()).unwrap_or("?");
        write!(f, "{dtype}{}", self.shape_string())
    }
}

/// Checks that `actual` fits a declared shape (symbols match any number). Used for graph
/// inputs at run time.
pub fn shape_fits(declared: &[Dim], actual: &[usize]) -> bool {
    declared.len() == actual.len()
        && declared.iter().zip(actual).all(|(d, &a)| match d {
            Dim::Known(k) => *k == a,
            Dim::Sym(_) => true,
        })
}
