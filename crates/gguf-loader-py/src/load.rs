//! Decoding from Python: one tensor into a new numpy array, a whole model
//! into one numpy buffer, or onto a device (`DeviceTensor`s). The work runs
//! on another thread without the GIL while the calling thread watches for
//! Ctrl-C and reports progress, so that `KeyboardInterrupt` cancels a load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gguf_loader::{
    bf16, f16, Device, Element, LoadOptions, MmapGGUFLoader, OutputMemory, Progress,
};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::dlpack::{AnyTensor, DeviceTensor};
use crate::file::File;
use crate::py_err;

// Named in `gguf_loader` (which re-exports it), so that pickle finds it:
// a load cancelled in a multiprocessing worker reaches the parent as itself.
pyo3::create_exception!(
    gguf_loader,
    Cancelled,
    pyo3::exceptions::PyException,
    "A load cancelled by its progress callback (which returned False)."
);

/// An output type, by its numpy name.
#[derive(Clone, Copy)]
enum Dtype {
    F32,
    F16,
    Bf16,
}

fn dtype(name: &str) -> PyResult<Dtype> {
    Ok(match name {
        "float32" | "f32" => Dtype::F32,
        "float16" | "f16" => Dtype::F16,
        "bfloat16" | "bf16" => Dtype::Bf16,
        other => {
            return Err(PyValueError::new_err(format!(
                "dtype must be \"float16\", \"float32\" or \"bfloat16\", not {other:?}"
            )))
        }
    })
}

/// `cpu`, `cuda` (GPU 0) or `cuda:N`.
pub(crate) fn device(name: &str) -> PyResult<Device> {
    name.parse().map_err(|_| {
        PyValueError::new_err(format!(
            "device must be \"cpu\", \"cuda\" or \"cuda:N\", not {name:?}"
        ))
    })
}

/// Load options with `threads` decoding threads (`None`: every core). The
/// load itself refuses 0 or more than `gguf_loader::max_threads()`
/// (`Error::Threads`, a `ValueError`) before it starts a thread; only a
/// negative count, which has no `usize`, is refused here.
fn options<'a>(threads: Option<i64>) -> PyResult<LoadOptions<'a>> {
    let threads = threads
        .map(|n| {
            usize::try_from(n)
                .map_err(|_| PyValueError::new_err(format!("threads must be at least 1, not {n}")))
        })
        .transpose()?;
    Ok(LoadOptions {
        threads,
        // Memory of their own, never views of the file: a CPU tensor goes
        // out through DLPack, whose consumers (`torch.from_dlpack`) may
        // write into it, and a write into the read-only mapping would end
        // the process.
        own_memory: true,
        ..LoadOptions::default()
    })
}

/// Runs `work` on a thread of its own, without the GIL, while this thread
/// checks for signals and calls `progress(tensors_done, tensors_total,
/// bytes_done, bytes_total)` about every 50 ms and once at the end.
/// `KeyboardInterrupt` (or any exception a signal handler raises, or the
/// callback raises) cancels the work and is raised once it has stopped; a
/// callback returning `False` cancels it with `Cancelled`.
fn cancellable<R: Send>(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(LoadOptions<'_>) -> gguf_loader::Result<R> + Send,
    opts: LoadOptions<'_>,
) -> PyResult<R> {
    let cancel = AtomicBool::new(false);
    let latest: Mutex<Option<Progress>> = Mutex::new(None);
    let report = |p: &Progress| {
        if let Ok(mut l) = latest.lock() {
            *l = Some(*p);
        }
        !cancel.load(Ordering::Relaxed)
    };
    let opts = opts.progress(&report);
    let mut reported: Option<Progress> = None;
    let mut call = || -> PyResult<()> {
        let Some(cb) = progress else { return Ok(()) };
        let now = latest.lock().ok().and_then(|l| *l);
        let Some(p) = now else { return Ok(()) };
        if reported == Some(p) {
            return Ok(());
        }
        reported = Some(p);
        call_progress(cb, &p)
    };
    let main = std::thread::current();
    // Set by the worker just before it wakes this thread: `is_finished`
    // turns true only once the thread has exited, after the wake-up, which
    // would cost a whole 50 ms wait on every small load.
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let r = crate::fork::run(|| work(opts));
            done.store(true, Ordering::Release);
            main.unpark();
            r
        });
        let mut raised: Option<PyErr> = None;
        // A worker that panicked never sets `done`, but finishes.
        while !done.load(Ordering::Acquire) && !handle.is_finished() {
            py.detach(|| std::thread::park_timeout(Duration::from_millis(50)));
            if raised.is_none() {
                if let Err(e) = py.check_signals().and_then(|_| call()) {
                    cancel.store(true, Ordering::Relaxed);
                    raised = Some(e);
                }
            }
        }
        let result = py.detach(|| handle.join());
        if let Some(e) = raised {
            return Err(e);
        }
        let result = match result {
            Ok(r) => r?.map_err(py_err)?,
            Err(_) => {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "the decoding thread panicked",
                ))
            }
        };
        call()?;
        Ok(result)
    })
}

