//! Decoding tensors into [`Tensor`]s and whole [`Model`]s: tensors in
//! parallel (largest first), large ones split by block ranges, each output
//! allocated once at its final size in memory of its own (or, for a tensor
//! the file holds as the asked float already, a view of the file's
//! mapping, its pages read in), progress reported and cancellable.

use std::cmp::Reverse;
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use half::f16;
use rayon::prelude::*;

use crate::alloc::{AllocError, Bin, Buffer, ModelOutputs};
use crate::decode::{dequantize_into_with, DecodeError, OutputMemory, Stores};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::format::blocks::{big_endian_swaps, swap_to_little_endian};
use crate::format::Endianness;
use crate::loader::{Located, MmapGGUFLoader};
use crate::model::{Model, ModelConfig};
use crate::tensor::{Device, Tensor};

/// Where a load stands; handed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Tensors decoded so far.
    pub tensors_done: usize,
    /// Tensors to decode.
    pub tensors_total: usize,
    /// Bytes of tensor data read (and decoded) so far.
    pub bytes_done: u64,
    /// Bytes of tensor data to read.
    pub bytes_total: u64,
}

/// A progress callback: return `false` to cancel the load (the load then
/// returns [`Error::Cancelled`], even if that was its last report, and the
/// callback is not called again). Called from the decoding threads, one
/// call at a time, with counts that never go back and are never the same
/// twice; it may use rayon (a chunk of the load that its work runs on the
/// same thread is reported when it returns).
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) -> bool + Sync);

/// How a GPU load fills its pinned staging ring from the file (feature
/// `cuda`; the CPU ignores it). The values are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum GpuStaging {
    /// The fastest measured here: positioned reads.
    #[default]
    Auto,
    /// Positioned reads (`pread`) from the file into the pinned buffers:
    /// the kernel copies from its page cache, no page of the mapping is
    /// touched.
    Pread,
    /// Copies out of the memory map (read ahead first) into the pinned
    /// buffers.
    Mapping,
    /// No host copy: the mapping itself is registered with the driver
    /// (read-only where the device supports it) and the device copies from
    /// the page cache. Falls back to `Pread` where registration fails, and
    /// in read mode.
    Register,
}

/// How to load: for a whole model ([`MmapGGUFLoader::load_model_with`]),
/// some tensors ([`MmapGGUFLoader::load_tensors_with`]), one tensor
/// ([`MmapGGUFLoader::load_tensor_with`]), a lazy model
/// ([`LazyModel::open_with`](crate::LazyModel::open_with)) and the data
/// check ([`check_model_report_with`](crate::check_model_report_with)).
/// `Copy`: pass it by value.
#[derive(Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// Decoding threads; `None` uses rayon's global pool (all cores).
    /// From 1 to [`max_threads`]; a load asked for more (or none) fails
    /// with [`Error::Threads`] before it starts one.
    pub threads: Option<usize>,
    /// Called as the load goes; returning `false` cancels it. Not used by a
    /// lazy model, whose loads are each one tensor or layer.
    pub progress: Option<ProgressFn<'a>>,
    /// How outputs are written, settled by [`Stores::for_output`]: a load
    /// writes fresh memory, so `Auto` means ordinary stores.
    pub stores: Stores,
    /// GPU loads: how the staging ring is filled.
    pub gpu_staging: GpuStaging,
    /// GPU loads: the staging ring's size in bytes, split into four slots
    /// of at least 1 MiB (0: the default, 64 MiB). The ring is pinned
    /// host memory plus as much device memory, allocated once per size and
    /// reused by later loads.
    pub gpu_ring_bytes: usize,
    /// Every CPU tensor in memory of its own. By default (`false`) a tensor
    /// the file already holds as `T`'s values in this machine's byte order
    /// (an f16 tensor of an F16 file, bf16 of BF16, f32 of F32) is not
    /// copied: it is a view of the file's read-only mapping, as safetensors
    /// and llama.cpp load such weights, with no memory of the process's
    /// own ([`Tensor::is_mapped`]). Its pages are read in and mapped before
    /// the load returns it (`MADV_POPULATE_READ`, as llama.cpp's
    /// `MAP_POPULATE`), so that using it waits for no disk.
    ///
    /// A view keeps the mapping alive after the loader is gone, and shares
    /// the hazard of every mapping: a file truncated or rewritten while
    /// mapped faults (SIGBUS) or shows the new bytes. Set this where that
    /// must not happen (or load in [`LoadMode::Read`](crate::LoadMode::Read),
    /// which never makes views). GPU loads ignore it.
    ///
    /// A view lies in the page cache's 4 KiB pages, a copy in transparent
    /// huge pages on Linux: a caller that reads every weight over and over
    /// (a forward pass) may run faster on copies where TLB misses are dear
    /// (see docs/BENCHMARKS.md, "F16 weights as views").
    pub own_memory: bool,
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("threads", &self.threads)
            .field("progress", &self.progress.map(|_| "callback"))
            .field("stores", &self.stores)
            .field("gpu_staging", &self.gpu_staging)
            .field("gpu_ring_bytes", &self.gpu_ring_bytes)
            .field("own_memory", &self.own_memory)
            .finish()
    }
}

