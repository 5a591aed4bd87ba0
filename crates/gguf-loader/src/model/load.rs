//! Decoding mapped tensors into [`Tensor`]s and whole [`Model`]s: tensors in
//! parallel (largest first), large ones split by block ranges, outputs
//! allocated once at their final size, progress reported and cancellable.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use half::f16;
use rayon::prelude::*;

use crate::alloc::zeroed_vec;
use crate::decode::{dequantize_into, dequantize_into_with, Stores};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::format::{Endianness, GgmlType, TensorInfo};
use crate::loader::MmapGGUFLoader;
use crate::model::{Model, ModelConfig};
use crate::tensor::{Device, Tensor};

/// Where a load stands; handed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub tensors_done: usize,
    pub tensors_total: usize,
    /// Bytes of tensor data read (and decoded) so far.
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// A progress callback: return `false` to cancel the load. Called from the
/// decoding threads, possibly at the same time.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) -> bool + Sync);

/// How to load a model.
#[derive(Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// Decoding threads; `None` uses rayon's global pool (all cores).
    pub threads: Option<usize>,
    pub progress: Option<ProgressFn<'a>>,
    /// How outputs are written. A model load writes fresh memory, so `Auto`
    /// means ordinary stores here (see [`Stores::Auto`]).
    pub stores: Stores,
}

impl<'a> LoadOptions<'a> {
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    pub fn progress(mut self, f: ProgressFn<'a>) -> Self {
        self.progress = Some(f);
        self
    }

    pub fn stores(mut self, stores: Stores) -> Self {
        self.stores = stores;
        self
    }
}

/// Elements decoded between two cancellation checks / progress reports.
const CHUNK_ELEMENTS: usize = 1 << 20;

/// Shared state of one load.
struct Control<'a> {
    cancelled: AtomicBool,
    tensors_done: AtomicUsize,
    bytes_done: AtomicU64,
    tensors_total: usize,
    bytes_total: u64,
    callback: Option<ProgressFn<'a>>,
}

impl<'a> Control<'a> {
    fn new(tensors_total: usize, bytes_total: u64, callback: Option<ProgressFn<'a>>) -> Self {
        Control {
            cancelled: AtomicBool::new(false),
            tensors_done: AtomicUsize::new(0),
            bytes_done: AtomicU64::new(0),
            tensors_total,
            bytes_total,
            callback,
        }
    }

    fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    fn report(&self, bytes: u64, tensors: usize) {
        let bytes_done = self.bytes_done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let tensors_done = self.tensors_done.fetch_add(tensors, Ordering::Relaxed) + tensors;
        if let Some(cb) = self.callback {
            let p = Progress {
                tensors_done,
                tensors_total: self.tensors_total,
                bytes_done,
                bytes_total: self.bytes_total,
            };
            if !cb(&p) {
                self.cancelled.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Byte-swaps the data of a plain number type from a big-endian file;
/// `None` for block-quantized types, whose big-endian layout ggml does not
/// define.
fn to_little_endian(ty: GgmlType, bytes: &[u8]) -> Option<Vec<u8>> {
    if ty.is_quantized() {
        return None;
    }
    let size = ty.type_size() as usize;
    let mut out = bytes.to_vec();
    for chunk in out.chunks_exact_mut(size) {
        chunk.reverse();
    }
    Some(out)
}

impl MmapGGUFLoader {
    /// Decodes one tensor to f16 on `device` (the design's entry point).
    pub fn load_tensor_f16(&self, name: &str, device: Device) -> Result<Tensor<f16>> {
        self.load_tensor::<f16>(name, device)
    }

    /// Decodes one tensor to `T` (f32, f16 or bf16) on `device`, using every
    /// rayon thread for large tensors.
    pub fn load_tensor<T: Element>(&self, name: &str, device: Device) -> Result<Tensor<T>> {
        check_device(device)?;
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::TensorNotFound(name.to_string()))?;
        let ctl = Control::new(1, info.n_bytes, None);
        self.decode_tensor(info, &ctl)
    }

    /// Decodes one tensor into the caller's buffer of exactly its element count.
    pub fn load_tensor_into<T: Element>(&self, name: &str, dst: &mut [T]) -> Result<()> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::TensorNotFound(name.to_string()))?;
        let ctl = Control::new(1, info.n_bytes, None);
        self.decode_into(info, dst, &ctl, Stores::Auto)
    }

    fn decode_tensor<T: Element>(
        &self,
        info: &TensorInfo<'_>,
        ctl: &Control<'_>,
    ) -> Result<Tensor<T>> {
        let n =
            usize::try_from(info.n_elements).map_err(|_| Error::TooLarge(info.name.to_string()))?;
        let mut data = zeroed_vec::<T>(n);
        // Fresh pages: see `Stores::Auto`.
        self.decode_into(info, &mut data, ctl, Stores::Cached)?;
        Tensor::from_ne(info.ne(), data).ok_or_else(|| Error::TooLarge(info.name.to_string()))
    }

    /// Decodes `info`'s bytes into `dst` in chunks spread over rayon's
    /// threads, checking for cancellation and reporting progress per chunk;
    /// `Stores::Auto` is settled by the size of `dst`.
    fn decode_into<T: Element>(
        &self,
        info: &TensorInfo<'_>,
        dst: &mut [T],
        ctl: &Control<'_>,
        stores: Stores,
    ) -> Result<()> {
        let stores = stores.resolve(std::mem::size_of_val(dst));
        let name = info.name;
        let ty = info.ty;
        let mut bytes = self.read_tensor_data(name)?;
        if self.endianness() == Endianness::Big {
            let le = to_little_endian(ty, &bytes).ok_or_else(|| Error::BigEndianData {
                tensor: name.to_string(),
                ty,
            })?;
            bytes = Cow::Owned(le);
        }
        let decode_err = |error| Error::Decode {
            tensor: name.to_string(),
            error,
        };
        let block = ty.block_size() as usize;
        if bytes.len() / ty.type_size() as usize * block != dst.len() {
            // Reported with the decoder's own wording.
            return dequantize_into(ty, &bytes, dst).map_err(decode_err);
        }
        let blocks = (CHUNK_ELEMENTS / block).max(1);
        bytes
            .par_chunks(blocks * ty.type_size() as usize)
            .zip(dst.par_chunks_mut(blocks * block))
            .try_for_each(|(s, d)| {
                ctl.check()?;
                dequantize_into_with(ty, s, d, stores).map_err(decode_err)?;
                ctl.report(s.len() as u64, 0);
                Ok::<(), Error>(())
            })?;
        ctl.report(0, 1);
        Ok(())
    }

    /// Decodes every tensor to f16 (the design's `load_f16_model`).
    pub fn load_f16_model(&self, device: Device) -> Result<Model<f16>> {
        self.load_model::<f16>(device)
    }

    /// Decodes every tensor to `T` on `device`, in parallel.
    pub fn load_model<T: Element>(&self, device: Device) -> Result<Model<T>> {
        self.load_model_with(device, LoadOptions::default())
    }

    /// Decodes every tensor to `T` with options: threads, progress, cancel.
    /// On cancellation or error, everything decoded so far is freed.
    pub fn load_model_with<T: Element>(
        &self,
        device: Device,
        opts: LoadOptions<'_>,
    ) -> Result<Model<T>> {
        check_device(device)?;
        // Every byte will be read: start the kernel's read-ahead now (it
        // matters for a cold page cache and costs nothing for a warm one).
        self.prefetch_all();
        let infos: Vec<&TensorInfo<'_>> = self.tensors().collect();
        let bytes_total = infos.iter().map(|t| t.n_bytes).sum();
        let ctl = Control::new(infos.len(), bytes_total, opts.progress);
        let run = || -> Result<Vec<(String, Tensor<T>)>> {
            // One allocation for every output, split into disjoint slices:
            // few page faults (huge pages), taken in parallel by the decoders.
            let sizes = infos
                .iter()
                .map(|t| usize::try_from(t.n_elements).map_err(|_| Error::TooLarge(t.name.into())))
                .collect::<Result<Vec<usize>>>()?;
            let total = sizes
                .iter()
                .try_fold(0usize, |a, n| a.checked_add(*n))
                .ok_or_else(|| Error::TooLarge("the model".into()))?;
            let stores = match opts.stores {
                Stores::Auto => Stores::Cached, // fresh pages
                s => s,
            };
            let mut buf = zeroed_vec::<T>(total);
            let mut slices: Vec<(usize, &mut [T])> = Vec::with_capacity(infos.len());
            let mut rest: &mut [T] = &mut buf;
            for (i, n) in sizes.iter().enumerate() {
                let (head, tail) = rest.split_at_mut(*n);
                slices.push((i, head));
                rest = tail;
            }
            // Largest first, so that the big tensors do not end up alone.
            slices.sort_by_key(|(i, _)| Reverse(infos[*i].n_bytes));
            slices.into_par_iter().try_for_each(|(i, dst)| {
                ctl.check()?;
                self.decode_into(infos[i], dst, &ctl, stores)
            })?;
            let buf = std::sync::Arc::new(buf);
            let mut start = 0;
            infos
                .iter()
                .zip(&sizes)
                .map(|(info, n)| {
                    let range = start..start + n;
                    start += n;
                    let t = Tensor::shared(TensorInfo::ne(info), buf.clone(), range)
                        .ok_or_else(|| Error::TooLarge(info.name.to_string()))?;
                    Ok((info.name.to_string(), t))
                })
                .collect()
        };
        let tensors = match opts.threads {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| Error::ThreadPool(e.to_string()))?
                .install(run)?,
            None => run()?,
        };
        Ok(Model::new(
            ModelConfig::from_metadata(self.metadata()),
            tensors,
        ))
    }
}

fn check_device(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        other => Err(Error::UnsupportedDevice(other)),
    }
}

/// Opens `path` and decodes every tensor to f16 on the CPU: the design's
/// one-call `load_model_f16`.
pub fn load_model_f16(path: impl AsRef<Path>) -> Result<Model<f16>> {
    MmapGGUFLoader::new(path)?.load_f16_model(Device::Cpu)
}