/// A load's buffer, where each decoded tensor lies in it (`(name, start,
/// shape)`), and the tensors that are views of the file (`(name, array)`).
type Loaded<'py> = (
    Bound<'py, PyAny>,
    Vec<(String, usize, Vec<usize>)>,
    Vec<(String, Bound<'py, PyAny>)>,
);

/// Element counts rounded up so that each tensor in a shared buffer starts
/// on a 64-byte boundary.
fn padded(n: usize, elem: usize) -> usize {
    let per_line = 64 / elem;
    n.div_ceil(per_line) * per_line
}

/// Decodes `names` into one buffer of `T` (views of which Python hands
/// out): `(buffer, [(name, start, shape)], [(name, view)])`. With `views`,
/// the tensors the file holds as `T` are not decoded but handed out as
/// read-only views of its mapping, their pages read in first; progress
/// counts both.
fn load_into<'py, T, N>(
    py: Python<'py>,
    file: &File,
    names: &[String],
    views: bool,
    opts: LoadOptions<'_>,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<Loaded<'py>>
where
    T: Element,
    N: numpy::Element + bytemuck::Pod,
{
    let loader = file.loader()?;
    let (viewed, names): (Vec<String>, Vec<String>) = names
        .iter()
        .cloned()
        .partition(|n| views && loader.loads_as_view::<T>(n));
    let names = &names[..];
    let mut layout = Vec::with_capacity(names.len());
    let mut total = 0usize;
    for name in names {
        let info = loader
            .tensor_info(name)
            .ok_or_else(|| py_err(gguf_loader::Error::TensorNotFound(name.clone())))?;
        let n = usize::try_from(info.n_elements)
            .map_err(|_| py_err(gguf_loader::Error::TooLarge(name.clone())))?;
        let shape = shape_of(name, &info.shape())?;
        layout.push((name.clone(), total, shape, n));
        total = total
            .checked_add(padded(n, std::mem::size_of::<T>()))
            .ok_or_else(|| py_err(gguf_loader::Error::TooLarge(name.clone())))?;
    }
    // Not zeroed (np.empty): zeroing memory that malloc reuses costs as much
    // as decoding into it. Every value is written below: the decoders fill
    // each tensor's range (they check its length), the padding is zeroed.
    // numpy aligns a buffer to 16 bytes: 64 bytes more leave room to start
    // the first tensor on a 64-byte boundary.
    let elem = std::mem::size_of::<T>();
    let room = 64 / elem;
    let buffer = empty::<N>(
        py,
        total
            .checked_add(room)
            .ok_or_else(|| py_err(gguf_loader::Error::TooLarge("the load".into())))?,
    )?;
    // Each view's file bytes, which populating it reads.
    let view_bytes: u64 = viewed
        .iter()
        .filter_map(|n| loader.tensor_info(n))
        .map(|t| t.n_bytes)
        .sum();
    if total == 0 && viewed.is_empty() {
        // Nothing to decode: the callback still hears of the end.
        if let Some(cb) = progress {
            let n = layout.len();
            call_progress(
                cb,
                &Progress {
                    tensors_done: n,
                    tensors_total: n,
                    bytes_done: 0,
                    bytes_total: 0,
                },
            )?;
        }
        return Ok((buffer.into_any(), strip(layout), Vec::new()));
    }
    {
        // SAFETY: `buffer` is a new C-contiguous 1-D array (numpy's
        // `empty`) that nothing else refers to until it is returned:
        // `buffer.data()` points to its `total + room` (> 0) elements, only written
        // through this slice meanwhile, and never read before written; every
        // bit pattern is a valid f32, f16 or u16.
        let all: &mut [N] = unsafe { std::slice::from_raw_parts_mut(buffer.data(), total + room) };
        let all: &mut [T] = bytemuck::cast_slice_mut(all);
        // The elements before the first 64-byte boundary (numpy's buffer is
        // aligned to an element at least) are padding.
        let shift = (64 - all.as_ptr() as usize % 64) % 64 / elem;
        for l in &mut layout {
            l.1 += shift;
        }
        let mut outs = Vec::with_capacity(layout.len());
        let mut rest = all;
        let mut at = 0;
        for (name, start, _, n) in &layout {
            let (pad, tail) = std::mem::take(&mut rest).split_at_mut(start - at);
            pad.fill(T::default());
            let (dst, tail) = tail.split_at_mut(*n);
            outs.push((name.as_str(), dst));
            rest = tail;
            at = start + n;
        }
        rest.fill(T::default());
        let decode_bytes: u64 = layout
            .iter()
            .filter_map(|(n, ..)| loader.tensor_info(n))
            .map(|t| t.n_bytes)
            .sum();
        let (n_views, n_decodes) = (viewed.len(), layout.len());
        cancellable(
            py,
            progress,
            |o| {
                // One count over both steps: the views' pages read in
                // first, then the decodes.
                let outer = o.progress;
                let whole = move |p: Progress, tensors_before: usize, bytes_before: u64| {
                    outer.is_none_or(|f| {
                        f(&Progress {
                            tensors_done: tensors_before + p.tensors_done,
                            tensors_total: n_views + n_decodes,
                            bytes_done: bytes_before + p.bytes_done,
                            bytes_total: view_bytes + decode_bytes,
                        })
                    })
                };
                if !viewed.is_empty() {
                    let first = |p: &Progress| whole(*p, 0, 0);
                    let o = LoadOptions {
                        own_memory: false,
                        ..o.progress(&first)
                    };
                    // Only their pages are wanted: the views the loader
                    // makes go, the loader's mapping stays.
                    drop(loader.load_tensors_with::<T, _>(&viewed, Device::Cpu, o)?);
                }
                if outs.is_empty() {
                    return Ok(());
                }
                let then = |p: &Progress| whole(*p, n_views, view_bytes);
                loader.load_tensors_into(outs, OutputMemory::Fresh, o.progress(&then))
            },
            opts,
        )?;
    }
    // The loader this load used, even where the file was closed meanwhile.
    let owner = Bound::new(
        py,
        crate::meta::Owner {
            loader: Arc::clone(&loader),
        },
    )?;
    let views = viewed
        .into_iter()
        .map(|n| {
            let a = mapped::<N>(&owner, &loader, &n)?;
            Ok((n, a))
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok((buffer.into_any(), strip(layout), views))
}

/// Tensor `name`'s values as the read-only numpy view of the file's
/// mapping (its row-major shape, base `owner`) that
/// `MmapGGUFLoader::loads_as_view` promised.
fn mapped<'py, N: numpy::Element + bytemuck::Pod>(
    owner: &Bound<'py, crate::meta::Owner>,
    loader: &MmapGGUFLoader,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let info = loader
        .tensor_info(name)
        .ok_or_else(|| py_err(gguf_loader::Error::TensorNotFound(name.to_string())))?;
    let shape = shape_of(name, &info.shape())?;
    let bytes = loader.get_tensor_data(name).map_err(py_err)?;
    let values: &[N] = bytemuck::try_cast_slice(bytes)
        .map_err(|e| PyValueError::new_err(format!("{name}: its data cannot be viewed ({e:?})")))?;
    crate::meta::values_view(owner, values)?.call_method1("reshape", (shape,))
}

/// A tensor's shape as `usize`s.
fn shape_of(name: &str, shape: &[u64]) -> PyResult<Vec<usize>> {
    shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| py_err(gguf_loader::Error::TooLarge(name.to_string())))
}

