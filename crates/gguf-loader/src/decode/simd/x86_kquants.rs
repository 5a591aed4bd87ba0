//! x86-64 AVX2 (+F16C) and AVX-512 kernels for the K-quants Q2_K, Q3_K,
//! Q4_K, Q5_K and Q6_K, to f32 and fused to f16.
//!
//! The per-block scales are decoded with scalar code exactly as in
//! [`crate::decode::kquants`] (`d1 = d * sc`, `m1 = dmin * m`, rounded to
//! f32); the quants are then widened eight at a time to i32, converted to
//! f32 and combined with the same float operations in the same order as the
//! scalar routine (`d1 * q - m1` as a separate multiply and subtract, or
//! `(d * sc) * q` for Q3_K and Q6_K). So the f32 outputs are bit-identical to
//! the reference, and the f16 outputs are those values rounded to
//! nearest-even by `vcvtps2ph`, as `half::f16::from_f32` rounds them.
//!
//! Where the CPU has AVX-512, each kernel is built a second time from the
//! same body (`two_widths!`) with sixteen lanes per operation instead of
//! eight: the same float operations on the same values, so the same bits.
//! The K-quants' kernels were bound by that vector work (widening,
//! converting, scaling, rounding and storing eight lanes at a time), so the
//! wider build runs faster (docs/BENCHMARKS.md).
//!
//! Every kernel handles `min(src.len() / type_size, dst.len() / 256)` whole
//! blocks and ignores the rest of both slices. The store and load helpers and
//! the `wrappers!` macro serve the other block kernels (`x86_ternary`) too.

use std::arch::x86_64::*;

use half::f16;

use super::Kernels;
use crate::decode::kquants::{group_scales, q3_k_scales};
use crate::format::blocks::{
    as_blocks, Block, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, Half, QK_K,
};
use crate::format::GgmlType;

/// The kernels for `ty`, where there are some and the CPU can run them.
pub fn kernels(ty: GgmlType) -> Kernels {
    if !super::avx2() {
        return Kernels::default();
    }
    table(ty, super::avx512())
}

/// The kernels for `ty`, sixteen lanes wide when `wide` (call only where
/// `avx2()`, and `avx512()` too when `wide`).
pub(super) fn table(ty: GgmlType, wide: bool) -> Kernels {
    match (ty, wide) {
        (GgmlType::Q2_K, false) => q2_k::KERNELS,
        (GgmlType::Q3_K, false) => q3_k::KERNELS,
        (GgmlType::Q4_K, false) => q4_k::KERNELS,
        (GgmlType::Q5_K, false) => q5_k::KERNELS,
        (GgmlType::Q6_K, false) => q6_k::KERNELS,
        (GgmlType::Q2_K, true) => q2_k_wide::KERNELS,
        (GgmlType::Q3_K, true) => q3_k_wide::KERNELS,
        (GgmlType::Q4_K, true) => q4_k_wide::KERNELS,
        (GgmlType::Q5_K, true) => q5_k_wide::KERNELS,
        (GgmlType::Q6_K, true) => q6_k_wide::KERNELS,
        _ => Kernels::default(),
    }
}

/// The f16 `h` widened to f32 (exact, with F16C's `vcvtph2ps`, as
/// `GGML_FP16_TO_FP32`; NaN payloads are kept).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn widen_f16(h: Half) -> f32 {
    let v = _mm_cvtsi32_si128(i32::from(u16::from_le_bytes(h)));
    _mm_cvtss_f32(_mm_cvtph_ps(v))
}

