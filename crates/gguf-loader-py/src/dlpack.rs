//! `DeviceTensor`: a decoded tensor on the CPU or a GPU, handed to other
//! libraries without a copy through DLPack (`torch.from_dlpack`,
//! `cupy.from_dlpack`, `numpy.from_dlpack`).
//!
//! The capsule holds a `DLManagedTensor` (DLPack's unversioned ABI, which
//! every consumer accepts) whose context keeps the tensor alive until the
//! consumer calls the deleter, with or without the GIL.

use std::ffi::{c_void, CStr};
use std::sync::Arc;

use gguf_loader::{bf16, f16, Device, Tensor};
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;

/// A decoded tensor of one of the three output types.
#[derive(Clone)]
pub(crate) enum AnyTensor {
    F32(Arc<Tensor<f32>>),
    F16(Arc<Tensor<f16>>),
    Bf16(Arc<Tensor<bf16>>),
}

macro_rules! each {
    ($t:expr, $x:ident => $e:expr) => {
        match $t {
            AnyTensor::F32($x) => $e,
            AnyTensor::F16($x) => $e,
            AnyTensor::Bf16($x) => $e,
        }
    };
}

impl AnyTensor {
    fn device(&self) -> Device {
        each!(self, t => t.device())
    }

    fn shape(&self) -> Vec<usize> {
        each!(self, t => t.shape())
    }

    /// DLPack's `(code, bits)`: kDLFloat = 2, kDLBfloat = 4.
    fn dl_dtype(&self) -> (u8, u8) {
        match self {
            AnyTensor::F32(_) => (2, 32),
            AnyTensor::F16(_) => (2, 16),
            AnyTensor::Bf16(_) => (4, 16),
        }
    }

    fn dtype_name(&self) -> &'static str {
        match self {
            AnyTensor::F32(_) => "float32",
            AnyTensor::F16(_) => "float16",
            AnyTensor::Bf16(_) => "bfloat16",
        }
    }

    /// The address of the first value, in host or device memory.
    fn data_ptr(&self) -> u64 {
        #[cfg(feature = "cuda")]
        {
            use gguf_loader::cudarc::driver::DevicePtr;
            let _restore = RestoreContext::new(self.device());
            let gpu = each!(self, t => t.cuda_slice().map(|s| s.device_ptr(s.stream()).0));
            if let Some(p) = gpu {
                return p;
            }
        }
        each!(self, t => t.data().as_ptr() as u64)
    }
}

/// Puts the calling thread's current CUDA context back when dropped.
/// cudarc makes a tensor's context current on the thread that works on it,
/// and a Python thread's current context is what torch and cupy take for
/// their current device: a tensor of GPU 1 must not move them off GPU 0.
#[cfg(feature = "cuda")]
struct RestoreContext(Option<gguf_loader::cudarc::driver::sys::CUcontext>);

#[cfg(feature = "cuda")]
impl RestoreContext {
    /// Remembers the current context before work on a tensor of `device`
    /// (nothing for the CPU, where the driver may not even be loaded).
    fn new(device: Device) -> RestoreContext {
        use gguf_loader::cudarc::driver::sys;
        if device == Device::Cpu {
            return RestoreContext(None);
        }
        let mut current = std::ptr::null_mut();
        // SAFETY: one valid out-pointer; the driver is loaded, since the
        // tensor is on a GPU.
        let ok = unsafe { sys::cuCtxGetCurrent(&mut current) } == sys::CUresult::CUDA_SUCCESS;
        RestoreContext(ok.then_some(current))
    }
}

#[cfg(feature = "cuda")]
impl Drop for RestoreContext {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            // SAFETY: `c` was the current context (or none) of this thread
            // when this value was made.
            unsafe {
                let _ = gguf_loader::cudarc::driver::sys::cuCtxSetCurrent(c);
            }
        }
    }
}

/// DLPack's `DLDevice`.
#[repr(C)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

/// DLPack's `DLDataType`.
#[repr(C)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

/// DLPack's `DLTensor`.
#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

