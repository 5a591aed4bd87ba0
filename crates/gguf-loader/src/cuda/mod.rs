//! NVIDIA GPUs (feature `cuda`): the decode kernels compiled once per
//! process, and the upload pipeline that moves quantized bytes over PCIe
//! and decodes them on the device, bit for bit like the CPU.
//!
//! The driver (`libcuda`) and NVRTC are loaded when first used, not linked:
//! a binary built with the feature runs where there is no GPU, and a load
//! on one answers [`Error::CudaUnavailable`] saying why, in one line.

pub(crate) mod compile;
mod pipeline;
pub(crate) mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use cudarc::driver::{
    result::DriverError, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream,
    LaunchConfig, PushKernelArg,
};

use crate::element::{Element, ElementKind};
use crate::error::{Error, Result};
use crate::format::GgmlType;
use crate::tensor::Device;

pub(crate) use pipeline::load_tensors;

/// Threads per block of every decode kernel (their ABI).
const BLOCK_THREADS: u32 = 256;

/// Values per block of threads the grid is sized for; the kernels loop
/// over any excess.
const VALUES_PER_BLOCK: usize = 2048;

/// What setting up a GPU took, and what it is: the one-off costs a load
/// pays before its first byte ([`cuda_setup`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CudaSetup {
    /// The device.
    pub device: Device,
    /// The card's name, as the driver gives it.
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Device memory in bytes.
    pub total_memory: usize,
    /// Milliseconds to load the driver and create the context.
    pub context_ms: f64,
    /// Milliseconds to compile the decode kernels (or read them from the
    /// disk cache) and load them into the context.
    pub compile_ms: f64,
    /// Whether the kernels came from the disk cache.
    pub kernels_cached: bool,
    /// The disk cache file of the compiled kernels (`None` when the cache
    /// is off: `GGUF_LOADER_CUDA_CACHE=off`).
    pub kernels_cache: Option<std::path::PathBuf>,
    /// The driver's CUDA version, e.g. 13000 for 13.0.
    pub driver_version: i32,
}

/// One GPU set up for decoding: its context, the kernels, the rings.
pub struct Gpu {
    /// The device.
    pub device: Device,
    /// The loader's context on it (the primary context).
    pub ctx: Arc<CudaContext>,
    module: Arc<CudaModule>,
    functions: Mutex<HashMap<(GgmlType, ElementKind), CudaFunction>>,
    /// Staging rings not in use, reused by the next pipeline.
    pub(crate) rings: Mutex<Vec<pipeline::Ring>>,
    /// The stream the outputs are allocated (and freed) on.
    pub out_stream: Arc<CudaStream>,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Whether host memory can be registered read-only.
    pub read_only_register: bool,
    /// What setting it up took.
    pub setup: CudaSetup,
}

/// A driver error as one line: its name and the driver's description.
pub(crate) fn driver_message(e: DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

impl Gpu {
    /// [`Error::Cuda`] for a failure while working on `what`.
    pub fn err(&self, what: &str) -> impl FnOnce(DriverError) -> Error + '_ {
        let what = what.to_string();
        move |e| Error::Cuda {
            device: self.device,
            what,
            message: driver_message(e),
        }
    }

    /// The kernel decoding `ty` to `kind`.
    pub fn function(&self, ty: GgmlType, kind: ElementKind) -> Result<CudaFunction> {
        let mut map = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(&(ty, kind)) {
            return Ok(f.clone());
        }
        let name = crate::decode::cuda::kernel_name(ty, kind);
        let f = self
            .module
            .load_function(&name)
            .map_err(self.err(&format!("kernel {name}")))?;
        map.insert((ty, kind), f.clone());
        Ok(f)
    }

    /// Queues decode kernel `f` on `stream`: `n_blocks` blocks of
    /// `block_size` values each, from device address `src` to `dst`.
    ///
    /// # Safety
    /// `f` decodes the type whose blocks lie at `src` (`n_blocks` of them,
    /// written before anything queued after this on `stream` runs), and
    /// `dst` has room for `n_blocks * block_size` values of `f`'s output;
    /// both stay allocated until the stream has run the kernel.
    pub unsafe fn launch(
        &self,
        f: &CudaFunction,
        stream: &CudaStream,
        src: u64,
        dst: u64,
        n_blocks: u64,
        block_size: u64,
    ) -> std::result::Result<(), DriverError> {
        let values = n_blocks.saturating_mul(block_size) as usize;
        // Enough thread blocks to fill the device several times over; the
        // kernels' grid-stride loops take any excess.
        let grid = values
            .div_ceil(VALUES_PER_BLOCK)
            .clamp(1, self.sm_count as usize * 64) as u32;
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (BLOCK_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(f);
        launch.arg(&src).arg(&dst).arg(&n_blocks);
        // SAFETY: the kernel ABI is (const u8*, out*, u64 n_blocks) for
        // every kernel; the caller vouches for the buffers.
        unsafe { launch.launch(cfg) }.map(|_| ())
    }

    /// Free and total device memory in bytes, once the work queued in the
    /// context is done: a dropped tensor's memory is freed in stream order
    /// (`cuMemFreeAsync`), and the pool gives it back at a synchronization,
    /// so without the wait it would still count as used.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx.synchronize().map_err(self.err("memory query"))?;
        self.ctx.mem_get_info().map_err(self.err("memory query"))
    }
}

