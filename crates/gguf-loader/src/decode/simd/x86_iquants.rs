//! x86-64 AVX2 (+F16C) and AVX-512 kernels for the i-quants with grids
//! (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M), to f32 and fused
//! to f16.
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
//! Where the CPU has AVX-512, the same arithmetic runs sixteen lanes at a
//! time, two groups together (the AVX2 kernels were bound by the vector work
//! of widening, converting and storing eight lanes at a time, not by the
//! lookups; docs/BENCHMARKS.md), and a sign flip is a masked XOR of the sign
//! bit after the multiply, as the reference's negation flips it (NaNs
//! included). IQ3_S there has a kernel of its own that also builds its grid
//! indices in a vector and takes its sign masks straight from the sign bits.
//!
//! Every kernel handles `min(src.len() / type_size, dst.len() / 256)` whole
//! blocks and ignores the rest of both slices.

use std::arch::x86_64::*;

use half::f16;

use super::iq_groups::{self, IqBlock, Tables, GROUPS};
use super::x86_kquants::store16_512;
use super::Kernels;
use super::{avx2, avx512};
use crate::decode::iquants::tables::IQ3S_GRID;
use crate::format::blocks::{as_blocks, bytes_at, f16_le, u32_at, BlockIQ3_S, QK_K};
use crate::format::GgmlType;

/// The kernels for `ty`, where there are some and the CPU can run them.
pub fn kernels(ty: GgmlType) -> Kernels {
    if !avx2() {
        return Kernels::default();
    }
    table(ty, avx512())
}

/// The kernels for `ty`, sixteen lanes wide when `wide` (call only where
/// `avx2()`, and `avx512()` too when `wide`).
pub(super) fn table(ty: GgmlType, wide: bool) -> Kernels {
    if wide {
        iq_groups::kernels::<Wide>(ty)
    } else {
        iq_groups::kernels::<Avx2>(ty)
    }
}

/// The AVX2 kernels.
struct Avx2;

/// The AVX-512 kernels: hand them out only where `avx512()`.
struct Wide;

/// The kernels of `B`, sixteen lanes at a time when `WIDE`.
fn block_table<B: IqBlock, const WIDE: bool>() -> Kernels {
    Kernels {
        f32: Some(kernel::<B, f32, false, WIDE>),
        f16: Some(kernel::<B, f16, false, WIDE>),
        f32_stream: Some(kernel::<B, f32, true, WIDE>),
        f16_stream: Some(kernel::<B, f16, true, WIDE>),
        // bf16 goes through the f32 scratch: fused, these kernels
        // measured slower (docs/BENCHMARKS.md).
        ..Kernels::default()
    }
}

impl Tables for Avx2 {
    fn table<B: IqBlock>() -> Kernels {
        block_table::<B, false>()
    }
}

impl Tables for Wide {
    fn table<B: IqBlock>() -> Kernels {
        block_table::<B, true>()
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
/// aligned, else with ordinary stores; with AVX-512 when `WIDE` (IQ3_S by
/// [`iq3s_blocks`], the others by [`wide_blocks`]), else by [`blocks`].
fn kernel<B: IqBlock, T: Out, const NT: bool, const WIDE: bool>(src: &[u8], dst: &mut [T]) {
    let x = as_blocks::<B>(src);
    let n = x.len().min(dst.len() / QK_K);
    let out = dst.as_mut_ptr().cast::<u8>();
    let nt = NT && super::aligned16(dst);
    // SAFETY: `n` whole blocks fit both slices, `kernels` hands this out only
    // after detecting AVX2 and F16C (and AVX-512F/BW when `WIDE`), and
    // streaming stores are used only on a 16-byte aligned output; where
    // `B::TYPE` is IQ3_S, `B` is `BlockIQ3_S` (one block struct per type), so
    // the pointer cast keeps the layout; the fence (SSE, always there on
    // x86-64) orders the streamed stores before whatever follows.
    unsafe {
        let iq3s = B::TYPE == GgmlType::IQ3_S;
        match (WIDE, iq3s, nt) {
            (true, true, true) => iq3s_blocks::<T, true>(x.as_ptr().cast(), out, n),
            (true, true, false) => iq3s_blocks::<T, false>(x.as_ptr().cast(), out, n),
            (true, false, true) => wide_blocks::<B, T, true>(x.as_ptr(), out, n),
            (true, false, false) => wide_blocks::<B, T, false>(x.as_ptr(), out, n),
            (false, _, true) => blocks::<B, T, true>(x.as_ptr(), out, n),
            (false, _, false) => blocks::<B, T, false>(x.as_ptr(), out, n),
        }
        if nt {
            crate::decode::simd::sfence();
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

/// [`blocks`] with AVX-512: the groups two by two (group `2i` and `2i + 1`,
/// each with its own scale, mask or shift), sixteen lanes at a time.
///
/// # Safety
/// As for [`blocks`], and the CPU must support AVX-512F.
#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn wide_blocks<B: IqBlock, T: Out, const NT: bool>(src: *const B, out: *mut u8, n: usize) {
    let sign = _mm512_set1_epi32(i32::MIN);
    // Lanes 8..16 take the second group's scale and shift.
    let pair = |a: f32, b: f32| _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a), _mm512_set1_ps(b));
    for b in 0..n {
        // SAFETY: block `b < n` lies inside the caller's buffers.
        let x = unsafe { &*src.add(b) };
        let mut first = None;
        x.groups(|k, g| {
            // Groups come in order: hold each even one for the next.
            let Some((k0, g0)) = first.take() else {
                first = Some((k, g));
                return;
            };
            let grid = _mm_set_epi64x(g.grid as i64, g0.grid as i64);
            let scale = pair(g0.scale, g.scale);
            let v = if B::SHIFTED {
                let q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(grid));
                _mm512_mul_ps(scale, _mm512_add_ps(q, pair(g0.delta, g.delta)))
            } else {
                let neg = _mm_movemask_epi8(_mm_set_epi64x(g.neg as i64, g0.neg as i64)) as u16;
                let q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(grid));
                let v = _mm512_castps_si512(_mm512_mul_ps(scale, q));
                _mm512_castsi512_ps(_mm512_mask_xor_epi32(v, neg, v, sign))
            };
            // The first group's place, kept at least sixteen outputs from
            // the block's end.
            let at = 8 * (k0 % GROUPS).min(GROUPS - 2);
            // SAFETY: outputs `at..at + 16` of block `b` lie inside the
            // caller's `n * 256`, 16-byte aligned for `NT` as the output is.
            unsafe { store16::<T, NT>(out, b * QK_K + at, v) }
        });
    }
}