/// A new, uninitialized 1-D array of `n` elements (numpy's `empty`):
/// `MemoryError` when numpy cannot allocate it.
pub(crate) fn empty<N: numpy::Element>(
    py: Python<'_>,
    n: usize,
) -> PyResult<Bound<'_, PyArray1<N>>> {
    let array = py
        .import("numpy")?
        .getattr("empty")?
        .call1((n, numpy::dtype::<N>(py)))?;
    Ok(array.cast_into::<PyArray1<N>>()?)
}

/// Calls `progress(tensors_done, tensors_total, bytes_done, bytes_total)`:
/// `Cancelled` when it returns `False`.
fn call_progress(cb: &Bound<'_, PyAny>, p: &Progress) -> PyResult<()> {
    let r = cb.call1((p.tensors_done, p.tensors_total, p.bytes_done, p.bytes_total))?;
    if is_false(&r)? {
        return Err(Cancelled::new_err("cancelled by the progress callback"));
    }
    Ok(())
}

/// Whether `r` is `False`: Python's, or numpy's (`np.False_`, what numpy
/// code returns for a comparison). `None`, `0` and the rest do not cancel.
fn is_false(r: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = r.py();
    if r.is(pyo3::types::PyBool::new(py, false)) {
        return Ok(true);
    }
    let np_bool = py.import("numpy")?.getattr("bool_")?;
    Ok(r.is_instance(&np_bool)? && !r.is_truthy()?)
}

