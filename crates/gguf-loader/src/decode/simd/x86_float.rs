//! x86-64 AVX2 (+F16C) float conversions: F32 → f16 fused (the stored f32
//! rounded by F16C's round-to-nearest-even `vcvtps2ph`, as
//! `half::f16::from_f32`); F32 → bf16 fused, and f32 → bf16 for a slice
//! (the scratch path of the types without a fused bf16 kernel), rounded to
//! nearest-even exactly as `half::bf16::from_f32`, NaNs included; and the
//! bf16 rounding and stores the other fused bf16 kernels use.
//!
//! Where the CPU has AVX-512F and AVX-512BW, the two F32 → bf16 paths round
//! sixteen values per operation instead of eight (the same integer
//! arithmetic, so the same bits): measured 1.44× on the conversion and
//! 1.02–1.33× on whole decodes to bf16 through the scratch
//! (docs/BENCHMARKS.md); F32 → f16 does too, with the 512-bit form of the
//! same `vcvtps2ph`. AVX-512 BF16's `vcvtneps2bf16` flushes denormal
//! inputs to zero, where `half` rounds them, and with the fix-up that needs
//! it measured no faster: it is not used.
//!
//! F16 → f32 / bf16 and BF16 → f32 / f16 live with the legacy kernels
//! (`x86_legacy`). Each kernel converts `min(src.len() / 4, dst.len())`
//! values and touches nothing else.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::x86_legacy::float_kernels;
use super::Kernels;
use super::{avx2, avx512};
use crate::format::GgmlType;

/// The kernels for `ty`, where this CPU supports them: AVX-512 where it has
/// AVX-512F/BW, else AVX2. F32 → f32 is a plain copy, done before any kernel
/// is asked for.
pub fn kernels(ty: GgmlType) -> Kernels {
    if !avx2() {
        return Kernels::default();
    }
    table(ty, avx512())
}

/// The kernels for `ty`, sixteen lanes wide when `wide` (call only where
/// `avx2()`, and `avx512()` too when `wide`).
pub(super) fn table(ty: GgmlType, wide: bool) -> Kernels {
    match (ty, wide) {
        (GgmlType::F32, false) => Kernels {
            f16: Some(f32_f16),
            f16_stream: Some(f32_f16_stream),
            bf16: Some(f32_bf16),
            bf16_stream: Some(f32_bf16_stream),
            ..Kernels::default()
        },
        (GgmlType::F32, true) => Kernels {
            f16: Some(f32_f16_512),
            f16_stream: Some(f32_f16_512_stream),
            bf16: Some(f32_bf16_512),
            bf16_stream: Some(f32_bf16_512_stream),
            ..Kernels::default()
        },
        _ => Kernels::default(),
    }
}

/// The bf16 bits of eight f32s, in the low half of each 32-bit lane: NaNs
/// keep their top bits with the quiet bit set, everything else is rounded to
/// nearest-even (`bits + 0x7FFF + lsb`, then the top half), as
/// `half::bf16::from_f32`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn bf16_bits(v: __m256) -> __m256i {
    let x = _mm256_castps_si256(v);
    let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
    let rounded = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7FFF)), lsb);
    let quiet = _mm256_or_si256(x, _mm256_set1_epi32(0x0040_0000));
    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
    _mm256_srli_epi32::<16>(_mm256_blendv_epi8(rounded, quiet, nan))
}

/// Eight f32s rounded to bf16 (as [`bf16_bits`]), in order, in 16 bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn ps_to_bf16x8(v: __m256) -> __m128i {
    let b = bf16_bits(v);
    // The values are below 2^16: the signed-to-unsigned pack only narrows.
    _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256::<1>(b))
}

/// Sixteen f32s (`lo`, then `hi`) rounded to bf16, in order, in 32 bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn ps_to_bf16x16(lo: __m256, hi: __m256) -> __m256i {
    // `packus` works per 128-bit lane (lo0..4 hi0..4 lo4..8 hi4..8); the
    // permute puts the four 64-bit quarters back in order.
    let h = _mm256_packus_epi32(bf16_bits(lo), bf16_bits(hi));
    _mm256_permute4x64_epi64::<0b11_01_10_00>(h)
}