/// IQ3_S with AVX-512, 32 outputs (one scale) at a time: the eight grid
/// indices put together in one vector (index `j`: byte `j` of the group's
/// `qs`, and bit `j` of its `qh` as bit 8), looked up two to a 64-bit word,
/// widened sixteen to a vector and multiplied by the scale; the 32 sign bits
/// are the masks of the sign flips.
///
/// # Safety
/// As for [`blocks`], and the CPU must support AVX-512F.
#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn iq3s_blocks<T: Out, const NT: bool>(src: *const BlockIQ3_S, out: *mut u8, n: usize) {
    let bit = _mm_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let one = _mm_set1_epi8(1);
    let sign = _mm512_set1_epi32(i32::MIN);
    for b in 0..n {
        // SAFETY: block `b < n` lies inside the caller's buffers.
        let x = unsafe { &*src.add(b) };
        let d = f16_le(x.d);
        for ib in 0..QK_K / 32 {
            let scale = _mm512_set1_ps(iq_groups::iq3s_scale(d, &x.scales, ib));
            let lo = _mm_cvtsi64_si128(u64::from_le_bytes(bytes_at(&x.qs, 8 * ib)) as i64);
            // Byte `j`: bit `j` of `qh`, as 0 or 1.
            let hi = _mm_min_epu8(_mm_and_si128(_mm_set1_epi8(x.qh[ib] as i8), bit), one);
            // The eight indices as u16, four to a 64-bit word.
            let idx = _mm_unpacklo_epi8(lo, hi);
            let w = [
                _mm_cvtsi128_si64(idx) as u64,
                _mm_extract_epi64::<1>(idx) as u64,
            ];
            // Each index is below 512, the grid's length: the mask only
            // spares the bounds check.
            let g = |j: usize| u64::from(IQ3S_GRID[(w[j / 4] >> (16 * (j % 4))) as usize & 511]);
            let signs = u32_at(&x.signs, 4 * ib);
            for h in 0..2 {
                let (g0, g1) = (
                    g(4 * h) | g(4 * h + 1) << 32,
                    g(4 * h + 2) | g(4 * h + 3) << 32,
                );
                let q = _mm512_cvtepu8_epi32(_mm_set_epi64x(g1 as i64, g0 as i64));
                let v = _mm512_castps_si512(_mm512_mul_ps(scale, _mm512_cvtepi32_ps(q)));
                let v = _mm512_mask_xor_epi32(v, (signs >> (16 * h)) as u16, v, sign);
                // SAFETY: outputs `32 * ib + 16 * h..` (sixteen) of block
                // `b` lie inside the caller's `n * 256`, 16-byte aligned for
                // `NT` as the output is.
                unsafe {
                    store16::<T, NT>(out, b * QK_K + 32 * ib + 16 * h, _mm512_castsi512_ps(v))
                };
            }
        }
    }
}

/// Stores the sixteen lanes of `v` at element `i` of the output at `out`,
/// as `T` ([`store16_512`]).
///
/// # Safety
/// As for [`store16_512`].
#[inline]
#[target_feature(enable = "avx512f,avx2,f16c")]
unsafe fn store16<T: Out, const NT: bool>(out: *mut u8, i: usize, v: __m512) {
    // SAFETY: the caller's guarantees.
    unsafe {
        if T::F16 {
            store16_512::<true, NT>(out, i, v);
        } else {
            store16_512::<false, NT>(out, i, v);
        }
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
