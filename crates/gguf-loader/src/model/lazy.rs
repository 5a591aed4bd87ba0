//! Lazy loading: tensors decoded on first access and dropped again, layers
//! prefetched (kernel read-ahead plus a background decode of the next layer)
//! while the caller works on the current one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rayon::prelude::*;

use super::load::{
    decode_tensor_to, output_reusing, populated, thread_pool, view_of, Control, GpuStaging,
    LoadOptions,
};
use super::{layer_groups, layer_of, ModelConfig};
use crate::alloc::{Bin, Buffer};
use crate::decode::Stores;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::loader::{LoadMode, MmapGGUFLoader};
use crate::tensor::{Device, Tensor};

/// Whether [`LazyModel::layers`] decodes the next layer ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefetch {
    /// While the caller works on one layer, the next is read ahead and
    /// decoded on the model's prefetch pool.
    #[default]
    NextLayer,
    /// Each layer is decoded when it is asked for.
    Off,
}

/// The tensors of one layer, decoded.
pub struct LazyLayer<T> {
    /// The `i` of `blk.i`.
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

/// A layer being decoded ahead, as a job of the model's prefetch pool.
struct Pending<T> {
    /// The `i` of `blk.i`.
    index: usize,
    /// Set to stop the decode before its next tensor.
    stop: Arc<AtomicBool>,
    /// The job's result, and the signal that it is there.
    done: Arc<Done<T>>,
}

/// What a prefetch job decoded (or its panic), with the thread waiting for
/// it (to wake it then rather than have it poll).
struct Done<T> {
    finished: AtomicBool,
    result: Mutex<Option<std::thread::Result<Result<LazyLayer<T>>>>>,
    waiter: Mutex<Option<std::thread::Thread>>,
}

impl<T> Done<T> {
    fn new() -> Self {
        Done {
            finished: AtomicBool::new(false),
            result: Mutex::new(None),
            waiter: Mutex::new(None),
        }
    }

    /// Stores the job's result, marks it done and wakes the waiter, if one
    /// waits. The waiter registers itself (under `waiter`'s lock) before it
    /// looks at `finished`: either it sees `true` here, or this finds it.
    fn finish(&self, result: std::thread::Result<Result<LazyLayer<T>>>) {
        *lock(&self.result) = Some(result);
        self.finished.store(true, Ordering::Release);
        if let Some(t) = lock(&self.waiter).take() {
            t.unpark();
        }
    }
}

impl<T> Pending<T> {
    /// Stops the decode (after the tensor it is on) and waits for its job,
    /// so that nothing of it outlives the model or touches the file
    /// afterwards.
    fn cancel(self) {
        self.stop.store(true, Ordering::Relaxed);
        // The result, or a panic, is dropped: nobody asked for this layer.
        let _ = self.join();
    }

    /// Waits for the prefetch job and takes what it decoded. That job runs
    /// on the model's prefetch pool, never the waiter's (see
    /// [`LazyModel::prefetch_layer`]); where the waiting thread is one of
    /// a pool's threads (a layer loop run inside `rayon::join`, `scope` or
    /// `par_iter`), it runs its pool's waiting jobs meanwhile, as rayon's
    /// own waits do, rather than leave the pool a thread short. With no job
    /// to run, it sleeps until the job says it is done, looking for new
    /// jobs every millisecond.
    fn join(self) -> std::thread::Result<Result<LazyLayer<T>>> {
        let done = self.done;
        *lock(&done.waiter) = Some(std::thread::current());
        let on_pool = rayon::current_thread_index().is_some();
        while !done.finished.load(Ordering::Acquire) {
            if !on_pool {
                std::thread::park();
            } else if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::thread::park_timeout(std::time::Duration::from_millis(1));
            }
        }
        lock(&done.waiter).take();
        let result = lock(&done.result).take();
        result.unwrap_or_else(|| Ok(Err(Error::ThreadPool("prefetch left no result".into()))))
    }
}

