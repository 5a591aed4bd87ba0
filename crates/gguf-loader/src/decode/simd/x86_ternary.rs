//! x86-64 AVX2 (+F16C) kernels for the 1- and 2-bit types: the ternary
//! TQ1_0 and TQ2_0 (`decode::ternary`) and the sign-bit Q1_0 and 2-bit Q2_0
//! (`decode::legacy`), to f32 and fused to f16.
//!
//! Each value is computed with the reference's float operations: the small
//! integer quant converted exactly to f32 and multiplied by the f16 scale
//! widened to f32 (one rounded multiply), or for Q1_0 the scale itself or its
//! negation (a sign flip). So the f32 outputs are bit-identical to the
//! reference, and the f16 outputs are those values rounded to nearest-even
//! by `vcvtps2ph`, as `half::f16::from_f32` rounds them.
//!
//! Every kernel handles `min(src.len() / type_size, dst.len() / block_size)`
//! whole blocks and ignores the rest of both slices.

use std::arch::x86_64::*;

use half::f16;

use super::x86_kquants::{load16, store16, upper8, widen_f16, wrappers};
use super::Kernels;
use crate::decode::ternary::POW3;
use crate::format::blocks::{as_blocks, Block, BlockQ1_0, BlockQ2_0, BlockTQ1_0, BlockTQ2_0};
use crate::format::GgmlType;

/// The kernels for `ty`, where there are some and the CPU can run them.
pub fn kernels(ty: GgmlType) -> Kernels {
    if !super::avx2() {
        return Kernels::default();
    }
    match ty {
        GgmlType::TQ1_0 => tq1_0::KERNELS,
        GgmlType::TQ2_0 => tq2_0::KERNELS,
        GgmlType::Q1_0 => q1_0::KERNELS,
        GgmlType::Q2_0 => q2_0::KERNELS,
        _ => Kernels::default(),
    }
}

/// `q * d` for eight i32 quants (exact conversion, one rounded multiply, in
/// the reference's order `(q as f32) * d`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn qd(q: __m256i, d: __m256) -> __m256 {
    _mm256_mul_ps(_mm256_cvtepi32_ps(q), d)
}

// ---------------------------------------------------------------------------
// TQ1_0
// ---------------------------------------------------------------------------

/// The base-3 digits of 16 bytes, lane `i` of `bytes` multiplied by lane `i`
/// of `pow` (a power of 3), as ggml's TQ1_0 extracts them:
/// `q = byte * pow` wrapping in 8 bits, then `((q * 3) >> 8) - 1` (in
/// -1..=1), as 16 i16 lanes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn trits16(bytes: __m128i, pow: __m256i) -> __m256i {
    // With the byte in the high half of a 16-bit lane, the 16-bit product
    // wraps exactly as the 8-bit one does; `mulhi` by 3 is then `(q * 3) >> 8`.
    let w = _mm256_slli_epi16::<8>(_mm256_cvtepu8_epi16(bytes));
    let q = _mm256_mullo_epi16(w, pow);
    let t = _mm256_mulhi_epu16(q, _mm256_set1_epi16(3));
    _mm256_sub_epi16(t, _mm256_set1_epi16(1))
}

/// Stores [`trits16`] of `bytes` and `pow`, times `d`, as the 16 elements
/// at `i`.
///
/// # Safety
/// As [`store16`].
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn store_trits<const F16: bool, const NT: bool>(
    out: *mut u8,
    i: usize,
    bytes: __m128i,
    pow: __m256i,
    d: __m256,
) {
    let t = trits16(bytes, pow);
    let lo = qd(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(t)), d);
    let hi = qd(_mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(t)), d);
    // SAFETY: as the caller guarantees.
    unsafe { store16::<F16, NT>(out, i, lo, hi) }
}

