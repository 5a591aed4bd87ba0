//! A stand-in for the NVIDIA driver library (`libcuda.so`), for testing
//! gguf-loader's GPU host code on a machine without a GPU.
//!
//! cudarc loads the driver at run time by name, so this library, copied to
//! a folder of its own as `libcuda.so` and put first on `LD_LIBRARY_PATH`
//! (`scripts/test-fake-gpu.sh`), takes its place. It exports the part of
//! the driver API that gguf-loader's loads use, and behaves as the driver
//! does where that part of the host code could go wrong:
//!
//! - **Kernels.** A module is the CUBIN (or PTX) that NVRTC really compiled;
//!   a function is looked up in it by name, and a launch runs the same
//!   kernel compiled as host C++ (`gguf-loader-cuda-host`) over the grid
//!   asked for, with the decode ABI's arguments read from the launch's
//!   parameter array. Its input and output must lie wholly inside live
//!   device allocations, 256-byte aligned; any access outside them, and any
//!   fault, is a sticky error (`CUDA_ERROR_ILLEGAL_ADDRESS`) returned by
//!   every call after, as on a GPU.
//! - **Asynchrony.** Every stream is a host thread running its queue in
//!   order after a random delay per operation; events, stream waits and
//!   synchronizations order them as the driver does. Asynchronous copies
//!   from page-locked memory read it when they run, copies from pageable
//!   memory when called.
//! - **Memory.** Device memory is host memory poisoned with a pattern
//!   (unwritten outputs show), kept poisoned a while after a free (a use
//!   after free is caught); pointers are checked against the table of
//!   allocations and registrations; zero-byte allocations are refused, as
//!   `cuMemAlloc` refuses them; a fixed capacity runs out.
//!
//! - **The forward pass.** `gguf-loader-llm`'s GPU kernels (RMSNorm, RoPE,
//!   attention, ...) are written again in Rust from their CUDA source
//!   (`forward.rs`), with the same reductions, and the library also answers
//!   for cuBLAS (`cublas.rs`: a handle on a stream and `cublasGemmEx`),
//!   each launch's and GEMM's ranges checked against the device memory.
//!   That Rust is held to the CUDA text bit for bit (`forward_tests.rs`):
//!   every kernel's launches on random inputs against the kernel text run
//!   as host C++ with its thread blocks emulated
//!   (`gguf_loader_cuda_host::forward`), its threads in three orders.
//!
//! What it cannot check: the device code on a device (the decode kernels'
//! host build is tested bit for bit against the CPU elsewhere, the forward
//! kernels' against this crate's, and NVRTC compiles both; a GPU's expf,
//! tanhf and sqrtf are its own), real concurrency between the copy engines
//! and the SMs, and timing.
//!
//! Settings (environment): `GL_FAKE_CUDA_DEVICES` (GPUs, default 1),
//! `GL_FAKE_CUDA_MEMORY` (bytes per GPU, default 16 GiB),
//! `GL_FAKE_CUDA_REGISTER=0` (host registration unsupported),
//! `GL_FAKE_CUDA_DELAY_US` (the longest delay per queued operation,
//! default 300; 0 for none).
#![allow(non_snake_case)] // the driver API's names
#![allow(clippy::missing_safety_doc)] // the driver API's contracts

mod cublas;
mod forward;
mod mem;
mod queue;

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;

use gguf_loader::internals::cuda_kernels::kernel_name;
use gguf_loader::{ElementKind, GgmlType};
use gguf_loader_cuda_host::{Bounds, HostKernel, Launch};

use mem::Kind;
use queue::{Event, Stream};

type CUresult = c_int;
type CUdevice = c_int;
type CUdeviceptr = u64;

const SUCCESS: CUresult = 0;
const INVALID_VALUE: CUresult = 1;
const OUT_OF_MEMORY: CUresult = 2;
const NOT_INITIALIZED: CUresult = 3;
const INVALID_DEVICE: CUresult = 101;
const INVALID_IMAGE: CUresult = 200;
const INVALID_CONTEXT: CUresult = 201;
const INVALID_HANDLE: CUresult = 400;
const NOT_FOUND: CUresult = 500;
const NOT_READY: CUresult = 600;
const ILLEGAL_ADDRESS: CUresult = 700;
const HOST_MEMORY_ALREADY_REGISTERED: CUresult = 712;
const HOST_MEMORY_NOT_REGISTERED: CUresult = 713;
const NOT_SUPPORTED: CUresult = 801;