/// What decodes a lazy model's tensors: the loader and the options, shared
/// with the prefetch job.
#[derive(Clone)]
struct Decoder {
    loader: Arc<MmapGGUFLoader>,
    /// The model's own threads ([`LoadOptions::threads`]), else rayon's
    /// global pool.
    pool: Option<Arc<rayon::ThreadPool>>,
    stores: Stores,
    /// Mappings of dropped outputs, for the next ones of their size.
    bin: Arc<Bin>,
    /// Where the tensors go, and a GPU's staging settings.
    device: Device,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    gpu_staging: GpuStaging,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    gpu_ring_bytes: usize,
    /// No views of the file ([`LoadOptions::own_memory`]).
    own_memory: bool,
}

impl Decoder {
    /// Uploads and decodes `names` on the GPU in one pipeline run.
    #[cfg(feature = "cuda")]
    fn on_gpu<T: Element>(&self, ordinal: usize, names: &[String]) -> Result<Vec<Tensor<T>>> {
        let located = names
            .iter()
            .map(|n| self.loader.locate(n))
            .collect::<Result<Vec<_>>>()?;
        let bytes = located.iter().map(|t| t.info.n_bytes).sum();
        let ctl = Control::new(located.len(), bytes, None);
        let opts = LoadOptions {
            threads: self.pool.as_ref().map(|p| p.current_num_threads()),
            progress: None,
            stores: self.stores,
            gpu_staging: self.gpu_staging,
            gpu_ring_bytes: self.gpu_ring_bytes,
            own_memory: self.own_memory,
        };
        let tensors =
            self.on_pool(|| self.loader.load_on_gpu::<T>(ordinal, &located, &ctl, opts))?;
        Ok(tensors.into_iter().map(|(_, t)| t).collect())
    }

    fn tensor<T: Element>(&self, name: &str) -> Result<Tensor<T>> {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(ordinal) = self.device {
            let mut one = self.on_gpu::<T>(ordinal, &[name.to_string()])?;
            return one
                .pop()
                .ok_or_else(|| Error::TensorNotFound(name.to_string()));
        }
        let t = self.loader.locate(name)?;
        let ctl = Control::new(1, t.info.n_bytes, None);
        if let Some(view) = view_of::<T>(t, self.own_memory) {
            return self.on_pool(|| populated(t, view, &ctl));
        }
        let (out, memory) = output_reusing::<T>(t, &self.bin)?;
        self.on_pool(|| decode_tensor_to(t, out, memory, &ctl, self.stores))
    }

    /// `f` on the model's own pool where it has one, else here.
    fn on_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Layer `i`: the tensors `names`, in order. `stop`, once set, ends
    /// the decode with [`Error::Cancelled`] before the next tensor.
    fn layer<T: Element>(
        &self,
        i: usize,
        names: &[String],
        stop: &AtomicBool,
    ) -> Result<LazyLayer<T>> {
        let stopped = || {
            if stop.load(Ordering::Relaxed) {
                Err(Error::Cancelled)
            } else {
                Ok(())
            }
        };
        let suffix = |n: &str| layer_of(n).map_or(n, |(_, s)| s).to_string();
        #[cfg(feature = "cuda")]
        if let Device::Cuda(ordinal) = self.device {
            stopped()?;
            let tensors = self.on_gpu::<T>(ordinal, names)?;
            let tensors = names
                .iter()
                .zip(tensors)
                .map(|(n, t)| (suffix(n), Arc::new(t)))
                .collect();
            return Ok(LazyLayer { index: i, tensors });
        }
        // Every output first, in order: taken from the bin now, while it
        // holds the layer the caller dropped last, rather than while the
        // caller may drop another into it, full. A view of the file needs
        // none (`None`): its pages are read in instead.
        let outs = names
            .iter()
            .map(|n| {
                let t = self.loader.locate(n)?;
                if let Some(view) = view_of::<T>(t, self.own_memory) {
                    return Ok((n, t, view, None));
                }
                let (out, memory) = output_reusing::<T>(t, &self.bin)?;
                Ok((n, t, out, Some(memory)))
            })
            .collect::<Result<Vec<_>>>()?;
        // Then the tensors at once, each a task of its own (most of a
        // layer's are too small to be split by the decode itself, so one
        // at a time left all threads but one idle); the first error in
        // file order is the one returned.
        let tensors = self
            .on_pool(|| {
                outs.into_par_iter()
                    .with_max_len(1)
                    .map(|(n, t, out, memory)| {
                        stopped()?;
                        let ctl = Control::new(1, t.info.n_bytes, None);
                        let t = match memory {
                            Some(memory) => decode_tensor_to(t, out, memory, &ctl, self.stores)?,
                            None => populated(t, out, &ctl)?,
                        };
                        Ok((suffix(n), Arc::new(t)))
                    })
                    .collect::<Vec<Result<_>>>()
            })
            .into_iter()
            .collect::<Result<_>>()?;
        Ok(LazyLayer { index: i, tensors })
    }
}

