//! Metadata values as Python objects: scalars as `int` / `float` / `bool`
//! / `str`, numeric arrays as read-only numpy views of the file's bytes,
//! string arrays as [`StringArray`]s that build no string until asked.

use std::sync::{Arc, OnceLock};

use gguf_loader::{ArrayView, Endianness, MmapGGUFLoader, Value, ValueType};
use numpy::ndarray::ArrayView1;
use numpy::PyArray1;
use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySlice, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

/// Keeps a loader (its mapping or header bytes) alive for as long as a
/// numpy view of its bytes exists: the view's `base`.
#[pyclass(module = "gguf_loader._native", frozen)]
pub(crate) struct Owner {
    pub(crate) loader: Arc<MmapGGUFLoader>,
}

/// A read-only numpy `uint8` view of `bytes`, which `owner`'s loader owns.
pub(crate) fn bytes_view<'py>(
    owner: &Bound<'py, Owner>,
    bytes: &[u8],
) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let view = ArrayView1::from(bytes);
    // SAFETY: `bytes` lies in memory the loader owns (its read-only mapping
    // or its header buffer), which is neither moved nor freed while the
    // loader lives; the array's base is `owner`, which holds the loader, so
    // the memory outlives the array. The array is made read-only below, so
    // numpy never writes the (read-only) mapping.
    let array = unsafe { PyArray1::borrow_from_array(&view, owner.clone().into_any()) };
    read_only(array.as_any())?;
    Ok(array)
}

/// Clears a numpy array's `WRITEABLE` flag.
pub(crate) fn read_only(array: &Bound<'_, PyAny>) -> PyResult<()> {
    let kwargs = PyDict::new(array.py());
    kwargs.set_item("write", false)?;
    array.call_method("setflags", (), Some(&kwargs))?;
    Ok(())
}

/// The numpy dtype of a fixed-size GGUF value type in a file of byte order
/// `endianness`.
fn numpy_dtype(ty: ValueType, endianness: Endianness) -> Option<String> {
    use ValueType::*;
    let code = match ty {
        U8 => "u1",
        I8 => "i1",
        Bool => "b1",
        U16 => "u2",
        I16 => "i2",
        U32 => "u4",
        I32 => "i4",
        F32 => "f4",
        U64 => "u8",
        I64 => "i8",
        F64 => "f8",
        String | Array => return None,
    };
    let order = match endianness {
        Endianness::Little => '<',
        Endianness::Big => '>',
    };
    Some(format!("{order}{code}"))
}

/// The type of a metadata value as a string: `uint32`, `string`, or for
/// arrays `array[uint32]`, `array[array[string]]`…
pub(crate) fn type_name(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) => match a.iter().next() {
            Some(first @ Value::Array(_)) => format!("array[{}]", type_name(&first)),
            _ => format!("array[{}]", a.elem_type().name()),
        },
        other => other.value_type().name().to_string(),
    }
}

/// `v` as a Python object. `path` locates an array inside the value of
/// `key` (indices into nested arrays), for the string arrays built lazily.
pub(crate) fn to_py<'py>(
    owner: &Bound<'py, Owner>,
    key: &str,
    path: &mut Vec<usize>,
    v: &Value<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = owner.py();
    Ok(match v {
        Value::U8(x) => x.into_bound_py_any(py)?,
        Value::I8(x) => x.into_bound_py_any(py)?,
        Value::U16(x) => x.into_bound_py_any(py)?,
        Value::I16(x) => x.into_bound_py_any(py)?,
        Value::U32(x) => x.into_bound_py_any(py)?,
        Value::I32(x) => x.into_bound_py_any(py)?,
        Value::U64(x) => x.into_bound_py_any(py)?,
        Value::I64(x) => x.into_bound_py_any(py)?,
        Value::F32(x) => x.into_bound_py_any(py)?,
        Value::F64(x) => x.into_bound_py_any(py)?,
        Value::Bool(x) => x.into_bound_py_any(py)?,
        Value::String(s) => PyString::new(py, &s.to_string_lossy()).into_any(),
        Value::Array(a) => array_to_py(owner, key, path, a)?,
    })
}