/// DLPack's `DLManagedTensor`.
#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// What a capsule's tensor keeps alive: the tensor and its shape and
/// strides arrays.
struct Context {
    _tensor: AnyTensor,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

const DLTENSOR: &CStr = c"dltensor";

/// The `DLManagedTensor` deleter: frees the context (dropping this
/// capsule's reference to the tensor) and the struct itself. For a GPU
/// tensor it first waits for the device: a consumer calls the deleter when
/// its tensor dies, maybe with kernels that read the memory still queued on
/// its own streams, which nothing orders before the free on ours.
unsafe extern "C" fn delete_managed(m: *mut DLManagedTensor) {
    if m.is_null() {
        return;
    }
    // SAFETY: `m` and its context were made by `Box::into_raw` in
    // `DeviceTensor::__dlpack__`, and DLPack calls the deleter once.
    unsafe {
        let ctx = Box::from_raw((*m).manager_ctx.cast::<Context>());
        #[cfg(feature = "cuda")]
        {
            let _restore = RestoreContext::new(ctx._tensor.device());
            // An error here (a failed device) has nowhere to go; the free
            // below reports nothing either.
            let _ = each!(&ctx._tensor, t => t.cuda_slice().map(|s| s.context().synchronize()));
        }
        drop(ctx);
        drop(Box::from_raw(m));
    }
}

/// The capsule's destructor: deletes the tensor unless a consumer took it
/// (consumers rename the capsule `used_dltensor` and call the deleter
/// themselves).
unsafe extern "C" fn capsule_destructor(capsule: *mut pyo3::ffi::PyObject) {
    // SAFETY: called by Python with the capsule being destroyed; a name
    // mismatch makes `PyCapsule_IsValid` return 0 without raising.
    unsafe {
        if pyo3::ffi::PyCapsule_IsValid(capsule, DLTENSOR.as_ptr()) == 1 {
            let m = pyo3::ffi::PyCapsule_GetPointer(capsule, DLTENSOR.as_ptr());
            delete_managed(m.cast::<DLManagedTensor>());
        }
    }
}

/// A decoded tensor on a device: `__dlpack__` / `__dlpack_device__` hand
/// it to torch, cupy or numpy without a copy; `numpy()` copies it to the
/// host. Made by `GGUFFile.load(device=...)` and `GGUFFile.tensor(...,
/// device=...)`.
#[pyclass(module = "gguf_loader._native", frozen)]
pub struct DeviceTensor {
    /// Dropped by hand, in [`Drop`], to put the thread's CUDA context back.
    tensor: std::mem::ManuallyDrop<AnyTensor>,
}

impl DeviceTensor {
    pub(crate) fn new(tensor: AnyTensor) -> DeviceTensor {
        DeviceTensor {
            tensor: std::mem::ManuallyDrop::new(tensor),
        }
    }
}

impl Drop for DeviceTensor {
    fn drop(&mut self) {
        // Freeing the last reference to a GPU tensor makes its context
        // current on this (Python's) thread.
        #[cfg(feature = "cuda")]
        let _restore = RestoreContext::new(self.tensor.device());
        // SAFETY: dropped once, here, and never used again.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.tensor) };
    }
}

#[pymethods]
impl DeviceTensor {
    /// Row-major shape.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.tensor.shape()
    }