/// Stores 16 values (`lo` then `hi`) at element `i` of the output at
/// `out`: as f32, or converted to f16 with round-to-nearest-even when `F16`;
/// with streaming (non-temporal) 16-byte stores when `NT`.
///
/// # Safety
/// Elements `i..i + 16` of the output (4 or 2 bytes each) must be writable,
/// `out` 16-byte aligned when `NT`, and the CPU must support AVX2 and F16C.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn store16<const F16: bool, const NT: bool>(
    out: *mut u8,
    i: usize,
    lo: __m256,
    hi: __m256,
) {
    if F16 {
        let (l, h) = (
            _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(lo),
            _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(hi),
        );
        // SAFETY: the caller guarantees 32 writable bytes at element `i`
        // (16-byte aligned when `NT`, as `i` is a multiple of 16).
        unsafe {
            let p = out.add(i * 2) as *mut __m128i;
            if NT {
                _mm_stream_si128(p, l);
                _mm_stream_si128(p.add(1), h);
            } else {
                _mm256_storeu_si256(p as *mut __m256i, _mm256_set_m128i(h, l));
            }
        }
    } else {
        // SAFETY: the caller guarantees 64 writable bytes at element `i`
        // (16-byte aligned when `NT`).
        unsafe {
            let p = out.add(i * 4) as *mut f32;
            if NT {
                _mm_stream_ps(p, _mm256_castps256_ps128(lo));
                _mm_stream_ps(p.add(4), _mm256_extractf128_ps::<1>(lo));
                _mm_stream_ps(p.add(8), _mm256_castps256_ps128(hi));
                _mm_stream_ps(p.add(12), _mm256_extractf128_ps::<1>(hi));
            } else {
                _mm256_storeu_ps(p, lo);
                _mm256_storeu_ps(p.add(8), hi);
            }
        }
    }
}

/// Loads 16 bytes at `p`.
///
/// # Safety
/// `p..p + 16` must be readable and the CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn load16(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes at `p`.
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

/// Bytes 8..16 of `v` moved to bytes 0..8.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn upper8(v: __m128i) -> __m128i {
    _mm_unpackhi_epi64(v, v)
}

/// `d * q - m` for the low 8 unsigned byte quants of `q`, as two separate rounded ops.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn dqm(q: __m128i, d: __m256, m: __m256) -> __m256 {
    let qf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
    _mm256_sub_ps(_mm256_mul_ps(d, qf), m)
}

/// Stores the sixteen lanes of `v` at element `i` of the output at `out`:
/// as f32, or rounded to f16 (nearest-even) when `F16`; with streaming
/// 16-byte stores when `NT`.
///
/// # Safety
/// Elements `i..i + 16` of the output must be writable, 16-byte aligned when
/// `NT`, and the CPU must support AVX-512F, AVX2 and F16C.
#[inline]
#[target_feature(enable = "avx512f,avx2,f16c")]
pub(super) unsafe fn store16_512<const F16: bool, const NT: bool>(
    out: *mut u8,
    i: usize,
    v: __m512,
) {
    if F16 {
        let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        // SAFETY: the caller guarantees 32 writable bytes at element `i`.
        unsafe {
            let p = out.add(2 * i).cast::<__m128i>();
            if NT {
                _mm_stream_si128(p, _mm256_castsi256_si128(h));
                _mm_stream_si128(p.add(1), _mm256_extracti128_si256::<1>(h));
            } else {
                _mm256_storeu_si256(p.cast(), h);
            }
        }
    } else {
        // SAFETY: the caller guarantees 64 writable bytes at element `i`.
        unsafe {
            let p = out.add(4 * i).cast::<f32>();
            if NT {
                _mm_stream_ps(p, _mm512_extractf32x4_ps::<0>(v));
                _mm_stream_ps(p.add(4), _mm512_extractf32x4_ps::<1>(v));
                _mm_stream_ps(p.add(8), _mm512_extractf32x4_ps::<2>(v));
                _mm_stream_ps(p.add(12), _mm512_extractf32x4_ps::<3>(v));
            } else {
                _mm512_storeu_ps(p, v);
            }
        }
    }
}

/// The vector end of the K-quant kernels, eight lanes at a time: sixteen
/// byte quants in, sixteen outputs stored.
mod lanes8 {
    use super::*;

