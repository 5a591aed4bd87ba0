//! Decoded tensors and the devices they live on.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::decode::Element;

/// Where a tensor's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory.
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal (needs the `cuda` feature; not built yet).
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Where a tensor's values are held.
#[derive(Clone)]
enum Storage<T> {
    /// Its own buffer.
    Owned(Vec<T>),
    /// A range of a buffer shared by the tensors of one model load (one
    /// allocation, so that its pages can be huge pages).
    Shared(Arc<Vec<T>>, Range<usize>),
}

/// A decoded tensor: its dims and its values on a device.
#[derive(Clone)]
pub struct Tensor<T> {
    dims: Vec<u64>,
    data: Storage<T>,
    device: Device,
}

impl<T: Element> PartialEq for Tensor<T> {
    fn eq(&self, other: &Self) -> bool {
        self.dims == other.dims && self.device == other.device && self.data() == other.data()
    }
}

impl<T: Element> Tensor<T> {
    /// A CPU tensor; `data.len()` must be the product of `dims`.
    pub fn from_vec(dims: Vec<u64>, data: Vec<T>) -> Option<Tensor<T>> {
        let n = dims.iter().try_fold(1u64, |a, d| a.checked_mul(*d))?;
        (n == data.len() as u64).then_some(Tensor {
            dims,
            data: Storage::Owned(data),
            device: Device::Cpu,
        })
    }

    /// A CPU tensor over `range` of a buffer shared with other tensors.
    pub(crate) fn shared(dims: Vec<u64>, buf: Arc<Vec<T>>, range: Range<usize>) -> Tensor<T> {
        debug_assert_eq!(
            dims.iter().product::<u64>(),
            (range.end - range.start) as u64
        );
        Tensor {
            dims,
            data: Storage::Shared(buf, range),
            device: Device::Cpu,
        }
    }

    /// Dimensions in GGUF order (`ne[0]`, the fastest-varying, first).
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// Dimensions in row-major order (PyTorch / safetensors): GGUF's reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|d| *d as usize).collect()
    }

    pub fn len(&self) -> usize {
        self.data().len()
    }

    pub fn is_empty(&self) -> bool {
        self.data().is_empty()
    }

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

    /// The values as an owned vector (a copy when the buffer is shared).
    pub fn into_vec(self) -> Vec<T> {
        match self.data {
            Storage::Owned(v) => v,
            Storage::Shared(buf, r) => buf.get(r).unwrap_or_default().to_vec(),
        }
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