    /// `float16`, `float32` or `bfloat16`.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.tensor.dtype_name()
    }

    /// `cpu` or `cuda:N`.
    #[getter]
    fn device(&self) -> String {
        self.tensor.device().to_string()
    }

    /// Bytes of data.
    #[getter]
    fn nbytes(&self) -> usize {
        let elem = if matches!(*self.tensor, AnyTensor::F32(_)) {
            4
        } else {
            2
        };
        self.tensor.shape().iter().product::<usize>() * elem
    }

    /// DLPack's `(device_type, device_id)`: `(1, 0)` for the CPU, `(2, N)`
    /// for CUDA GPU N.
    fn __dlpack_device__(&self) -> (i32, i32) {
        match self.tensor.device() {
            Device::Cpu => (1, 0),
            Device::Cuda(n) => (2, n as i32),
        }
    }

    /// A `dltensor` capsule over this tensor's memory (no copy). The data
    /// is complete before the load returns, so any consumer stream may use
    /// it at once. `copy=True` and a `dl_device` other than the tensor's
    /// raise `BufferError`.
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<Bound<'py, PyAny>>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (stream, max_version);
        if copy == Some(true) {
            return Err(PyBufferError::new_err(
                "DeviceTensor: copy=True is not supported",
            ));
        }
        let (device_type, device_id) = self.__dlpack_device__();
        if let Some(d) = dl_device {
            if d != (device_type, device_id) {
                return Err(PyBufferError::new_err(format!(
                    "DeviceTensor on {} cannot be exported to DLPack device {d:?}",
                    self.device()
                )));
            }
        }
        let shape: Vec<i64> = self.tensor.shape().iter().map(|&d| d as i64).collect();
        let mut strides = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        let (code, bits) = self.tensor.dl_dtype();
        let mut ctx = Box::new(Context {
            _tensor: (*self.tensor).clone(),
            shape,
            strides,
        });
        let managed = Box::new(DLManagedTensor {
            dl_tensor: DLTensor {
                data: self.tensor.data_ptr() as *mut c_void,
                device: DLDevice {
                    device_type,
                    device_id,
                },
                ndim: ctx.shape.len() as i32,
                dtype: DLDataType {
                    code,
                    bits,
                    lanes: 1,
                },
                shape: ctx.shape.as_mut_ptr(),
                strides: ctx.strides.as_mut_ptr(),
                byte_offset: 0,
            },
            manager_ctx: std::ptr::null_mut(),
            deleter: Some(delete_managed),
        });
        let managed = Box::into_raw(managed);
        // SAFETY: `managed` was just made by `Box::into_raw`; the context's
        // vectors are not touched again, so the shape and strides pointers
        // stay valid until the deleter frees the context.
        unsafe { (*managed).manager_ctx = Box::into_raw(ctx).cast::<c_void>() };
        // SAFETY: a valid pointer and a static name; the destructor frees
        // the tensor unless a consumer renamed the capsule.
        let capsule = unsafe {
            pyo3::ffi::PyCapsule_New(
                managed.cast::<c_void>(),
                DLTENSOR.as_ptr(),
                Some(capsule_destructor),
            )
        };
        if capsule.is_null() {
            // SAFETY: the capsule was not made, so nothing else owns it.
            unsafe { delete_managed(managed) };
            return Err(PyErr::fetch(py));
        }
        // SAFETY: `PyCapsule_New` returned a new reference.
        Ok(unsafe { Bound::from_owned_ptr(py, capsule) })
    }

    /// A copy on the host as a numpy array (bf16 as `uint16` bits).
    fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shape = self.tensor.shape();
        fn host<'py, T: gguf_loader::Element, N: numpy::Element + bytemuck::Pod>(
            py: Python<'py>,
            t: &Tensor<T>,
            shape: Vec<usize>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let h = py
                .detach(|| {
                    #[cfg(feature = "cuda")]
                    let _restore = RestoreContext::new(t.device());
                    t.to_host()
                })
                .map_err(crate::py_err)?;
            let src = bytemuck::cast_slice::<T, N>(h.data());
            let mut values: Vec<N> = Vec::new();
            values.try_reserve_exact(src.len()).map_err(|_| {
                pyo3::exceptions::PyMemoryError::new_err(format!(
                    "cannot allocate {} bytes for a host copy (out of memory)",
                    std::mem::size_of_val(src)
                ))
            })?;
            values.extend_from_slice(src);
            numpy::PyArray1::from_vec(py, values).call_method1("reshape", (shape,))
        }
        match &*self.tensor {
            AnyTensor::F32(t) => host::<f32, f32>(py, t, shape),
            AnyTensor::F16(t) => host::<f16, f16>(py, t, shape),
            AnyTensor::Bf16(t) => host::<bf16, u16>(py, t, shape),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "DeviceTensor(shape={:?}, dtype={}, device={})",
            self.shape(),
            self.dtype(),
            self.device()
        )
    }
}
