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
    /// An NVIDIA GPU by ordinal. Needs the `cuda` feature: without it every
    /// load answers [`Error::UnsupportedDevice`](crate::Error::UnsupportedDevice);
    /// with it, where there is no usable GPU,
    /// [`Error::CudaUnavailable`](crate::Error::CudaUnavailable).
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

impl std::str::FromStr for Device {
    type Err = ParseDeviceError;

    /// `cpu`, `cuda` (GPU 0) or `cuda:N` (N in decimal digits), as
    /// [`Display`](fmt::Display) writes it and as PyTorch spells it.
    fn from_str(s: &str) -> Result<Device, ParseDeviceError> {
        let err = || ParseDeviceError {
            input: s.to_string(),
        };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(err)?;
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                n.parse().map(Device::Cuda).map_err(|_| err())
            }
        }
    }
}

/// A device name that is not `cpu`, `cuda` or `cuda:N` ([`Device`]'s
/// `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device '{}' (cpu, cuda, cuda:N)", crate::Escaped(.input))]
pub struct ParseDeviceError {
    /// The name given.
    pub input: String,
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
/// share one huge-page arena.) The exception is a tensor the file holds as
/// `T` already (f16 of an F16 file): unless
/// [`LoadOptions::own_memory`](crate::LoadOptions#structfield.own_memory)
/// asks for a copy, it is a view of the file's read-only mapping
/// ([`Self::is_mapped`]), which it keeps alive; a clone is a copy.
pub struct Tensor<T> {
    /// GGUF order: `ne[0]` (the row length) first.
    ne: Vec<usize>,
    data: Buffer<T>,
    device: Device,
}

impl<T: Element> Clone for Tensor<T> {
    /// A deep copy with its own buffer, on the same device.
    ///
    /// # Panics
    /// For a GPU tensor, when the device cannot allocate or copy the copy
    /// (as `Vec::clone` aborts when the host is out of memory).
    fn clone(&self) -> Self {
        #[cfg(feature = "cuda")]
        if let Buffer::Cuda(s) = &self.data {
            let stream = s.stream();
            // SAFETY: every value is written by the copy before the stream
            // is waited for and the copy handed out.
            let copy = unsafe { crate::cuda::alloc_uninit::<T>(stream, s.len()) }
                .and_then(|mut c| {
                    if !s.is_empty() {
                        stream.memcpy_dtod(s, &mut c)?;
                    }
                    stream.synchronize().map(|_| c)
                })
                .expect("device-to-device copy of a GPU tensor");
            return Tensor {
                ne: self.ne.clone(),
                data: Buffer::Cuda(copy),
                device: self.device,
            };
        }
        Tensor {
            ne: self.ne.clone(),
            data: Buffer::Heap(self.data().to_vec()),
            device: self.device,
        }
    }
}

impl<T: Element> PartialEq for Tensor<T> {
    /// Same shape, same device, same values (GPU tensors are compared
    /// through copies to the host; a failed copy compares unequal).
    fn eq(&self, other: &Self) -> bool {
        if self.ne != other.ne || self.device != other.device {
            return false;
        }
        if self.device == Device::Cpu {
            return self.data() == other.data();
        }
        match (self.to_host(), other.to_host()) {
            (Ok(a), Ok(b)) => a.data() == b.data(),
            _ => false,
        }
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

    /// A GPU tensor over `slice` (of exactly the product of `ne` values).
    #[cfg(feature = "cuda")]
    pub(crate) fn from_cuda(
        ne: &[u64],
        slice: cudarc::driver::CudaSlice<T>,
        device: Device,
    ) -> Option<Tensor<T>> {
        Some(Tensor {
            ne: checked_ne(ne.iter().copied(), slice.len())?,
            data: Buffer::Cuda(slice),
            device,
        })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.ne.iter().product()
    }

    /// True when the tensor holds no values (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor on the host: a copy of a GPU tensor's values (waiting for
    /// the device), or a copy of a CPU tensor. Errs with
    /// [`Error::Cuda`](crate::Error::Cuda) when the device copy fails, and
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when the host
    /// cannot hold it.
    pub fn to_host(&self) -> crate::Result<Tensor<T>> {
        #[cfg(feature = "cuda")]
        if let Buffer::Cuda(s) = &self.data {
            let oom = |_| crate::Error::OutOfMemory {
                tensor: format!("{self:?}"),
                bytes: std::mem::size_of::<T>() as u64 * s.len() as u64,
            };
            let mut host = crate::alloc::try_zeroed_vec::<T>(s.len()).map_err(oom)?;
            let cuda = |e| crate::Error::Cuda {
                device: self.device,
                what: "copying a tensor to the host".to_string(),
                message: crate::cuda::driver_message(e),
            };
            if !s.is_empty() {
                s.stream().memcpy_dtoh(s, &mut host[..]).map_err(cuda)?;
                s.stream().synchronize().map_err(cuda)?;
            }
            return Ok(Tensor {
                ne: self.ne.clone(),
                data: Buffer::Heap(host),
                device: Device::Cpu,
            });
        }
        Ok(Tensor {
            ne: self.ne.clone(),
            data: Buffer::Heap(self.data().to_vec()),
            device: Device::Cpu,
        })
    }

    /// The device buffer of a GPU tensor (`None` on the CPU): its
    /// `stream()` and `context()` are the ones the loader used, so a cudarc
    /// user (candle builds on cudarc) computes on the weights in place.
    #[cfg(feature = "cuda")]
    pub fn cuda_slice(&self) -> Option<&cudarc::driver::CudaSlice<T>> {
        match &self.data {
            Buffer::Cuda(s) => Some(s),
            _ => None,
        }
    }

    /// The device buffer of a GPU tensor, taken (`Err(self)` on the CPU).
    #[cfg(feature = "cuda")]
    pub fn into_cuda_slice(self) -> Result<cudarc::driver::CudaSlice<T>, Tensor<T>> {
        match self.data {
            Buffer::Cuda(s) => Ok(s),
            data => Err(Tensor { data, ..self }),
        }
    }

    /// Whether the values are a view of the model file's read-only mapping
    /// (no copy was made: the file holds them as `T` already; see
    /// [`LoadOptions::own_memory`](crate::LoadOptions#structfield.own_memory)).
    pub fn is_mapped(&self) -> bool {
        self.data.is_mapped()
    }

    /// The device the values are on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The values, row-major. Empty for a tensor on a GPU, whose values are
    /// not in host memory: see [`Self::to_host`].
    pub fn data(&self) -> &[T] {
        self.data.as_slice()
    }

    /// The values as bytes in this machine's byte order (little-endian on
    /// x86-64 and aarch64): what safetensors and numpy `tobytes()` hold.
    /// Empty for a tensor on a GPU (see [`Self::to_host`]).
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
    ///
    /// # Panics
    /// For a GPU tensor whose copy to the host fails: use [`Self::to_host`]
    /// to have the error instead.
    pub fn into_vec(self) -> Vec<T> {
        if self.device != Device::Cpu {
            return self
                .to_host()
                .expect("copy of a GPU tensor to the host")
                .into_vec();
        }
        self.data.into_vec()
    }

    /// An `ndarray` view of the values in row-major [`Self::shape`]
    /// (feature `ndarray`).
    ///
    /// # Panics
    /// For a tensor on a GPU (copy it with [`Self::to_host`] first).
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