impl<'a> LoadOptions<'a> {
    /// Decodes on a pool of `n` threads of its own.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Reports progress to `f`, which may cancel the load.
    pub fn progress(mut self, f: ProgressFn<'a>) -> Self {
        self.progress = Some(f);
        self
    }

    /// Writes outputs with `stores`.
    pub fn stores(mut self, stores: Stores) -> Self {
        self.stores = stores;
        self
    }

    /// Fills a GPU load's staging ring with `staging`.
    pub fn gpu_staging(mut self, staging: GpuStaging) -> Self {
        self.gpu_staging = staging;
        self
    }

    /// Stages a GPU load through a ring of `bytes` (0: the default).
    pub fn gpu_ring_bytes(mut self, bytes: usize) -> Self {
        self.gpu_ring_bytes = bytes;
        self
    }

    /// Gives every CPU tensor memory of its own (`true`) instead of views
    /// of the file where it holds the values already: see
    /// [`Self::own_memory`](LoadOptions#structfield.own_memory).
    pub fn own_memory(mut self, own: bool) -> Self {
        self.own_memory = own;
        self
    }
}

/// How many decoding threads a load may ask for per available core.
pub const THREADS_PER_CORE: usize = 4;

/// The most decoding threads a load accepts: [`THREADS_PER_CORE`] per core
/// this process may run on. (A count from a caller's input, such as a
/// command line, could otherwise ask for a billion threads.)
pub fn max_threads() -> usize {
    max_threads_on(cores())
}

/// The cores this process may run on (1 where that cannot be told).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`max_threads`] on `cores` cores.
fn max_threads_on(cores: usize) -> usize {
    cores.saturating_mul(THREADS_PER_CORE)
}

/// How many threads a process's decoding pool starts, and what
/// `RAYON_NUM_THREADS` said: see [`pool_threads`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolThreads {
    /// The threads to start: `RAYON_NUM_THREADS` where it holds a positive
    /// number, else one per available core; at most [`max_threads`].
    pub threads: usize,
    /// The count `RAYON_NUM_THREADS` asked for where it was more than
    /// [`max_threads`], and so cut.
    pub cut_from: Option<usize>,
    /// `RAYON_NUM_THREADS` where it is set but is not a count (`abc`, `-1`,
    /// `2.5`, not UTF-8): ignored, as rayon ignores it.
    pub unreadable: Option<String>,
}

impl PoolThreads {
    /// The warning a program shows its user where `RAYON_NUM_THREADS` was
    /// not taken as it stands (`None` where it was, or is unset): the
    /// value escaped for a terminal.
    pub fn warning(&self) -> Option<String> {
        let n = self.threads;
        if let Some(v) = &self.unreadable {
            return Some(format!(
                "RAYON_NUM_THREADS={} is not a thread count; starting {n} threads (one per \
                 available core)",
                crate::Escaped(v)
            ));
        }
        self.cut_from.map(|asked| {
            format!(
                "RAYON_NUM_THREADS={asked} is more than {n} ({THREADS_PER_CORE} per available \
                 core); starting {n} threads"
            )
        })
    }
}

/// How many threads a process's decoding pool starts:
/// `RAYON_NUM_THREADS` where it holds a positive number (as rayon reads it,
/// but with spaces around it trimmed: `0`, empty or unreadable mean one per
/// available core), at most
/// [`max_threads`]; with what was cut or ignored, for a warning
/// ([`PoolThreads::warning`]).
///
/// rayon's own global pool takes `RAYON_NUM_THREADS` uncut (ten thousand
/// threads take most of a minute to start) and ignores an unreadable value
/// silently: a program that lets it be set by its users builds its pool
/// with this count.
pub fn pool_threads() -> PoolThreads {
    pool_threads_from(std::env::var_os("RAYON_NUM_THREADS").as_deref(), cores())
}

