//! Lazy loading: tensors decoded on first access and dropped again, layers
//! prefetched (kernel read-ahead plus a background decode of the next layer)
//! while the caller works on the current one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::MmapGGUFLoader;
use crate::decode::Element;
use crate::error::{Error, Result};
use crate::model::{layer_of, ModelConfig};
use crate::tensor::{Device, Tensor};

/// The tensors of one layer, decoded.
pub struct LazyLayer<T> {
    pub index: usize,
    tensors: Vec<(String, Arc<Tensor<T>>)>,
}

impl<T> LazyLayer<T> {
    /// The tensor named `blk.i.{suffix}`, e.g. `get("attn_q.weight")`.
    pub fn get(&self, suffix: &str) -> Option<&Arc<Tensor<T>>> {
        self.tensors
            .iter()
            .find(|(s, _)| s == suffix)
            .map(|(_, t)| t)
    }

    /// `(suffix, tensor)` pairs in file order.
    pub fn tensors(&self) -> &[(String, Arc<Tensor<T>>)] {
        &self.tensors
    }
}

type Pending<T> = (usize, JoinHandle<Result<LazyLayer<T>>>);

/// A model whose tensors are decoded when asked for.
///
/// Memory stays bounded by what the caller holds, the tensors it asked for
/// by name (until [`LazyModel::evict`]), and at most one prefetched layer.
pub struct LazyModel<T> {
    loader: Arc<MmapGGUFLoader>,
    pub config: ModelConfig,
    /// Tensor names of each layer, in file order.
    layer_names: Vec<Vec<String>>,
    cache: Mutex<HashMap<String, Arc<Tensor<T>>>>,
    pending: Mutex<Option<Pending<T>>>,
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    // A panic while holding the lock cannot leave these maps inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Element> LazyModel<T> {
    pub fn new(loader: Arc<MmapGGUFLoader>) -> LazyModel<T> {
        let mut layer_names: Vec<Vec<String>> = Vec::new();
        for name in loader.tensor_names() {
            if let Some((i, _)) = layer_of(name) {
                if layer_names.len() <= i {
                    layer_names.resize(i + 1, Vec::new());
                }
                layer_names[i].push(name.to_string());
            }
        }
        LazyModel {
            config: ModelConfig::from_metadata(loader.metadata()),
            loader,
            layer_names,
            cache: Mutex::new(HashMap::new()),
            pending: Mutex::new(None),
        }
    }

    pub fn loader(&self) -> &MmapGGUFLoader {
        &self.loader
    }

    /// Number of `blk.i` layers.
    pub fn layer_count(&self) -> usize {
        self.layer_names.len()
    }

    /// The tensor, decoded on first access and kept until evicted.
    pub fn tensor(&self, name: &str) -> Result<Arc<Tensor<T>>> {
        if let Some(t) = lock(&self.cache).get(name) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.loader.load_tensor::<T>(name, &Device::Cpu)?);
        Ok(lock(&self.cache)
            .entry(name.to_string())
            .or_insert(t)
            .clone())
    }

    /// Drops the cached tensor (memory is freed once the caller drops its copies).
    pub fn evict(&self, name: &str) {
        lock(&self.cache).remove(name);
    }

    /// Names of the tensors cached now.
    pub fn cached(&self) -> Vec<String> {
        lock(&self.cache).keys().cloned().collect()
    }

    fn decode_layer(loader: &MmapGGUFLoader, i: usize, names: &[String]) -> Result<LazyLayer<T>> {
        let tensors = names
            .iter()
            .map(|n| {
                let t = loader.load_tensor::<T>(n, &Device::Cpu)?;
                let suffix = layer_of(n).map_or(n.as_str(), |(_, s)| s).to_string();
                Ok((suffix, Arc::new(t)))
            })
            .collect::<Result<_>>()?;
        Ok(LazyLayer { index: i, tensors })
    }

    /// Starts reading layer `i` ahead: kernel read-ahead on its bytes and a
    /// background thread that decodes it. A later [`LazyModel::layer`]`(i)`
    /// takes that result. Replaces any earlier prefetch.
    pub fn prefetch_layer(&self, i: usize) {
        let Some(names) = self.layer_names.get(i).cloned() else {
            return;
        };
        for n in &names {
            self.loader.prefetch(n);
        }
        let loader = self.loader.clone();
        let handle = std::thread::spawn(move || Self::decode_layer(&loader, i, &names));
        // An earlier prefetch still running is dropped with its result.
        *lock(&self.pending) = Some((i, handle));
    }

    /// Layer `i`, decoded now or taken from a finished or running prefetch.
    /// Not cached: it is freed when the caller drops it.
    pub fn layer(&self, i: usize) -> Result<LazyLayer<T>> {
        let pending = {
            let mut p = lock(&self.pending);
            match p.take() {
                Some((j, h)) if j == i => Some(h),
                other => {
                    *p = other;
                    None
                }
            }
        };
        if let Some(h) = pending {
            return h
                .join()
                .unwrap_or_else(|_| Err(Error::ThreadPool("prefetch thread panicked".into())));
        }
        let names = self
            .layer_names
            .get(i)
            .ok_or_else(|| Error::TensorNotFound(format!("blk.{i}.*")))?;
        Self::decode_layer(&self.loader, i, names)
    }

    /// Iterates over the layers in order; while the caller works on layer i,
    /// layer i+1 is prefetched (if `prefetch`).
    pub fn layers(&self, prefetch: bool) -> LayerIter<'_, T> {
        LayerIter {
            model: self,
            next: 0,
            prefetch,
        }
    }
}

/// See [`LazyModel::layers`].
pub struct LayerIter<'m, T> {
    model: &'m LazyModel<T>,
    next: usize,
    prefetch: bool,
}

impl<T: Element> Iterator for LayerIter<'_, T> {
    type Item = Result<LazyLayer<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        if i >= self.model.layer_count() {
            return None;
        }
        self.next += 1;
        let layer = self.model.layer(i);
        if self.prefetch && i + 1 < self.model.layer_count() {
            self.model.prefetch_layer(i + 1);
        }
        Some(layer)
    }
}
