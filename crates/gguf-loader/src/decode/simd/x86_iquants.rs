//! x86-64 AVX2 (+F16C) kernels for the i-quants with grids (IQ2_XXS, IQ2_XS,
//! IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M), to f32 and fused to f16.
//!
//! [`super::iq_groups`] unpacks each block into groups of eight grid bytes
//! with their scale and negation mask or shift; here each group is widened
//! to eight i32, converted to f32 (exact) and scaled with the reference's
//! float operations: `scale * q` and a sign flip where the mask says, or
//! `scale * (q + delta)` as an add then a multiply (never an FMA). So the
//! f32 outputs are bit-identical to the reference, and the f16 outputs are
//! those values rounded to nearest-even by `vcvtps2ph`, as
//! `half::f16::from_f32` rounds. (Grid bytes of the signed types are below
//! 128, so widening them as i8 is exact.)
//!
//! Every kernel handles `min(src.len() / type_size, dst.len() / 256)` whole
//! blocks and ignores the rest of both slices.

use std::arch::x86_64::*;

use half::f16;

use super::iq_groups::{self, IqBlock, Tables, GROUPS};
use super::Kernels;
use crate::format::blocks::{as_blocks, QK_K};
use crate::format::GgmlType;

/// The kernels for `ty`, where there are some and the CPU can run them.
pub fn kernels(ty: GgmlType) -> Kernels {
    if !super::x86_kquants::available() {
        return Kernels::default();
    }
    iq_groups::kernels::<Avx2>(ty)
}

/// The AVX2 kernels.
struct Avx2;

impl Tables for Avx2 {
    fn table<B: IqBlock>() -> Kernels {
        Kernels {
            f32: Some(kernel::<B, f32, false>),
            f16: Some(kernel::<B, f16, false>),
            f32_stream: Some(kernel::<B, f32, true>),
            f16_stream: Some(kernel::<B, f16, true>),
            // bf16 goes through the f32 scratch: fused, these kernels
            // measured slower (docs/BENCHMARKS.md).
            ..Kernels::default()
        }
    }
}

/// An output element type: f32, or f16 (rounded by `vcvtps2ph`).
trait Out: Copy {
    /// Whether this is f16.
    const F16: bool;
}

impl Out for f32 {
    const F16: bool = false;
}

impl Out for f16 {
    const F16: bool = true;
}

/// The safe kernel: the whole blocks of `src` that fit `dst`, with
/// streaming stores and a closing store fence when `NT` and `dst` is 16-byte
/// aligned, else with ordinary stores.
fn kernel<B: IqBlock, T: Out, const NT: bool>(src: &[u8], dst: &mut [T]) {
    let x = as_blocks::<B>(src);
    let n = x.len().min(dst.len() / QK_K);
    let out = dst.as_mut_ptr().cast::<u8>();
    // SAFETY: `n` whole blocks fit both slices, `kernels` hands this out only
    // after detecting AVX2 and F16C, and streaming stores are used only on a
    // 16-byte aligned output; the fence (SSE, always there on x86-64) orders
    // the streamed stores before whatever follows.
    unsafe {
        if NT && super::aligned16(dst) {
            blocks::<B, T, true>(x.as_ptr(), out, n);
            _mm_sfence();
        } else {
            blocks::<B, T, false>(x.as_ptr(), out, n);
        }
    }
}

/// Decodes `n` blocks from `src` to `out` (elements of type `T`).
///
/// # Safety
/// `src` must point to `n` blocks, `out` to room for `n * 256` elements of
/// `T` (16-byte aligned when `NT`), and the CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn blocks<B: IqBlock, T: Out, const NT: bool>(src: *const B, out: *mut u8, n: usize) {
    for b in 0..n {
        // SAFETY: block `b < n` lies inside the caller's buffers.
        let x = unsafe { &*src.add(b) };
        x.groups(|k, g| {
            let (grid, scale) = (bytes8(g.grid), _mm256_set1_ps(g.scale));
            let v = if B::SHIFTED {
                _mm256_mul_ps(scale, _mm256_add_ps(i8x8_ps(grid), _mm256_set1_ps(g.delta)))
            } else if g.scale.is_nan() {
                // The reference's negation flips a NaN's sign too: flip the
                // sign bits where `neg` has 0xFF bytes.
                let m = _mm256_cvtepi8_epi32(bytes8(g.neg));
                let s = _mm256_castsi256_ps(_mm256_slli_epi32::<31>(m));
                _mm256_xor_ps(_mm256_mul_ps(scale, i8x8_ps(grid)), s)
            } else {
                // (g ^ m) - m: the grid bytes negated where `neg` is 0xFF.
                // For a non-NaN scale, `scale * -g` is `-(scale * g)`.
                let m = bytes8(g.neg);
                _mm256_mul_ps(scale, i8x8_ps(_mm_sub_epi8(_mm_xor_si128(grid, m), m)))
            };
            // SAFETY: `k % GROUPS` is a group of block `b`, whose eight
            // outputs lie inside the caller's `n * 256`; alignment for `NT`
            // carries over, as a group is 16 or 32 bytes of output.
            unsafe { store8::<T, NT>(out, b * QK_K + 8 * (k % GROUPS), v) }
        });
    }
}

/// The bytes of `v` (little-endian) as the low 8 bytes of a vector.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn bytes8(v: u64) -> __m128i {
    _mm_cvtsi64_si128(v as i64)
}

/// The low 8 bytes of `q`, as i8, converted to f32 (exact).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn i8x8_ps(q: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))
}

/// Stores the eight lanes of `v` at element `i` of the output at `out`: as
/// f32, or rounded to f16 (nearest-even) when `T` is f16; with streaming
/// 16-byte stores when `NT`.
///
/// # Safety
/// Elements `i..i + 8` of the output must be writable, 16-byte aligned when
/// `NT`, and the CPU must support AVX2 and F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn store8<T: Out, const NT: bool>(out: *mut u8, i: usize, v: __m256) {
    if T::F16 {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        // SAFETY: the caller guarantees 16 writable bytes at element `i`.
        unsafe {
            let p = out.add(2 * i).cast::<__m128i>();
            if NT {
                _mm_stream_si128(p, h);
            } else {
                _mm_storeu_si128(p, h);
            }
        }
    } else {
        // SAFETY: the caller guarantees 32 writable bytes at element `i`.
        unsafe {
            let p = out.add(4 * i).cast::<f32>();
            if NT {
                _mm_stream_ps(p, _mm256_castps256_ps128(v));
                _mm_stream_ps(p.add(4), _mm256_extractf128_ps::<1>(v));
            } else {
                _mm256_storeu_ps(p, v);
            }
        }
    }
}
