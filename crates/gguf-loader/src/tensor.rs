//! Decoded tensors and the devices they live on.

use std::fmt;

use crate::alloc::Buffer;
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

/// A decoded tensor: its shape and its values on a device.
///
/// The values are row-major in [`Tensor::shape`] order (PyTorch,
/// safetensors, numpy): the last dimension varies fastest. [`Tensor::ne`]
/// gives the same dimensions in GGUF order.
///
/// A tensor taken out of a [`Model`](crate::Model) ([`Model::take`](crate::Model::take)),
/// cloned, or decoded alone holds its values in memory of its own: it keeps
/// nothing else of the model alive. (Inside a model, tensors under 2 MiB
/// share one huge-page arena.)
pub struct Tensor<T> {
    /// GGUF order: `ne[0]` (the row length) first.
    ne: Vec<usize>,
    data: Buffer<T>,
    device: Device,
}

impl<T: Element> Clone for Tensor<T> {
    /// A deep copy with its own buffer.
    fn clone(&self) -> Self {
        Tensor {
            ne: self.ne.clone(),
            data: Buffer::Heap(self.data().to_vec()),
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
            data: Buffer::Heap(data),
            device: Device::Cpu,
        })
    }

    /// A CPU tensor from GGUF-order dimensions (as in a tensor info) over
    /// its own buffer; `None` unless the dimensions multiply to its length.
    pub(crate) fn from_buffer(ne: &[u64], data: Buffer<T>) -> Option<Tensor<T>> {
        Some(Tensor {
            ne: checked_ne(ne.iter().copied(), data.as_slice().len())?,
            data,
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
        self.data.as_slice()
    }

    /// The values as bytes in this machine's byte order (little-endian on
    /// x86-64 and aarch64): what safetensors and numpy `tobytes()` hold.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self.data())
    }

    /// The same tensor in memory of its own (a copy when its values are
    /// in an arena shared with other tensors of its model).
    pub(crate) fn into_own(self) -> Tensor<T> {
        Tensor {
            data: self.data.into_own(),
            ..self
        }
    }

    /// The values as an owned vector: the tensor's own vector when it has
    /// one (made by [`Self::from_vec`], or small), else a copy (a large
    /// decoded tensor lives in huge pages of its own, not in a `Vec`).
    pub fn into_vec(self) -> Vec<T> {
        self.data.into_vec()
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