/// `(name, start, shape)` of each `(name, start, shape, elements)`.
fn strip(layout: Vec<(String, usize, Vec<usize>, usize)>) -> Vec<(String, usize, Vec<usize>)> {
    layout
        .into_iter()
        .map(|(name, start, shape, _)| (name, start, shape))
        .collect()
}

/// Decodes every tensor named (all when `names` is `None`) to `dtype` into
/// one new numpy buffer: `(buffer, [(name, start, shape)], [(name,
/// view)])`, bf16 as `uint16` bits. With `views`, the tensors the file
/// holds as `dtype` are read-only views of its mapping instead.
#[pyfunction]
#[pyo3(signature = (file, dtype = "float16", threads = None, progress = None, names = None, views = false))]
pub(crate) fn load<'py>(
    py: Python<'py>,
    file: &File,
    dtype: &str,
    threads: Option<i64>,
    progress: Option<Bound<'py, PyAny>>,
    names: Option<Vec<String>>,
    views: bool,
) -> PyResult<Loaded<'py>> {
    let names = match names {
        Some(n) => n,
        None => file
            .loader()?
            .tensors()
            .map(|t| t.name.to_string())
            .collect(),
    };
    let opts = options(threads)?;
    let p = progress.as_ref();
    match self::dtype(dtype)? {
        Dtype::F32 => load_into::<f32, f32>(py, file, &names, views, opts, p),
        Dtype::F16 => load_into::<f16, f16>(py, file, &names, views, opts, p),
        Dtype::Bf16 => load_into::<bf16, u16>(py, file, &names, views, opts, p),
    }
}