fn array_to_py<'py>(
    owner: &Bound<'py, Owner>,
    key: &str,
    path: &mut Vec<usize>,
    a: &ArrayView<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = owner.py();
    let endianness = owner.get().loader.endianness();
    if let Some(dtype) = numpy_dtype(a.elem_type(), endianness) {
        return bytes_view(owner, a.raw_bytes())?.call_method1("view", (dtype,));
    }
    match a.elem_type() {
        ValueType::String => Ok(Bound::new(
            py,
            StringArray {
                loader: owner.get().loader.clone(),
                key: key.to_string(),
                path: path.clone(),
                len: usize::try_from(a.len()).unwrap_or(usize::MAX),
                spans: OnceLock::new(),
            },
        )?
        .into_any()),
        _ => {
            let list = PyList::empty(py);
            for (i, item) in a.iter().enumerate() {
                path.push(i);
                list.append(to_py(owner, key, path, &item)?)?;
                path.pop();
            }
            Ok(list.into_any())
        }
    }
}

/// A metadata array of strings, decoded one at a time when asked (a 262k
/// vocabulary costs nothing until read). A `collections.abc.Sequence` of
/// `str`; `tolist()` decodes every string at once.
#[pyclass(module = "gguf_loader._native", frozen, sequence)]
pub struct StringArray {
    loader: Arc<MmapGGUFLoader>,
    key: String,
    /// Indices into nested arrays, from the value of `key`.
    path: Vec<usize>,
    len: usize,
    /// Each string's byte range in the array's bytes, found on first use.
    spans: OnceLock<Vec<(usize, usize)>>,
}

impl StringArray {
    /// The array this object stands for (the file was validated when
    /// opened, so it is found).
    fn view(&self) -> PyResult<ArrayView<'_>> {
        let mut v = self.loader.metadata().get(&self.key).copied();
        for &i in &self.path {
            v = v.and_then(|v| v.as_array()).and_then(|a| a.iter().nth(i));
        }
        v.and_then(|v| v.as_array())
            .ok_or_else(|| PyKeyError::new_err(self.key.clone()))
    }

    fn spans(&self) -> PyResult<&[(usize, usize)]> {
        if let Some(s) = self.spans.get() {
            return Ok(s);
        }
        let a = self.view()?;
        let base = a.raw_bytes().as_ptr() as usize;
        let spans = a
            .strings()
            .map(|s| (s.as_bytes().as_ptr() as usize - base, s.as_bytes().len()))
            .collect();
        Ok(self.spans.get_or_init(|| spans))
    }

    fn get_str(&self, bytes: &[u8], i: usize) -> PyResult<String> {
        let (start, len) = *self
            .spans()?
            .get(i)
            .ok_or_else(|| PyIndexError::new_err("string array index out of range"))?;
        let s = bytes
            .get(start..start + len)
            .ok_or_else(|| PyValueError::new_err("string array out of bounds"))?;
        Ok(String::from_utf8_lossy(s).into_owned())
    }
}

#[pymethods]
impl StringArray {
    fn __len__(&self) -> usize {
        self.len
    }

