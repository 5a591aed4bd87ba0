//! The native file object: an open [`MmapGGUFLoader`] behind a lock, so
//! that `close()` can drop it while what it handed out (views, string
//! arrays) keeps its own reference.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use gguf_loader::{Endianness, LoadMode, MmapGGUFLoader};
use numpy::PyArray1;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;

use crate::meta::{self, Owner};
use crate::py_err;

/// An open GGUF file (or split model); see `gguf_loader.open`.
#[pyclass(module = "gguf_loader._native", frozen)]
pub struct File {
    loader: RwLock<Option<Arc<MmapGGUFLoader>>>,
    mode: &'static str,
}

/// One tensor's description: `(name, type id, ne, file offset, offset in
/// the data section, bytes, elements)`.
type InfoTuple = (String, u32, Vec<u64>, u64, u64, u64, u64);

impl File {
    /// The loader, or `ValueError` once closed.
    pub(crate) fn loader(&self) -> PyResult<Arc<MmapGGUFLoader>> {
        self.loader
            .read()
            .ok()
            .and_then(|l| l.clone())
            .ok_or_else(|| PyValueError::new_err("I/O operation on closed GGUF file"))
    }

    fn owner<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, Owner>> {
        Bound::new(
            py,
            Owner {
                loader: self.loader()?,
            },
        )
    }
}

#[pymethods]
impl File {
    /// Opens `path` (the first shard of a split model opens them all):
    /// `mode` is `"mmap"` (zero-copy) or `"read"` (positioned reads).
    #[new]
    #[pyo3(signature = (path, mode = "mmap"))]
    fn new(py: Python<'_>, path: PathBuf, mode: &str) -> PyResult<File> {
        let (load_mode, mode) = match mode {
            "mmap" => (LoadMode::Mmap, "mmap"),
            "read" => (LoadMode::Read, "read"),
            other => {
                return Err(PyValueError::new_err(format!(
                    "mode must be \"mmap\" or \"read\", not {other:?}"
                )))
            }
        };
        let loader = py
            .detach(|| MmapGGUFLoader::open(&path, load_mode))
            .map_err(py_err)?;
        Ok(File {
            loader: RwLock::new(Some(Arc::new(loader))),
            mode,
        })
    }

    /// Drops this object's hold on the file: it is unmapped and closed once
    /// nothing handed out (views, string arrays, tensors) refers to it.
    fn close(&self) {
        if let Ok(mut l) = self.loader.write() {
            *l = None;
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.loader.read().map(|l| l.is_none()).unwrap_or(true)
    }

    #[getter]
    fn mode(&self) -> &'static str {
        self.mode
    }

    #[getter]
    fn version(&self) -> PyResult<u32> {
        Ok(self.loader()?.version())
    }

    #[getter]
    fn alignment(&self) -> PyResult<u64> {
        Ok(self.loader()?.file().alignment)
    }

    #[getter]
    fn data_offset(&self) -> PyResult<u64> {
        Ok(self.loader()?.file().data_offset)
    }

    #[getter]
    fn endianness(&self) -> PyResult<&'static str> {
        Ok(match self.loader()?.endianness() {
            Endianness::Little => "little",
            Endianness::Big => "big",
        })
    }

    #[getter]
    fn paths(&self) -> PyResult<Vec<PathBuf>> {
        Ok(self.loader()?.paths().map(|p| p.to_path_buf()).collect())
    }

    /// The metadata keys in file order.
    fn metadata_keys(&self) -> PyResult<Vec<String>> {
        Ok(self
            .loader()?
            .metadata()
            .keys()
            .map(str::to_string)
            .collect())
    }

    /// The value of `key`, converted (see `meta::to_py`); `KeyError` when
    /// absent.
    fn metadata_get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let owner = self.owner(py)?;
        let loader = owner.get().loader.clone();
        let v = loader
            .metadata()
            .get(key)
            .ok_or_else(|| PyKeyError::new_err(key.to_string()))?;
        meta::to_py(&owner, key, v)
    }

    /// The GGUF type of `key`'s value: `uint32`, `string`, `array[string]`…
    fn metadata_type(&self, key: &str) -> PyResult<String> {
        let loader = self.loader()?;
        let v = loader
            .metadata()
            .get(key)
            .ok_or_else(|| PyKeyError::new_err(key.to_string()))?;
        Ok(meta::type_name(v))
    }

    /// Every tensor's description, in file order (shard after shard).
    fn tensor_infos(&self) -> PyResult<Vec<InfoTuple>> {
        let loader = self.loader()?;
        Ok(loader
            .tensors()
            .map(|t| {
                (
                    t.name.to_string(),
                    t.ty.id(),
                    t.ne().to_vec(),
                    t.file_offset,
                    t.offset,
                    t.n_bytes,
                    t.n_elements,
                )
            })
            .collect())
    }

    /// The tensor's bytes as stored: a read-only view of the mapping (no
    /// copy; it keeps the file mapped), or in read mode a new array.
    fn raw<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let owner = self.owner(py)?;
        let loader = owner.get().loader.clone();
        if loader.tensor_info(name).is_none() {
            return Err(py_err(gguf_loader::Error::TensorNotFound(name.to_string())));
        }
        match loader.mode() {
            LoadMode::Mmap => {
                let bytes = loader.get_tensor_data(name).map_err(py_err)?;
                meta::bytes_view(&owner, bytes)
            }
            LoadMode::Read => {
                let bytes = py
                    .detach(|| loader.read_tensor_data(name).map(|b| b.into_owned()))
                    .map_err(py_err)?;
                let array = PyArray1::from_vec(py, bytes);
                meta::read_only(array.as_any())?;
                Ok(array)
            }
        }
    }

    fn __repr__(&self) -> String {
        match self.loader() {
            Ok(l) => format!(
                "<gguf_loader.GGUFFile {:?} v{} {} tensors, {} keys, {}>",
                l.paths()
                    .next()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                l.version(),
                l.tensor_count(),
                l.metadata().len(),
                self.mode
            ),
            Err(_) => "<gguf_loader.GGUFFile (closed)>".to_string(),
        }
    }
}