/// A model whose tensors are decoded when asked for.
///
/// Memory stays bounded by what the caller holds, the tensors it asked for
/// by name (until [`LazyModel::evict`]), at most one prefetched layer, and
/// the memory of dropped outputs kept for the next ones of the same size,
/// up to the size of the largest layer: a layer the caller drops is where
/// the next one is decoded (written over, where fresh memory would be
/// faulted in and zeroed page by page, which took most of a layer's
/// decode). Outputs under 64 KiB live on the heap and are not kept.
/// Dropping the model stops and waits for a prefetch still running: once it
/// is gone, nothing of it reads the file (which may then be rewritten, even
/// while mapped).
pub struct LazyModel<T> {
    decoder: Decoder,
    /// The hyper-parameters read from the metadata.
    pub config: ModelConfig,
    /// Each distinct layer index, ascending, with its tensor names in file order.
    layers: Vec<(usize, Vec<String>)>,
    cache: Mutex<HashMap<String, Arc<Tensor<T>>>>,
    pending: Mutex<Option<Pending<T>>>,
    /// The pool the prefetch decodes on (see [`LazyModel::prefetch_layer`]),
    /// built at the first prefetch; `None` where it could not be.
    prefetch_pool: OnceLock<Option<PrefetchPool>>,
}

/// The prefetch's pool and its threads, which a dropped model joins: no
/// thread of a model outlives it (a process that exits right after
/// dropping one has no thread of it still running, as a fuzz run's exit
/// found one).
struct PrefetchPool {
    pool: Arc<rayon::ThreadPool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl PrefetchPool {
    fn new(n: usize) -> Option<PrefetchPool> {
        let mut threads = Vec::with_capacity(n);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .spawn_handler(|thread| {
                let name = format!("prefetch-{}", thread.index());
                threads.push(
                    std::thread::Builder::new()
                        .name(name)
                        .spawn(|| thread.run())?,
                );
                Ok(())
            })
            .build()
            .ok()?;
        Some(PrefetchPool {
            pool: Arc::new(pool),
            threads,
        })
    }

    /// Ends the pool and joins its threads; not where the pool is still
    /// shared, nor from one of its own threads.
    fn end(self) {
        if self.pool.current_thread_index().is_some() {
            return;
        }
        let Some(pool) = Arc::into_inner(self.pool) else {
            return;
        };
        drop(pool);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    // A panic while holding the lock cannot leave these maps inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Element> LazyModel<T> {
    /// Opens `path` (mapped, like [`MmapGGUFLoader::new`], whose errors it
    /// returns) for lazy decoding with the default options.
    pub fn open(path: impl AsRef<Path>) -> Result<LazyModel<T>> {
        Self::open_with(path, LoadMode::Mmap, LoadOptions::default())
    }

    /// Opens `path` in `mode` for lazy decoding with `opts`: its threads
    /// (a pool of the model's own, built now) and stores apply to every
    /// tensor and layer decoded; its progress callback is not used. Errs as
    /// [`MmapGGUFLoader::open`], or with [`Error::Threads`] or
    /// [`Error::ThreadPool`].
    pub fn open_with(
        path: impl AsRef<Path>,
        mode: LoadMode,
        opts: LoadOptions<'_>,
    ) -> Result<LazyModel<T>> {
        Self::with_options(Arc::new(MmapGGUFLoader::open(path, mode)?), opts)
    }

    /// A lazy model over an opened loader (in either [`LoadMode`]) with the
    /// default options.
    pub fn new(loader: Arc<MmapGGUFLoader>) -> LazyModel<T> {
        Self::build(loader, None, LoadOptions::default())
    }

    /// The same lazy model decoding onto `device` from now on (tensors
    /// already cached stay where they are): with [`Device::Cuda`], each
    /// tensor or layer asked for is uploaded and decoded on the GPU, and
    /// the next layer is prefetched by a job of its own through a
    /// staging ring of its own, on streams of its own, while the caller
    /// works. The GPU is set up now: errs with
    /// [`Error::UnsupportedDevice`] without the `cuda` feature, and
    /// [`Error::CudaUnavailable`] or [`Error::Cuda`] as a load would.
    pub fn on_device(mut self, device: Device) -> Result<LazyModel<T>> {
        self.set_device(device)?;
        Ok(self)
    }

    /// [`Self::on_device`] in place: on an error the model is left as it
    /// was, decoding where it did.
    pub fn set_device(&mut self, device: Device) -> Result<()> {
        super::load::check_device(device)?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(ordinal) = device {
            crate::cuda::gpu(ordinal)?;
        }
        self.decoder.device = device;
        Ok(())
    }

    /// Where this model decodes to.
    pub fn device(&self) -> Device {
        self.decoder.device
    }

    /// A lazy model over an opened loader with `opts`, as
    /// [`Self::open_with`]; errs with [`Error::Threads`] for a thread count
    /// out of bounds and [`Error::ThreadPool`] when its pool cannot be built.
    pub fn with_options(
        loader: Arc<MmapGGUFLoader>,
        opts: LoadOptions<'_>,
    ) -> Result<LazyModel<T>> {
        let pool = opts.threads.map(thread_pool).transpose()?.map(Arc::new);
        Ok(Self::build(loader, pool, opts))
    }

    fn build(
        loader: Arc<MmapGGUFLoader>,
        pool: Option<Arc<rayon::ThreadPool>>,
        opts: LoadOptions<'_>,
    ) -> LazyModel<T> {
        let names = loader.tensor_names();
        let layers: Vec<(usize, Vec<String>)> = layer_groups(names.iter().copied())
            .into_iter()
            .map(|(i, pos)| (i, pos.into_iter().map(|p| names[p].to_string()).collect()))
            .collect();
        // The bin keeps up to the largest layer's outputs of pages of
        // their own: the layer a caller just dropped, for the next one.
        let layer_bytes = |names: &[String]| -> usize {
            names
                .iter()
                .filter_map(|n| loader.tensor_info(n))
                .filter_map(|t| usize::try_from(t.n_elements).ok())
                .filter(|&n| Buffer::<T>::own_pages(n))
                .fold(0usize, |a, n| {
                    a.saturating_add(n.saturating_mul(T::KIND.size()))
                })
        };
        let cap = layers
            .iter()
            .map(|(_, n)| layer_bytes(n))
            .max()
            .unwrap_or(0);
        LazyModel {
            config: ModelConfig::from_metadata(loader.metadata()),
            layers,
            decoder: Decoder {
                loader,
                pool,
                stores: opts.stores,
                bin: Arc::new(Bin::new(cap)),
                device: Device::Cpu,
                gpu_staging: opts.gpu_staging,
                gpu_ring_bytes: opts.gpu_ring_bytes,
                own_memory: opts.own_memory,
            },
            cache: Mutex::new(HashMap::new()),
            pending: Mutex::new(None),
            prefetch_pool: OnceLock::new(),
        }
    }

    /// The loader the tensors come from.
    pub fn loader(&self) -> &MmapGGUFLoader {
        &self.decoder.loader
    }

    /// Number of layers: the distinct `blk.i` indices that occur.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The layer indices (the `i` of `blk.i`), ascending.
    pub fn layer_indices(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.layers.iter().map(|(i, _)| *i)
    }

    /// The tensors outside any layer (`token_embd.weight`,
    /// `output_norm.weight`, `output.weight`…), in file order: what
    /// [`Model::globals`](crate::Model::globals) holds, by name.
    pub fn global_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.decoder
            .loader
            .tensors()
            .map(|t| t.name)
            .filter(|n| layer_of(n).is_none())
    }

    fn names_of(&self, i: usize) -> Option<&[String]> {
        self.layers
            .binary_search_by_key(&i, |(j, _)| *j)
            .ok()
            .map(|k| self.layers[k].1.as_slice())
    }

    /// The tensor, decoded on first access and kept until evicted. Errs as
    /// [`MmapGGUFLoader::load_tensor_with`].
    pub fn tensor(&self, name: &str) -> Result<Arc<Tensor<T>>> {
        if let Some(t) = lock(&self.cache).get(name) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.decoder.tensor::<T>(name)?);
        Ok(lock(&self.cache)
            .entry(name.to_string())
            .or_insert(t)
            .clone())
    }