/// Stores 32 bytes at `p`: two streaming 16-byte stores when `NT`, else one
/// unaligned store.
///
/// # Safety
/// `p..p + 32` must be writable, and 16-byte aligned when `NT`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn st256<const NT: bool>(p: *mut u8, v: __m256i) {
    // SAFETY: the caller guarantees 32 writable bytes (16-byte aligned for
    // the streaming stores).
    unsafe {
        if NT {
            let p = p.cast::<__m128i>();
            _mm_stream_si128(p, _mm256_castsi256_si128(v));
            _mm_stream_si128(p.add(1), _mm256_extracti128_si256::<1>(v));
        } else {
            _mm256_storeu_si256(p.cast(), v);
        }
    }
}

/// Defines an F32 → f16 or bf16 kernel (from the values' little-endian
/// bytes, no f32 scratch) with the given target features: sixteen values at
/// a time rounded by `$round` (64 input bytes to 32 bytes of output), the
/// tail by `$out::from_f32`.
macro_rules! f32_half_kernel {
    ($(#[$doc:meta])* $name:ident, $out:ident, $features:literal, $round:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        unsafe fn $name<const NT: bool>(src: &[u8], dst: &mut [$out]) {
            let n = (src.len() / 4).min(dst.len());
            let (src, dst) = (&src[..4 * n], &mut dst[..n]);
            let mut s = src.chunks_exact(64);
            let mut d = dst.chunks_exact_mut(16);
            for (b, y) in (&mut s).zip(&mut d) {
                let h = $round(b.try_into().expect("64 input bytes"));
                // SAFETY: `y` holds 16 two-byte values = 32 bytes, 16-byte
                // aligned under `NT` (its offset is a multiple of 16
                // elements).
                unsafe { st256::<NT>(y.as_mut_ptr().cast(), h) };
            }
            if NT {
                crate::decode::simd::sfence();
            }
            for (b, y) in s.remainder().chunks_exact(4).zip(d.into_remainder()) {
                *y = $out::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
    };
}

/// Sixteen f32s (64 little-endian bytes) rounded to f16 by F16C's
/// round-to-nearest-even `vcvtps2ph`, eight at a time.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn f16x16_avx2(b: &[u8; 64]) -> __m256i {
    let p = b.as_ptr().cast::<f32>();
    // SAFETY: `b` holds 64 bytes = two unaligned 32-byte loads.
    let (lo, hi) = unsafe { (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) };
    _mm256_set_m128i(
        _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(hi),
        _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(lo),
    )
}

f32_half_kernel!(
    /// F32 → f16 with AVX2 and F16C, eight values per rounding.
    ///
    /// # Safety
    /// AVX2 and F16C must be available; with `NT`, `dst` must be 16-byte
    /// aligned.
    f32_f16_avx,
    f16,
    "avx2,f16c",
    f16x16_avx2
);

float_kernels!(f32_f16_avx, f16, f32_f16, f32_f16_stream);

/// Sixteen f32s (64 little-endian bytes) rounded to f16 by the 512-bit
/// `vcvtps2ph` (the same instruction as [`f16x16_avx2`]'s, so the same
/// bits).
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
fn f16x16_avx512(b: &[u8; 64]) -> __m256i {
    // SAFETY: `b` holds 64 bytes = one unaligned 64-byte load.
    let v = unsafe { _mm512_loadu_ps(b.as_ptr().cast()) };
    _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)
}

f32_half_kernel!(
    /// F32 → f16 with AVX-512F, sixteen values per rounding.
    ///
    /// # Safety
    /// AVX2, F16C, AVX-512F and AVX-512BW must be available; with `NT`,
    /// `dst` must be 16-byte aligned.
    f32_f16_avx512,
    f16,
    "avx2,f16c,avx512f,avx512bw",
    f16x16_avx512
);

