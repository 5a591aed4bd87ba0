//! gguf-loader's CUDA decode kernels (`gguf_loader::internals::cuda_kernels`)
//! compiled as host C++ (`build.rs`), so that they can be tested bit for bit
//! against the CPU decoders on a machine without a GPU.
//!
//! The host build is the one translation unit NVRTC compiles, with
//! `GL_HOST` defined: the CUDA keywords become plain C++, `blockIdx`,
//! `threadIdx`, `blockDim` and `gridDim` become thread-local variables, and
//! [`decode_with`] runs each kernel once for every (block, thread) of an
//! emulated grid, so the kernels' index arithmetic, grid-stride loops and
//! tails run as on a GPU. Every global memory access is checked for bounds
//! and alignment, and the output is surrounded by guard bytes.
//!
//! [`forward`] does the same for the forward pass's kernels
//! (`gguf-loader-llm`'s `src/forward/kernels.cu`), whose threads cooperate
//! (shared memory, `__syncthreads`, warp shuffles): each thread of a block
//! is a fiber, and a barrier that not all live threads reach is an error.

pub mod forward;
mod parse;

use std::ffi::c_void;

use gguf_loader::internals::cuda_kernels;
use gguf_loader::{Element, GgmlType};

pub use parse::{kernel_decls, KernelDecl};

/// A kernel's signature as seen from Rust (the output pointer untyped).
type Kernel = unsafe extern "C" fn(*const u8, *mut c_void, u64);

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

extern "C" {
    fn gl_host_set_index(block: u32, thread: u32, block_dim: u32, grid_dim: u32);
    fn gl_host_set_bounds(src: *const u8, src_len: u64, dst: *const c_void, dst_len: u64);
    fn gl_host_take_fault() -> i32;
}

/// Bytes of 0xA5 after the output that no kernel may touch.
const GUARD: usize = 256;
/// The alignment the kernel ABI promises for both pointers.
const ALIGN: usize = 256;
/// Outputs per grid block in the CUDA host side's launch (2048 = 256
/// threads of 8 outputs).
const VALUES_PER_GRID_BLOCK: usize = 2048;
/// The largest grid the CUDA host side launches.
const MAX_GRID: u32 = 65535 * 16;

/// An emulated launch: `grid` blocks of `block` threads (x only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// `gridDim.x`.
    pub grid: u32,
    /// `blockDim.x`.
    pub block: u32,
}

impl Launch {
    /// The launch the CUDA host side makes for `values` outputs: 256
    /// threads, `min(ceil(values / 2048), 65535 * 16)` blocks (at least 1).
    pub fn for_values(values: usize) -> Launch {
        let grid = values.div_ceil(VALUES_PER_GRID_BLOCK).max(1);
        Launch {
            grid: u32::try_from(grid).unwrap_or(MAX_GRID).min(MAX_GRID),
            block: 256,
        }
    }
}

/// Why [`decode_with`] did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The source has no kernel of this name.
    NoKernel(String),
    /// The input is not whole blocks, or the output not their values.
    Length {
        /// The kernel.
        kernel: String,
        /// Input bytes.
        src: usize,
        /// Output values.
        dst: usize,
    },
    /// A grid or block of zero.
    EmptyLaunch,
    /// The kernel read or wrote out of bounds, or misaligned for the
    /// access's width (`code`: 1 read out of bounds, 2 misaligned read,
    /// 3 write out of bounds, 4 misaligned write).
    Fault {
        /// The kernel.
        kernel: String,
        /// What went wrong (see above).
        code: i32,
    },
    /// The guard bytes after the output changed.
    Guard(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::NoKernel(k) => write!(f, "no kernel {k} in the CUDA source"),
            HostError::Length { kernel, src, dst } => write!(
                f,
                "{kernel}: {src} input bytes are not whole blocks decoding to {dst} values"
            ),
            HostError::EmptyLaunch => write!(f, "a launch needs a grid and a block of at least 1"),
            HostError::Fault { kernel, code } => write!(
                f,
                "{kernel}: {}",
                match code {
                    1 => "read out of bounds",
                    2 => "misaligned read",
                    3 => "write out of bounds",
                    _ => "misaligned write",
                }
            ),
            HostError::Guard(k) => write!(f, "{k}: wrote past the end of its output"),
        }
    }
}

impl std::error::Error for HostError {}

/// The names of every kernel compiled into this crate, in source order.
pub fn kernel_symbols() -> impl Iterator<Item = &'static str> {
    KERNELS.iter().map(|(name, _)| *name)
}

/// The memory one kernel run may touch: it reads `src_len` bytes from
/// `src` and writes `dst_len` bytes from `dst`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The kernel's input pointer (its first argument).
    pub src: *const u8,
    /// Readable bytes from `src`.
    pub src_len: usize,
    /// The kernel's output pointer (its second argument).
    pub dst: *mut c_void,
    /// Writable bytes from `dst`.
    pub dst_len: usize,
}

/// A kernel of this crate, by symbol.
#[derive(Clone, Copy)]
pub struct HostKernel {
    name: &'static str,
    f: Kernel,
}