/// Decodes `n` TQ1_0 blocks from `src` to `out` (f32, or f16 when `F16`).
///
/// Values 0..160: digit `k` of `qs` bytes 0..32 for values `32k..32k + 32`;
/// 160..240: digit `k` of `qs` bytes 32..48 for `160 + 16k..`; 240..256:
/// digit `k` of the four `qh` bytes for `240 + 4k..`.
///
/// # Safety
/// `src` must point to `n` blocks, `out` to room for `n * 256` output
/// elements, and the CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn tq1_0_blocks<const F16: bool, const NT: bool>(
    src: *const BlockTQ1_0,
    out: *mut u8,
    n: usize,
) {
    let pow = POW3.map(|p| _mm256_set1_epi16(i16::from(p)));
    // Lane i of the qh vector is byte i % 4, digit i / 4.
    let [p0, p1, p2, p3, ..] = POW3.map(i16::from);
    let pow_h = _mm256_setr_epi16(
        p0, p0, p0, p0, p1, p1, p1, p1, p2, p2, p2, p2, p3, p3, p3, p3,
    );
    for b in 0..n {
        // SAFETY: block `b < n` lies inside the caller's buffers.
        let (x, y) = unsafe { (&*src.add(b), b * 256) };
        let d = _mm256_set1_ps(widen_f16(x.d));
        // SAFETY: qs bytes 0..48 are all of `x.qs`.
        let (q0, q1, q2) = unsafe {
            let p = x.qs.as_ptr();
            (load16(p), load16(p.add(16)), load16(p.add(32)))
        };
        let qh = _mm_set1_epi32(i32::from_le_bytes(x.qh));
        for (k, &pk) in pow[..5].iter().enumerate() {
            // SAFETY: elements y .. y + 256 are block `b`'s.
            unsafe {
                store_trits::<F16, NT>(out, y + 32 * k, q0, pk, d);
                store_trits::<F16, NT>(out, y + 32 * k + 16, q1, pk, d);
                store_trits::<F16, NT>(out, y + 160 + 16 * k, q2, pk, d);
            }
        }
        // SAFETY: as above.
        unsafe { store_trits::<F16, NT>(out, y + 240, qh, pow_h, d) };
    }
}

wrappers!(tq1_0, tq1_0_blocks, BlockTQ1_0);

// ---------------------------------------------------------------------------
// TQ2_0
// ---------------------------------------------------------------------------

/// `(q - 1) * d` for the low 8 byte codes of `q` (0..=3).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn code_d(q: __m128i, d: __m256) -> __m256 {
    let v = _mm256_sub_epi32(_mm256_cvtepu8_epi32(q), _mm256_set1_epi32(1));
    qd(v, d)
}

/// Decodes `n` TQ2_0 blocks from `src` to `out` (f32, or f16 when `F16`).
///
/// Each 32-byte half of `qs` gives 128 values: bit pair `l` of every byte
/// for values `32l..32l + 32`.
///
/// # Safety
/// `src` must point to `n` blocks, `out` to room for `n * 256` output
/// elements, and the CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn tq2_0_blocks<const F16: bool, const NT: bool>(
    src: *const BlockTQ2_0,
    out: *mut u8,
    n: usize,
) {
    let three = _mm_set1_epi8(3);
    for b in 0..n {
        // SAFETY: block `b < n` lies inside the caller's buffers.
        let (x, y) = unsafe { (&*src.add(b), b * 256) };
        let d = _mm256_set1_ps(widen_f16(x.d));
        for g in 0..2 {
            for half in 0..2 {
                // SAFETY: qs bytes 32g + 16half .. +16 lie inside `x.qs` (64
                // bytes).
                let q = unsafe { load16(x.qs.as_ptr().add(32 * g + 16 * half)) };
                for l in 0..4 {
                    let shift = _mm_cvtsi32_si128(2 * l);
                    let v = _mm_and_si128(_mm_srl_epi16(q, shift), three);
                    let at = y + 128 * g + 32 * l as usize + 16 * half;
                    // SAFETY: elements at .. at + 16 lie inside block `b`.
                    unsafe { store16::<F16, NT>(out, at, code_d(v, d), code_d(upper8(v), d)) };
                }
            }
        }
    }
}