    /// Stores `d * q - m` (a separate multiply and subtract) for the sixteen
    /// unsigned byte quants of `q` at element `i`.
    ///
    /// # Safety
    /// As for [`store16`].
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn put_dqm<const F16: bool, const NT: bool>(
        out: *mut u8,
        i: usize,
        q: __m128i,
        d: f32,
        m: f32,
    ) {
        let (d, m) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
        // SAFETY: the caller's guarantees.
        unsafe { store16::<F16, NT>(out, i, dqm(q, d, m), dqm(upper8(q), d, m)) }
    }

    /// Stores `s * q` for the sixteen signed byte quants of `q` at element
    /// `i`.
    ///
    /// # Safety
    /// As for [`store16`].
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn put_sq<const F16: bool, const NT: bool>(
        out: *mut u8,
        i: usize,
        q: __m128i,
        s: f32,
    ) {
        // SAFETY: the caller's guarantees.
        unsafe { store16::<F16, NT>(out, i, sq(q, s), sq(upper8(q), s)) }
    }
}

/// [`lanes8`] sixteen lanes at a time, with AVX-512F.
mod lanes16 {
    use super::*;

    /// As [`lanes8::put_dqm`].
    ///
    /// # Safety
    /// As for [`store16_512`].
    #[inline]
    #[target_feature(enable = "avx512f,avx2,f16c")]
    pub(super) unsafe fn put_dqm<const F16: bool, const NT: bool>(
        out: *mut u8,
        i: usize,
        q: __m128i,
        d: f32,
        m: f32,
    ) {
        let qf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q));
        let v = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d), qf), _mm512_set1_ps(m));
        // SAFETY: the caller's guarantees.
        unsafe { store16_512::<F16, NT>(out, i, v) }
    }

    /// As [`lanes8::put_sq`].
    ///
    /// # Safety
    /// As for [`store16_512`].
    #[inline]
    #[target_feature(enable = "avx512f,avx2,f16c")]
    pub(super) unsafe fn put_sq<const F16: bool, const NT: bool>(
        out: *mut u8,
        i: usize,
        q: __m128i,
        s: f32,
    ) {
        let v = _mm512_mul_ps(
            _mm512_set1_ps(s),
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)),
        );
        // SAFETY: the caller's guarantees.
        unsafe { store16_512::<F16, NT>(out, i, v) }
    }
}