    /// Drops the cached tensor (its memory is freed, or kept for reuse as
    /// the model's doc says, once the caller drops its copies).
    pub fn evict(&self, name: &str) {
        lock(&self.cache).remove(name);
    }

    /// Names of the tensors cached now.
    pub fn cached(&self) -> Vec<String> {
        lock(&self.cache).keys().cloned().collect()
    }

    /// Starts reading layer `i` ahead: kernel read-ahead on its bytes and a
    /// job that decodes it. A later [`LazyModel::layer`]`(i)` takes that
    /// result. Replaces any earlier prefetch.
    ///
    /// The job runs on a pool of the model's own (as many threads as the
    /// model's pool, or the caller's), built at the first prefetch, never
    /// on the pool of whoever waits for it: a thread of that pool waiting
    /// for its share of the decode could take up the job that asks for
    /// the layer (rayon runs other jobs while it waits), which would then
    /// wait for a decode that can only end below it on the same thread,
    /// forever. Where that pool cannot be built, nothing is prefetched.
    pub fn prefetch_layer(&self, i: usize) {
        let Some(names) = self.names_of(i).map(<[String]>::to_vec) else {
            return;
        };
        let pool = self.prefetch_pool.get_or_init(|| {
            let threads = self
                .decoder
                .pool
                .as_ref()
                .map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
            PrefetchPool::new(threads)
        });
        let Some(pool) = pool.as_ref().map(|p| p.pool.clone()) else {
            return;
        };
        for n in &names {
            self.decoder.loader.prefetch(n);
        }
        // One prefetch at a time, whatever the threads calling: the new one
        // is stored only into an empty slot, under the lock held since it
        // was found empty, so that no two callers can each start a job and
        // one overwrite the other's, which would run on detached
        // (reading the file after the model is gone). An earlier prefetch is
        // stopped (dropped with its result) with the lock released: the wait
        // may run other rayon jobs on this thread (`Pending::join`), which
        // may use this model.
        let mut pending = loop {
            let mut slot = lock(&self.pending);
            match slot.take() {
                None => break slot,
                Some(p) => {
                    drop(slot);
                    p.cancel();
                }
            }
        };
        let decoder = Decoder {
            pool: Some(pool.clone()),
            ..self.decoder.clone()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let done = Arc::new(Done::new());
        let told = done.clone();
        pool.spawn(move || {
            // A panic is caught and handed to the waiter (rayon would abort
            // the process on a spawned job's panic); the decoder, and with
            // it the loader, is dropped before the waiter is told.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decoder.layer(i, &names, &flag)
            }));
            drop(decoder);
            told.finish(result);
        });
        *pending = Some(Pending {
            index: i,
            stop,
            done,
        });
    }

    /// Layer `i` (the tensors named `blk.i.*`), decoded now or taken from a
    /// finished or running prefetch; [`Error::LayerNotFound`] when no tensor
    /// has that index. Not cached: it is freed when the caller drops it.
    /// Nor taken from [`Self::tensor`]'s cache: a tensor asked for both
    /// ways is decoded (and held) twice.
    pub fn layer(&self, i: usize) -> Result<LazyLayer<T>> {
        let pending = {
            let mut p = lock(&self.pending);
            match p.take() {
                Some(p) if p.index == i => Some(p),
                other => {
                    *p = other;
                    None
                }
            }
        };
        if let Some(p) = pending {
            return p
                .join()
                .unwrap_or_else(|_| Err(Error::ThreadPool("prefetch panicked".into())));
        }
        let names = self.names_of(i).ok_or(Error::LayerNotFound(i))?;
        self.decoder.layer(i, names, &AtomicBool::new(false))
    }

    /// Iterates over the layers in ascending order; with
    /// [`Prefetch::NextLayer`], the next layer is decoded while the caller
    /// works on the current one.
    pub fn layers(&self, prefetch: Prefetch) -> LayerIter<'_, T> {
        LayerIter {
            model: self,
            next: 0,
            prefetch,
        }
    }
}