// Handed out only where `avx512()` found AVX-512F/BW besides AVX2 and F16C.
float_kernels!(f32_f16_avx512, f16, f32_f16_512, f32_f16_512_stream);

/// Sixteen f32s (64 little-endian bytes) rounded to bf16 by
/// [`ps_to_bf16x16`].
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn bf16x16_avx2(b: &[u8; 64]) -> __m256i {
    let p = b.as_ptr().cast::<f32>();
    // SAFETY: `b` holds 64 bytes = two unaligned 32-byte loads.
    unsafe { ps_to_bf16x16(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
}

f32_half_kernel!(
    /// F32 → bf16 with AVX2, eight values per rounding.
    ///
    /// # Safety
    /// AVX2 and F16C must be available; with `NT`, `dst` must be 16-byte
    /// aligned.
    f32_bf16_avx,
    bf16,
    "avx2,f16c",
    bf16x16_avx2
);

float_kernels!(f32_bf16_avx, bf16, f32_bf16, f32_bf16_stream);

/// [`bf16_bits`] on sixteen lanes: sixteen f32s rounded to bf16, in order,
/// in 32 bytes.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
fn ps_to_bf16x16_512(v: __m512) -> __m256i {
    let x = _mm512_castps_si512(v);
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(1));
    let rounded = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), lsb);
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    let bits = _mm512_mask_or_epi32(rounded, nan, x, _mm512_set1_epi32(0x0040_0000));
    // The values are below 2^16 after the shift: the narrowing only drops
    // zero bits.
    _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(bits))
}

/// Sixteen f32s (64 little-endian bytes) rounded to bf16 by
/// [`ps_to_bf16x16_512`].
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
fn bf16x16_avx512(b: &[u8; 64]) -> __m256i {
    // SAFETY: `b` holds 64 bytes = one unaligned 64-byte load.
    ps_to_bf16x16_512(unsafe { _mm512_loadu_ps(b.as_ptr().cast()) })
}

f32_half_kernel!(
    /// F32 → bf16 with AVX-512F/BW, sixteen values per rounding.
    ///
    /// # Safety
    /// AVX2, F16C, AVX-512F and AVX-512BW must be available; with `NT`,
    /// `dst` must be 16-byte aligned.
    f32_bf16_avx512,
    bf16,
    "avx2,f16c,avx512f,avx512bw",
    bf16x16_avx512
);

// Handed out only where `avx512()` found AVX-512F/BW besides AVX2 and F16C.
float_kernels!(f32_bf16_avx512, bf16, f32_bf16_512, f32_bf16_512_stream);

/// f32 → bf16 for `min(src.len(), dst.len())` values with AVX-512 or AVX2,
/// or `None` (nothing written) where this CPU has neither.
pub fn f32_to_bf16(src: &[f32], dst: &mut [bf16]) -> Option<()> {
    // F32's own bf16 kernel: an f32 slice is its values' little-endian
    // bytes on x86-64.
    kernels(GgmlType::F32).bf16?(bytemuck::cast_slice(src), dst);
    Some(())
}

/// Every F32 → bf16 path this CPU can run (AVX2; AVX-512 where present),
/// with ordinary and with streaming stores, by name: for the tests, which
/// hold each to `half` whichever the dispatcher picks here.
#[cfg(any(test, feature = "internals"))]
pub fn f32_to_bf16_paths() -> Vec<(&'static str, super::Bf16Kernel)> {
    let mut paths: Vec<(&'static str, super::Bf16Kernel)> = Vec::new();
    if avx2() {
        paths.push(("avx2", f32_bf16));
        paths.push(("avx2 streamed", f32_bf16_stream));
    }
    if avx512() {
        paths.push(("avx512", f32_bf16_512));
        paths.push(("avx512 streamed", f32_bf16_512_stream));
    }
    paths
}