/// Defines a K-quant kernel twice from one body: `$avx2` with AVX2 and F16C
/// and [`lanes8`]'s stores, `$wide` with AVX-512F besides and [`lanes16`]'s
/// (the body calls `lanes::put_dqm` and `lanes::put_sq`). Both are
/// `unsafe fn(src: *const $b, out: *mut u8, n: usize)` over `n` blocks, with
/// the safety contract the doc comment states, plus the target features.
macro_rules! two_widths {
    ($(#[$doc:meta])* $avx2:ident, $wide:ident, $b:ty, |$src:ident, $out:ident, $n:ident| $body:block) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn $avx2<const F16: bool, const NT: bool>($src: *const $b, $out: *mut u8, $n: usize) {
            use lanes8 as lanes;
            $body
        }

        $(#[$doc])*
        #[target_feature(enable = "avx512f,avx2,f16c")]
        unsafe fn $wide<const F16: bool, const NT: bool>($src: *const $b, $out: *mut u8, $n: usize) {
            use lanes16 as lanes;
            $body
        }
    };
}

/// Defines `mod $m`, the safe entry points over the `*_blocks` loop
/// `$blocks`: the `n` whole blocks of `src`, viewed as `$b`, that fit both
/// slices, with ordinary stores or (on a 16-byte aligned output) streaming
/// stores followed by a store fence; and `$m::KERNELS`, the four of them.
/// Every block's outputs must be a multiple of 16 bytes (8 f16s), so that
/// each block starts aligned when the output does.
macro_rules! wrappers {
    ($m:ident, $blocks:ident, $b:ty) => {
        mod $m {
            use super::*;

            const _: () = assert!(<$b as Block>::ELEMENTS % 8 == 0);

            /// The four kernels, handed out only after the target features of
            /// `$blocks` were detected.
            pub(super) const KERNELS: Kernels = Kernels {
                f32: Some(f32),
                f16: Some(f16),
                f32_stream: Some(f32_stream),
                f16_stream: Some(f16_stream),
                // bf16 goes through the f32 scratch: fused, these kernels
                // measured slower (docs/BENCHMARKS.md).
                bf16: None,
                bf16_stream: None,
            };

            fn f32(src: &[u8], dst: &mut [f32]) {
                let x = as_blocks::<$b>(src);
                let n = x.len().min(dst.len() / <$b as Block>::ELEMENTS);
                // SAFETY: `n` whole blocks fit in both slices, and `kernels`
                // hands this function out only after detecting the target
                // features of `$blocks`.
                unsafe { $blocks::<false, false>(x.as_ptr(), dst.as_mut_ptr() as *mut u8, n) }
            }

            fn f16(src: &[u8], dst: &mut [f16]) {
                let x = as_blocks::<$b>(src);
                let n = x.len().min(dst.len() / <$b as Block>::ELEMENTS);
                // SAFETY: as above.
                unsafe { $blocks::<true, false>(x.as_ptr(), dst.as_mut_ptr() as *mut u8, n) }
            }

            fn f32_stream(src: &[u8], dst: &mut [f32]) {
                if !crate::decode::simd::aligned16(dst) {
                    return f32(src, dst);
                }
                let x = as_blocks::<$b>(src);
                let n = x.len().min(dst.len() / <$b as Block>::ELEMENTS);
                // SAFETY: as above, and `dst` is 16-byte aligned; the fence
                // (SSE, always there on x86-64) orders the streamed stores.
                unsafe {
                    $blocks::<false, true>(x.as_ptr(), dst.as_mut_ptr() as *mut u8, n);
                    crate::decode::simd::sfence();
                }
            }

            fn f16_stream(src: &[u8], dst: &mut [f16]) {
                if !crate::decode::simd::aligned16(dst) {
                    return f16(src, dst);
                }
                let x = as_blocks::<$b>(src);
                let n = x.len().min(dst.len() / <$b as Block>::ELEMENTS);
                // SAFETY: as above, and `dst` is 16-byte aligned; the fence
                // (SSE, always there on x86-64) orders the streamed stores.
                unsafe {
                    $blocks::<true, true>(x.as_ptr(), dst.as_mut_ptr() as *mut u8, n);
                    crate::decode::simd::sfence();
                }
            }
        }
    };
}

pub(super) use wrappers;

// ---------------------------------------------------------------------------
// Q2_K
// ---------------------------------------------------------------------------

two_widths!(
    /// Decodes `n` Q2_K blocks from `src` to `out` (f32, or f16 when `F16`).
    ///
    /// Each half of the block (128 values) reads 32 `qs` bytes four times, at
    /// bit shifts 0, 2, 4 and 6; each shift gives two groups of 16 values, each
    /// with its own scale byte (`d * (sc & 15)`, `dmin * (sc >> 4)`).
    ///
    /// # Safety
    /// `src` must point to `n` blocks, `out` to room for `n * 256` output
    /// elements, and the CPU must support AVX2 and F16C (AVX-512F too for the wide
    /// build).
    q2_k_blocks,
    q2_k_blocks_wide,
    BlockQ2_K,
    |src, out, n| {
        let three = _mm_set1_epi8(3);
        for b in 0..n {
            // SAFETY: block `b < n` lies inside the caller's buffers.
            let (x, y) = unsafe { (&*src.add(b), b * QK_K) };
            let (d, min) = (widen_f16(x.d), widen_f16(x.dmin));
            for (h, sc) in x.scales.chunks_exact(8).enumerate() {
                // SAFETY: qs bytes 32h .. 32h + 32 lie inside `x.qs` (64 bytes).
                let q = unsafe {
                    let p = x.qs.as_ptr().add(32 * h);
                    [load16(p), load16(p.add(16))]
                };
                for (k, sc) in sc.chunks_exact(2).enumerate() {
                    let shift = _mm_cvtsi32_si128(2 * k as i32);
                    for (half, &s) in sc.iter().enumerate() {
                        let dl = d * f32::from(s & 0xF);
                        let ml = min * f32::from(s >> 4);
                        let v = _mm_and_si128(_mm_srl_epi16(q[half], shift), three);
                        let at = y + 128 * h + 32 * k + 16 * half;
                        // SAFETY: elements at .. at + 16 lie inside block `b`.
                        unsafe { lanes::put_dqm::<F16, NT>(out, at, v, dl, ml) };
                    }
                }
            }
        }
    }
);

wrappers!(q2_k, q2_k_blocks, BlockQ2_K);
wrappers!(q2_k_wide, q2_k_blocks_wide, BlockQ2_K);

// ---------------------------------------------------------------------------
// Q3_K
// ---------------------------------------------------------------------------

two_widths!(
    /// Decodes `n` Q3_K blocks from `src` to `out` (f32, or f16 when `F16`).
    ///
    /// The layout of Q2_K's quants, plus a third (high) bit per value from
    /// `hmask`: bit `4h + k` of byte `l` for value `l` of shift `k` in half `h`;
    /// a clear bit subtracts 4. The value is `(d * (sc - 32)) * q`.
    ///
    /// # Safety
    /// `src` must point to `n` blocks, `out` to room for `n * 256` output
    /// elements, and the CPU must support AVX2 and F16C (AVX-512F too for the wide
    /// build).
    q3_k_blocks,
    q3_k_blocks_wide,
    BlockQ3_K,
    |src, out, n| {
        let three = _mm_set1_epi8(3);
        let four = _mm_set1_epi8(4);
        for b in 0..n {
            // SAFETY: block `b < n` lies inside the caller's buffers.
            let (x, y) = unsafe { (&*src.add(b), b * QK_K) };
            let d = widen_f16(x.d);
            let scales = q3_k_scales(&x.scales);
            // SAFETY: hmask bytes 0 .. 32 are all of `x.hmask`.
            let hm = unsafe { [load16(x.hmask.as_ptr()), load16(x.hmask.as_ptr().add(16))] };
            for (h, sc) in scales.chunks_exact(8).enumerate() {
                // SAFETY: qs bytes 32h .. 32h + 32 lie inside `x.qs` (64 bytes).
                let q = unsafe {
                    let p = x.qs.as_ptr().add(32 * h);
                    [load16(p), load16(p.add(16))]
                };
                for (k, sc) in sc.chunks_exact(2).enumerate() {
                    let shift = _mm_cvtsi32_si128(2 * k as i32);
                    let bit = _mm_set1_epi8((1u8 << (4 * h + k)) as i8);
                    for (half, &s) in sc.iter().enumerate() {
                        // `scales` are int8 in C; their values are 0..=63 here.
                        let dl = d * (i32::from(s) - 32) as f32;
                        let low = _mm_and_si128(_mm_srl_epi16(q[half], shift), three);
                        let clear = _mm_cmpeq_epi8(_mm_and_si128(hm[half], bit), _mm_setzero_si128());
                        let v = _mm_sub_epi8(low, _mm_and_si128(clear, four));
                        let at = y + 128 * h + 32 * k + 16 * half;
                        // SAFETY: elements at .. at + 16 lie inside block `b`.
                        unsafe { lanes::put_sq::<F16, NT>(out, at, v, dl) };
                    }
                }
            }
        }
    }
);

wrappers!(q3_k, q3_k_blocks, BlockQ3_K);
wrappers!(q3_k_wide, q3_k_blocks_wide, BlockQ3_K);

// ---------------------------------------------------------------------------
// Q4_K
// ---------------------------------------------------------------------------

two_widths!(
    /// Decodes `n` Q4_K blocks from `src` to `out` (f32, or f16 when `F16`).
    ///
    /// # Safety
    /// `src` must point to `n` blocks, `out` to room for `n * 256` output
    /// elements, and the CPU must support AVX2 and F16C (AVX-512F too for the wide
    /// build).
    q4_k_blocks,
    q4_k_blocks_wide,
    BlockQ4_K,
    |src, out, n| {
        let mask = _mm_set1_epi8(0x0F);
        for b in 0..n {
            // SAFETY: block `b < n` lies inside the caller's buffers.
            let (x, y) = unsafe { (&*src.add(b), b * QK_K) };
            let (d, min) = (widen_f16(x.d), widen_f16(x.dmin));
            for j in 0..4 {
                let [(d1, m1), (d2, m2)] = group_scales(d, min, &x.scales, j);
                let yj = y + 64 * j;
                for l in [0, 16] {
                    // SAFETY: qs bytes 32j + l .. +16 lie inside `x.qs` (128 bytes).
                    let q = unsafe { load16(x.qs.as_ptr().add(32 * j + l)) };
                    let lo = _mm_and_si128(q, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), mask);
                    // SAFETY: elements yj + l .. yj + 48 + l lie inside block `b`.
                    unsafe {
                        lanes::put_dqm::<F16, NT>(out, yj + l, lo, d1, m1);
                        lanes::put_dqm::<F16, NT>(out, yj + 32 + l, hi, d2, m2);
                    }
                }
            }
        }
    }
);