impl<T> LazyModel<T> {
    /// Stops a prefetch still running (after its current tensor) and waits
    /// for its job.
    fn cancel_prefetch(&self) {
        let pending = lock(&self.pending).take();
        if let Some(p) = pending {
            p.cancel();
        }
    }
}

impl<T: Element> std::fmt::Debug for LazyModel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyModel")
            .field("architecture", &self.config.architecture)
            .field("layers", &self.layers.len())
            .field("cached", &lock(&self.cache).len())
            .field(
                "prefetching",
                &lock(&self.pending).as_ref().map(|p| p.index),
            )
            .field("dtype", &T::KIND.name())
            .finish()
    }
}

impl<T: Element> std::fmt::Debug for LazyLayer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.tensors.iter().map(|(n, _)| n.as_str());
        super::debug_layer::<T>(f, "LazyLayer", self.index, names)
    }
}

impl<T: Element> std::fmt::Debug for LayerIter<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerIter")
            .field("left", &(self.model.layers.len() - self.next))
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

impl<T> Drop for LazyModel<T> {
    fn drop(&mut self) {
        self.cancel_prefetch();
        if let Some(Some(pool)) = self.prefetch_pool.take() {
            pool.end();
        }
    }
}

/// See [`LazyModel::layers`].
pub struct LayerIter<'m, T> {
    model: &'m LazyModel<T>,
    /// Position in `model.layers`.
    next: usize,
    prefetch: Prefetch,
}

impl<T: Element> Iterator for LayerIter<'_, T> {
    type Item = Result<LazyLayer<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        let layers = &self.model.layers;
        let (i, _) = layers.get(self.next)?;
        self.next += 1;
        let layer = self.model.layer(*i);
        if let (Prefetch::NextLayer, Some((j, _))) = (self.prefetch, layers.get(self.next)) {
            self.model.prefetch_layer(*j);
        }
        Some(layer)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.model.layers.len() - self.next;
        (n, Some(n))
    }
}

impl<T: Element> ExactSizeIterator for LayerIter<'_, T> {}
