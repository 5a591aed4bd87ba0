//! Decoding of ggml blocks into numbers: one scalar reference routine per type,
//! grouped by family as in ggml's `ggml-quants.c`, and the entry points that
//! pick a routine, convert to the output float and spread work over threads.
//!
//! Every `dequantize_row_*` routine takes whole blocks: `src.len()` is a
//! multiple of the type's block byte size and `dst.len()` is
//! `src.len() / type_size * block_size`. The routines never panic on any
//! bytes; they walk `chunks_exact` pairs, so a mismatched tail is ignored.

pub mod cuda;
pub mod float;
pub mod fp4;
pub mod iquants;
pub mod kquants;
pub mod legacy;
pub mod simd;
pub mod ternary;

use std::ops::Range;

use rayon::prelude::*;

pub use crate::element::Element;

use crate::format::blocks::{as_blocks, Block};
use crate::format::GgmlType;

/// A decoding routine: whole blocks of bytes to f32.
pub type RowFn = fn(&[u8], &mut [f32]);

/// Why a decode could not run. Decoding itself never fails: any bytes of the
/// right length decode to some numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is not a whole number of blocks.
    #[error("{ty}: {len} bytes is not a whole number of {type_size}-byte blocks")]
    PartialBlock {
        /// The type decoded.
        ty: GgmlType,
        /// The input's length in bytes.
        len: usize,
        /// The type's block size in bytes.
        type_size: usize,
    },
    #[error("{ty}: the input decodes to {want} values but the output holds {got}")]
    /// The output does not hold exactly the values the input decodes to.
    OutputLength {
        /// The type decoded.
        ty: GgmlType,
        /// Values the input decodes to.
        want: usize,
        /// Values the output holds.
        got: usize,
    },
    #[error("{ty}: rows {start}..{end} are out of range ({rows} rows of {row_len})")]
    /// A row range outside the tensor, or a row length that is not a whole
    /// number of blocks.
    RowRange {
        /// The type decoded.
        ty: GgmlType,
        /// First row asked for.
        start: usize,
        /// One past the last row asked for.
        end: usize,
        /// Rows the tensor has.
        rows: usize,
        /// Elements per row.
        row_len: usize,
    },
    #[error("{ty}: the output of {bytes} bytes cannot be allocated (out of memory)")]
    /// [`dequantize`] could not allocate its output.
    OutOfMemory {
        /// The type decoded.
        ty: GgmlType,
        /// Bytes of the output asked for.
        bytes: u64,
    },
}

/// Pairs each whole block of `src`, viewed as its struct `B`, with its `N`
/// outputs in `dst` (`N` is `B::ELEMENTS`, checked at compile time) and
/// hands both to `f`: the loop of every scalar routine. A trailing partial
/// block, or outputs past the last whole block, are left alone.
#[inline(always)]
pub(crate) fn for_each_block<B: Block, const N: usize>(
    src: &[u8],
    dst: &mut [f32],
    mut f: impl FnMut(&B, &mut [f32; N]),
) {
    const { assert!(N == B::ELEMENTS) };
    for (x, y) in as_blocks::<B>(src).iter().zip(dst.chunks_exact_mut(N)) {
        // Always succeeds: `chunks_exact_mut` yields exactly `N` outputs.
        if let Ok(y) = <&mut [f32; N]>::try_from(y) {
            f(x, y);
        }
    }
}

