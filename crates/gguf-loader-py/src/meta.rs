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
    values_view(owner, bytes)
}

/// A read-only 1-D numpy view of `values`, which `owner`'s loader owns.
pub(crate) fn values_view<'py, N: numpy::Element>(
    owner: &Bound<'py, Owner>,
    values: &[N],
) -> PyResult<Bound<'py, PyArray1<N>>> {
    let view = ArrayView1::from(values);
    // SAFETY: `values` lies in memory the loader owns (its read-only
    // mapping or its header buffer), which is neither moved nor freed while
    // the loader lives; the array's base is `owner`, which holds the loader,
    // so the memory outlives the array. The array is made read-only below,
    // so numpy never writes the (read-only) mapping.
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
/// arrays `array[uint32]`, `array[array[string]]`…; an array of arrays of
/// different types (or of none) is `array[array]`.
pub(crate) fn type_name(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) if a.elem_type() == ValueType::Array => {
            let mut names = a.iter().map(|item| type_name(&item));
            match names.next() {
                Some(first) if names.all(|n| n == first) => format!("array[{first}]"),
                _ => "array[array]".to_string(),
            }
        }
        Value::Array(a) => format!("array[{}]", a.elem_type().name()),
        other => other.value_type().name().to_string(),
    }
}

/// `v`, the value of `key`, as a Python object.
pub(crate) fn to_py<'py>(
    owner: &Bound<'py, Owner>,
    key: &str,
    v: &Value<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    value_to_py(owner, key, None, v)
}

/// `v` as a Python object; `top` is the bytes of the array of `key` that
/// holds it, `None` when `v` is that value itself.
fn value_to_py<'py>(
    owner: &Bound<'py, Owner>,
    key: &str,
    top: Option<&[u8]>,
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
        Value::Array(a) => array_to_py(owner, key, top, a)?,
    })
}

fn array_to_py<'py>(
    owner: &Bound<'py, Owner>,
    key: &str,
    top: Option<&[u8]>,
    a: &ArrayView<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = owner.py();
    let endianness = owner.get().loader.endianness();
    if let Some(dtype) = numpy_dtype(a.elem_type(), endianness) {
        return bytes_view(owner, a.raw_bytes())?.call_method1("view", (dtype,));
    }
    let raw = a.raw_bytes();
    match a.elem_type() {
        ValueType::String => {
            let (sub, spans) = match top {
                // The value of `key` itself: its strings are found on
                // first use.
                None => (None, OnceLock::new()),
                // An array inside it: where its bytes lie in the value's,
                // and its strings, found now (walking the value again on
                // every use made reading n such arrays take n² steps).
                Some(top) => {
                    // Views of one buffer: the inner array lies in the value.
                    let start = (raw.as_ptr() as usize)
                        .checked_sub(top.as_ptr() as usize)
                        .filter(|s| s + raw.len() <= top.len())
                        .ok_or_else(|| PyValueError::new_err("string array out of bounds"))?;
                    (
                        Some((start, start + raw.len())),
                        OnceLock::from(string_spans(a)),
                    )
                }
            };
            Ok(Bound::new(
                py,
                StringArray {
                    loader: owner.get().loader.clone(),
                    key: key.to_string(),
                    sub,
                    len: usize::try_from(a.len()).unwrap_or(usize::MAX),
                    spans,
                },
            )?
            .into_any())
        }
        _ => {
            let top = top.unwrap_or(raw);
            let list = PyList::empty(py);
            for item in a.iter() {
                list.append(value_to_py(owner, key, Some(top), &item)?)?;
            }
            Ok(list.into_any())
        }
    }
}

/// Each string's byte range in the bytes of `a`, an array of strings.
fn string_spans(a: &ArrayView<'_>) -> Vec<(usize, usize)> {
    let base = a.raw_bytes().as_ptr() as usize;
    a.strings()
        .map(|s| (s.as_bytes().as_ptr() as usize - base, s.as_bytes().len()))
        .collect()
}

/// A metadata array of strings, decoded one at a time when asked (a 262k
/// vocabulary costs nothing until read). A `collections.abc.Sequence` of
/// `str`; `tolist()` decodes every string at once.
#[pyclass(module = "gguf_loader._native", frozen, sequence)]
pub struct StringArray {
    loader: Arc<MmapGGUFLoader>,
    key: String,
    /// Where this array's bytes lie in those of the value of `key`, when
    /// it is an array inside that value.
    sub: Option<(usize, usize)>,
    len: usize,
    /// Each string's byte range in the array's bytes, found on first use.
    spans: OnceLock<Vec<(usize, usize)>>,
}

impl StringArray {
    /// The value of `key` (the file was validated when opened, so it is
    /// found).
    fn top(&self) -> PyResult<ArrayView<'_>> {
        self.loader
            .metadata()
            .get(&self.key)
            .and_then(|v| v.as_array())
            .ok_or_else(|| PyKeyError::new_err(self.key.clone()))
    }

    /// This array's bytes.
    fn bytes(&self) -> PyResult<&[u8]> {
        let top = self.top()?.raw_bytes();
        match self.sub {
            None => Ok(top),
            Some((start, end)) => top
                .get(start..end)
                .ok_or_else(|| PyValueError::new_err("string array out of bounds")),
        }
    }

    fn spans(&self) -> PyResult<&[(usize, usize)]> {
        if let Some(s) = self.spans.get() {
            return Ok(s);
        }
        // Only the value of `key` itself is found late (`sub` is `None`).
        let spans = string_spans(&self.top()?);
        Ok(self.spans.get_or_init(|| spans))
    }

    /// Every string.
    fn all(&self) -> PyResult<Vec<String>> {
        let bytes = self.bytes()?;
        (0..self.len).map(|i| self.get_str(bytes, i)).collect()
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
        let bytes = self.bytes()?;
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
        self.all()
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
        let bytes = self.bytes()?;
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
            let bytes = self.bytes()?;
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
        let bytes = self.bytes()?;
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
