//! Decoded tensors and the devices they live on.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::element::Element;

/// Where a tensor's data lives. `Copy`: pass it by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory.
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (needs the `cuda` feature; not built yet:
    /// every load answers [`Error::UnsupportedDevice`](crate::Error::UnsupportedDevice)).
    Cuda(usize),
}

impl fmt::Display for Device {
    /// `cpu` or `cuda:N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.pad("cpu"),
            Device::Cuda(i) => f.pad(&format!("cuda:{i}")),
        }
    }
}

/// Where a tensor's values are held.
enum Storage<T> {
    /// Its own buffer.
    Owned(Vec<T>),
    /// A range of a buffer shared by the tensors of one model load (one
    /// allocation, so that its pages can be huge pages).
    Shared(Arc<Vec<T>>, Range<usize>),
}

/// A decoded tensor: its shape and its values on a device.
///
/// The values are row-major in [`Tensor::shape`] order (PyTorch,
/// safetensors, numpy): the last dimension varies fastest. [`Tensor::ne`]
/// gives the same dimensions in GGUF order.
pub struct Tensor<T> {
    /// GGUF order: `ne[0]` (the row length) first.
    ne: Vec<usize>,
    data: Storage<T>,
    device: Device,
}

impl<T: Element> Clone for Tensor<T> {
    /// A deep copy with its own buffer.
    fn clone(&self) -> Self {
        Tensor {
            ne: self.ne.clone(),
            data: Storage::Owned(self.data().to_vec()),
            device: self.device,
        }
    }
}

impl<T: Element> PartialEq for Tensor<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ne == other.ne && self.device == other.device && self.data() == other.data()
    }
}

/// `ne` (GGUF order) as usize, if its product is `len`.
fn checked_ne(ne: impl IntoIterator<Item = u64>, len: usize) -> Option<Vec<usize>> {
    let ne = ne
        .into_iter()
        .map(usize::try_from)
        .collect::<Result<Vec<usize>, _>>()
        .ok()?;
    let n = ne.iter().try_fold(1usize, |a, d| a.checked_mul(*d))?;
    (n == len).then_some(ne)
}

impl<T: Element> Tensor<T> {
    /// A CPU tensor of row-major `shape`; `None` unless `data.len()` is the
    /// product of `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<T>) -> Option<Tensor<T>> {
        let ne = checked_ne(shape.iter().rev().map(|d| *d as u64), data.len())?;
        Some(Tensor {
            ne,
            data: Storage::Owned(data),
            device: Device::Cpu,
        })
    }

    /// A CPU tensor from GGUF-order dimensions (as in a tensor info).
    pub(crate) fn from_ne(ne: &[u64], data: Vec<T>) -> Option<Tensor<T>> {
        Some(Tensor {
            ne: checked_ne(ne.iter().copied(), data.len())?,
            data: Storage::Owned(data),
            device: Device::Cpu,
        })
    }

    /// A CPU tensor over `range` of a buffer shared with other tensors.
    pub(crate) fn shared(ne: &[u64], buf: Arc<Vec<T>>, range: Range<usize>) -> Option<Tensor<T>> {
        buf.get(range.clone())?;
        Some(Tensor {
            ne: checked_ne(ne.iter().copied(), range.len())?,
            data: Storage::Shared(buf, range),
            device: Device::Cpu,
        })
    }

    /// The dimensions in GGUF order, as ggml's `ne`: the row length first.
    /// The reverse of [`Self::shape`].
    pub fn ne(&self) -> &[usize] {
        &self.ne
    }

    /// The shape in row-major order (PyTorch, safetensors, numpy): `ne`
    /// reversed. A 2-D weight of `ne = [in, out]` has shape `[out, in]`.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().copied().collect()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.data().len()
    }

    /// True when the tensor holds no values (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.data().is_empty()
    }

    /// The device the values are on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The values, row-major.
    pub fn data(&self) -> &[T] {
        match &self.data {
            Storage::Owned(v) => v,
            Storage::Shared(buf, r) => buf.get(r.clone()).unwrap_or_default(),
        }
    }

    /// The values as bytes in this machine's byte order (little-endian on
    /// x86-64 and aarch64): what safetensors and numpy `tobytes()` hold.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self.data())
    }

    /// The values as an owned vector (a copy when the buffer is shared).
    pub fn into_vec(self) -> Vec<T> {
        match self.data {
            Storage::Owned(v) => v,
            Storage::Shared(buf, r) => buf.get(r).unwrap_or_default().to_vec(),
        }
    }

    /// An `ndarray` view of the values in row-major [`Self::shape`]
    /// (feature `ndarray`).
    #[cfg(feature = "ndarray")]
    pub fn view(&self) -> ndarray::ArrayViewD<'_, T> {
        ndarray::ArrayViewD::from_shape(ndarray::IxDyn(&self.shape()), self.data())
            .expect("a tensor's shape multiplies to its length: checked when it was made")
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor<{}>{:?} on {}",
            T::KIND.name(),
            self.shape(),
            self.device
        )
    }
}