/// (code, name, description) of the results this library returns.
const ERRORS: &[(CUresult, &CStr, &CStr)] = &[
    (SUCCESS, c"CUDA_SUCCESS", c"no error"),
    (
        INVALID_VALUE,
        c"CUDA_ERROR_INVALID_VALUE",
        c"invalid argument",
    ),
    (OUT_OF_MEMORY, c"CUDA_ERROR_OUT_OF_MEMORY", c"out of memory"),
    (
        NOT_INITIALIZED,
        c"CUDA_ERROR_NOT_INITIALIZED",
        c"initialization error",
    ),
    (
        INVALID_DEVICE,
        c"CUDA_ERROR_INVALID_DEVICE",
        c"invalid device ordinal",
    ),
    (
        INVALID_IMAGE,
        c"CUDA_ERROR_INVALID_IMAGE",
        c"device kernel image is invalid",
    ),
    (
        INVALID_CONTEXT,
        c"CUDA_ERROR_INVALID_CONTEXT",
        c"invalid device context",
    ),
    (
        INVALID_HANDLE,
        c"CUDA_ERROR_INVALID_HANDLE",
        c"invalid resource handle",
    ),
    (
        NOT_FOUND,
        c"CUDA_ERROR_NOT_FOUND",
        c"named symbol not found",
    ),
    (NOT_READY, c"CUDA_ERROR_NOT_READY", c"device not ready"),
    (
        ILLEGAL_ADDRESS,
        c"CUDA_ERROR_ILLEGAL_ADDRESS",
        c"an illegal memory access was encountered",
    ),
    (
        HOST_MEMORY_ALREADY_REGISTERED,
        c"CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
        c"part or all of the requested memory range is already mapped",
    ),
    (
        HOST_MEMORY_NOT_REGISTERED,
        c"CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
        c"pointer does not correspond to a registered memory region",
    ),
    (
        NOT_SUPPORTED,
        c"CUDA_ERROR_NOT_SUPPORTED",
        c"operation not supported",
    ),
];

static INITIALIZED: AtomicBool = AtomicBool::new(false);
/// The first fault of a kernel or queued copy: every call after returns it.
static STICKY: AtomicI32 = AtomicI32::new(SUCCESS);

/// The primary context of each device: a non-null handle per ordinal.
fn primary_ctx(dev: CUdevice) -> usize {
    0x1000 + dev as usize * 0x10
}

fn ctx_device(ctx: usize) -> Option<CUdevice> {
    let d = ctx.checked_sub(0x1000)? / 0x10;
    (ctx == primary_ctx(d as CUdevice) && (d as c_int) < device_count()).then_some(d as CUdevice)
}

