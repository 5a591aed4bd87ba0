//! `gguf_loader._native`: the Rust half of the Python package `gguf_loader`
//! (the Python half, in `python/gguf_loader`, gives it its public shape:
//! mappings, enums, numpy views, bf16 as `ml_dtypes`).
//!
//! Every call goes through the loader's public API. Decoding releases the
//! GIL; a malformed file raises `ValueError`, an I/O failure `OSError`,
//! both with the message the CLI prints.

use gguf_loader::{Error, GgmlType, OutputMemory, Stores};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyKeyError, PyMemoryError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

mod dlpack;
mod file;
mod fork;
mod load;
mod meta;
mod model;
mod pool;
mod tokenizer;

/// `ValueError` for what `loader`'s file cannot give (no tokenizer, no
/// forward pass for its architecture), naming the file (its first shard)
/// as the CLI does.
pub(crate) fn value_error_in(
    loader: &gguf_loader::MmapGGUFLoader,
    e: impl std::fmt::Display,
) -> PyErr {
    let path = loader.paths().next().map(|p| p.display().to_string());
    PyValueError::new_err(format!("{}: {e}", path.unwrap_or_default()))
}

/// The Python exception for a loader error: `OSError` (with its errno, so
/// that a missing file or shard is `FileNotFoundError`, and its `filename`,
/// as `builtins.open` raises it) for I/O, `KeyError(name)` for a missing
/// tensor, `MemoryError` when an output cannot be allocated, `RuntimeError`
/// for the GPU, `ValueError` for anything malformed. The message is the error's own,
/// as the CLI prints it (an `OSError` with a file says it Python's way:
/// `[Errno 2] No such file or directory: 'path'`).
pub(crate) fn py_err(e: Error) -> PyErr {
    let message = e.to_string();
    let errno = e.io_error().and_then(|io| io.raw_os_error());
    match &e {
        // As builtins.open says it (EISDIR is 21 on Linux and macOS).
        Error::NotAFile {
            path,
            what: "a directory",
        } => pyo3::exceptions::PyIsADirectoryError::new_err((
            21,
            "is a directory, not a regular file",
            path.clone().into_os_string(),
        )),
        Error::Io { path, error } if errno.is_some() => {
            PyOSError::new_err((errno, strerror(error), path.clone().into_os_string()))
        }
        Error::TensorIo {
            path,
            tensor,
            offset,
            error,
        } if errno.is_some() => PyOSError::new_err((
            errno,
            format!(
                "tensor '{}' at byte {offset}: {}",
                gguf_loader::Escaped(tensor),
                strerror(error)
            ),
            path.clone().into_os_string(),
        )),
        Error::Io { .. } | Error::TensorIo { .. } | Error::NotAFile { .. } => {
            PyOSError::new_err(message)
        }
        // As a dict says it: the key itself.
        Error::TensorNotFound(name) => PyKeyError::new_err(name.clone()),
        Error::MissingShard {
            path,
            no,
            count,
            opened,
        } => pyo3::exceptions::PyFileNotFoundError::new_err((
            2,
            format!(
                "shard {no} of {count} is missing (opened from {})",
                opened.display()
            ),
            path.clone().into_os_string(),
        )),
        Error::OutOfMemory { .. } => PyMemoryError::new_err(message),
        Error::ThreadPool(_) | Error::Cancelled | Error::UnsupportedDevice(_) => {
            PyRuntimeError::new_err(message)
        }
        #[cfg(feature = "cuda")]
        Error::CudaUnavailable { .. } | Error::Cuda { .. } | Error::WrongDevice(_) => {
            PyRuntimeError::new_err(message)
        }
        _ => PyValueError::new_err(message),
    }
}

/// The system's words for `error` without Rust's ` (os error N)`: the
/// errno is the exception's own.
fn strerror(error: &std::io::Error) -> String {
    let text = error.to_string();
    match error.raw_os_error() {
        Some(n) => text
            .strip_suffix(&format!(" (os error {n})"))
            .map_or(text.clone(), str::to_string),
        None => text,
    }
}