wrappers!(q4_k, q4_k_blocks, BlockQ4_K);
wrappers!(q4_k_wide, q4_k_blocks_wide, BlockQ4_K);

// ---------------------------------------------------------------------------
// Q5_K
// ---------------------------------------------------------------------------

two_widths!(
    /// Decodes `n` Q5_K blocks from `src` to `out` (f32, or f16 when `F16`).
    ///
    /// # Safety
    /// `src` must point to `n` blocks, `out` to room for `n * 256` output
    /// elements, and the CPU must support AVX2 and F16C (AVX-512F too for the wide
    /// build).
    q5_k_blocks,
    q5_k_blocks_wide,
    BlockQ5_K,
    |src, out, n| {
        let mask = _mm_set1_epi8(0x0F);
        let sixteen = _mm_set1_epi8(16);
        for b in 0..n {
            // SAFETY: block `b < n` lies inside the caller's buffers.
            let (x, y) = unsafe { (&*src.add(b), b * QK_K) };
            let (d, min) = (widen_f16(x.d), widen_f16(x.dmin));
            for j in 0..4 {
                let [(d1, m1), (d2, m2)] = group_scales(d, min, &x.scales, j);
                let u1 = _mm_set1_epi8((1u8 << (2 * j)) as i8);
                let u2 = _mm_set1_epi8((2u8 << (2 * j)) as i8);
                let yj = y + 64 * j;
                for l in [0, 16] {
                    // SAFETY: qh bytes l .. l + 16 lie inside `x.qh` (32 bytes), qs
                    // bytes 32j + l .. +16 inside `x.qs` (128 bytes).
                    let (qh, q) = unsafe {
                        (
                            load16(x.qh.as_ptr().add(l)),
                            load16(x.qs.as_ptr().add(32 * j + l)),
                        )
                    };
                    let h1 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh, u1), u1), sixteen);
                    let h2 = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh, u2), u2), sixteen);
                    let lo = _mm_add_epi8(_mm_and_si128(q, mask), h1);
                    let hi = _mm_add_epi8(_mm_and_si128(_mm_srli_epi16::<4>(q), mask), h2);
                    // SAFETY: elements yj + l .. yj + 48 + l lie inside block `b`.
                    unsafe {
                        lanes::put_dqm::<F16, NT>(out, yj + l, lo, d1, m1);
                        lanes::put_dqm::<F16, NT>(out, yj + 32 + l, hi, d2, m2);
                    }
                }
            }
        }
    }
);