/// The scalar reference routine for `ty` (ggml's `dequantize_row_*`).
pub fn reference_row_fn(ty: GgmlType) -> RowFn {
    use GgmlType::*;
    match ty {
        F32 => float::dequantize_row_f32,
        F16 => float::dequantize_row_f16,
        BF16 => float::dequantize_row_bf16,
        F64 => float::dequantize_row_f64,
        I8 => float::dequantize_row_i8,
        I16 => float::dequantize_row_i16,
        I32 => float::dequantize_row_i32,
        I64 => float::dequantize_row_i64,
        Q4_0 => legacy::dequantize_row_q4_0,
        Q4_1 => legacy::dequantize_row_q4_1,
        Q5_0 => legacy::dequantize_row_q5_0,
        Q5_1 => legacy::dequantize_row_q5_1,
        Q8_0 => legacy::dequantize_row_q8_0,
        Q8_1 => legacy::dequantize_row_q8_1,
        Q1_0 => legacy::dequantize_row_q1_0,
        Q2_0 => legacy::dequantize_row_q2_0,
        Q8_K => legacy::dequantize_row_q8_k,
        Q2_K => kquants::dequantize_row_q2_k,
        Q3_K => kquants::dequantize_row_q3_k,
        Q4_K => kquants::dequantize_row_q4_k,
        Q5_K => kquants::dequantize_row_q5_k,
        Q6_K => kquants::dequantize_row_q6_k,
        IQ2_XXS => iquants::dequantize_row_iq2_xxs,
        IQ2_XS => iquants::dequantize_row_iq2_xs,
        IQ2_S => iquants::dequantize_row_iq2_s,
        IQ3_XXS => iquants::dequantize_row_iq3_xxs,
        IQ3_S => iquants::dequantize_row_iq3_s,
        IQ1_S => iquants::dequantize_row_iq1_s,
        IQ1_M => iquants::dequantize_row_iq1_m,
        IQ4_NL => iquants::dequantize_row_iq4_nl,
        IQ4_XS => iquants::dequantize_row_iq4_xs,
        TQ1_0 => ternary::dequantize_row_tq1_0,
        TQ2_0 => ternary::dequantize_row_tq2_0,
        MXFP4 => fp4::dequantize_row_mxfp4,
        NVFP4 => fp4::dequantize_row_nvfp4,
    }
}

/// The fastest routine for `ty` on this CPU (a SIMD path where there is one,
/// tested equal to the reference).
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn row_fn(ty: GgmlType) -> RowFn {
    simd::kernels(ty)
        .f32
        .unwrap_or_else(|| reference_row_fn(ty))
}

/// Elements decoded per step when converting through an f32 scratch buffer.
const SCRATCH: usize = 4096;

/// Outputs at least this large are written with streaming stores under
/// [`Stores::Auto`]: far beyond a core's L2, where ordinary stores would
/// first read every output line from memory and evict the cache's contents.
pub const STREAMING_MIN_BYTES: usize = 8 << 20;

/// How the decoders write their output. The values are the same either way;
/// only the speed differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stores {
    /// [`Stores::Streaming`] for outputs of at least [`STREAMING_MIN_BYTES`]
    /// (counting the whole output of the call), else [`Stores::Cached`].
    ///
    /// Where the output is memory just allocated (`decode::dequantize`,
    /// `load_tensor`, `load_model`), `Auto` means `Cached`: the kernel zeroes
    /// each new page through the cache when it is first touched, so the
    /// read-for-ownership that streaming saves has already been paid, and
    /// streaming then only adds work (measured on a 16-core Xeon, TinyLlama
    /// Q4_0 → f16: 490 vs 645 ms on one thread, 280 vs 346 ms on two, equal
    /// on sixteen). Into reused buffers streaming was 1.2–1.9× faster.
    #[default]
    Auto,
    /// Ordinary stores: the output stays in the cache, best when the caller
    /// reads it right away.
    Cached,
    /// Streaming (non-temporal) stores where the CPU path has them (x86-64
    /// AVX2 kernels, 16-byte aligned f32/f16 outputs): whole lines go to
    /// memory without being read first. Best for outputs much larger than
    /// the cache that are not read at once, such as whole-model loads.
    Streaming,
}

/// What an output buffer is, for [`Stores::for_output`]: the one thing
/// besides its size that decides how it is best written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMemory {
    /// Memory just allocated, not touched yet (a load's outputs).
    Fresh,
    /// A buffer written before (a caller's, reused from call to call).
    Reused,
}