/// The ggml type with id `id`, or `ValueError`.
pub(crate) fn ggml_type(id: u32) -> PyResult<GgmlType> {
    GgmlType::from_id(id).ok_or_else(|| PyValueError::new_err(format!("{id} is not a ggml type")))
}

/// The most decoding threads a load takes here (`threads`): 4 per
/// available core.
#[pyfunction]
fn max_threads() -> usize {
    gguf_loader::max_threads()
}

/// Every ggml type this build decodes: `(id, name, block_size, type_size)`.
#[pyfunction]
fn ggml_types() -> Vec<(u32, &'static str, u64, u64)> {
    (0..=u8::MAX as u32)
        .filter_map(GgmlType::from_id)
        .map(|t| (t.id(), t.name(), t.block_size(), t.type_size()))
        .collect()
}

/// `MemoryError` for an output that cannot be allocated, else `ValueError`.
fn decode_err(e: gguf_loader::DecodeError) -> PyErr {
    match e {
        gguf_loader::DecodeError::OutOfMemory { .. } => PyMemoryError::new_err(e.to_string()),
        e => PyValueError::new_err(e.to_string()),
    }
}

/// Decodes `data` (whole blocks of type `qtype`, contiguous bytes) to a new
/// 1-D float32 array, on every core, without the GIL.
#[pyfunction]
fn dequantize<'py>(
    py: Python<'py>,
    data: PyReadonlyArray1<'py, u8>,
    qtype: u32,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let ty = ggml_type(qtype)?;
    let src = data.as_slice()?;
    let (type_size, block) = (ty.type_size() as usize, ty.block_size() as usize);
    if src.len() % type_size != 0 {
        return Err(PyValueError::new_err(format!(
            "{} bytes is not a whole number of {ty} blocks of {type_size} bytes",
            src.len()
        )));
    }
    let n = src.len() / type_size * block;
    if n * 4 < pool::MIN_BYTES {
        let out = load::empty::<f32>(py, n)?;
        {
            let mut rw = out.readwrite();
            let dst = rw.as_slice_mut()?;
            py.detach(|| fork::run(|| gguf_loader::dequantize_into_par(ty, src, dst)))?
                .map_err(decode_err)?;
        }
        return Ok(out);
    }
    let (mut out, memory) = match pool::take(n) {
        // Memory already faulted in: decoded over the old values.
        Some(v) => (v, OutputMemory::Reused),
        // Fresh pages (huge where the kernel allows), faulted in by the
        // decoding threads.
        None => (
            gguf_loader::fresh_output::<f32>(ty, n).map_err(decode_err)?,
            OutputMemory::Fresh,
        ),
    };
    let stores = Stores::Auto.for_output(n * 4, memory);
    // In pieces, with the signal handlers run between them: Ctrl-C
    // (`KeyboardInterrupt`) stops a long decode within a piece's time.
    let piece_blocks = (PIECE_ELEMENTS / block).max(1);
    let pieces = src
        .chunks(piece_blocks * type_size)
        .zip(out.chunks_mut(piece_blocks * block));
    for (s, d) in pieces {
        py.check_signals()?;
        py.detach(|| fork::run(|| gguf_loader::dequantize_into_par_with(ty, s, d, stores)))?
            .map_err(decode_err)?;
    }
    pool::into_array(py, out)
}

/// Elements decoded between two checks for Ctrl-C in [`dequantize`]:
/// 128 MiB of output, a few milliseconds' work on a many-core host.
const PIECE_ELEMENTS: usize = 32 << 20;

/// Sets how many bytes of freed `dequantize` outputs are kept for reuse
/// (0: none; the default is 256 MiB) and returns the previous bound.
#[pyfunction]
fn set_dequantize_cache(max_bytes: usize) -> usize {
    pool::set_max_bytes(max_bytes)
}

/// The GPU named by `device` (`"cuda"` or `"cuda:N"`): its ordinal, or
/// `ValueError`.
fn cuda_ordinal(device: &str) -> PyResult<usize> {
    match load::device(device)? {
        gguf_loader::Device::Cuda(n) => Ok(n),
        gguf_loader::Device::Cpu => Err(PyValueError::new_err(format!(
            "device must be \"cuda\" or \"cuda:N\", not {device:?}"
        ))),
    }
}