fn unavailable(device: Device, message: impl Into<String>) -> Error {
    Error::CudaUnavailable {
        device,
        message: message.into(),
    }
}

fn gpus() -> &'static Mutex<HashMap<usize, Arc<Gpu>>> {
    static GPUS: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();
    GPUS.get_or_init(Default::default)
}

/// The GPU `ordinal`, set up on first use (driver, context, kernels) and
/// kept for the life of the process.
pub fn gpu(ordinal: usize) -> Result<Arc<Gpu>> {
    let mut map = gpus().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = map.get(&ordinal) {
        return Ok(g.clone());
    }
    let device = Device::Cuda(ordinal);
    // cudarc panics where a library or symbol is missing: check first, and
    // turn any panic left into an error rather than an abort.
    let g = std::panic::catch_unwind(|| open(ordinal)).unwrap_or_else(|_| {
        Err(unavailable(
            device,
            "the CUDA driver library failed to load",
        ))
    })?;
    let g = Arc::new(g);
    map.insert(ordinal, g.clone());
    Ok(g)
}

fn open(ordinal: usize) -> Result<Gpu> {
    let device = Device::Cuda(ordinal);
    let t0 = Instant::now();
    // SAFETY: only probes for the shared library by name.
    if !unsafe { sys::is_culib_present() } {
        return Err(unavailable(
            device,
            "no NVIDIA driver found (libcuda.so could not be loaded): no GPU here, or its driver is not installed",
        ));
    }
    let count = CudaContext::device_count().map_err(|e| unavailable(device, driver_message(e)))?;
    if count <= 0 {
        return Err(unavailable(device, "the NVIDIA driver sees no GPU"));
    }
    if ordinal >= count as usize {
        return Err(unavailable(
            device,
            format!(
                "no such GPU: this machine has {count} (cuda:0 to cuda:{})",
                count - 1
            ),
        ));
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(device, driver_message(e)))?;
    let context_ms = t0.elapsed().as_secs_f64() * 1e3;
    let e = |what: &'static str| {
        move |err: DriverError| Error::Cuda {
            device,
            what: what.to_string(),
            message: driver_message(err),
        }
    };
    let name = ctx.name().map_err(e("device name"))?;
    let cc = ctx.compute_capability().map_err(e("compute capability"))?;
    let total_memory = ctx.total_mem().map_err(e("memory size"))?;
    let sm_count = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(e("multiprocessor count"))?
        .max(1) as u32;
    let read_only_register = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED)
        .unwrap_or(0)
        > 0;
    let mut driver_version = 0;
    // SAFETY: one valid out-pointer; the library is loaded.
    unsafe {
        let _ = sys::cuDriverGetVersion(&mut driver_version);
    }
    // SAFETY: only probes for the shared library by name.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(unavailable(
            device,
            "NVRTC not found (libnvrtc.so could not be loaded): add the CUDA toolkit's library folder, e.g. /usr/local/cuda/targets/x86_64-linux/lib, to LD_LIBRARY_PATH",
        ));
    }
    let t1 = Instant::now();
    let build = |read_cache| {
        compile::compile(cc, &name, driver_version, read_cache).map_err(|message| Error::Cuda {
            device,
            what: "compiling the decode kernels".to_string(),
            message,
        })
    };
    let load = |image: &compile::Image| {
        ctx.load_module(match image {
            compile::Image::Cubin(bytes) => cudarc::nvrtc::Ptx::from_binary(bytes.clone()),
            compile::Image::Ptx(src) => cudarc::nvrtc::Ptx::from_src(src.clone()),
        })
    };
    let mut compiled = build(true)?;
    let module = match load(&compiled.image) {
        Ok(m) => m,
        // A cached file the driver refuses (damaged, or from another
        // driver): compiled afresh, which also rewrites the cache.
        Err(_) if compiled.from_cache => {
            compiled = build(false)?;
            load(&compiled.image).map_err(e("loading the decode kernels"))?
        }
        Err(err) => {
            let mut message = driver_message(err);
            let nvrtc = compile::nvrtc_version();
            let driver = (driver_version / 1000, driver_version % 1000 / 10);
            if nvrtc > driver {
                message += &format!(
                    "; NVRTC {}.{} is newer than the driver (CUDA {}.{}): use the NVRTC of a CUDA no newer than the driver (LD_LIBRARY_PATH), or update the driver",
                    nvrtc.0, nvrtc.1, driver.0, driver.1
                );
            }
            return Err(Error::Cuda {
                device,
                what: "loading the decode kernels".to_string(),
                message,
            });
        }
    };
    let compile_ms = t1.elapsed().as_secs_f64() * 1e3;
    let out_stream = ctx.new_stream().map_err(e("creating a stream"))?;
    Ok(Gpu {
        device,
        ctx,
        module,
        functions: Mutex::new(HashMap::new()),
        rings: Mutex::new(Vec::new()),
        out_stream,
        sm_count,
        read_only_register,
        setup: CudaSetup {
            device,
            name,
            compute_capability: cc,
            total_memory,
            context_ms,
            compile_ms,
            kernels_cached: compiled.from_cache,
            kernels_cache: compiled.cache_file,
            driver_version,
        },
    })
}