    /// The `i`-th string (negative counts from the end), or a list for a
    /// slice.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let a = self.view()?;
        let bytes = a.raw_bytes();
        if let Ok(slice) = index.cast::<PySlice>() {
            let ind = slice.indices(self.len as isize)?;
            let list = PyList::empty(py);
            let mut i = ind.start;
            for _ in 0..ind.slicelength {
                list.append(self.get_str(bytes, i as usize)?)?;
                i += ind.step;
            }
            return Ok(list.into_any());
        }
        let i: isize = match index.extract() {
            Ok(i) => i,
            // An integer too large for an index, as a list says it.
            Err(_) if index.call_method0("__index__").is_ok() => {
                return Err(PyIndexError::new_err(
                    "cannot fit 'int' into an index-sized integer",
                ))
            }
            Err(_) => {
                return Err(PyTypeError::new_err(
                    "string array indices must be integers or slices",
                ))
            }
        };
        let i = if i < 0 { i + self.len as isize } else { i };
        if i < 0 {
            return Err(PyIndexError::new_err("string array index out of range"));
        }
        self.get_str(bytes, i as usize)?.into_bound_py_any(py)
    }

    /// Every string, as a list.
    fn tolist(&self) -> PyResult<Vec<String>> {
        let a = self.view()?;
        Ok(a.strings()
            .map(|s| s.to_string_lossy().into_owned())
            .collect())
    }

    /// Equal to another `StringArray`, or to a `list` or `tuple`, of the
    /// same strings (anything else: `NotImplemented`, so not equal).
    fn __eq__<'py>(&self, other: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = other.py();
        let theirs: Vec<Bound<'py, PyAny>> = if let Ok(o) = other.cast::<StringArray>() {
            if o.get().len != self.len {
                return false.into_bound_py_any(py);
            }
            o.get()
                .tolist()?
                .into_iter()
                .map(|s| PyString::new(py, &s).into_any())
                .collect()
        } else if let Ok(l) = other.cast::<PyList>() {
            l.iter().collect()
        } else if let Ok(t) = other.cast::<PyTuple>() {
            t.iter().collect()
        } else {
            return Ok(py.NotImplemented().into_bound(py));
        };
        if theirs.len() != self.len {
            return false.into_bound_py_any(py);
        }
        let a = self.view()?;
        let bytes = a.raw_bytes();
        for (i, t) in theirs.iter().enumerate() {
            let Ok(t) = t.cast::<PyString>() else {
                return false.into_bound_py_any(py);
            };
            if self.get_str(bytes, i)? != t.to_cow()? {
                return false.into_bound_py_any(py);
            }
        }
        true.into_bound_py_any(py)
    }

    /// Where `value` first is, from `start` up to `stop` (as `list.index`):
    /// `ValueError` if it is not there.
    #[pyo3(signature = (value, start = None, stop = None))]
    fn index(
        &self,
        value: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        stop: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let len = self.len as isize;
        // As list.index: any integer, clamped (one beyond 64 bits too).
        let bound = |i: &Bound<'_, PyAny>| -> PyResult<usize> {
            let i = i.call_method0("__index__")?;
            let i = match i.extract::<isize>() {
                Ok(i) => i,
                Err(_) if i.lt(0)? => isize::MIN,
                Err(_) => isize::MAX,
            };
            Ok(if i < 0 {
                i.saturating_add(len).max(0)
            } else {
                i.min(len)
            } as usize)
        };
        let start = match start {
            Some(s) => bound(s)?,
            None => 0,
        };
        let stop = match stop {
            Some(s) => bound(s)?,
            None => self.len,
        };
        if let Ok(value) = value.extract::<String>() {
            let a = self.view()?;
            let bytes = a.raw_bytes();
            for i in start..stop.max(start) {
                if self.get_str(bytes, i)? == value {
                    return Ok(i);
                }
            }
        }
        Err(PyValueError::new_err(format!(
            "{} is not in the string array",
            value.repr()?
        )))
    }

    /// How many times `value` is in the array.
    fn count(&self, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        let Ok(value) = value.extract::<String>() else {
            return Ok(0);
        };
        let a = self.view()?;
        let bytes = a.raw_bytes();
        let mut n = 0;
        for i in 0..self.len {
            n += usize::from(self.get_str(bytes, i)? == value);
        }
        Ok(n)
    }

    fn __repr__(&self) -> String {
        format!("StringArray({:?}, len={})", self.key, self.len)
    }

    /// Itself: it is immutable.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Itself: it is immutable, and holds only strings.
    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }

    /// Pickled as the list of its strings (a file's bytes are not pickled).
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (Vec<String>,))> {
        Ok((py.get_type::<PyList>().into_any(), (self.tolist()?,)))
    }
}