impl Stores {
    /// How an output of `bytes` bytes in `memory` is written: `Auto` settled
    /// (the crate's one place that decides it), the others as they are.
    /// `Auto` streams a reused output of at least [`STREAMING_MIN_BYTES`]
    /// and writes everything else with ordinary stores, fresh memory always
    /// (see [`Stores::Auto`]).
    pub fn for_output(self, bytes: usize, memory: OutputMemory) -> Stores {
        match (self, memory) {
            (Stores::Auto, OutputMemory::Reused) if bytes >= STREAMING_MIN_BYTES => {
                Stores::Streaming
            }
            (Stores::Auto, _) => Stores::Cached,
            (s, _) => s,
        }
    }

    /// Whether a reused output of `bytes` bytes is streamed.
    pub fn streams(self, bytes: usize) -> bool {
        self.resolve(bytes) == Stores::Streaming
    }

    /// [`Stores::for_output`] for a reused output of `bytes` bytes.
    pub fn resolve(self, bytes: usize) -> Stores {
        self.for_output(bytes, OutputMemory::Reused)
    }
}

fn check(ty: GgmlType, src: &[u8], dst_len: usize) -> Result<usize, DecodeError> {
    let type_size = ty.type_size() as usize;
    if !src.len().is_multiple_of(type_size) {
        return Err(DecodeError::PartialBlock {
            ty,
            len: src.len(),
            type_size,
        });
    }
    let want = src.len() / type_size * ty.block_size() as usize;
    if want != dst_len {
        return Err(DecodeError::OutputLength {
            ty,
            want,
            got: dst_len,
        });
    }
    Ok(want)
}

/// Decodes whole blocks of `ty` into the caller's buffer, on this thread.
/// f32 output is bit-exact with ggml's `dequantize_row_*`; f16 and bf16 are
/// that value rounded to nearest-even, except F16 → f16 and BF16 → bf16,
/// which copy the bits.
///
/// Large outputs are written with streaming stores ([`Stores::Auto`]); see
/// [`dequantize_into_with`] to choose.
pub fn dequantize_into<T: Element>(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [T],
) -> Result<(), DecodeError> {
    dequantize_into_with(ty, src, dst, Stores::Auto)
}

/// [`dequantize_into`] with the choice of how the output is written.
pub fn dequantize_into_with<T: Element>(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [T],
    stores: Stores,
) -> Result<(), DecodeError> {
    check(ty, src, dst.len())?;
    decode_unchecked(ty, src, dst, stores.streams(std::mem::size_of_val(dst)));
    Ok(())
}

/// `src` and `dst` are known to match.
fn decode_unchecked<T: Element>(ty: GgmlType, src: &[u8], dst: &mut [T], stream: bool) {
    if crate::element::copy_same(ty, src, dst) {
        return;
    }
    let plain = simd::kernels(ty);
    let k = plain.for_output(stream);
    // A fused SIMD kernel writes f16 or bf16 without an f32 round trip.
    if let (Some(out), Some(kernel)) = (T::as_f16_mut(dst), k.f16) {
        kernel(src, out);
        return;
    }
    if let (Some(out), Some(kernel)) = (T::as_bf16_mut(dst), k.bf16) {
        kernel(src, out);
        return;
    }
    if let Some(out) = T::as_f32_mut(dst) {
        k.f32.unwrap_or_else(|| reference_row_fn(ty))(src, out);
        return;
    }
    // Otherwise decode a few blocks at a time to f32 on the stack and
    // convert; the scratch stays in cache, so ordinary stores.
    let f = plain.f32.unwrap_or_else(|| reference_row_fn(ty));
    let block = ty.block_size() as usize;
    let type_size = ty.type_size() as usize;
    let per_step = (SCRATCH / block).max(1);
    let mut scratch = [0f32; SCRATCH];
    for (s, d) in src
        .chunks(per_step * type_size)
        .zip(dst.chunks_mut(per_step * block))
    {
        let tmp = &mut scratch[..d.len()];
        f(s, tmp);
        T::from_f32_slice(tmp, d);
    }
}

