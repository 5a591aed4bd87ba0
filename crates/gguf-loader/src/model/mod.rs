//! A decoded model: every tensor by name, a typed configuration, and views by
//! layer.

mod config;

use std::collections::HashMap;

pub use config::{ModelConfig, KNOWN_ARCHITECTURES};

use crate::decode::Element;
use crate::tensor::Tensor;

/// The layer a tensor name belongs to: `blk.12.attn_q.weight` → `(12, "attn_q.weight")`.
pub fn layer_of(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("blk.")?;
    let (n, suffix) = rest.split_once('.')?;
    Some((n.parse().ok()?, suffix))
}

/// Every tensor of a model, decoded to `T`.
pub struct Model<T> {
    pub config: ModelConfig,
    tensors: Vec<(String, Tensor<T>)>,
    index: HashMap<String, usize>,
}

/// The tensors of one layer (`blk.i.*`), by their name within the layer.
pub struct Layer<'m, T> {
    pub index: usize,
    tensors: Vec<(&'m str, &'m Tensor<T>)>,
}

impl<'m, T> Layer<'m, T> {
    /// The tensor named `blk.i.{suffix}`, e.g. `get("attn_q.weight")`.
    pub fn get(&self, suffix: &str) -> Option<&'m Tensor<T>> {
        self.tensors
            .iter()
            .find(|(s, _)| *s == suffix)
            .map(|(_, t)| *t)
    }

    /// `(suffix, tensor)` pairs in file order.
    pub fn tensors(&self) -> &[(&'m str, &'m Tensor<T>)] {
        &self.tensors
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

impl<T: Element> Model<T> {
    /// A model from tensors in file order.
    pub fn new(config: ModelConfig, tensors: Vec<(String, Tensor<T>)>) -> Model<T> {
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Model {
            config,
            tensors,
            index,
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&Tensor<T>> {
        self.index.get(name).map(|i| &self.tensors[*i].1)
    }

    /// Removes and returns a tensor (to move it elsewhere without a copy).
    pub fn take(&mut self, name: &str) -> Option<Tensor<T>> {
        let i = self.index.remove(name)?;
        let (_, t) = self.tensors.remove(i);
        for v in self.index.values_mut() {
            if *v > i {
                *v -= 1;
            }
        }
        Some(t)
    }

    /// `(name, tensor)` pairs in file order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = (&str, &Tensor<T>)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Bytes of decoded data held.
    pub fn n_bytes(&self) -> usize {
        self.tensors
            .iter()
            .map(|(_, t)| t.len() * T::KIND.size())
            .sum()
    }

    /// Number of `blk.i` layers present (one past the highest index).
    pub fn layer_count(&self) -> usize {
        self.names()
            .filter_map(layer_of)
            .map(|(i, _)| i + 1)
            .max()
            .unwrap_or(0)
    }

    /// The tensors of layer `i`.
    pub fn layer(&self, i: usize) -> Layer<'_, T> {
        Layer {
            index: i,
            tensors: self
                .tensors
                .iter()
                .filter_map(|(n, t)| match layer_of(n) {
                    Some((j, suffix)) if j == i => Some((suffix, t)),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Tensors outside any layer (`token_embd.weight`, `output_norm.weight`,
    /// `output.weight`…).
    pub fn globals(&self) -> impl Iterator<Item = (&str, &Tensor<T>)> {
        self.tensors().filter(|(n, _)| layer_of(n).is_none())
    }
}

impl<T: Element> std::fmt::Debug for Model<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("architecture", &self.config.architecture)
            .field("tensors", &self.len())
            .field("dtype", &T::KIND.name())
            .finish()
    }
}
