//! A decoded model: every tensor by name, a typed configuration, and views by
//! layer.

mod config;
mod lazy;
pub(crate) mod load;

use std::collections::HashMap;

pub use config::{IgnoredKey, ModelConfig, KNOWN_ARCHITECTURES};
pub use lazy::{LayerIter, LazyLayer, LazyModel, Prefetch};
pub(crate) use load::in_pool;
pub use load::{
    load_model_f16, max_threads, pool_threads, GpuStaging, LoadOptions, PoolThreads, Progress,
    ProgressFn, THREADS_PER_CORE,
};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The layer a tensor name belongs to: `blk.12.attn_q.weight` → `(12, "attn_q.weight")`.
/// The number is written as llama.cpp writes it (`blk.%d.`): `blk.00.x` or
/// `blk.+0.x` belong to no layer, so that one layer never holds two tensors
/// under the same suffix.
pub(crate) fn layer_of(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("blk.")?;
    let (n, suffix) = rest.split_once('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
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
    /// In file order; `None` once taken (or replaced, in [`Model::new`], by
    /// a later tensor of the same name), so that taking is O(1) and a
    /// forward pass taking every tensor does not pay O(n²).
    tensors: Vec<(String, Option<Tensor<T>>)>,
    /// The position of each tensor still held.
    index: HashMap<String, usize>,
    /// How many are still held.
    live: usize,
}

/// See [`Model::tensors`].
pub struct ModelTensors<'m, T> {
    inner: std::slice::Iter<'m, (String, Option<Tensor<T>>)>,
    left: usize,
}

impl<'m, T> Iterator for ModelTensors<'m, T> {
    type Item = (&'m str, &'m Tensor<T>);

    fn next(&mut self) -> Option<Self::Item> {
        let (n, t) = self
            .inner
            .by_ref()
            .find_map(|(n, t)| t.as_ref().map(|t| (n.as_str(), t)))?;
        self.left -= 1;
        Some((n, t))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for ModelTensors<'_, T> {}

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
    /// A model from tensors in file order; of two tensors of one name (no
    /// file has them: the parser refuses it), the later replaces the earlier.
    pub fn new(config: ModelConfig, tensors: Vec<(String, Tensor<T>)>) -> Model<T> {
        let mut held: Vec<(String, Option<Tensor<T>>)> = Vec::with_capacity(tensors.len());
        let mut index = HashMap::with_capacity(tensors.len());
        let mut live = 0;
        for (i, (name, t)) in tensors.into_iter().enumerate() {
            if let Some(earlier) = index.insert(name.clone(), i) {
                let replaced: &mut (String, Option<Tensor<T>>) = &mut held[earlier];
                replaced.1 = None;
                live -= 1;
            }
            held.push((name, Some(t)));
            live += 1;
        }
        Model {
            config,
            tensors: held,
            index,
            live,
        }
    }

    /// The tensor named `name`, or `None`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor<T>> {
        self.index
            .get(name)
            .and_then(|i| self.tensors[*i].1.as_ref())
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
        let t = self.tensors[i].1.take()?;
        self.live -= 1;
        Some(t)
    }

