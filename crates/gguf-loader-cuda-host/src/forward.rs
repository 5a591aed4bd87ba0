//! The forward pass's kernels (`gguf-loader-llm`'s `src/forward/kernels.cu`)
//! run as host C++: every thread of a block a fiber, `__syncthreads` and
//! warp shuffles emulated (`src/forward_host.h`), so that the kernel text
//! NVRTC compiles, not a second writing of it, can be run and compared
//! without a GPU.

use std::ffi::{c_char, c_void, CString};

include!(concat!(env!("OUT_DIR"), "/forward_kernels.rs"));

extern "C" {
    fn gl_fwd_launch(
        name: *const c_char,
        grid: u32,
        block: u32,
        shared: u64,
        order: i32,
        params: *mut *mut c_void,
    ) -> i32;
    fn gl_fwd_selftest_diverged() -> i32;
}

/// The emulation's own check: a block whose threads meet different
/// barriers is refused ([`ForwardError::Diverged`]).
pub fn selftest_diverged() -> Result<(), ForwardError> {
    // SAFETY: no arguments; the block touches no memory.
    code(unsafe { gl_fwd_selftest_diverged() }, "selftest")
}

fn code(rc: i32, name: &str) -> Result<(), ForwardError> {
    match rc {
        0 => Ok(()),
        -1 => Err(ForwardError::NoKernel(name.to_string())),
        -2 => Err(ForwardError::BadLaunch),
        -3 => Err(ForwardError::Diverged),
        -4 => Err(ForwardError::PartialShuffle),
        -5 => Err(ForwardError::NoMemory),
        c => Err(ForwardError::Other(c)),
    }
}

/// The order in which the threads of a block are resumed after each
/// barrier: a race between threads of a block (shared memory read with no
/// barrier after another thread's write) shows as results that differ
/// from one order to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Thread 0 first.
    Ascending = 0,
    /// The last thread first.
    Descending = 1,
    /// A fresh pseudo-random permutation every round (the same sequence
    /// every run).
    Shuffled = 2,
}

impl Order {
    /// All three.
    pub const ALL: [Order; 3] = [Order::Ascending, Order::Descending, Order::Shuffled];
}

/// Why a forward kernel did not run to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardError {
    /// The source has no kernel of this name.
    NoKernel(String),
    /// A grid or block of zero, or a block over 1024 threads.
    BadLaunch,
    /// Live threads of a block met different barriers (a `__syncthreads`
    /// or shuffle under a divergent branch): undefined on a GPU.
    Diverged,
    /// A warp shuffle with a mask other than the whole warp.
    PartialShuffle,
    /// The emulation's stacks or shared memory could not be allocated.
    NoMemory,
    /// Any other code from the emulation.
    Other(i32),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::NoKernel(n) => write!(f, "no forward kernel named {n:?}"),
            ForwardError::BadLaunch => write!(f, "a zero grid or block, or a block over 1024"),
            ForwardError::Diverged => write!(f, "threads of a block met different barriers"),
            ForwardError::PartialShuffle => write!(f, "a shuffle over part of a warp"),
            ForwardError::NoMemory => write!(f, "no memory for the emulated block"),
            ForwardError::Other(c) => write!(f, "emulation error {c}"),
        }
    }
}

impl std::error::Error for ForwardError {}

/// Runs forward kernel `name` over `grid` blocks of `block` threads with
/// `shared` bytes of dynamic shared memory, its threads resumed in `order`;
/// `params` holds one pointer to each argument in signature order, as
/// `cuLaunchKernel` takes them. The blocks run one after another on the
/// calling thread.
///
/// # Safety
/// Each `params[i]` points to a value of the kernel's `i`-th parameter
/// type, and every pointer argument points to host memory holding all
/// that the kernel reads and writes for this launch (as device memory
/// must on a GPU).
pub unsafe fn launch(
    name: &str,
    grid: u32,
    block: u32,
    shared: usize,
    order: Order,
    params: &mut [*mut c_void],
) -> Result<(), ForwardError> {
    if !FORWARD_KERNELS.contains(&name) {
        return Err(ForwardError::NoKernel(name.to_string()));
    }
    let c = CString::new(name).map_err(|_| ForwardError::NoKernel(name.to_string()))?;
    // SAFETY: the caller's: `params` matches the kernel's signature and its
    // pointers cover what the launch touches; `c` is a C string.
    let rc = unsafe {
        gl_fwd_launch(
            c.as_ptr(),
            grid,
            block,
            shared as u64,
            order as i32,
            params.as_mut_ptr(),
        )
    };
    code(rc, name)
}