wrappers!(tq2_0, tq2_0_blocks, BlockTQ2_0);

// ---------------------------------------------------------------------------
// Q1_0
// ---------------------------------------------------------------------------

/// Decodes `n` Q1_0 blocks from `src` to `out` (f32, or f16 when `F16`):
/// value `j` is `d` where bit `j % 8` of byte `j / 8` is set, else `-d`.
///
/// # Safety
/// `src` must point to `n` blocks, `out` to room for `n * 128` output
/// elements, and the CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn q1_0_blocks<const F16: bool, const NT: bool>(
    src: *const BlockQ1_0,
    out: *mut u8,
    n: usize,
) {
    // Lane i of a 16-bit word broadcast to eight lanes tests bit i (`lo`)
    // or bit 8 + i (`hi`).
    let bits_lo = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let bits_hi = _mm256_slli_epi32::<8>(bits_lo);
    let sign = _mm256_set1_ps(-0.0);
    for b in 0..n {
        // SAFETY: block `b < n` lies inside the caller's buffers.
        let (x, y) = unsafe { (&*src.add(b), b * BlockQ1_0::ELEMENTS) };
        let d = _mm256_set1_ps(widen_f16(x.d));
        let neg = _mm256_xor_ps(d, sign);
        for (j, w) in x.qs.chunks_exact(2).enumerate() {
            let v = _mm256_set1_epi32(i32::from(u16::from_le_bytes([w[0], w[1]])));
            let pick = |bits: __m256i| {
                let set = _mm256_cmpeq_epi32(_mm256_and_si256(v, bits), bits);
                _mm256_blendv_ps(neg, d, _mm256_castsi256_ps(set))
            };
            // SAFETY: elements y + 16j .. +16 lie inside block `b`.
            unsafe { store16::<F16, NT>(out, y + 16 * j, pick(bits_lo), pick(bits_hi)) };
        }
    }
}

wrappers!(q1_0, q1_0_blocks, BlockQ1_0);

// ---------------------------------------------------------------------------
// Q2_0
// ---------------------------------------------------------------------------

/// Decodes `n` Q2_0 blocks from `src` to `out` (f32, or f16 when `F16`):
/// value `j` is `(q - 1) * d` with `q` the bit pair `j % 4` of byte `j / 4`.
///
/// # Safety
/// `src` must point to `n` blocks, `out` to room for `n * 64` output
/// elements, and the CPU must support AVX2 and F16C.
#[target_feature(enable = "avx2,f16c")]
unsafe fn q2_0_blocks<const F16: bool, const NT: bool>(
    src: *const BlockQ2_0,
    out: *mut u8,
    n: usize,
) {
    // A 32-bit word broadcast to eight lanes holds values 0..8 at these
    // shifts, and values 8..16 sixteen bits higher.
    let shift_lo = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    let shift_hi = _mm256_add_epi32(shift_lo, _mm256_set1_epi32(16));
    let (three, one) = (_mm256_set1_epi32(3), _mm256_set1_epi32(1));
    for b in 0..n {
        // SAFETY: block `b < n` lies inside the caller's buffers.
        let (x, y) = unsafe { (&*src.add(b), b * BlockQ2_0::ELEMENTS) };
        let d = _mm256_set1_ps(widen_f16(x.d));
        for (j, w) in x.qs.chunks_exact(4).enumerate() {
            let v = _mm256_set1_epi32(i32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            let codes = |shift: __m256i| {
                let q = _mm256_and_si256(_mm256_srlv_epi32(v, shift), three);
                qd(_mm256_sub_epi32(q, one), d)
            };
            // SAFETY: elements y + 16j .. +16 lie inside block `b`.
            unsafe { store16::<F16, NT>(out, y + 16 * j, codes(shift_lo), codes(shift_hi)) };
        }
    }
}

wrappers!(q2_0, q2_0_blocks, BlockQ2_0);
