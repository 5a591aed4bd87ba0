//! The forward pass from Python: gguf-loader-llm's `Transformer` (llama,
//! gemma3 on the CPU) over the loaded weights, its KV cache, and its
//! sampler. The logits come back as numpy arrays; every step releases the
//! GIL, and a long prompt is run in pieces so that Ctrl-C stops it.

use std::sync::Arc;

use gguf_loader::{f16, LoadOptions};
use gguf_loader_llm::forward::{
    Arch, ForwardError, KvCache as Cache, Sampler as Inner, Transformer,
};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::file::File;

/// The weights' float.
enum Weights {
    F16(Transformer<f16>),
    F32(Transformer<f32>),
}

/// Runs `$body` with `$m` bound to the transformer, whatever its float.
macro_rules! with_model {
    ($w:expr, $m:ident => $body:expr) => {
        match $w {
            Weights::F16($m) => $body,
            Weights::F32($m) => $body,
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
/// stay views of its mapping.
#[pyfunction]
#[pyo3(signature = (file, dtype = "float16", lazy = false, views = true))]
pub(crate) fn model(
    py: Python<'_>,
    file: &File,
    dtype: &str,
    lazy: bool,
    views: bool,
) -> PyResult<Model> {
    let loader = file.loader()?;
    let opts = LoadOptions::default().own_memory(!views);
    // As a step's errors, but for what the file holds: that names it.
    let named = |e: ForwardError| match e {
        ForwardError::Load(_) | ForwardError::Alloc(_) => forward_err(e),
        e => crate::value_error_in(&loader, e),
    };
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

/// The most positions run at once while the caller waits: between pieces,
/// Ctrl-C (or any signal handler's exception) is seen. The pieces give the
/// same logits as one run (the forward pass is tested for it).
const PIECE: usize = 64;

#[pymethods]
impl Model {
    /// The hyper-parameters the forward pass runs with.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = with_model!(&self.weights, m => m.config().clone());
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
            Weights::F16(_) => "float16",
            Weights::F32(_) => "float32",
        }
    }

    #[getter]
    fn lazy(&self) -> bool {
        with_model!(&self.weights, m => m.is_lazy())
    }

    /// An empty KV cache for `capacity` positions.
    fn new_cache(&self, py: Python<'_>, capacity: usize) -> PyResult<KvCache> {
        let cache = py
            .detach(|| with_model!(&self.weights, m => m.new_cache(capacity)))
            .map_err(forward_err)?;
        Ok(KvCache { inner: cache })
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
        let n_vocab = with_model!(&self.weights, m => m.config().n_vocab);
        let start = cache.inner.len();
        let mut logits: Vec<f32> = Vec::new();
        for (i, piece) in ids.chunks(PIECE).enumerate() {
            if i > 0 {
                if let Err(e) = py.check_signals() {
                    // The positions run so far go: the cache is as it was.
                    cache.inner.truncate(start);
                    return Err(e);
                }
            }
            let last = (i + 1) * PIECE >= ids.len();
            let inner = &mut cache.inner;
            let out = py
                .detach(|| with_model!(&self.weights, m => m.forward(inner, piece, all)))
                .map_err(|e| {
                    cache.inner.truncate(start);
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

    fn __repr__(&self) -> String {
        let c = with_model!(&self.weights, m => m.config().clone());
        format!(
            "<gguf_loader.Model {:?}, {} layers, {} weights{}>",
            c.arch,
            c.n_layer,
            self.dtype(),
            if self.lazy() { ", lazy" } else { "" }
        )
    }
}

/// A KV cache: the positions a model has run, for the next step.
#[pyclass(module = "gguf_loader._native")]
pub struct KvCache {
    inner: Cache,
}

#[pymethods]
impl KvCache {
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.n_bytes()
    }

    /// Forgets every position.
    fn clear(&mut self) {
        self.inner.clear();
    }

    /// Keeps the first `n` positions (a shared prefix).
    fn truncate(&mut self, n: usize) {
        self.inner.truncate(n);
    }

    fn copy(&self) -> PyResult<KvCache> {
        Ok(KvCache {
            inner: self.inner.try_clone().map_err(forward_err)?,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<gguf_loader.KvCache {} of {} positions>",
            self.inner.len(),
            self.inner.capacity()
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