thread_local! {
    static CURRENT: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn device_count() -> c_int {
    env_num("GL_FAKE_CUDA_DEVICES", 1).min(64) as c_int
}

fn capacity() -> usize {
    env_num("GL_FAKE_CUDA_MEMORY", 16 << 30) as usize
}

/// Reports a fault on the device and makes it sticky.
fn fault(what: String) {
    eprintln!("fake CUDA device: {what}");
    let _ = STICKY.compare_exchange(SUCCESS, ILLEGAL_ADDRESS, Ordering::SeqCst, Ordering::SeqCst);
}

/// `Err` with the result to return before anything else: not initialized,
/// or a sticky fault.
fn ready() -> Result<(), CUresult> {
    if !INITIALIZED.load(Ordering::SeqCst) {
        return Err(NOT_INITIALIZED);
    }
    match STICKY.load(Ordering::SeqCst) {
        SUCCESS => Ok(()),
        e => Err(e),
    }
}

/// Writes `v` through the caller's out-pointer `p`; `INVALID_VALUE` when
/// `p` is null.
fn put<T>(p: *mut T, v: T) -> CUresult {
    if p.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: a non-null out-pointer of the caller's, valid for one write
    // of a `T` (the driver API's contract).
    unsafe { p.write(v) };
    SUCCESS
}

macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

/// Runs `op` in the order of `stream`: queued on its thread, or for the
/// default streams (0, legacy, per-thread) after every stream's work.
fn enqueue(stream: usize, op: queue::Op) -> CUresult {
    if stream <= 2 {
        Stream::synchronize_all();
        op();
        return SUCCESS;
    }
    match Stream::get(stream) {
        Some(s) => {
            s.push(op);
            SUCCESS
        }
        None => INVALID_HANDLE,
    }
}

/// Waits for `stream`'s work (the default streams: every stream's).
fn sync_stream(stream: usize) -> CUresult {
    if stream <= 2 {
        Stream::synchronize_all();
    } else {
        match Stream::get(stream) {
            Some(s) => s.synchronize(),
            None => return INVALID_HANDLE,
        }
    }
    STICKY.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Initialization, devices, contexts.

#[no_mangle]
pub extern "C" fn cuInit(flags: c_uint) -> CUresult {
    if flags != 0 {
        return INVALID_VALUE;
    }
    INITIALIZED.store(true, Ordering::SeqCst);
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(v: *mut c_int) -> CUresult {
    put(v, 13000)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(n: *mut c_int) -> CUresult {
    check!(ready());
    put(n, device_count())
}

fn valid_device(dev: CUdevice) -> Result<(), CUresult> {
    ready()?;
    if dev < 0 || dev >= device_count() {
        return Err(INVALID_DEVICE);
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(dev: *mut CUdevice, ordinal: c_int) -> CUresult {
    check!(valid_device(ordinal));
    put(dev, ordinal)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    check!(valid_device(dev));
    if name.is_null() || len <= 0 {
        return INVALID_VALUE;
    }
    let s = b"gguf-loader fake GPU (host emulation)\0";
    let n = s.len().min(len as usize);
    // SAFETY: the caller's buffer of `len` bytes; `n <= len`.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr().cast::<c_char>(), name, n);
        *name.add(n - 1) = 0;
    }
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    check!(valid_device(dev));
    put(bytes, capacity())
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    v: *mut c_int,
    attrib: c_int,
    dev: CUdevice,
) -> CUresult {
    check!(valid_device(dev));
    let value = match attrib {
        1 => 1024,      // max threads per block
        2 => 1024,      // max block dim x
        5 => i32::MAX,  // max grid dim x
        6 | 7 => 65535, // max grid dim y, z
        10 => 32,       // warp size
        16 => 132,      // multiprocessors (an H200's)
        19 => 1,        // can map host memory
        41 => 1,        // unified addressing
        75 => 9,        // compute capability major
        76 => 0,        // minor
        113 => 1,       // read-only host register supported
        115 => 1,       // memory pools supported
        _ => 0,
    };
    put(v, value)
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut u8, dev: CUdevice) -> CUresult {
    check!(valid_device(dev));
    if uuid.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: a CUuuid is 16 bytes.
    unsafe { std::ptr::write_bytes(uuid, dev as u8, 16) };
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut u8, dev: CUdevice) -> CUresult {
    // SAFETY: the same contract.
    unsafe { cuDeviceGetUuid_v2(uuid, dev) }
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(ctx: *mut usize, dev: CUdevice) -> CUresult {
    check!(valid_device(dev));
    put(ctx, primary_ctx(dev))
}

#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    check!(valid_device(dev));
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(ctx: *mut usize) -> CUresult {
    check!(ready());
    put(
        ctx,
        CURRENT.with(|s| s.borrow().last().copied().unwrap_or(0)),
    )
}

#[no_mangle]
pub extern "C" fn cuCtxSetCurrent(ctx: usize) -> CUresult {
    check!(ready());
    if ctx != 0 && ctx_device(ctx).is_none() {
        return INVALID_CONTEXT;
    }
    CURRENT.with(|s| {
        let mut s = s.borrow_mut();
        s.pop();
        if ctx != 0 {
            s.push(ctx);
        }
    });
    SUCCESS
}

#[no_mangle]
pub extern "C" fn cuCtxPushCurrent_v2(ctx: usize) -> CUresult {
    check!(ready());
    if ctx_device(ctx).is_none() {
        return INVALID_CONTEXT;
    }
    CURRENT.with(|s| s.borrow_mut().push(ctx));
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(ctx: *mut usize) -> CUresult {
    check!(ready());
    let Some(c) = CURRENT.with(|s| s.borrow_mut().pop()) else {
        return INVALID_CONTEXT;
    };
    if !ctx.is_null() {
        // SAFETY: the caller's out-pointer, checked non-null.
        unsafe { *ctx = c };
    }
    SUCCESS
}

/// The current context's device: every call below that works on "the
/// current context" needs one, as with the real driver.
fn current_device() -> Result<CUdevice, CUresult> {
    ready()?;
    CURRENT
        .with(|s| s.borrow().last().copied())
        .and_then(ctx_device)
        .ok_or(INVALID_CONTEXT)
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(dev: *mut CUdevice) -> CUresult {
    let d = check!(current_device());
    put(dev, d)
}

#[no_mangle]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    check!(current_device());
    sync_stream(0)
}

/// The driver's private tables (NVRTC 13 asks for them when it finds a
/// driver): none here, which NVRTC takes as a driver without them.
#[no_mangle]
pub unsafe extern "C" fn cuGetExportTable(table: *mut *const c_void, _id: *const u8) -> CUresult {
    if !table.is_null() {
        // SAFETY: the caller's out-pointer, checked non-null.
        unsafe { *table = std::ptr::null() };
    }
    NOT_FOUND
}

// ---------------------------------------------------------------------------
// Errors.

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(e: CUresult, s: *mut *const c_char) -> CUresult {
    error_text(e, s, true)
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(e: CUresult, s: *mut *const c_char) -> CUresult {
    error_text(e, s, false)
}

fn error_text(e: CUresult, s: *mut *const c_char, name: bool) -> CUresult {
    let Some(&(_, n, d)) = ERRORS.iter().find(|(c, _, _)| *c == e) else {
        return INVALID_VALUE;
    };
    if s.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: the caller's out-pointer, checked non-null; the strings are
    // static.
    unsafe { *s = if name { n.as_ptr() } else { d.as_ptr() } };
    SUCCESS
}

// ---------------------------------------------------------------------------
// Streams and events.

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(s: *mut usize, _flags: c_uint) -> CUresult {
    check!(current_device());
    if s.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: the caller's out-pointer, checked non-null.
    unsafe { *s = Stream::create() };
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    s: *mut usize,
    flags: c_uint,
    _priority: c_int,
) -> CUresult {
    // SAFETY: the same contract.
    unsafe { cuStreamCreate(s, flags) }
}

#[no_mangle]
pub extern "C" fn cuStreamDestroy_v2(s: usize) -> CUresult {
    check!(ready());
    if Stream::destroy(s) {
        SUCCESS
    } else {
        INVALID_HANDLE
    }
}

#[no_mangle]
pub extern "C" fn cuStreamSynchronize(s: usize) -> CUresult {
    check!(ready());
    sync_stream(s)
}

#[no_mangle]
pub extern "C" fn cuStreamQuery(s: usize) -> CUresult {
    // A query that waits answers "done", which is always a possible answer.
    cuStreamSynchronize(s)
}

#[no_mangle]
pub extern "C" fn cuStreamWaitEvent(s: usize, e: usize, _flags: c_uint) -> CUresult {
    check!(ready());
    let Some(ev) = Event::get(e) else {
        return INVALID_HANDLE;
    };
    let g = ev.generation();
    enqueue(s, Box::new(move || ev.wait_for(g)))
}

#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(e: *mut usize, _flags: c_uint) -> CUresult {
    check!(current_device());
    if e.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: the caller's out-pointer, checked non-null.
    unsafe { *e = Event::create() };
    SUCCESS
}

#[no_mangle]
pub extern "C" fn cuEventDestroy_v2(e: usize) -> CUresult {
    check!(ready());
    if Event::destroy(e) {
        SUCCESS
    } else {
        INVALID_HANDLE
    }
}

#[no_mangle]
pub extern "C" fn cuEventRecord(e: usize, s: usize) -> CUresult {
    check!(ready());
    let Some(ev) = Event::get(e) else {
        return INVALID_HANDLE;
    };
    if s <= 2 {
        Stream::synchronize_all();
        ev.record(None);
        return SUCCESS;
    }
    match Stream::get(s) {
        Some(st) => {
            ev.record(Some(st));
            SUCCESS
        }
        None => INVALID_HANDLE,
    }
}

#[no_mangle]
pub extern "C" fn cuEventSynchronize(e: usize) -> CUresult {
    check!(ready());
    let Some(ev) = Event::get(e) else {
        return INVALID_HANDLE;
    };
    ev.wait_for(ev.generation());
    STICKY.load(Ordering::SeqCst)
}

#[no_mangle]
pub extern "C" fn cuEventQuery(e: usize) -> CUresult {
    check!(ready());
    match Event::get(e) {
        Some(ev) if ev.is_done() => SUCCESS,
        Some(_) => NOT_READY,
        None => INVALID_HANDLE,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime(ms: *mut f32, start: usize, end: usize) -> CUresult {
    check!(ready());
    let (Some(a), Some(b)) = (Event::get(start), Event::get(end)) else {
        return INVALID_HANDLE;
    };
    if ms.is_null() {
        return INVALID_VALUE;
    }
    let (Some(ta), Some(tb)) = (a.reached_at(), b.reached_at()) else {
        return NOT_READY;
    };
    let d = if tb >= ta {
        (tb - ta).as_secs_f64()
    } else {
        -(ta - tb).as_secs_f64()
    };
    // SAFETY: the caller's out-pointer, checked non-null.
    unsafe { *ms = (d * 1e3) as f32 };
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime_v2(ms: *mut f32, start: usize, end: usize) -> CUresult {
    // SAFETY: the same contract.
    unsafe { cuEventElapsedTime(ms, start, end) }
}

// ---------------------------------------------------------------------------
// Memory.

fn device_alloc(p: *mut CUdeviceptr, bytes: usize) -> CUresult {
    check!(current_device());
    if p.is_null() || bytes == 0 {
        return INVALID_VALUE;
    }
    if mem::device_bytes().saturating_add(bytes) > capacity() {
        return OUT_OF_MEMORY;
    }
    match mem::alloc(bytes, Kind::Device, 0x5A) {
        Some(a) => {
            // SAFETY: the caller's out-pointer, checked non-null.
            unsafe { *p = a as CUdeviceptr };
            SUCCESS
        }
        None => OUT_OF_MEMORY,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(p: *mut CUdeviceptr, bytes: usize) -> CUresult {
    device_alloc(p, bytes)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(p: *mut CUdeviceptr, bytes: usize, s: usize) -> CUresult {
    if s > 2 && Stream::get(s).is_none() {
        return INVALID_HANDLE;
    }
    device_alloc(p, bytes)
}

#[no_mangle]
pub extern "C" fn cuMemFree_v2(p: CUdeviceptr) -> CUresult {
    check!(ready());
    Stream::synchronize_all();
    if mem::free(p as usize, Kind::Device) {
        SUCCESS
    } else {
        INVALID_VALUE
    }
}

#[no_mangle]
pub extern "C" fn cuMemFreeAsync(p: CUdeviceptr, s: usize) -> CUresult {
    check!(ready());
    if mem::find(p as usize, 0).map(|(k, _)| k) != Some(Kind::Device) {
        return INVALID_VALUE;
    }
    enqueue(
        s,
        Box::new(move || {
            if !mem::free(p as usize, Kind::Device) {
                fault(format!(
                    "cuMemFreeAsync of {p:#x}: not an allocation (freed twice?)"
                ));
            }
        }),
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    check!(current_device());
    if free.is_null() || total.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: the caller's out-pointers, checked non-null.
    unsafe {
        *total = capacity();
        *free = capacity().saturating_sub(mem::device_bytes());
    }
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuMemHostAlloc(
    p: *mut *mut c_void,
    bytes: usize,
    _flags: c_uint,
) -> CUresult {
    check!(current_device());
    if p.is_null() || bytes == 0 {
        return INVALID_VALUE;
    }
    match mem::alloc(bytes, Kind::Pinned, 0xC3) {
        Some(a) => {
            // SAFETY: the caller's out-pointer, checked non-null.
            unsafe { *p = a as *mut c_void };
            SUCCESS
        }
        None => OUT_OF_MEMORY,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocHost_v2(p: *mut *mut c_void, bytes: usize) -> CUresult {
    // SAFETY: the same contract.
    unsafe { cuMemHostAlloc(p, bytes, 0) }
}

#[no_mangle]
pub extern "C" fn cuMemFreeHost(p: *mut c_void) -> CUresult {
    check!(ready());
    // Copies still queued may read it.
    Stream::synchronize_all();
    if mem::free(p as usize, Kind::Pinned) {
        SUCCESS
    } else {
        INVALID_VALUE
    }
}

#[no_mangle]
pub extern "C" fn cuMemHostRegister_v2(p: *mut c_void, bytes: usize, _flags: c_uint) -> CUresult {
    check!(current_device());
    if env_num("GL_FAKE_CUDA_REGISTER", 1) == 0 {
        return NOT_SUPPORTED;
    }
    if p.is_null() || bytes == 0 {
        return INVALID_VALUE;
    }
    if mem::register(p as usize, bytes) {
        SUCCESS
    } else {
        HOST_MEMORY_ALREADY_REGISTERED
    }
}

#[no_mangle]
pub extern "C" fn cuMemHostUnregister(p: *mut c_void) -> CUresult {
    check!(ready());
    // Copies still queued may read it.
    Stream::synchronize_all();
    if mem::unregister(p as usize) {
        SUCCESS
    } else {
        HOST_MEMORY_NOT_REGISTERED
    }
}

/// A copy of `n` bytes from `src` to `dst` in the order of `stream`,
/// checked when called (device pointers in live allocations) and again
/// when it runs. `from_host` / `to_host`: which side is host memory; a
/// pageable host side is copied when called, as the driver does.
fn copy(
    dst: usize,
    src: usize,
    n: usize,
    stream: usize,
    from_host: bool,
    to_host: bool,
) -> CUresult {
    check!(ready());
    if n == 0 {
        return SUCCESS;
    }
    if dst == 0 || src == 0 {
        return INVALID_VALUE;
    }
    if (!from_host && !mem::is_device(src, n)) || (!to_host && !mem::is_device(dst, n)) {
        return INVALID_VALUE;
    }
    let checked = move || {
        let ok = (from_host || mem::is_device(src, n)) && (to_host || mem::is_device(dst, n));
        if ok {
            // SAFETY: both ranges are live: the device sides by the table,
            // the host sides by the caller's contract (pinned or registered
            // host memory stays valid until the work reading or writing it
            // is done, which the caller must wait for before freeing it).
            unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, n) };
        } else {
            fault(format!(
                "a queued copy of {n} bytes from {src:#x} to {dst:#x} found its device memory freed"
            ));
        }
    };
    if from_host && !mem::is_page_locked(src, n) {
        // Pageable: the driver stages it before returning.
        // SAFETY: the caller's `n` readable bytes at `src`.
        let staged = unsafe { std::slice::from_raw_parts(src as *const u8, n) }.to_vec();
        return enqueue(
            stream,
            Box::new(move || {
                if mem::is_device(dst, n) {
                    // SAFETY: a live device range of `n` bytes.
                    unsafe { std::ptr::copy_nonoverlapping(staged.as_ptr(), dst as *mut u8, n) };
                } else {
                    fault(format!(
                        "a queued copy to {dst:#x} found its device memory freed"
                    ));
                }
            }),
        );
    }
    if to_host && !mem::is_page_locked(dst, n) {
        // Pageable: synchronous.
        let rc = sync_stream(stream);
        if rc != SUCCESS {
            return rc;
        }
        checked();
        return STICKY.load(Ordering::SeqCst);
    }
    enqueue(stream, Box::new(checked))
}

#[no_mangle]
pub extern "C" fn cuMemcpyHtoDAsync_v2(
    dst: CUdeviceptr,
    src: *const c_void,
    n: usize,
    s: usize,
) -> CUresult {
    copy(dst as usize, src as usize, n, s, true, false)
}

#[no_mangle]
pub extern "C" fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, n: usize) -> CUresult {
    match copy(dst as usize, src as usize, n, 0, true, false) {
        SUCCESS => sync_stream(0),
        e => e,
    }
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoHAsync_v2(
    dst: *mut c_void,
    src: CUdeviceptr,
    n: usize,
    s: usize,
) -> CUresult {
    copy(dst as usize, src as usize, n, s, false, true)
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, n: usize) -> CUresult {
    match copy(dst as usize, src as usize, n, 0, false, true) {
        SUCCESS => sync_stream(0),
        e => e,
    }
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoDAsync_v2(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    n: usize,
    s: usize,
) -> CUresult {
    copy(dst as usize, src as usize, n, s, false, false)
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> CUresult {
    match copy(dst as usize, src as usize, n, 0, false, false) {
        SUCCESS => sync_stream(0),
        e => e,
    }
}

/// Fills `count` values of `width` bytes at `dst` with `value` in the order
/// of `stream`.
fn memset(dst: CUdeviceptr, value: u32, width: usize, count: usize, stream: usize) -> CUresult {
    check!(ready());
    let Some(n) = count.checked_mul(width) else {
        return INVALID_VALUE;
    };
    if n == 0 {
        return SUCCESS;
    }
    let dst = dst as usize;
    if !mem::is_device(dst, n) || !dst.is_multiple_of(width) {
        return INVALID_VALUE;
    }
    enqueue(
        stream,
        Box::new(move || {
            if !mem::is_device(dst, n) {
                fault(format!(
                    "a queued memset of {dst:#x} found its memory freed"
                ));
                return;
            }
            let bytes = value.to_le_bytes();
            // SAFETY: a live device range of `n` bytes.
            let out = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, n) };
            for (i, b) in out.iter_mut().enumerate() {
                *b = bytes[i % width];
            }
        }),
    )
}

#[no_mangle]
pub extern "C" fn cuMemsetD8Async(dst: CUdeviceptr, v: u8, n: usize, s: usize) -> CUresult {
    memset(dst, v as u32, 1, n, s)
}

#[no_mangle]
pub extern "C" fn cuMemsetD8_v2(dst: CUdeviceptr, v: u8, n: usize) -> CUresult {
    match memset(dst, v as u32, 1, n, 0) {
        SUCCESS => sync_stream(0),
        e => e,
    }
}

#[no_mangle]
pub extern "C" fn cuMemsetD32Async(dst: CUdeviceptr, v: u32, n: usize, s: usize) -> CUresult {
    memset(dst, v, 4, n, s)
}

#[no_mangle]
pub extern "C" fn cuMemsetD32_v2(dst: CUdeviceptr, v: u32, n: usize) -> CUresult {
    match memset(dst, v, 4, n, 0) {
        SUCCESS => sync_stream(0),
        e => e,
    }
}

// ---------------------------------------------------------------------------
// Modules and kernels.

/// A loaded module: the image NVRTC made.
struct Module {
    image: Vec<u8>,
}

/// A function: the host build of a decode kernel, with its type and
/// output, or one of the forward pass's kernels.
enum Function {
    Decode {
        kernel: HostKernel,
        ty: GgmlType,
        kind: ElementKind,
    },
    Forward(forward::Kernel),
}

/// The decode kernels by symbol: (type, output).
fn kernel_types() -> &'static HashMap<String, (GgmlType, ElementKind)> {
    static MAP: OnceLock<HashMap<String, (GgmlType, ElementKind)>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut m = HashMap::new();
        for ty in GgmlType::ALL {
            for kind in [ElementKind::F32, ElementKind::F16, ElementKind::BF16] {
                m.insert(kernel_name(ty, kind), (ty, kind));
            }
        }
        m
    })
}

/// The length of a module image: an ELF file's from its header, PTX text
/// up to its NUL.
unsafe fn image_bytes(image: *const c_void) -> Option<Vec<u8>> {
    let p = image.cast::<u8>();
    // SAFETY: the caller's image: at least a header's bytes for an ELF
    // file, a NUL-terminated text otherwise.
    unsafe {
        let head = std::slice::from_raw_parts(p, 4);
        if head == b"\x7fELF" {
            // ELF64: section headers at e_shoff (0x28), e_shentsize (0x3a),
            // e_shnum (0x3c): the file ends with them.
            let h = std::slice::from_raw_parts(p, 64);
            let shoff = u64::from_le_bytes(h[0x28..0x30].try_into().ok()?) as usize;
            let shentsize = u16::from_le_bytes(h[0x3a..0x3c].try_into().ok()?) as usize;
            let shnum = u16::from_le_bytes(h[0x3c..0x3e].try_into().ok()?) as usize;
            let len = shoff.checked_add(shentsize.checked_mul(shnum)?)?;
            (h[4] == 2 && len <= 1 << 30).then(|| std::slice::from_raw_parts(p, len).to_vec())
        } else {
            let text = CStr::from_ptr(p.cast()).to_bytes();
            (text.windows(7).any(|w| w == b".target")).then(|| text.to_vec())
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(m: *mut usize, image: *const c_void) -> CUresult {
    check!(current_device());
    if m.is_null() || image.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: the caller's image.
    let Some(image) = (unsafe { image_bytes(image) }) else {
        return INVALID_IMAGE;
    };
    // SAFETY: the caller's out-pointer, checked non-null.
    unsafe { *m = Box::into_raw(Box::new(Module { image })) as usize };
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadDataEx(
    m: *mut usize,
    image: *const c_void,
    _n: c_uint,
    _options: *mut c_int,
    _values: *mut *mut c_void,
) -> CUresult {
    // SAFETY: the same contract (the JIT options are not needed).
    unsafe { cuModuleLoadData(m, image) }
}

#[no_mangle]
pub extern "C" fn cuModuleUnload(m: usize) -> CUresult {
    check!(ready());
    if m == 0 {
        return INVALID_HANDLE;
    }
    // SAFETY: a handle made by `cuModuleLoadData`, unloaded once (the
    // caller's contract); functions from it hold nothing of it.
    drop(unsafe { Box::from_raw(m as *mut Module) });
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(
    f: *mut usize,
    m: usize,
    name: *const c_char,
) -> CUresult {
    check!(current_device());
    if f.is_null() || m == 0 || name.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: a live module handle (the caller's contract) and a C string.
    let (module, name) = unsafe { (&*(m as *const Module), CStr::from_ptr(name)) };
    let bytes = name.to_bytes();
    // The compiled image must hold the symbol (an ELF symbol table and PTX
    // text both name it), and this library must have the kernel.
    if bytes.is_empty() || !module.image.windows(bytes.len()).any(|w| w == bytes) {
        return NOT_FOUND;
    }
    let Ok(name) = name.to_str() else {
        return NOT_FOUND;
    };
    let func = match (HostKernel::find(name), kernel_types().get(name)) {
        (Some(kernel), Some(&(ty, kind))) => Function::Decode { kernel, ty, kind },
        _ => match forward::Kernel::find(name) {
            Some(k) => Function::Forward(k),
            None => return NOT_FOUND,
        },
    };
    // SAFETY: the caller's out-pointer, checked non-null. Functions live as
    // long as the process (a few hundred at most).
    unsafe { *f = Box::into_raw(Box::new(func)) as usize };
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncGetAttribute(v: *mut c_int, attrib: c_int, f: usize) -> CUresult {
    check!(ready());
    if v.is_null() || f == 0 {
        return INVALID_VALUE;
    }
    // SAFETY: the caller's out-pointer, checked non-null.
    unsafe { *v = if attrib == 0 { 1024 } else { 0 } };
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernel(
    f: usize,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shared: c_uint,
    s: usize,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    check!(current_device());
    if f == 0 || params.is_null() || !extra.is_null() {
        return INVALID_VALUE;
    }
    if gx == 0 || gy != 1 || gz != 1 || bx == 0 || bx > 1024 || by != 1 || bz != 1 {
        return INVALID_VALUE;
    }
    // SAFETY: a function handle made by `cuModuleGetFunction` (never freed).
    let (kernel, ty, kind) = match *unsafe { &*(f as *const Function) } {
        Function::Decode { kernel, ty, kind } => (kernel, ty, kind),
        Function::Forward(k) => {
            if bx != 256 {
                return INVALID_VALUE;
            }
            // SAFETY: the kernel's parameters, as the driver API promises.
            let launch = unsafe { forward::prepare(k, params, gx, shared) };
            return enqueue(
                s,
                Box::new(move || {
                    if let Err(e) = launch.run() {
                        fault(e);
                    }
                }),
            );
        }
    };
    // SAFETY: the decode ABI's three parameters, each a pointer to a 64-bit
    // value, read now as the driver reads them at launch.
    let (src, dst, n_blocks) = unsafe {
        let p = std::slice::from_raw_parts(params, 3);
        (
            *(p[0] as *const u64) as usize,
            *(p[1] as *const u64) as usize,
            *(p[2] as *const u64),
        )
    };
    let elem = match kind {
        ElementKind::F32 => 4,
        ElementKind::F16 | ElementKind::BF16 => 2,
    };
    let launch = Launch {
        grid: gx,
        block: bx,
    };
    let name = kernel.name();
    enqueue(
        s,
        Box::new(move || {
            let sizes = usize::try_from(n_blocks).ok().and_then(|n| {
                Some((
                    n.checked_mul(ty.type_size() as usize)?,
                    n.checked_mul(ty.block_size() as usize)?.checked_mul(elem)?,
                ))
            });
            let Some((src_len, dst_len)) = sizes else {
                return fault(format!("{name}: {n_blocks} blocks overflow"));
            };
            if src % mem::DEVICE_ALIGN != 0 || dst % mem::DEVICE_ALIGN != 0 {
                return fault(format!(
                    "{name}: src {src:#x} or dst {dst:#x} not 256-byte aligned"
                ));
            }
            if !mem::is_device(src, src_len) {
                return fault(format!(
                    "{name}: {n_blocks} blocks ({src_len} bytes) at {src:#x} are not inside one live device allocation"
                ));
            }
            if !mem::is_device(dst, dst_len) {
                return fault(format!(
                    "{name}: {dst_len} output bytes at {dst:#x} are not inside one live device allocation"
                ));
            }
            let bounds = Bounds {
                src: src as *const u8,
                src_len,
                dst: dst as *mut c_void,
                dst_len,
            };
            // SAFETY: both ranges lie in live device allocations (checked
            // just above, on the stream that orders their use), which this
            // stream alone reads and writes now.
            if let Err(e) = unsafe { kernel.run(bounds, n_blocks, launch) } {
                fault(e.to_string());
            }
        }),
    )
}
