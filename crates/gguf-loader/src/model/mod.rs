//! A decoded model: every tensor by name, a typed configuration, and views by
//! layer.

mod config;
mod lazy;
pub(crate) mod load;

use std::collections::HashMap;

pub use config::{ModelConfig, KNOWN_ARCHITECTURES};
pub use lazy::{LayerIter, LazyLayer, LazyModel, Prefetch};
pub(crate) use load::in_pool;
pub use load::{
    load_model_f16, max_threads, GpuStaging, LoadOptions, Progress, ProgressFn, THREADS_PER_CORE,
};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The layer a tensor name belongs to: `blk.12.attn_q.weight` → `(12, "attn_q.weight")`.
pub(crate) fn layer_of(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("blk.")?;
    let (n, suffix) = rest.split_once('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((n.parse().ok()?, suffix))
}

/// The layers of a model: each distinct `blk.i` index that occurs (never a
/// range up to the largest, which a file could set to 2^64 - 1), in
/// ascending order, with the positions of its tensors in file order.
pub(crate) fn layer_groups<'n>(
    names: impl IntoIterator<Item = &'n str>,
) -> Vec<(usize, Vec<usize>)> {
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (pos, name) in names.into_iter().enumerate() {
        if let Some((i, _)) = layer_of(name) {
            groups.entry(i).or_default().push(pos);
        }
    }
    groups.into_iter().collect()
}

/// Every tensor of a model, decoded to `T`.
pub struct Model<T> {
    /// The hyper-parameters read from the metadata.
    pub config: ModelConfig,
    tensors: Vec<(String, Tensor<T>)>,
    index: HashMap<String, usize>,
}

/// The tensors of one layer (`blk.i.*`), by their name within the layer.
pub struct Layer<'m, T> {
    /// The `i` of `blk.i`.
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

    /// Number of tensors in the layer.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the layer has no tensors (never, for a layer of a model).
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

    /// The tensor named `name`, or `None`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor<T>> {
        self.index.get(name).map(|i| &self.tensors[*i].1)
    }

    /// Removes and returns a tensor; `None` when the model has no tensor of
    /// that name. The tensor returned holds memory of its own, so it keeps
    /// nothing else of the model alive once the model is dropped: a tensor of
    /// 2 MiB or more moves out without a copy, a smaller one (which shared a
    /// huge-page arena with the model's other small tensors) is copied out.
    pub fn take(&mut self, name: &str) -> Option<Tensor<T>> {
        // Its own memory: a small tensor is copied out of the arena it
        // shares with the rest of the model, so it keeps none of it alive.
        self.take_shared(name).map(Tensor::into_own)
    }

    /// Removes and returns a tensor without a copy; `None` when the model
    /// has no tensor of that name. A tensor under 2 MiB stays in the
    /// huge-page arena it shares with the model's other small tensors,
    /// which then lives as long as any tensor taken from it.
    ///
    /// For a caller that takes (nearly) every tensor, as a forward pass
    /// does: there [`Self::take`] would copy each small tensor while the
    /// arena is still held, and a model of small tensors (SmolLM2-135M's
    /// are all under 2 MiB in f16) would peak at twice its size.
    pub fn take_shared(&mut self, name: &str) -> Option<Tensor<T>> {
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

    /// Tensor names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the model has no tensors.
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

    /// Number of layers: the distinct `blk.i` indices that occur.
    pub fn layer_count(&self) -> usize {
        layer_groups(self.names()).len()
    }

    /// The tensors of layer `i` (those named `blk.i.*`), or
    /// [`Error::LayerNotFound`] when there are none, as
    /// [`LazyModel::layer`] answers.
    pub fn layer(&self, i: usize) -> Result<Layer<'_, T>> {
        let tensors: Vec<_> = self
            .tensors
            .iter()
            .filter_map(|(n, t)| match layer_of(n) {
                Some((j, suffix)) if j == i => Some((suffix, t)),
                _ => None,
            })
            .collect();
        if tensors.is_empty() {
            return Err(Error::LayerNotFound(i));
        }
        Ok(Layer { index: i, tensors })
    }

    /// Every layer in ascending `blk.i` order.
    pub fn layers(&self) -> impl Iterator<Item = Layer<'_, T>> {
        layer_groups(self.names())
            .into_iter()
            .map(|(index, pos)| Layer {
                index,
                tensors: pos
                    .into_iter()
                    .filter_map(|p| {
                        let (n, t) = &self.tensors[p];
                        Some((layer_of(n)?.1, t))
                    })
                    .collect(),
            })
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