/// Decodes one tensor to `dtype` into a new numpy array of its row-major
/// shape (bf16 as `uint16` bits); with `views`, a read-only view of the
/// file's mapping where the file holds it as `dtype`.
#[pyfunction]
#[pyo3(signature = (file, name, dtype = "float16", threads = None, views = false))]
pub(crate) fn tensor<'py>(
    py: Python<'py>,
    file: &File,
    name: &str,
    dtype: &str,
    threads: Option<i64>,
    views: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (buffer, layout, mut viewed) = {
        let opts = options(threads)?;
        let names = [name.to_string()];
        match self::dtype(dtype)? {
            Dtype::F32 => load_into::<f32, f32>(py, file, &names, views, opts, None)?,
            Dtype::F16 => load_into::<f16, f16>(py, file, &names, views, opts, None)?,
            Dtype::Bf16 => load_into::<bf16, u16>(py, file, &names, views, opts, None)?,
        }
    };
    if let Some((_, view)) = viewed.pop() {
        return Ok(view);
    }
    let (start, shape) = layout
        .into_iter()
        .next()
        .map(|l| (l.1, l.2))
        .unwrap_or_default();
    let n: usize = shape.iter().product();
    buffer
        .get_item(pyo3::types::PySlice::new(
            py,
            start as isize,
            (start + n) as isize,
            1,
        ))?
        .call_method1("reshape", (shape,))
}

/// Whether `load(..., views=True)` gives tensor `name` as a view of the
/// file when decoded to `dtype`; `False` for an unknown name.
#[pyfunction]
pub(crate) fn loads_as_view(file: &File, name: &str, dtype: &str) -> PyResult<bool> {
    let loader = file.loader()?;
    Ok(match self::dtype(dtype)? {
        Dtype::F32 => loader.loads_as_view::<f32>(name),
        Dtype::F16 => loader.loads_as_view::<f16>(name),
        Dtype::Bf16 => loader.loads_as_view::<bf16>(name),
    })
}

fn to_device<T: Element>(
    py: Python<'_>,
    loader: &MmapGGUFLoader,
    names: Option<Vec<String>>,
    device: Device,
    opts: LoadOptions<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    wrap: fn(Arc<gguf_loader::Tensor<T>>) -> AnyTensor,
) -> PyResult<Vec<(String, DeviceTensor)>> {
    let tensors = cancellable(
        py,
        progress,
        |o| match &names {
            None => loader.load_model_with::<T>(device, o).map(|mut m| {
                let names: Vec<String> = m.names().map(str::to_string).collect();
                names
                    .into_iter()
                    // Every tensor is taken: shared, not copied out of
                    // the model's arena (which would double the peak).
                    .filter_map(|n| m.take_shared(&n).map(|t| (n, t)))
                    .collect::<Vec<_>>()
            }),
            // One load, so that progress counts them all.
            Some(names) => loader.load_tensors_with::<T, _>(names, device, o),
        },
        opts,
    )?;
    Ok(tensors
        .into_iter()
        .map(|(n, t)| (n, DeviceTensor::new(wrap(Arc::new(t)))))
        .collect())
}

/// Decodes tensors (all when `names` is `None`) to `dtype` on `device`
/// (`cuda:N`, or `cpu`) as `DeviceTensor`s, in file order.
#[pyfunction]
#[pyo3(signature = (file, device, dtype = "float16", threads = None, progress = None, names = None))]
pub(crate) fn load_device<'py>(
    py: Python<'py>,
    file: &File,
    device: &str,
    dtype: &str,
    threads: Option<i64>,
    progress: Option<Bound<'py, PyAny>>,
    names: Option<Vec<String>>,
) -> PyResult<Vec<(String, DeviceTensor)>> {
    let loader = file.loader()?;
    let device_name = device;
    let device = self::device(device)?;
    let opts = options(threads)?;
    if device != Device::Cpu && names.as_ref().is_some_and(Vec::is_empty) {
        // Nothing to load, but a GPU that cannot be used is said so all
        // the same, as a load of anything would.
        crate::cuda_memory(py, device_name)?;
        return Ok(Vec::new());
    }
    let p = progress.as_ref();
    match self::dtype(dtype)? {
        Dtype::F32 => to_device::<f32>(py, &loader, names, device, opts, p, AnyTensor::F32),
        Dtype::F16 => to_device::<f16>(py, &loader, names, device, opts, p, AnyTensor::F16),
        Dtype::Bf16 => to_device::<bf16>(py, &loader, names, device, opts, p, AnyTensor::Bf16),
    }
}