/// Sets up GPU `ordinal` for decoding now (loads the driver, creates the
/// context, compiles or reads the kernels from the disk cache) and says
/// what that took. Loads do this on first use; call it first to keep those
/// one-off costs out of a load's time. Errs with [`Error::CudaUnavailable`]
/// (no driver, no such GPU, no NVRTC) or [`Error::Cuda`].
pub fn cuda_setup(ordinal: usize) -> Result<CudaSetup> {
    Ok(gpu(ordinal)?.setup.clone())
}

/// Free and total memory of GPU `ordinal`, in bytes, as the driver counts
/// them once the work queued on it is done, so that the memory of tensors
/// already dropped counts as free (sets the GPU up first, as
/// [`cuda_setup`] does).
pub fn cuda_memory(ordinal: usize) -> Result<(usize, usize)> {
    gpu(ordinal)?.memory()
}

/// Frees the staging rings GPU `ordinal` keeps between loads (by default
/// four 16 MiB slots: 64 MiB of VRAM and as much pinned host memory), for a
/// program done loading; a later load makes them again. Sets nothing up: a
/// GPU not used yet has none. The memory is back once the GPU's queued work
/// is done ([`cuda_memory`] waits for it).
pub fn cuda_release_staging(ordinal: usize) {
    let g = gpus()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&ordinal)
        .cloned();
    if let Some(g) = g {
        let rings = std::mem::take(&mut *g.rings.lock().unwrap_or_else(|e| e.into_inner()));
        drop(rings);
    }
}

/// An uninitialised device buffer of `n` values of `T` on `stream`, with
/// no zero-byte allocation: `cuMemAlloc` refuses one, and what
/// `cuMemAllocAsync` / `cuMemFreeAsync` make of one is undocumented. For
/// `n == 0` one value is allocated and the slice over it holds none; its
/// drop frees that value.
///
/// # Safety
/// Nothing reads a value before it is written.
pub(crate) unsafe fn alloc_uninit<T: cudarc::driver::DeviceRepr>(
    stream: &Arc<CudaStream>,
    n: usize,
) -> std::result::Result<CudaSlice<T>, DriverError> {
    if n > 0 {
        // SAFETY: the caller's.
        return unsafe { stream.alloc::<T>(n) };
    }
    // SAFETY: the caller's (and a slice of none reads nothing).
    let ptr = unsafe { stream.alloc::<T>(1) }?.leak();
    // SAFETY: `ptr` is the live allocation of `stream` leaked just above,
    // now owned by this slice alone, which claims none of its bytes and
    // frees it on the same stream.
    Ok(unsafe { stream.upgrade_device_ptr::<T>(ptr, 0) })
}

/// A device buffer of `n` values of `T`, allocated on the output stream
/// (uninitialised: the caller writes every value before anyone reads).
pub(crate) fn alloc_output<T: Element>(g: &Gpu, n: usize, tensor: &str) -> Result<CudaSlice<T>> {
    let bytes = n
        .checked_mul(std::mem::size_of::<T>())
        .ok_or_else(|| Error::TooLarge(tensor.to_string()))?;
    // SAFETY: every value is written by the decode kernels before the
    // tensor is handed out (the pipeline synchronizes first).
    unsafe { alloc_uninit::<T>(&g.out_stream, n) }.map_err(|e| Error::Cuda {
        device: g.device,
        what: tensor.to_string(),
        message: format!("allocating {bytes} bytes: {}", driver_message(e)),
    })
}