/// [`pool_threads`] with `RAYON_NUM_THREADS` = `env` on `cores` cores.
fn pool_threads_from(env: Option<&std::ffi::OsStr>, cores: usize) -> PoolThreads {
    let max = max_threads_on(cores);
    // rayon's reading: a positive count, else its default (0, empty).
    let parsed = env.map(|v| match v.to_str().map(str::trim) {
        Some("") => Ok(0),
        Some(t) => t.parse::<usize>().map_err(|_| v),
        None => Err(v),
    });
    let (asked, unreadable) = match parsed {
        None => (None, None),
        Some(Ok(n)) => (Some(n).filter(|&n| n > 0), None),
        Some(Err(v)) => (None, Some(v.to_string_lossy().into_owned())),
    };
    let (threads, cut_from) = match asked {
        Some(n) if n > max => (max, Some(n)),
        Some(n) => (n, None),
        None => (cores, None),
    };
    PoolThreads {
        threads,
        cut_from,
        unreadable,
    }
}

/// A thread pool of `n` threads: [`Error::Threads`] unless `n` is from 1
/// to [`max_threads`], [`Error::ThreadPool`] if it cannot be built.
pub(crate) fn thread_pool(n: usize) -> Result<rayon::ThreadPool> {
    let max = max_threads();
    if n == 0 || n > max {
        return Err(Error::Threads { n, max });
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))
}

/// Runs `f` on a pool of `threads` threads built for it, or on rayon's
/// global pool when `threads` is `None`.
pub(crate) fn in_pool<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    match threads {
        None => Ok(f()),
        Some(n) => Ok(thread_pool(n)?.install(f)),
    }
}

/// Elements decoded between two cancellation checks / progress reports.
const CHUNK_ELEMENTS: usize = 1 << 20;

/// Bytes of a view populated between two cancellation checks / progress
/// reports.
const POPULATE_CHUNK: u64 = 4 << 20;

/// Shared state of one load.
pub(crate) struct Control<'a> {
    cancelled: AtomicBool,
    tensors_done: AtomicUsize,
    bytes_done: AtomicU64,
    tensors_total: usize,
    bytes_total: u64,
    callback: Option<ProgressFn<'a>>,
    /// Held through each callback, with the counts it was last given: one
    /// call at a time, each reading the counts after the one before did
    /// (so they never go back), none repeating the last. Never waited for
    /// (see [`Control::report`]).
    reporting: Mutex<Option<Progress>>,
}