impl std::fmt::Debug for HostKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl HostKernel {
    /// The kernel named `symbol` (e.g. `gl_q4_0_to_f16`), if the source
    /// has it.
    pub fn find(symbol: &str) -> Option<HostKernel> {
        KERNELS
            .iter()
            .find(|(n, _)| *n == symbol)
            .map(|&(name, f)| HostKernel { name, f })
    }

    /// Its symbol.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the kernel with the decode ABI's arguments `(bounds.src,
    /// bounds.dst, n_blocks)` once for every (block, thread) of `launch`,
    /// on one host thread. Errs with [`HostError::Fault`] where it read or
    /// wrote outside `bounds` or misaligned (the faulting access is
    /// skipped), or [`HostError::EmptyLaunch`].
    ///
    /// # Safety
    /// `bounds` describes memory that is live for the call: `src_len`
    /// readable bytes at `src` and `dst_len` writable bytes at `dst`, which
    /// nothing else writes (or, for `src`, writes) meanwhile.
    pub unsafe fn run(
        self,
        bounds: Bounds,
        n_blocks: u64,
        launch: Launch,
    ) -> Result<(), HostError> {
        if launch.grid == 0 || launch.block == 0 {
            return Err(HostError::EmptyLaunch);
        }
        // SAFETY: the caller's.
        match unsafe { run_kernel(self.f, bounds, n_blocks, launch) } {
            0 => Ok(()),
            code => Err(HostError::Fault {
                kernel: self.name.to_string(),
                code,
            }),
        }
    }
}

/// Runs `kernel` over the emulated grid `launch` within `bounds`; the
/// fault code (0: none).
///
/// # Safety
/// As [`HostKernel::run`].
unsafe fn run_kernel(kernel: Kernel, b: Bounds, n_blocks: u64, launch: Launch) -> i32 {
    // SAFETY: the bounds are the caller's live buffers; the kernel reads
    // and writes only through the bounds-checked accessors of the host
    // build, which skip (and record) any access outside them, so it
    // touches nothing else whatever its arguments.
    unsafe {
        gl_host_set_bounds(b.src, b.src_len as u64, b.dst, b.dst_len as u64);
        for blk in 0..launch.grid {
            for t in 0..launch.block {
                gl_host_set_index(blk, t, launch.block, launch.grid);
                kernel(b.src, b.dst, n_blocks);
            }
        }
        gl_host_take_fault()
    }
}

/// A zeroed buffer of `len` bytes whose start is [`ALIGN`]-aligned.
struct Aligned {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize, fill: u8) -> Aligned {
        let buf = vec![fill; len + ALIGN];
        let off = buf.as_ptr().align_offset(ALIGN);
        Aligned { buf, off, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// Decodes whole blocks of `ty` into `out` with the kernel
/// `kernel_name(ty, T::KIND)` and the CUDA host side's launch
/// ([`Launch::for_values`]). Errs as [`decode_with`].
pub fn decode<T: Element>(ty: GgmlType, src: &[u8], out: &mut [T]) -> Result<(), HostError> {
    decode_with(ty, src, out, Launch::for_values(out.len()))
}

/// Decodes whole blocks of `ty` into `out`, running the kernel for every
/// (block, thread) of `launch`, from 256-byte aligned copies of the input
/// and output (as the kernel ABI promises). Errs when there is no kernel,
/// when `src` is not whole blocks or `out` not their values, for an empty
/// launch, and when the kernel accessed memory out of bounds or misaligned
/// or wrote past the output.
pub fn decode_with<T: Element>(
    ty: GgmlType,
    src: &[u8],
    out: &mut [T],
    launch: Launch,
) -> Result<(), HostError> {
    let name = cuda_kernels::kernel_name(ty, T::KIND);
    let kernel = HostKernel::find(&name).ok_or_else(|| HostError::NoKernel(name.clone()))?;
    let type_size = ty.type_size() as usize;
    let n_blocks = src.len() / type_size;
    if !src.len().is_multiple_of(type_size) || n_blocks * ty.block_size() as usize != out.len() {
        return Err(HostError::Length {
            kernel: name,
            src: src.len(),
            dst: out.len(),
        });
    }
    let mut input = Aligned::new(src.len(), 0);
    input.bytes_mut().copy_from_slice(src);
    let out_bytes = std::mem::size_of_val(out);
    let mut output = Aligned::new(out_bytes + GUARD, 0xA5);
    let dst = output.bytes_mut().as_mut_ptr().cast::<c_void>();
    let src_ptr = input.bytes().as_ptr();
    let bounds = Bounds {
        src: src_ptr,
        src_len: src.len(),
        dst,
        dst_len: out_bytes,
    };
    // SAFETY: the bounds are exactly the two live buffers above, which
    // outlive the call and which nothing else touches.
    unsafe { kernel.run(bounds, n_blocks as u64, launch) }?;
    if output.bytes()[out_bytes..].iter().any(|&b| b != 0xA5) {
        return Err(HostError::Guard(name));
    }
    bytemuck::cast_slice_mut::<T, u8>(out).copy_from_slice(&output.bytes()[..out_bytes]);
    Ok(())
}
