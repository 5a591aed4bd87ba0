//! x86-64 AVX2 (+F16C) float conversions: F32 → f16 fused (the stored f32
//! rounded by F16C's round-to-nearest-even `vcvtps2ph`, as
//! `half::f16::from_f32`), and f32 → bf16 for a slice (every bf16 output
//! goes through it), rounded to nearest-even exactly as
//! `half::bf16::from_f32`, NaNs included.
//!
//! F16 → f32 and BF16 → f32 / f16 live with the legacy kernels
//! (`x86_legacy`). Each kernel converts `min(src.len() / 4, dst.len())`
//! values and touches nothing else.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::x86_legacy::{load16, st128, supported};
use super::Kernels;
use crate::format::GgmlType;

/// The AVX2 kernels for `ty`, where this CPU supports them. F32 → f32 is a
/// plain copy, done before any kernel is asked for.
pub fn kernels(ty: GgmlType) -> Kernels {
    if !supported() {
        return Kernels::default();
    }
    match ty {
        GgmlType::F32 => Kernels {
            f16: Some(f32_f16),
            f16_stream: Some(f32_f16_stream),
            ..Kernels::default()
        },
        _ => Kernels::default(),
    }
}

/// F32 → f16: eight values at a time rounded by `vcvtps2ph`, the tail by
/// `half::f16::from_f32`.
///
/// # Safety
/// AVX2 and F16C must be available; with `NT`, `dst` must be 16-byte aligned.
#[target_feature(enable = "avx2,f16c")]
unsafe fn f32_f16_avx<const NT: bool>(src: &[u8], dst: &mut [f16]) {
    let n = (src.len() / 4).min(dst.len());
    let (src, dst) = (&src[..4 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(32);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        let y: &mut [f16; 8] = y.try_into().expect("8 outputs");
        let v = _mm256_set_m128i(load16(b, 16), load16(b, 0));
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_castsi256_ps(v));
        // SAFETY: `y` holds exactly 8 f16s = 16 bytes, and starts 16-byte
        // aligned under `NT` (its offset is a multiple of 8 elements).
        unsafe { st128::<NT>(y.as_mut_ptr().cast(), h) };
    }
    if NT {
        _mm_sfence();
    }
    for (b, y) in s.remainder().chunks_exact(4).zip(d.into_remainder()) {
        *y = f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    }
}

fn f32_f16(src: &[u8], dst: &mut [f16]) {
    // SAFETY: handed out only where AVX2 and F16C were detected.
    unsafe { f32_f16_avx::<false>(src, dst) }
}

fn f32_f16_stream(src: &[u8], dst: &mut [f16]) {
    if !super::aligned16(dst) {
        return f32_f16(src, dst);
    }
    // SAFETY: AVX2 and F16C were detected, `dst` is aligned.
    unsafe { f32_f16_avx::<true>(src, dst) }
}

/// The bf16 bits of eight f32s (given as their bits), in the low half of
/// each 32-bit lane: NaNs keep their top bits with the quiet bit set,
/// everything else is rounded to nearest-even (`bits + 0x7FFF + lsb`, then
/// the top half), as `half::bf16::from_f32`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn bf16_bits(x: __m256i) -> __m256i {
    let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
    let bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF));
    let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(x, bias));
    let quiet = _mm256_srli_epi32::<16>(_mm256_or_si256(x, _mm256_set1_epi32(0x0040_0000)));
    let magnitude = _mm256_and_si256(x, _mm256_set1_epi32(0x7FFF_FFFF));
    let nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F80_0000));
    _mm256_blendv_epi8(rounded, quiet, nan)
}

/// f32 → bf16 for a slice: 16 values at a time, the tail by
/// `half::bf16::from_f32`.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2,f16c")]
unsafe fn f32_bf16_avx(src: &[f32], dst: &mut [bf16]) {
    let n = src.len().min(dst.len());
    let mut s = src[..n].chunks_exact(16);
    let mut d = dst[..n].chunks_exact_mut(16);
    for (x, y) in (&mut s).zip(&mut d) {
        let x: &[f32; 16] = x.try_into().expect("16 inputs");
        let y: &mut [bf16; 16] = y.try_into().expect("16 outputs");
        // SAFETY: `x` holds 16 f32s = two unaligned 32-byte loads.
        let (a, b) = unsafe {
            let p = x.as_ptr().cast::<__m256i>();
            (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
        };
        // `packus` works per 128-bit lane (a0..4 b0..4 a4..8 b4..8); the
        // values are below 2^16, so it only narrows them.
        let h = _mm256_packus_epi32(bf16_bits(a), bf16_bits(b));
        let h = _mm256_permute4x64_epi64::<0b11_01_10_00>(h);
        // SAFETY: `y` holds 16 bf16s = 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(y.as_mut_ptr().cast(), h) };
    }
    for (x, y) in s.remainder().iter().zip(d.into_remainder()) {
        *y = bf16::from_f32(*x);
    }
}

/// f32 → bf16 for `min(src.len(), dst.len())` values with AVX2, or `None`
/// (nothing written) where this CPU lacks it.
pub fn f32_to_bf16(src: &[f32], dst: &mut [bf16]) -> Option<()> {
    if !supported() {
        return None;
    }
    // SAFETY: AVX2 was detected.
    unsafe { f32_bf16_avx(src, dst) };
    Some(())
}
