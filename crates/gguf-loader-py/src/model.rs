//! The forward pass from Python: gguf-loader-llm's `Transformer` (llama,
//! gemma3 on the CPU) or, with the `cuda` feature, its `CudaTransformer`
//! (the same pass over the weights the GPU load put in VRAM), its KV cache,
//! and its sampler. The logits come back as numpy arrays; every step
//! releases the GIL, and a long prompt is run in pieces so that Ctrl-C
//! stops it.

use std::path::PathBuf;
use std::sync::Arc;

use gguf_loader::{f16, Device, LoadOptions};
#[cfg(feature = "cuda")]
use gguf_loader_llm::forward::cuda::{CudaKvCache, CudaTransformer};
use gguf_loader_llm::forward::{
    Arch, Config, ForwardError, KvCache as Cache, Sampler as Inner, Transformer,
};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::file::File;

/// The weights' float, and where they are.
enum Weights {
    F16(Transformer<f16>),
    F32(Transformer<f32>),
    /// f16 matrices in VRAM.
    #[cfg(feature = "cuda")]
    Cuda(Box<CudaTransformer>),
}

/// Runs `$body` with `$m` bound to the transformer, whatever its float
/// and device (for what every one of them has under the same name).
macro_rules! with_model {
    ($w:expr, $m:ident => $body:expr) => {
        match $w {
            Weights::F16($m) => $body,
            Weights::F32($m) => $body,
            #[cfg(feature = "cuda")]
            Weights::Cuda($m) => $body,
        }
    };
}

/// A KV cache in host memory, or in VRAM for a model on a GPU.
enum Caches {
    Cpu(Cache),
    #[cfg(feature = "cuda")]
    Cuda(CudaKvCache),
}

/// Runs `$body` with `$c` bound to the cache, wherever it is.
macro_rules! with_cache {
    ($w:expr, $c:ident => $body:expr) => {
        match $w {
            Caches::Cpu($c) => $body,
            #[cfg(feature = "cuda")]
            Caches::Cuda($c) => $body,
        }
    };
}

/// A forward error as a Python exception: `MemoryError` for memory,
/// the loader's own for a load, `ValueError` for the rest.
fn forward_err(e: ForwardError) -> PyErr {
    match e {
        ForwardError::Load(e) => crate::py_err(e),
        ForwardError::Alloc(_) => PyMemoryError::new_err(e.to_string()),
        e => PyValueError::new_err(e.to_string()),
    }
}

/// A model's weights loaded for its forward pass; see
/// `gguf_loader.GGUFFile.model`.
#[pyclass(module = "gguf_loader._native", frozen)]
pub struct Model {
    weights: Weights,
}

/// Loads `file`'s weights for the forward pass: matrices as `dtype`
/// (`float16` or `float32`), norms as f32; `lazy` decodes each layer as a
/// step reaches it; `views` lets the matrices the file holds as `dtype`
/// stay views of its mapping. On `device` `cuda:N` (float16, not lazy)
/// the quantized bytes go to the GPU, are decoded there, and the pass
/// runs there.
#[pyfunction]
#[pyo3(signature = (file, dtype = "float16", lazy = false, views = true, device = "cpu"))]
pub(crate) fn model(
    py: Python<'_>,
    file: &File,
    dtype: &str,
    lazy: bool,
    views: bool,
    device: &str,
) -> PyResult<Model> {
    let loader = file.loader()?;
    // As a step's errors, but for what the file holds: that names it.
    let named = |e: ForwardError| match e {
        ForwardError::Load(_) | ForwardError::Alloc(_) => forward_err(e),
        e => crate::value_error_in(&loader, e),
    };
    if let Device::Cuda(n) = crate::load::device(device)? {
        if dtype != "float16" || lazy {
            return Err(PyValueError::new_err(format!(
                "the forward pass on {device} runs on float16 weights loaded whole, \
                 not {dtype}{}",
                if lazy { " loaded lazily" } else { "" }
            )));
        }
        #[cfg(feature = "cuda")]
        {
            let m = py
                .detach(|| CudaTransformer::load(&loader, n))
                .map_err(named)?;
            return Ok(Model {
                weights: Weights::Cuda(Box::new(m)),
            });
        }
        #[cfg(not(feature = "cuda"))]
        return Err(crate::py_err(gguf_loader::Error::UnsupportedDevice(
            Device::Cuda(n),
        )));
    }
    let opts = LoadOptions::default().own_memory(!views);
    let weights = py.detach(|| match (dtype, lazy) {
        ("float16", false) => Transformer::<f16>::load_with(&loader, opts).map(Weights::F16),
        ("float32", false) => Transformer::<f32>::load_with(&loader, opts).map(Weights::F32),
        ("float16", true) => {
            Transformer::<f16>::load_lazy_with(Arc::clone(&loader), opts).map(Weights::F16)
        }
        ("float32", true) => {
            Transformer::<f32>::load_lazy_with(Arc::clone(&loader), opts).map(Weights::F32)
        }
        (other, _) => Err(ForwardError::Unsupported(format!(
            "the forward pass runs on float16 or float32 weights, not {other:?}"
        ))),
    });
    Ok(Model {
        weights: weights.map_err(named)?,
    })
}