    /// `(name, tensor)` pairs in file order.
    pub fn tensors(&self) -> ModelTensors<'_, T> {
        ModelTensors {
            inner: self.tensors.iter(),
            left: self.live,
        }
    }

    /// Tensor names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors().map(|(n, _)| n)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when the model has no tensors.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes of decoded data held.
    pub fn n_bytes(&self) -> usize {
        self.tensors().map(|(_, t)| t.len() * T::KIND.size()).sum()
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
            .tensors()
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
        let live: Vec<(&str, &Tensor<T>)> = self.tensors().collect();
        layer_groups(live.iter().map(|(n, _)| *n))
            .into_iter()
            .map(move |(index, pos)| Layer {
                index,
                tensors: pos
                    .into_iter()
                    .filter_map(|p| {
                        let (n, t) = live[p];
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

impl<T: Element> std::fmt::Debug for Layer<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.tensors.iter().map(|(n, _)| *n);
        debug_layer::<T>(f, "Layer", self.index, names)
    }
}

/// A layer's `Debug` ([`Layer`], [`LazyLayer`]): its index, its tensors'
/// names within it and the element type, not their values.
pub(crate) fn debug_layer<'n, T: Element>(
    f: &mut std::fmt::Formatter<'_>,
    ty: &str,
    index: usize,
    names: impl Iterator<Item = &'n str>,
) -> std::fmt::Result {
    let names: Vec<&str> = names.collect();
    f.debug_struct(ty)
        .field("index", &index)
        .field("tensors", &names)
        .field("dtype", &T::KIND.name())
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: f32) -> Tensor<f32> {
        Tensor::from_vec(&[1], vec![v]).unwrap()
    }

    /// A layer number is spelled as llama.cpp spells it: `blk.00.x` once
    /// stood for layer 0 too, so that layer 0 held two `x` and the lazy
    /// forward pass took the one first in the file where the eager one
    /// took `blk.0.x`.
    #[test]
    fn a_layer_number_has_one_spelling() {
        assert_eq!(layer_of("blk.0.attn_q.weight"), Some((0, "attn_q.weight")));
        assert_eq!(
            layer_of("blk.12.ffn_up.weight"),
            Some((12, "ffn_up.weight"))
        );
        for name in [
            "blk.00.attn_q.weight",
            "blk.012.x",
            "blk.+1.x",
            "blk.-1.x",
            "blk..x",
            "blk.1",
            "blk.x.y",
            "blk. 1.x",
            "blk.99999999999999999999999.x",
            "output.weight",
        ] {
            assert_eq!(layer_of(name), None, "{name}");
        }
    }

    /// Taking keeps every view consistent (names, len, tensor, layers,
    /// globals), in O(1) each: a model of 40 k tensors once took 2 s to
    /// take them all, the vector shifted and re-indexed on every take.
    #[test]
    fn taking_keeps_names_layers_and_counts_consistent() {
        let n = 40_000;
        let names: Vec<String> = (0..n)
            .map(|i| match i % 4 {
                3 => format!("g{i}"),
                _ => format!("blk.{}.w{i}", i % 7),
            })
            .collect();
        let mut m = Model::new(
            ModelConfig::default(),
            names
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), t(i as f32)))
                .collect(),
        );
        assert_eq!((m.len(), m.tensors().len(), m.layer_count()), (n, n, 7));
        // Every other tensor taken, in reverse order.
        for (i, name) in names.iter().enumerate().rev().step_by(2) {
            assert_eq!(m.take_shared(name).unwrap().data(), &[i as f32][..]);
            assert!(m.take_shared(name).is_none() && m.tensor(name).is_none());
        }
        let left: Vec<&str> = m.names().collect();
        let want: Vec<&str> = names.iter().map(String::as_str).step_by(2).collect();
        assert_eq!(left, want);
        assert_eq!((m.len(), m.tensors().len()), (n / 2, n / 2));
        assert_eq!(m.n_bytes(), n / 2 * 4);
        for (name, t) in m.tensors() {
            assert_eq!(m.tensor(name).unwrap().data(), t.data());
        }
        let in_layers: usize = m.layers().map(|l| l.len()).sum();
        assert_eq!(in_layers + m.globals().count(), n / 2);
        for l in m.layers() {
            assert_eq!(m.layer(l.index).unwrap().len(), l.len());
        }
        for name in want {
            m.take(name).unwrap();
        }
        assert!(m.is_empty() && m.names().next().is_none() && m.layers().next().is_none());
        assert_eq!(m.layer_count(), 0);
    }

    /// Two tensors of one name: the later replaces the earlier, so that
    /// `names`, `len` and `tensor` agree (after a take, the name was still
    /// listed with no tensor behind it).
    #[test]
    fn a_later_tensor_of_the_same_name_replaces_the_earlier() {
        let mut m = Model::new(
            ModelConfig::default(),
            vec![
                ("x".into(), t(1.0)),
                ("y".into(), t(2.0)),
                ("x".into(), t(3.0)),
            ],
        );
        assert_eq!(m.names().collect::<Vec<_>>(), ["y", "x"]);
        assert_eq!((m.len(), m.tensor("x").unwrap().data()), (2, &[3.0][..]));
        m.take("x").unwrap();
        assert_eq!(m.names().collect::<Vec<_>>(), ["y"]);
        assert_eq!(m.len(), 1);
    }
}