/// Blocks handed to one thread at a time by the parallel decoders: large
/// enough to amortize scheduling, small enough to balance two cores.
const PAR_CHUNK_ELEMENTS: usize = 1 << 16;

/// Like [`dequantize_into`], spread over rayon's threads by block ranges.
pub fn dequantize_into_par<T: Element>(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [T],
) -> Result<(), DecodeError> {
    dequantize_into_par_with(ty, src, dst, Stores::Auto)
}

/// [`dequantize_into_par`] with the choice of how the output is written
/// (`Auto` judges the whole output, not each thread's share).
pub fn dequantize_into_par_with<T: Element>(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [T],
    stores: Stores,
) -> Result<(), DecodeError> {
    check(ty, src, dst.len())?;
    let stream = stores.streams(std::mem::size_of_val(dst));
    let block = ty.block_size() as usize;
    let blocks = (PAR_CHUNK_ELEMENTS / block).max(1);
    src.par_chunks(blocks * ty.type_size() as usize)
        .zip(dst.par_chunks_mut(blocks * block))
        .for_each(|(s, d)| decode_unchecked(ty, s, d, stream));
    Ok(())
}

/// Decodes a whole tensor into a new vector (multithreaded).
/// [`DecodeError::OutOfMemory`] when the output cannot be allocated: the
/// input's length, like a file's, decides its size.
pub fn dequantize<T: Element>(ty: GgmlType, src: &[u8]) -> Result<Vec<T>, DecodeError> {
    let type_size = ty.type_size() as usize;
    let n = src.len() / type_size * ty.block_size() as usize;
    let mut out = fresh_output::<T>(ty, n)?;
    let stores = Stores::Auto.for_output(n.saturating_mul(T::KIND.size()), OutputMemory::Fresh);
    dequantize_into_par_with(ty, src, &mut out, stores)?;
    Ok(out)
}

/// A new output of `n` elements for decoding `ty` into, as [`dequantize`]
/// makes its own: zeros on pages not touched yet (huge pages asked for,
/// on Linux), so that the decoding threads fault them in in parallel, not
/// this thread serially; [`OutputMemory::Fresh`] to
/// [`Stores::for_output`]. For a caller that decodes it in pieces (to
/// check for cancellation between them) with [`dequantize_into_par_with`].
/// [`DecodeError::OutOfMemory`] when the memory cannot be had.
pub fn fresh_output<T: Element>(ty: GgmlType, n: usize) -> Result<Vec<T>, DecodeError> {
    crate::alloc::try_zeroed_vec::<T>(n)
        .map_err(|e| DecodeError::OutOfMemory { ty, bytes: e.bytes })
}

/// Decodes rows `rows` of a tensor whose rows hold `row_len` elements
/// (`ne[0]`, a multiple of the block size) into `dst`, for lazy users.
pub fn dequantize_rows_into<T: Element>(
    ty: GgmlType,
    tensor: &[u8],
    row_len: usize,
    rows: Range<usize>,
    dst: &mut [T],
) -> Result<(), DecodeError> {
    let block = ty.block_size() as usize;
    let type_size = ty.type_size() as usize;
    // A row longer than any slice (its bytes overflow) holds no row of it.
    let row_bytes = (row_len / block).checked_mul(type_size);
    let n_rows = row_bytes
        .and_then(|b| tensor.len().checked_div(b))
        .unwrap_or(0);
    let range = row_bytes
        .filter(|_| row_len.is_multiple_of(block) && rows.start <= rows.end && rows.end <= n_rows)
        // In range: `rows.end * row_bytes` is at most the slice's length.
        .map(|b| rows.start * b..rows.end * b);
    let Some(range) = range else {
        return Err(DecodeError::RowRange {
            ty,
            start: rows.start,
            end: rows.end,
            rows: n_rows,
            row_len,
        });
    };
    dequantize_into(ty, &tensor[range], dst)
}