/// An I/O error on `path` as Python's `OSError` (`FileNotFoundError`…).
fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> PyErr + Copy + '_ {
    move |error| {
        crate::py_err(gguf_loader::Error::Io {
            path: path.to_path_buf(),
            error,
        })
    }
}

/// What saving or reading a GPU model's cache is.
#[cfg(feature = "cuda")]
fn in_vram() -> ForwardError {
    ForwardError::Unsupported(
        "a KV cache in VRAM cannot be saved or read (a CPU model's can)".into(),
    )
}

/// The most positions run at once while the caller waits: between pieces,
/// Ctrl-C (or any signal handler's exception) is seen. The pieces give the
/// same logits as one run (the forward pass is tested for it).
const PIECE: usize = 64;

impl Model {
    fn conf(&self) -> &Config {
        with_model!(&self.weights, m => m.config())
    }

    /// Where the weights are.
    fn place(&self) -> Device {
        match &self.weights {
            #[cfg(feature = "cuda")]
            Weights::Cuda(m) => m.device(),
            _ => Device::Cpu,
        }
    }
}

#[pymethods]
impl Model {
    /// The hyper-parameters the forward pass runs with.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.conf().clone();
        let d = PyDict::new(py);
        d.set_item(
            "arch",
            match c.arch {
                Arch::Llama => "llama",
                Arch::Gemma3 => "gemma3",
                #[allow(unreachable_patterns)]
                _ => "other",
            },
        )?;
        d.set_item("n_layer", c.n_layer)?;
        d.set_item("n_embd", c.n_embd)?;
        d.set_item("n_head", c.n_head)?;
        d.set_item("n_head_kv", c.n_head_kv)?;
        d.set_item("head_dim", c.head_dim)?;
        d.set_item("n_ff", c.n_ff)?;
        d.set_item("n_vocab", c.n_vocab)?;
        d.set_item("context_length", c.context_length)?;
        d.set_item("sliding_window", c.sliding_window)?;
        Ok(d)
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        match self.weights {
            Weights::F32(_) => "float32",
            _ => "float16",
        }
    }

    #[getter]
    fn lazy(&self) -> bool {
        match &self.weights {
            Weights::F16(m) => m.is_lazy(),
            Weights::F32(m) => m.is_lazy(),
            #[cfg(feature = "cuda")]
            Weights::Cuda(_) => false,
        }
    }

    /// `cpu` or `cuda:N`.
    #[getter]
    fn device(&self) -> String {
        self.place().to_string()
    }

    /// An empty KV cache for `capacity` positions (in VRAM for a model on
    /// a GPU).
    fn new_cache(&self, py: Python<'_>, capacity: usize) -> PyResult<KvCache> {
        let cache = py
            .detach(|| match &self.weights {
                Weights::F16(m) => m.new_cache(capacity).map(Caches::Cpu),
                Weights::F32(m) => m.new_cache(capacity).map(Caches::Cpu),
                #[cfg(feature = "cuda")]
                Weights::Cuda(m) => m.new_cache(capacity).map(Caches::Cuda),
            })
            .map_err(forward_err)?;
        Ok(KvCache {
            inner: cache,
            device: self.place(),
        })
    }

    /// Runs `ids` at the next positions of `cache` and returns the logits,
    /// f32: of the last position (`n_vocab`), or of every one (`all`:
    /// `len(ids) × n_vocab`).
    #[pyo3(signature = (cache, ids, all = false))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        mut cache: PyRefMut<'_, KvCache>,
        ids: Vec<u32>,
        all: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n_vocab = self.conf().n_vocab;
        if cache.device != self.place() {
            return Err(PyValueError::new_err(format!(
                "the cache is on {}, the model on {}: make the cache with this model's new_cache()",
                cache.device,
                self.place()
            )));
        }
        let start = with_cache!(&cache.inner, c => c.len());
        let mut logits: Vec<f32> = Vec::new();
        for (i, piece) in ids.chunks(PIECE).enumerate() {
            if i > 0 {
                if let Err(e) = py.check_signals() {
                    // The positions run so far go: the cache is as it was.
                    with_cache!(&mut cache.inner, c => c.truncate(start));
                    return Err(e);
                }
            }
            let last = (i + 1) * PIECE >= ids.len();
            let inner = &mut cache.inner;
            let out = py
                .detach(|| match (&self.weights, inner) {
                    (Weights::F16(m), Caches::Cpu(c)) => m.forward(c, piece, all),
                    (Weights::F32(m), Caches::Cpu(c)) => m.forward(c, piece, all),
                    #[cfg(feature = "cuda")]
                    (Weights::Cuda(m), Caches::Cuda(c)) => m.forward(c, piece, all),
                    // (Refused above: the devices differ.)
                    #[cfg(feature = "cuda")]
                    _ => Err(ForwardError::Unsupported(
                        "a cache on another device".into(),
                    )),
                })
                .map_err(|e| {
                    with_cache!(&mut cache.inner, c => c.truncate(start));
                    forward_err(e)
                })?;
            if all {
                logits.extend_from_slice(&out);
            } else if last {
                logits = out;
            }
        }
        let array = PyArray1::from_vec(py, logits);
        if all {
            array.reshape([ids.len(), n_vocab]).map(Bound::into_any)
        } else {
            Ok(array.into_any())
        }
    }

    /// Writes `cache` (made by this model) as a GGUF file at `path` (the
    /// caller's temporary file): its filled positions, their tokens, its
    /// capacity and layout.
    fn write_cache(
        &self,
        py: Python<'_>,
        cache: PyRef<'_, KvCache>,
        path: PathBuf,
    ) -> PyResult<()> {
        // (One arm without the cuda feature.)
        #[allow(clippy::infallible_destructuring_match)]
        let cache = match &cache.inner {
            Caches::Cpu(c) => c,
            #[cfg(feature = "cuda")]
            Caches::Cuda(_) => return Err(forward_err(in_vram())),
        };
        py.detach(|| {
            let writer = match &self.weights {
                Weights::F16(m) => m.cache_to_gguf(cache),
                Weights::F32(m) => m.cache_to_gguf(cache),
                #[cfg(feature = "cuda")]
                Weights::Cuda(_) => Err(in_vram()),
            }
            .map_err(forward_err)?;
            let io = io_err(&path);
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
            writer.write_to(&mut out).map_err(io)?;
            let file = out.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)
        })
    }

    /// The KV cache a file of `write_cache` holds, for this model.
    fn read_cache(&self, py: Python<'_>, path: PathBuf) -> PyResult<KvCache> {
        let cache = py.detach(|| {
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            match &self.weights {
                Weights::F16(m) => m.cache_from_gguf(&bytes),
                Weights::F32(m) => m.cache_from_gguf(&bytes),
                #[cfg(feature = "cuda")]
                Weights::Cuda(_) => Err(in_vram()),
            }
            .map_err(|e| match e {
                ForwardError::BadCache(_) | ForwardError::CacheMismatch { .. } => {
                    PyValueError::new_err(format!("{}: {e}", path.display()))
                }
                e => forward_err(e),
            })
        })?;
        Ok(KvCache {
            inner: Caches::Cpu(cache),
            device: self.place(),
        })
    }

    fn __repr__(&self) -> String {
        let c = self.conf();
        format!(
            "<gguf_loader.Model {:?}, {} layers, {} weights on {}{}>",
            c.arch,
            c.n_layer,
            self.dtype(),
            self.device(),
            if self.lazy() { ", lazy" } else { "" }
        )
    }
}