impl<'a> Control<'a> {
    pub(crate) fn new(
        tensors_total: usize,
        bytes_total: u64,
        callback: Option<ProgressFn<'a>>,
    ) -> Self {
        Control {
            cancelled: AtomicBool::new(false),
            tensors_done: AtomicUsize::new(0),
            bytes_done: AtomicU64::new(0),
            tensors_total,
            bytes_total,
            callback,
            reporting: Mutex::new(None),
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    pub(crate) fn report(&self, bytes: u64, tensors: usize) {
        self.bytes_done.fetch_add(bytes, Ordering::SeqCst);
        self.tensors_done.fetch_add(tensors, Ordering::SeqCst);
        let Some(cb) = self.callback else {
            return;
        };
        // The counts added above, seen by a holder of the lock that lets it
        // go after this thread found it held (the fence there pairs with
        // this one).
        fence(Ordering::SeqCst);
        loop {
            // Never wait for the lock. Its holder may be in the callback,
            // waiting in rayon for work this very thread has taken on (a
            // callback that uses rayon lets the pool run the load's chunks
            // meanwhile, and one of them reports): waiting here would be
            // waiting for itself. The holder reports again when the counts
            // moved during its call, and after letting the lock go, so the
            // last counts are always reported. (A report from inside the
            // callback, on its own thread, finds the lock held too.)
            let mut last = match self.reporting.try_lock() {
                Ok(guard) => guard,
                // A callback that panicked leaves nothing inconsistent.
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            // Read under the lock: at least what the report before read.
            let mut p = self.progress();
            while !self.cancelled.load(Ordering::Relaxed) && *last != Some(p) {
                *last = Some(p);
                if !cb(&p) {
                    self.cancelled.store(true, Ordering::Relaxed);
                }
                p = self.progress();
            }
            let reported = *last;
            drop(last);
            fence(Ordering::SeqCst);
            // Counts that moved since, from a report that found the lock
            // held, are this thread's to report (unless another took the
            // lock meanwhile).
            if self.cancelled.load(Ordering::Relaxed) || reported == Some(self.progress()) {
                return;
            }
        }
    }

    /// The counts now.
    fn progress(&self) -> Progress {
        Progress {
            tensors_done: self.tensors_done.load(Ordering::SeqCst),
            tensors_total: self.tensors_total,
            bytes_done: self.bytes_done.load(Ordering::SeqCst),
            bytes_total: self.bytes_total,
        }
    }
}

/// [`Error::OutOfMemory`] for `tensor`.
fn out_of_memory(tensor: &str) -> impl FnOnce(AllocError) -> Error + '_ {
    move |e| Error::OutOfMemory {
        tensor: tensor.to_string(),
        bytes: e.bytes,
    }
}

/// A new zeroed output for tensor `t`, untouched ([`Error::OutOfMemory`]
/// when the memory cannot be had).
fn output_for<T: Element>(t: Located<'_>) -> Result<Buffer<T>> {
    Buffer::zeroed(elements(t)?).map_err(out_of_memory(t.info.name))
}

/// Tensor `t`'s element count as a `usize` ([`Error::TooLarge`] where it
/// is more than one counts).
fn elements(t: Located<'_>) -> Result<usize> {
    usize::try_from(t.info.n_elements).map_err(|_| Error::TooLarge(t.info.name.to_string()))
}

/// The tensor of `t`'s dimensions over `out` (its element count).
fn tensor_of<T: Element>(t: Located<'_>, out: Buffer<T>) -> Result<Tensor<T>> {
    Tensor::from_buffer(t.info.ne(), out).ok_or_else(|| Error::TooLarge(t.info.name.to_string()))
}

/// Tensor `t`'s values as a view of its file's mapping, where the file
/// holds them as `T`'s in this machine's byte order; `None` where they
/// must be decoded or copied (another type, the other byte order, read
/// mode, an offset not aligned for `T`), or where `own_memory` asks for
/// memory of its own.
pub(crate) fn view_of<T: Element>(t: Located<'_>, own_memory: bool) -> Option<Buffer<T>> {
    let native = if cfg!(target_endian = "little") {
        Endianness::Little
    } else {
        Endianness::Big
    };
    if own_memory || t.info.ty != T::KIND.ggml_type() || t.endianness() != native {
        return None;
    }
    let (map, range) = t.mapping()?;
    Buffer::view(map, range)
}

/// Reads in and maps the pages of tensor `t`, a view of its file, in
/// chunks spread over rayon's threads, checking for cancellation and
/// reporting progress per chunk, as a decode does.
fn populate(t: Located<'_>, ctl: &Control<'_>) -> Result<()> {
    let n = t.info.n_bytes;
    (0..n.div_ceil(POPULATE_CHUNK))
        .into_par_iter()
        .try_for_each(|k| {
            ctl.check()?;
            let start = k * POPULATE_CHUNK;
            let end = n.min(start + POPULATE_CHUNK);
            t.populate(start..end);
            ctl.report(end - start, 0);
            Ok::<(), Error>(())
        })?;
    ctl.report(0, 1);
    Ok(())
}

/// Tensor `t` over `view`, its view of the file ([`view_of`]), once its
/// pages are read in ([`populate`]).
pub(crate) fn populated<T: Element>(
    t: Located<'_>,
    view: Buffer<T>,
    ctl: &Control<'_>,
) -> Result<Tensor<T>> {
    populate(t, ctl)?;
    tensor_of(t, view)
}

/// Decodes tensor `t` into a new tensor in memory of its own, its `stores`
/// settled for fresh memory.
pub(crate) fn decode_tensor<T: Element>(
    t: Located<'_>,
    ctl: &Control<'_>,
    stores: Stores,
) -> Result<Tensor<T>> {
    let out = output_for::<T>(t)?;
    decode_tensor_to(t, out, OutputMemory::Fresh, ctl, stores)
}

/// An output for tensor `t` in a mapping of `bin`'s where one of the size
/// is kept there (written before: [`OutputMemory::Reused`]), else a new
/// one; a mapping goes back to `bin` when its tensor is dropped.
pub(crate) fn output_reusing<T: Element>(
    t: Located<'_>,
    bin: &Arc<Bin>,
) -> Result<(Buffer<T>, OutputMemory)> {
    let (out, reused) = Buffer::reused(elements(t)?, bin).map_err(out_of_memory(t.info.name))?;
    let memory = if reused {
        OutputMemory::Reused
    } else {
        OutputMemory::Fresh
    };
    Ok((out, memory))
}

/// Decodes `t` into `out` (its element count, every value written; its
/// stores settled for `memory`) and makes it the tensor.
pub(crate) fn decode_tensor_to<T: Element>(
    t: Located<'_>,
    mut out: Buffer<T>,
    memory: OutputMemory,
    ctl: &Control<'_>,
    stores: Stores,
) -> Result<Tensor<T>> {
    let dst = out.as_mut_slice();
    let stores = stores.for_output(std::mem::size_of_val(dst), memory);
    decode_into(t, dst, ctl, stores)?;
    tensor_of(t, out)
}

/// Decodes tensor `t` into `dst` (exactly its element count) in chunks
/// spread over rayon's threads, checking for cancellation and reporting
/// progress per chunk. Each chunk's bytes come from the mapping, or in read
/// mode from one positioned read, and a big-endian file's values (or its
/// blocks' f16 scales) are swapped chunk by chunk: no copy of the whole
/// tensor is made.
fn decode_into<T: Element>(
    t: Located<'_>,
    dst: &mut [T],
    ctl: &Control<'_>,
    stores: Stores,
) -> Result<()> {
    let (name, ty) = (t.info.name, t.info.ty);
    let decode_err = |error| Error::Decode {
        tensor: name.to_string(),
        error,
    };
    if dst.len() as u64 != t.info.n_elements {
        return Err(decode_err(DecodeError::OutputLength {
            ty,
            want: usize::try_from(t.info.n_elements).unwrap_or(usize::MAX),
            got: dst.len(),
        }));
    }
    let big = t.endianness() == Endianness::Big;
    if big && !ty.has_big_endian_order() {
        return Err(Error::BigEndianData {
            tensor: name.to_string(),
            ty,
        });
    }
    // Whether each chunk is copied to swap its bytes (not where big-endian
    // data is its own little-endian form).
    let swap = big && big_endian_swaps(ty);
    let block = ty.block_size() as usize;
    let type_size = ty.type_size();
    let blocks = (CHUNK_ELEMENTS / block).max(1);
    dst.par_chunks_mut(blocks * block)
        .enumerate()
        .try_for_each(|(k, d)| {
            ctl.check()?;
            // Whole blocks: the element count is a multiple of the block size.
            let start = (k * blocks) as u64 * type_size;
            let len = (d.len() / block) as u64 * type_size;
            let mut bytes = t.read(start..start + len)?;
            if swap {
                swap_to_little_endian(ty, bytes.to_mut());
            }
            dequantize_into_with(ty, &bytes, d, stores).map_err(decode_err)?;
            ctl.report(len, 0);
            Ok::<(), Error>(())
        })?;
    ctl.report(0, 1);
    Ok(())
}

impl MmapGGUFLoader {
    /// Decodes one tensor to f16 on `device` (the design's entry point);
    /// errs as [`Self::load_tensor_with`]. The same as
    /// [`load_tensor::<f16>`](Self::load_tensor).
    pub fn load_tensor_f16(&self, name: &str, device: Device) -> Result<Tensor<f16>> {
        self.load_tensor::<f16>(name, device)
    }

    /// Decodes one tensor to `T` (f32, f16 or bf16) on `device`, using every
    /// rayon thread for large tensors; errs as [`Self::load_tensor_with`].
    /// With `T = f16` it is [`Self::load_tensor_f16`].
    pub fn load_tensor<T: Element>(&self, name: &str, device: Device) -> Result<Tensor<T>> {
        self.load_tensor_with(name, device, LoadOptions::default())
    }

    /// Decodes one tensor to `T` on `device` with options (threads, stores,
    /// progress and cancel). Errs with [`Error::TensorNotFound`],
    /// [`Error::UnsupportedDevice`], [`Error::OutOfMemory`] when its output
    /// cannot be allocated, [`Error::BigEndianData`] for quantized data in a
    /// big-endian file of a type with no big-endian byte order
    /// ([`has_big_endian_order`](crate::GgmlType::has_big_endian_order)),
    /// [`Error::TensorIo`] when a read fails (read mode),
    /// [`Error::TooLarge`] for a tensor this platform cannot address,
    /// [`Error::Threads`] for a thread count out of range,
    /// [`Error::Cancelled`] and [`Error::ThreadPool`].
    pub fn load_tensor_with<T: Element>(
        &self,
        name: &str,
        device: Device,
        opts: LoadOptions<'_>,
    ) -> Result<Tensor<T>> {
        check_device(device)?;
        let t = self.locate(name)?;
        let ctl = Control::new(1, t.info.n_bytes, opts.progress);
        #[cfg(feature = "cuda")]
        if let Device::Cuda(ordinal) = device {
            let mut tensors = self.load_on_gpu::<T>(ordinal, &[t], &ctl, opts)?;
            ctl.check()?;
            return tensors
                .pop()
                .map(|(_, t)| t)
                .ok_or_else(|| Error::TensorNotFound(name.to_string()));
        }
        let tensor = in_pool(opts.threads, || match view_of::<T>(t, opts.own_memory) {
            Some(view) => populated(t, view, &ctl),
            None => decode_tensor(t, &ctl, opts.stores),
        })??;
        // A cancel in the last report still cancels.
        ctl.check()?;
        Ok(tensor)
    }

    /// Whether a CPU load of tensor `name` as `T` gives a view of the
    /// file's mapping rather than memory of its own (unless
    /// [`LoadOptions::own_memory`] asks for that): the file holds it as
    /// `T`'s values in this machine's byte order, and is mapped. `false`
    /// for an unknown name. For sizing: a view takes no memory of the
    /// process's own.
    pub fn loads_as_view<T: Element>(&self, name: &str) -> bool {
        self.locate(name)
            .is_ok_and(|t| view_of::<T>(t, false).is_some())
    }

    /// Decodes one tensor into the caller's buffer of exactly its element
    /// count (a reused buffer: see [`Stores::for_output`]). Errs as
    /// [`Self::load_tensor_with`], and with [`Error::Decode`] when `dst` has
    /// another length.
    pub fn load_tensor_into<T: Element>(&self, name: &str, dst: &mut [T]) -> Result<()> {
        let t = self.locate(name)?;
        let ctl = Control::new(1, t.info.n_bytes, None);
        let stores = Stores::Auto.for_output(std::mem::size_of_val(dst), OutputMemory::Reused);
        decode_into(t, dst, &ctl, stores)
    }

    /// Decodes the named tensors into the caller's buffers (each exactly its
    /// tensor's element count), in parallel, largest first, with the
    /// options' threads, progress and cancel: a whole model into one buffer
    /// the caller owns and splits (the Python package's `load`). `memory`
    /// says whether the buffers are fresh (untouched since allocation) or
    /// reused, for [`Stores::for_output`]. Errs as [`Self::load_tensor_with`]
    /// does for the first tensor that fails, and with [`Error::Decode`] for a
    /// buffer of another length; on cancel or error the buffers hold what
    /// was decoded so far. CPU only.
    pub fn load_tensors_into<T: Element>(
        &self,
        outs: Vec<(&str, &mut [T])>,
        memory: OutputMemory,
        opts: LoadOptions<'_>,
    ) -> Result<()> {
        let mut work = outs
            .into_iter()
            .map(|(name, dst)| Ok((self.locate(name)?, dst)))
            .collect::<Result<Vec<(Located<'_>, &mut [T])>>>()?;
        let bytes_total = work.iter().map(|(t, _)| t.info.n_bytes).sum();
        let out_bytes = work.iter().map(|(_, d)| std::mem::size_of_val(*d)).sum();
        let ctl = Control::new(work.len(), bytes_total, opts.progress);
        let stores = opts.stores.for_output(out_bytes, memory);
        if work.len() > 1 {
            self.prefetch_all();
        }
        work.sort_by_key(|(t, _)| Reverse(t.info.n_bytes));
        in_pool(opts.threads, || {
            work.into_par_iter().try_for_each(|(t, out)| {
                ctl.check()?;
                decode_into(t, out, &ctl, stores)
            })
        })??;
        ctl.check()
    }

    /// Decodes every tensor to f16 (the design's `load_f16_model`); errs as
    /// [`Self::load_model_with`]. The same as
    /// [`load_model::<f16>`](Self::load_model); [`load_model_f16`] opens a
    /// path and does this in one call.
    pub fn load_f16_model(&self, device: Device) -> Result<Model<f16>> {
        self.load_model::<f16>(device)
    }

    /// Decodes every tensor to `T` on `device`, in parallel; errs as
    /// [`Self::load_model_with`]. With `T = f16` it is [`Self::load_f16_model`].
    pub fn load_model<T: Element>(&self, device: Device) -> Result<Model<T>> {
        self.load_model_with(device, LoadOptions::default())
    }

    /// Decodes every tensor to `T` with options: threads, progress, cancel,
    /// stores. Every output is allocated before anything is decoded, each in
    /// memory of its own (a tensor taken from the model keeps nothing else
    /// alive), but for the tensors the file holds as `T` already: views of
    /// its mapping, unless [`LoadOptions::own_memory`] is set. Errs as
    /// [`Self::load_tensor_with`] does for the first tensor that fails; on
    /// cancellation or error, everything decoded so far is freed.
    pub fn load_model_with<T: Element>(
        &self,
        device: Device,
        opts: LoadOptions<'_>,
    ) -> Result<Model<T>> {
        check_device(device)?;
        // Every byte will be read: start the kernel's read-ahead now (it
        // matters for a cold page cache and costs nothing for a warm one).
        self.prefetch_all();
        let tensors: Vec<Located<'_>> = self.located().collect();
        let tensors = self.load_located::<T>(&tensors, device, opts)?;
        Ok(Model::new(
            ModelConfig::from_metadata(self.metadata()),
            tensors,
        ))
    }

    /// Loads the named tensors as [`Self::load_model_with`] loads them all:
    /// in parallel, largest first, with one progress total, cancel, and
    /// views of the file where it holds them as `T` (unless
    /// [`LoadOptions::own_memory`] is set). Returns `(name, tensor)` in the
    /// order given; a name given twice is loaded twice. Errs with
    /// [`Error::TensorNotFound`] for an unknown name before any work, and
    /// as [`Self::load_tensor_with`] for the first tensor that fails; on
    /// cancellation or error, everything loaded so far is freed.
    pub fn load_tensors_with<T: Element, S: AsRef<str>>(
        &self,
        names: &[S],
        device: Device,
        opts: LoadOptions<'_>,
    ) -> Result<Vec<(String, Tensor<T>)>> {
        check_device(device)?;
        let tensors = names
            .iter()
            .map(|n| self.locate(n.as_ref()))
            .collect::<Result<Vec<Located<'_>>>>()?;
        if tensors.len() > 1 {
            for t in &tensors {
                self.prefetch(t.info.name);
            }
        }
        self.load_located::<T>(&tensors, device, opts)
    }

    /// The work of [`Self::load_model_with`] and [`Self::load_tensors_with`]:
    /// `tensors` as named tensors, in their order.
    fn load_located<T: Element>(
        &self,
        tensors: &[Located<'_>],
        device: Device,
        opts: LoadOptions<'_>,
    ) -> Result<Vec<(String, Tensor<T>)>> {
        let bytes_total = tensors.iter().map(|t| t.info.n_bytes).sum();
        let ctl = Control::new(tensors.len(), bytes_total, opts.progress);
        #[cfg(feature = "cuda")]
        if let Device::Cuda(ordinal) = device {
            let tensors = self.load_on_gpu::<T>(ordinal, tensors, &ctl, opts)?;
            ctl.check()?;
            return Ok(tensors);
        }
        #[cfg(not(feature = "cuda"))]
        let _ = device;
        let run = || -> Result<Vec<(String, Tensor<T>)>> {
            // Untouched pages cost nothing until the decoders write them (in
            // parallel), and a model too large fails here, before any work.
            // Small outputs share one huge-page arena, large ones get pages
            // of their own (see `ModelOutputs`).
            // Views of the file have no output (0 values here).
            let views: Vec<Option<Buffer<T>>> = tensors
                .iter()
                .map(|&t| view_of(t, opts.own_memory))
                .collect();
            let lens = tensors
                .iter()
                .zip(&views)
                .map(|(&t, v)| if v.is_some() { Ok(0) } else { elements(t) })
                .collect::<Result<Vec<usize>>>()?;
            let mut outs = ModelOutputs::<T>::zeroed(&lens)
                .map_err(|(i, e)| out_of_memory(tensors[i].info.name)(e))?;
            let stores = opts.stores.for_output(
                lens.iter().sum::<usize>() * std::mem::size_of::<T>(),
                OutputMemory::Fresh,
            );
            // What each tensor takes: a decode into its output, or the
            // pages of its view read in.
            enum Work<'o, T> {
                Decode(&'o mut [T]),
                Populate,
            }
            let mut work: Vec<(Located<'_>, Work<'_, T>)> = tensors
                .iter()
                .copied()
                .zip(outs.slices_mut())
                .zip(&views)
                .map(|((t, out), v)| match v {
                    Some(_) => (t, Work::Populate),
                    None => (t, Work::Decode(out)),
                })
                .collect();
            // Largest first, so that the big tensors do not end up alone.
            work.sort_by_key(|(t, _)| Reverse(t.info.n_bytes));
            work.into_par_iter().try_for_each(|(t, w)| {
                ctl.check()?;
                match w {
                    Work::Decode(out) => decode_into(t, out, &ctl, stores),
                    Work::Populate => populate(t, &ctl),
                }
            })?;
            tensors
                .iter()
                .zip(outs.into_buffers())
                .zip(views)
                .map(|((&t, out), view)| {
                    let tensor = tensor_of(t, view.unwrap_or(out))?;
                    Ok((t.info.name.to_string(), tensor))
                })
                .collect()
        };
        let tensors = in_pool(opts.threads, run)??;
        ctl.check()?;
        Ok(tensors)
    }
}

impl MmapGGUFLoader {
    /// Uploads and decodes `tensors` on GPU `ordinal` (its threads fill the
    /// staging ring), as named tensors in the order given.
    #[cfg(feature = "cuda")]
    pub(crate) fn load_on_gpu<T: Element>(
        &self,
        ordinal: usize,
        tensors: &[Located<'_>],
        ctl: &Control<'_>,
        opts: LoadOptions<'_>,
    ) -> Result<Vec<(String, Tensor<T>)>> {
        let g = crate::cuda::gpu(ordinal)?;
        let mode = self.mode();
        let slices = in_pool(opts.threads, || {
            crate::cuda::load_tensors::<T>(
                &g,
                tensors,
                mode,
                opts.gpu_staging,
                opts.gpu_ring_bytes,
                ctl,
            )
        })??;
        tensors
            .iter()
            .zip(slices)
            .map(|(t, s)| {
                let tensor = Tensor::from_cuda(t.info.ne(), s, Device::Cuda(ordinal))
                    .ok_or_else(|| Error::TooLarge(t.info.name.to_string()))?;
                Ok((t.info.name.to_string(), tensor))
            })
            .collect()
    }
}

/// `Ok` for a device this build can load onto.
pub(crate) fn check_device(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => Ok(()),
        #[cfg(not(feature = "cuda"))]
        other => Err(Error::UnsupportedDevice(other)),
    }
}

/// Opens `path` and decodes every tensor to f16 on the CPU: the design's
/// one-call `load_model_f16`, the same as
/// `MmapGGUFLoader::new(path)?.load_f16_model(Device::Cpu)`. Errs as [`MmapGGUFLoader::new`] and
/// [`MmapGGUFLoader::load_model_with`] do.
pub fn load_model_f16(path: impl AsRef<Path>) -> Result<Model<f16>> {
    MmapGGUFLoader::new(path)?.load_f16_model(Device::Cpu)
}

#[cfg(test)]
mod pool_tests {
    use super::{pool_threads_from, PoolThreads};
    use std::ffi::OsStr;
    #[cfg(unix)]
    use std::os::unix::ffi::OsStrExt;

    fn at(v: Option<&str>) -> PoolThreads {
        pool_threads_from(v.map(OsStr::new), 2)
    }

    #[test]
    fn rayon_num_threads_as_rayon_reads_it_capped_and_warned() {
        // Unset, empty, blank or 0: one per core, nothing to say.
        for v in [None, Some(""), Some("  "), Some("0")] {
            let p = at(v);
            assert_eq!((p.threads, p.warning()), (2, None), "{v:?}");
        }
        assert_eq!(at(Some(" 3 ")).threads, 3);
        assert_eq!(at(Some("8")).warning(), None);
        let p = at(Some("9"));
        assert_eq!((p.threads, p.cut_from), (8, Some(9)));
        assert_eq!(
            p.warning().unwrap(),
            "RAYON_NUM_THREADS=9 is more than 8 (4 per available core); starting 8 threads"
        );
        for v in ["abc", "-1", "2.5", "99999999999999999999999"] {
            let p = at(Some(v));
            assert_eq!((p.threads, p.unreadable.as_deref()), (2, Some(v)));
            assert_eq!(
                p.warning().unwrap(),
                format!(
                    "RAYON_NUM_THREADS={v} is not a thread count; starting 2 threads (one per \
                     available core)"
                )
            );
        }
        // Escaped for a terminal.
        let w = at(Some("\x1b[31m")).warning().unwrap();
        assert!(!w.contains('\x1b'), "{w}");
        #[cfg(unix)]
        {
            let p = pool_threads_from(Some(OsStr::from_bytes(b"4\xff")), 2);
            assert_eq!((p.threads, p.unreadable.is_some()), (2, true));
        }
    }
}