wrappers!(q5_k, q5_k_blocks, BlockQ5_K);
wrappers!(q5_k_wide, q5_k_blocks_wide, BlockQ5_K);

// ---------------------------------------------------------------------------
// Q6_K
// ---------------------------------------------------------------------------

/// `s * q` for the low 8 signed byte quants of `q`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn sq(q: __m128i, s: f32) -> __m256 {
    let qf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    _mm256_mul_ps(_mm256_set1_ps(s), qf)
}

two_widths!(
    /// Decodes `n` Q6_K blocks from `src` to `out` (f32, or f16 when `F16`).
    ///
    /// # Safety
    /// `src` must point to `n` blocks, `out` to room for `n * 256` output
    /// elements, and the CPU must support AVX2 and F16C (AVX-512F too for the wide
    /// build).
    q6_k_blocks,
    q6_k_blocks_wide,
    BlockQ6_K,
    |src, out, n| {
        let mask = _mm_set1_epi8(0x0F);
        let three = _mm_set1_epi8(3);
        let bias = _mm_set1_epi8(32);
        for b in 0..n {
            // SAFETY: block `b < n` lies inside the caller's buffers.
            let (x, y) = unsafe { (&*src.add(b), b * QK_K) };
            let d = widen_f16(x.d);
            for half in 0..2 {
                let ql = x.ql.as_ptr().wrapping_add(64 * half);
                let qh = x.qh.as_ptr().wrapping_add(32 * half);
                let sc = &x.scales[8 * half..8 * half + 8];
                let yh = y + 128 * half;
                for l in [0, 16] {
                    let is = l / 16;
                    let s = |k: usize| d * f32::from(sc[is + k] as i8);
                    let (s1, s2, s3, s4) = (s(0), s(2), s(4), s(6));
                    // SAFETY: bytes l .. l + 48 from `ql` lie inside `x.ql` (128
                    // bytes, `ql` at 64 * half), bytes l .. l + 16 from `qh` inside
                    // `x.qh` (64 bytes, `qh` at 32 * half).
                    let (a, c, h) =
                        unsafe { (load16(ql.add(l)), load16(ql.add(l + 32)), load16(qh.add(l))) };
                    let h0 = _mm_slli_epi16::<4>(_mm_and_si128(h, three));
                    let h2 = _mm_slli_epi16::<2>(_mm_and_si128(h, _mm_set1_epi8(0x0C)));
                    let h4 = _mm_and_si128(h, _mm_set1_epi8(0x30));
                    let h6 = _mm_and_si128(_mm_srli_epi16::<2>(h), _mm_set1_epi8(0x30));
                    let q1 = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(a, mask), h0), bias);
                    let q2 = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(c, mask), h2), bias);
                    let q3 = _mm_sub_epi8(
                        _mm_or_si128(_mm_and_si128(_mm_srli_epi16::<4>(a), mask), h4),
                        bias,
                    );
                    let q4 = _mm_sub_epi8(
                        _mm_or_si128(_mm_and_si128(_mm_srli_epi16::<4>(c), mask), h6),
                        bias,
                    );
                    // SAFETY: elements yh + l .. yh + l + 112 lie inside block `b`.
                    unsafe {
                        lanes::put_sq::<F16, NT>(out, yh + l, q1, s1);
                        lanes::put_sq::<F16, NT>(out, yh + l + 32, q2, s2);
                        lanes::put_sq::<F16, NT>(out, yh + l + 64, q3, s3);
                        lanes::put_sq::<F16, NT>(out, yh + l + 96, q4, s4);
                    }
                }
            }
        }
    }
);

wrappers!(q6_k, q6_k_blocks, BlockQ6_K);
wrappers!(q6_k_wide, q6_k_blocks_wide, BlockQ6_K);