/// A KV cache: the positions a model has run, for the next step.
#[pyclass(module = "gguf_loader._native")]
pub struct KvCache {
    inner: Caches,
    /// Its model's device: where its memory is.
    device: Device,
}

#[pymethods]
impl KvCache {
    fn __len__(&self) -> usize {
        with_cache!(&self.inner, c => c.len())
    }

    #[getter]
    fn capacity(&self) -> usize {
        with_cache!(&self.inner, c => c.capacity())
    }

    /// The token at each filled position.
    #[getter]
    fn tokens(&self) -> Vec<u32> {
        with_cache!(&self.inner, c => c.tokens().to_vec())
    }

    /// Bytes held: host memory, or VRAM (`device`).
    #[getter]
    fn nbytes(&self) -> usize {
        with_cache!(&self.inner, c => c.n_bytes())
    }

    /// `cpu` or `cuda:N`.
    #[getter]
    fn device(&self) -> String {
        self.device.to_string()
    }

    /// Forgets every position.
    fn clear(&mut self) {
        with_cache!(&mut self.inner, c => c.clear());
    }

    /// Keeps the first `n` positions (a shared prefix).
    fn truncate(&mut self, n: usize) {
        with_cache!(&mut self.inner, c => c.truncate(n));
    }

    fn copy(&self, py: Python<'_>) -> PyResult<KvCache> {
        let inner = py
            .detach(|| match &self.inner {
                Caches::Cpu(c) => c.try_clone().map(Caches::Cpu),
                #[cfg(feature = "cuda")]
                Caches::Cuda(c) => c.try_clone().map(Caches::Cuda),
            })
            .map_err(forward_err)?;
        Ok(KvCache {
            inner,
            device: self.device,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<gguf_loader.KvCache {} of {} positions{}>",
            self.__len__(),
            self.capacity(),
            match self.device {
                Device::Cpu => String::new(),
                d => format!(" on {d}"),
            }
        )
    }
}

/// Picks the next token from logits: greedy at temperature 0, else
/// temperature, top-k, top-p and min-p, drawn from a seeded generator.
#[pyclass(module = "gguf_loader._native")]
pub struct Sampler {
    inner: Inner,
}

#[pymethods]
impl Sampler {
    #[new]
    #[pyo3(signature = (temperature = 0.0, top_p = 1.0, top_k = 0, min_p = 0.0, seed = 0))]
    fn new(temperature: f32, top_p: f32, top_k: usize, min_p: f32, seed: u64) -> Sampler {
        Sampler {
            inner: Inner::new(temperature, top_p, seed)
                .with_top_k(top_k)
                .with_min_p(min_p),
        }
    }

    /// The next id from one position's logits (1-D, f32); `None` where
    /// every value is NaN or there are none.
    fn sample(&mut self, logits: PyReadonlyArray1<'_, f32>) -> PyResult<Option<u32>> {
        let values = logits
            .as_slice()
            .map_err(|_| PyValueError::new_err("logits must be a contiguous 1-D float32 array"))?;
        // With the GIL held: the array is Python's, which could write it
        // meanwhile from another thread (sampling takes a millisecond).
        Ok(self.inner.sample(values))
    }
}