/// Free and total memory of a GPU in bytes, counted once the work queued on
/// it is done (so that the memory of tensors already dropped counts as
/// free); sets the GPU up if nothing has yet. `RuntimeError` where the GPU
/// cannot be used or the build has no `cuda` feature.
#[pyfunction]
#[pyo3(signature = (device = "cuda:0"))]
pub(crate) fn cuda_memory(py: Python<'_>, device: &str) -> PyResult<(usize, usize)> {
    let n = cuda_ordinal(device)?;
    #[cfg(feature = "cuda")]
    {
        py.detach(|| gguf_loader::cuda_memory(n)).map_err(py_err)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = py;
        Err(py_err(Error::UnsupportedDevice(gguf_loader::Device::Cuda(
            n,
        ))))
    }
}

/// Frees the staging buffers a GPU keeps between loads (64 MiB of VRAM and
/// as much pinned host memory by default), for a program done loading; a
/// later load makes them again. Does nothing for a GPU not used yet, or in
/// a build without the `cuda` feature (where none can have been made).
#[pyfunction]
#[pyo3(signature = (device = "cuda:0"))]
fn cuda_release_staging(py: Python<'_>, device: &str) -> PyResult<()> {
    let n = cuda_ordinal(device)?;
    #[cfg(feature = "cuda")]
    py.detach(|| gguf_loader::cuda_release_staging(n));
    #[cfg(not(feature = "cuda"))]
    let _ = (py, n);
    Ok(())
}

/// The SIMD the decoders use in this process: "AVX-512 + AVX2", "AVX2",
/// "NEON" or "scalar" (none here, or ``GGUF_LOADER_SIMD=scalar``).
#[pyfunction]
fn simd_features() -> &'static str {
    gguf_loader::simd_features()
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // rust-numpy reaches numpy's C API, and its own borrow-checking API, on
    // first use, and panics where that fails: as it did when a signal
    // handler raised (Ctrl-C during a first `dequantize`) while numpy's
    // version check ran Python code. Reached here instead, at import, where
    // a failure is the import's own exception; no Python code runs on those
    // paths after this.
    numpy::get_array_module(m.py())?;
    drop(PyArray1::<u8>::zeros(m.py(), 0, false).readonly());
    m.add_class::<file::File>()?;
    m.add_class::<meta::StringArray>()?;
    m.add_class::<meta::Owner>()?;
    m.add_class::<dlpack::DeviceTensor>()?;
    m.add_function(wrap_pyfunction!(ggml_types, m)?)?;
    m.add_function(wrap_pyfunction!(max_threads, m)?)?;
    m.add_function(wrap_pyfunction!(dequantize, m)?)?;
    m.add_function(wrap_pyfunction!(set_dequantize_cache, m)?)?;
    m.add_class::<pool::PooledOutput>()?;
    m.add_function(wrap_pyfunction!(load::tensor, m)?)?;
    m.add_function(wrap_pyfunction!(load::load, m)?)?;
    m.add_function(wrap_pyfunction!(load::load_device, m)?)?;
    m.add_function(wrap_pyfunction!(load::loads_as_view, m)?)?;
    m.add_function(wrap_pyfunction!(tokenizer::tokenizer, m)?)?;
    m.add_function(wrap_pyfunction!(tokenizer::tokenizer_from_gguf, m)?)?;
    m.add_class::<tokenizer::Tokenizer>()?;
    m.add_class::<tokenizer::TextStream>()?;
    m.add_function(wrap_pyfunction!(model::model, m)?)?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::KvCache>()?;
    m.add_class::<model::Sampler>()?;
    m.add_function(wrap_pyfunction!(cuda_memory, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_release_staging, m)?)?;
    m.add_function(wrap_pyfunction!(simd_features, m)?)?;
    m.add("Cancelled", m.py().get_type::<load::Cancelled>())?;
    m.add("CUDA", cfg!(feature = "cuda"))?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
