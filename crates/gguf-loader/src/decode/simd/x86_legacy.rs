//! x86-64 AVX2 (+F16C) kernels for the legacy block types Q4_0, Q4_1, Q5_0,
//! Q5_1 and Q8_0, to f32 and fused to f16 and bf16, plus the plain F16 to
//! f32 and (fused) bf16 and BF16 to f32 and (fused) f16.
//!
//! Every value is computed with the same f32 operations as the scalar
//! reference in `decode::legacy` (exact int → f32 conversion, one `mul`, and
//! for Q4_1 a separate `add`; never an FMA), so the f32 output is bit-exact.
//! The fused f16 path rounds those f32 values with F16C's round-to-nearest-even
//! `vcvtps2ph`, the same result as `half::f16::from_f32`; the fused bf16 path
//! with `x86_float`'s rounding, the same result as `half::bf16::from_f32`.
//!
//! Each kernel processes `min(src.len() / type_size, dst.len() / block_size)`
//! whole blocks (via `chunks_exact` zips) and touches nothing else.

#![warn(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::x86_float::{ps_to_bf16x16, ps_to_bf16x8, st256};
use super::Kernels;
use crate::format::blocks::{
    as_blocks, bf16_le, Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, Half, QK4_0,
};
use crate::format::GgmlType;

/// The kernels of a block type's module.
macro_rules! quant_kernels {
    ($m:ident) => {
        $m::KERNELS
    };
}

/// The AVX2 kernels for `ty`, where this CPU supports them.
pub fn kernels(ty: GgmlType) -> Kernels {
    if !super::avx2() {
        return Kernels::default();
    }
    match ty {
        GgmlType::Q4_0 => quant_kernels!(q4_0),
        GgmlType::Q4_1 => quant_kernels!(q4_1),
        GgmlType::Q5_0 => quant_kernels!(q5_0),
        GgmlType::Q5_1 => quant_kernels!(q5_1),
        GgmlType::Q8_0 => quant_kernels!(q8_0),
        GgmlType::F16 => Kernels {
            f32: Some(f16_f32),
            f32_stream: Some(f16_f32_stream),
            bf16: Some(f16_bf16),
            bf16_stream: Some(f16_bf16_stream),
            ..Kernels::default()
        },
        GgmlType::BF16 => Kernels {
            f32: Some(bf16_f32),
            f16: Some(bf16_f16),
            f32_stream: Some(bf16_f32_stream),
            f16_stream: Some(bf16_f16_stream),
            ..Kernels::default()
        },
        _ => Kernels::default(),
    }
}

/// Elements per block of every legacy type here.
pub(super) const QK: usize = QK4_0;

/// Eight lanes of the f16 `h`, widened exactly.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn splat_f16(h: Half) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes(h)))
}

/// Loads 16 bytes at `b[off..off + 16]`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn load16(b: &[u8], off: usize) -> __m128i {
    let s = &b[off..off + 16];
    // SAFETY: `s` is exactly 16 bytes long (checked by the slice above) and
    // `_mm_loadu_si128` has no alignment requirement.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

/// Stores 16 bytes at `p`, streaming (non-temporal) when `NT`.
///
/// # Safety
/// `p..p + 16` must be writable, and 16-byte aligned when `NT`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn st128<const NT: bool>(p: *mut __m128i, v: __m128i) {
    if NT {
        // SAFETY: the caller guarantees 16 writable, aligned bytes.
        unsafe { _mm_stream_si128(p, v) }
    } else {
        // SAFETY: the caller guarantees 16 writable bytes (any alignment).
        unsafe { _mm_storeu_si128(p, v) }
    }
}

/// Stores eight f32s at `p`, streaming (as two 16-byte halves) when `NT`.
///
/// # Safety
/// `p..p + 8` must be writable, and 16-byte aligned when `NT`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn st_ps<const NT: bool>(p: *mut f32, v: __m256) {
    if NT {
        // SAFETY: the caller guarantees 32 writable bytes, 16-byte aligned.
        unsafe {
            _mm_stream_ps(p, _mm256_castps256_ps128(v));
            _mm_stream_ps(p.add(4), _mm256_extractf128_ps::<1>(v));
        }
    } else {
        // SAFETY: the caller guarantees 32 writable bytes (any alignment).
        unsafe { _mm256_storeu_ps(p, v) }
    }
}

/// Stores four 8-lane vectors as 32 f32s.
///
/// # Safety
/// With `NT`, `y` must start 16-byte aligned.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn store_f32<const NT: bool>(y: &mut [f32], v: [__m256; 4]) {
    let y: &mut [f32; QK] = y.try_into().expect("32 outputs");
    let p = y.as_mut_ptr();
    // SAFETY: `y` holds 32 f32s, the four stores write p[0..8], p[8..16],
    // p[16..24], p[24..32]; alignment for `NT` is the caller's.
    unsafe {
        st_ps::<NT>(p, v[0]);
        st_ps::<NT>(p.add(8), v[1]);
        st_ps::<NT>(p.add(16), v[2]);
        st_ps::<NT>(p.add(24), v[3]);
    }
}

/// Stores four 8-lane vectors as 32 f16s, rounded to nearest even.
///
/// # Safety
/// With `NT`, `y` must start 16-byte aligned.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn store_f16<const NT: bool>(y: &mut [f16], v: [__m256; 4]) {
    let y: &mut [f16; QK] = y.try_into().expect("32 outputs");
    let p = y.as_mut_ptr().cast::<__m128i>();
    let h0 = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v[0]);
    let h1 = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v[1]);
    let h2 = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v[2]);
    let h3 = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v[3]);
    // SAFETY: `y` holds 32 f16s = 64 bytes = four 16-byte stores at p[0..4]
    // (in units of 16 bytes); alignment for `NT` is the caller's.
    unsafe {
        st128::<NT>(p, h0);
        st128::<NT>(p.add(1), h1);
        st128::<NT>(p.add(2), h2);
        st128::<NT>(p.add(3), h3);
    }
}

/// Stores four 8-lane vectors as 32 bf16s, rounded to nearest even.
///
/// # Safety
/// With `NT`, `y` must start 16-byte aligned.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn store_bf16<const NT: bool>(y: &mut [bf16], v: [__m256; 4]) {
    let y: &mut [bf16; QK] = y.try_into().expect("32 outputs");
    let p = y.as_mut_ptr().cast::<u8>();
    let (a, b) = (ps_to_bf16x16(v[0], v[1]), ps_to_bf16x16(v[2], v[3]));
    // SAFETY: `y` holds 32 bf16s = 64 bytes = two 32-byte stores; alignment
    // for `NT` is the caller's.
    unsafe {
        st256::<NT>(p, a);
        st256::<NT>(p.add(32), b);
    }
}

/// Widens 16 bytes (signed) to two 8-lane f32 vectors, low half first.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn i8x16_to_ps(q: __m128i) -> (__m256, __m256) {
    let a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
    (a, b)
}

/// Widens 16 bytes (unsigned) to two 8-lane f32 vectors, low half first.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn u8x16_to_ps(q: __m128i) -> (__m256, __m256) {
    let a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
    let b = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(q)));
    (a, b)
}

/// The low and high nibbles of 16 bytes, as bytes 0..16.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn nibbles(q: __m128i) -> (__m128i, __m128i) {
    let m = _mm_set1_epi8(0x0F);
    (
        _mm_and_si128(q, m),
        _mm_and_si128(_mm_srli_epi16::<4>(q), m),
    )
}

/// `x * d` for 32 signed bytes: `lo` holds elements 0..16, `hi` 16..32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn scale_i8(lo: __m128i, hi: __m128i, d: __m256) -> [__m256; 4] {
    let (a0, a1) = i8x16_to_ps(lo);
    let (b0, b1) = i8x16_to_ps(hi);
    [
        _mm256_mul_ps(a0, d),
        _mm256_mul_ps(a1, d),
        _mm256_mul_ps(b0, d),
        _mm256_mul_ps(b1, d),
    ]
}

/// `x * d + m` (a separate multiply and add, as the reference) for 32
/// unsigned bytes: `lo` holds elements 0..16, `hi` 16..32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn scale_add_u8(lo: __m128i, hi: __m128i, d: __m256, m: __m256) -> [__m256; 4] {
    let (a0, a1) = u8x16_to_ps(lo);
    let (b0, b1) = u8x16_to_ps(hi);
    [
        _mm256_add_ps(_mm256_mul_ps(a0, d), m),
        _mm256_add_ps(_mm256_mul_ps(a1, d), m),
        _mm256_add_ps(_mm256_mul_ps(b0, d), m),
        _mm256_add_ps(_mm256_mul_ps(b1, d), m),
    ]
}

/// Q4_0 block: `(nibble - 8) * d`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn block_q4_0(x: &BlockQ4_0) -> [__m256; 4] {
    let d = splat_f16(x.d);
    let (lo, hi) = nibbles(load16(&x.qs, 0));
    let eight = _mm_set1_epi8(8);
    scale_i8(_mm_sub_epi8(lo, eight), _mm_sub_epi8(hi, eight), d)
}

/// Q4_1 block: `nibble * d + m` (separate mul and add, as the reference).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn block_q4_1(x: &BlockQ4_1) -> [__m256; 4] {
    let d = splat_f16(x.d);
    let m = splat_f16(x.m);
    let (lo, hi) = nibbles(load16(&x.qs, 0));
    scale_add_u8(lo, hi, d, m)
}

/// For elements 0..16 and 16..32: 0xFF in byte `i` where bit `e` of `qh`
/// (the fifth bit of element `e`) is set, else 0.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn fifth_bits(qh: u32) -> (__m128i, __m128i) {
    let qhv = _mm_set1_epi32(qh as i32);
    // Byte i of the result takes byte i / 8 of qh (elements 0..16), or
    // byte 2 + i / 8 (elements 16..32), tested against bit i % 8.
    let sel_lo = _mm_set_epi64x(0x0101_0101_0101_0101, 0);
    let sel_hi = _mm_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202);
    let bit = _mm_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let lo = _mm_cmpeq_epi8(_mm_and_si128(_mm_shuffle_epi8(qhv, sel_lo), bit), bit);
    let hi = _mm_cmpeq_epi8(_mm_and_si128(_mm_shuffle_epi8(qhv, sel_hi), bit), bit);
    (lo, hi)
}

/// Q5_0 block: `((nibble | bit << 4) - 16) * d`, element `e` taking bit `e`
/// of `qh`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn block_q5_0(x: &BlockQ5_0) -> [__m256; 4] {
    let d = splat_f16(x.d);
    let qh = u32::from_le_bytes(x.qh);
    let (lo, hi) = nibbles(load16(&x.qs, 0));
    let (set_lo, set_hi) = fifth_bits(qh);
    // With the fifth bit set, x - 16 is the nibble itself; otherwise it is
    // nibble - 16 = nibble | 0xF0 as a signed byte.
    let f0 = _mm_set1_epi8(0xF0_u8 as i8);
    let x_lo = _mm_or_si128(lo, _mm_andnot_si128(set_lo, f0));
    let x_hi = _mm_or_si128(hi, _mm_andnot_si128(set_hi, f0));
    scale_i8(x_lo, x_hi, d)
}

/// Q5_1 block: `(nibble | bit << 4) * d + m` (separate mul and add).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn block_q5_1(x: &BlockQ5_1) -> [__m256; 4] {
    let d = splat_f16(x.d);
    let m = splat_f16(x.m);
    let qh = u32::from_le_bytes(x.qh);
    let (lo, hi) = nibbles(load16(&x.qs, 0));
    let (set_lo, set_hi) = fifth_bits(qh);
    let h = _mm_set1_epi8(0x10);
    let x_lo = _mm_or_si128(lo, _mm_and_si128(set_lo, h));
    let x_hi = _mm_or_si128(hi, _mm_and_si128(set_hi, h));
    scale_add_u8(x_lo, x_hi, d, m)
}

/// Q8_0 block: `q * d` with signed bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn block_q8_0(x: &BlockQ8_0) -> [__m256; 4] {
    let d = splat_f16(x.d);
    scale_i8(load16(&x.qs, 0), load16(&x.qs, 16), d)
}

/// An output float of the 32-value group kernels, and how four 8-lane
/// vectors of f32 values are stored as 32 of it.
pub(super) trait Group32: Sized {
    /// Stores `v` as the 32 values of `y` (exactly, or rounded to
    /// nearest-even), with streaming stores when `NT`.
    ///
    /// # Safety
    /// AVX2 and F16C must be available; with `NT`, `y` must start 16-byte
    /// aligned.
    unsafe fn store<const NT: bool>(y: &mut [Self], v: [__m256; 4]);
}

impl Group32 for f32 {
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn store<const NT: bool>(y: &mut [f32], v: [__m256; 4]) {
        // SAFETY: as the caller guarantees.
        unsafe { store_f32::<NT>(y, v) }
    }
}

impl Group32 for f16 {
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn store<const NT: bool>(y: &mut [f16], v: [__m256; 4]) {
        // SAFETY: as the caller guarantees.
        unsafe { store_f16::<NT>(y, v) }
    }
}

impl Group32 for bf16 {
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn store<const NT: bool>(y: &mut [bf16], v: [__m256; 4]) {
        // SAFETY: as the caller guarantees.
        unsafe { store_bf16::<NT>(y, v) }
    }
}

/// Defines, in a module named after the type, the AVX2 loop over whole
/// blocks and `KERNELS`, its six safe entry points (f32, f16 and bf16 out,
/// with ordinary and with streaming stores). `$block(x)` gives the 32 values
/// of a 32-value block; with `groups`, `$group(x, g)` gives values
/// `32 g..32 g + 32` of a block of any multiple of 32 values.
macro_rules! block_kernels {
    ($name:ident, $b:ty, $block:ident) => {
        const _: () = assert!(<$b as Block>::ELEMENTS == QK);
        block_kernels!($name, $b, groups |x: &$b, _: usize| $block(x));
    };
    ($name:ident, $b:ty, groups $group:expr) => {
        mod $name {
            use super::*;

            /// Values per block.
            const N: usize = <$b as Block>::ELEMENTS;
            const _: () = assert!(N % QK == 0);

            /// The six kernels, handed out only where `avx2()` found
            /// AVX2 and F16C on this CPU.
            pub const KERNELS: Kernels = Kernels {
                f32: Some(run::<f32, false>),
                f16: Some(run::<f16, false>),
                bf16: Some(run::<bf16, false>),
                f32_stream: Some(run::<f32, true>),
                f16_stream: Some(run::<f16, true>),
                bf16_stream: Some(run::<bf16, true>),
            };

            /// # Safety
            /// AVX2 and F16C must be available; with `NT`, `dst` must be
            /// 16-byte aligned.
            #[target_feature(enable = "avx2,f16c")]
            unsafe fn blocks<T: Group32, const NT: bool>(src: &[u8], dst: &mut [T]) {
                for (x, y) in as_blocks::<$b>(src).iter().zip(dst.chunks_exact_mut(N)) {
                    for (g, y) in y.chunks_exact_mut(QK).enumerate() {
                        // SAFETY: groups are 64 or 128 bytes apart from an
                        // aligned start.
                        unsafe { T::store::<NT>(y, $group(x, g)) };
                    }
                }
                if NT {
                    crate::decode::simd::sfence();
                }
            }

            /// The whole blocks that fit both slices; streaming only into a
            /// 16-byte aligned output.
            fn run<T: Group32, const NT: bool>(src: &[u8], dst: &mut [T]) {
                // SAFETY: handed out (in `KERNELS`) only where AVX2 and F16C
                // were detected; streaming only where `dst` is aligned.
                unsafe {
                    if NT && super::super::aligned16(dst) {
                        blocks::<T, true>(src, dst)
                    } else {
                        blocks::<T, false>(src, dst)
                    }
                }
            }
        }
    };
}

block_kernels!(q4_0, BlockQ4_0, block_q4_0);
block_kernels!(q4_1, BlockQ4_1, block_q4_1);
block_kernels!(q5_0, BlockQ5_0, block_q5_0);
block_kernels!(q5_1, BlockQ5_1, block_q5_1);
block_kernels!(q8_0, BlockQ8_0, block_q8_0);

// For the other types built of 32-value groups (`x86_fp4`).
pub(super) use {block_kernels, quant_kernels};

/// F16 → f32, 8 at a time (exact widening), the tail by the reference.
///
/// # Safety
/// AVX2 and F16C must be available; with `NT`, `dst` must be 16-byte aligned.
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16_f32_avx<const NT: bool>(src: &[u8], dst: &mut [f32]) {
    let n = (src.len() / 2).min(dst.len());
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        let y: &mut [f32; 8] = y.try_into().expect("8 outputs");
        let v = _mm256_cvtph_ps(load16(b, 0));
        // SAFETY: `y` holds exactly 8 f32s, 32 bytes from an aligned start.
        unsafe { st_ps::<NT>(y.as_mut_ptr(), v) };
    }
    if NT {
        crate::decode::simd::sfence();
    }
    crate::decode::float::dequantize_row_f16(s.remainder(), d.into_remainder());
}

/// F16 → bf16: exact widening (`vcvtph2ps`), then rounded by
/// `x86_float::ps_to_bf16x8`; the tail by the reference widening and
/// `half::bf16::from_f32`.
///
/// # Safety
/// AVX2 and F16C must be available; with `NT`, `dst` must be 16-byte aligned.
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16_bf16_avx<const NT: bool>(src: &[u8], dst: &mut [bf16]) {
    let n = (src.len() / 2).min(dst.len());
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        let y: &mut [bf16; 8] = y.try_into().expect("8 outputs");
        let h = ps_to_bf16x8(_mm256_cvtph_ps(load16(b, 0)));
        // SAFETY: `y` holds exactly 8 bf16s = 16 bytes, and starts 16-byte
        // aligned under `NT` (its offset is a multiple of 8 elements).
        unsafe { st128::<NT>(y.as_mut_ptr().cast(), h) };
    }
    if NT {
        crate::decode::simd::sfence();
    }
    for (b, y) in s.remainder().chunks_exact(2).zip(d.into_remainder()) {
        *y = bf16::from_f32(f16::from_le_bytes([b[0], b[1]]).to_f32());
    }
}

/// Eight BF16s at `b[0..16]` as f32 bits (each 16 bits become the top half,
/// interleaved with zero halves), values 0..4 then 4..8. Unpacking with zero
/// keeps the work on the cheapest shuffles: widening with `vpmovzxwd` made
/// the kernel slower than the scalar loop on some CPUs.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn bf16x8_to_f32_bits(b: &[u8]) -> (__m128i, __m128i) {
    let (v, z) = (load16(b, 0), _mm_setzero_si128());
    (_mm_unpacklo_epi16(z, v), _mm_unpackhi_epi16(z, v))
}

/// Eight BF16s at `b[0..16]` as f32s.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn bf16x8_to_ps(b: &[u8]) -> __m256 {
    let (lo, hi) = bf16x8_to_f32_bits(b);
    _mm256_castsi256_ps(_mm256_set_m128i(hi, lo))
}

/// BF16 → f16 fused: exact widening to f32, then F16C round to nearest even
/// (the reference f32 rounded by `half::f16::from_f32`).
///
/// # Safety
/// As `f16_f32_avx`.
#[target_feature(enable = "avx2,f16c")]
unsafe fn bf16_f16_avx<const NT: bool>(src: &[u8], dst: &mut [f16]) {
    let n = (src.len() / 2).min(dst.len());
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        let y: &mut [f16; 8] = y.try_into().expect("8 outputs");
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(bf16x8_to_ps(b));
        // SAFETY: `y` holds exactly 8 f16s = 16 bytes from an aligned start.
        unsafe { st128::<NT>(y.as_mut_ptr().cast(), h) };
    }
    if NT {
        crate::decode::simd::sfence();
    }
    for (b, y) in s.remainder().chunks_exact(2).zip(d.into_remainder()) {
        *y = f16::from_f32(bf16_le([b[0], b[1]]));
    }
}

/// BF16 → f32: the 16 bits become the top half of an f32.
///
/// # Safety
/// As `f16_f32_avx`.
#[target_feature(enable = "avx2,f16c")]
unsafe fn bf16_f32_avx<const NT: bool>(src: &[u8], dst: &mut [f32]) {
    let n = (src.len() / 2).min(dst.len());
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        let y: &mut [f32; 8] = y.try_into().expect("8 outputs");
        let (lo, hi) = bf16x8_to_f32_bits(b);
        let p = y.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `y` holds exactly 8 f32s = two 16-byte stores at p[0..2]
        // (in units of 16 bytes), from an aligned start under `NT`.
        unsafe {
            st128::<NT>(p, lo);
            st128::<NT>(p.add(1), hi);
        }
    }
    if NT {
        crate::decode::simd::sfence();
    }
    crate::decode::float::dequantize_row_bf16(s.remainder(), d.into_remainder());
}

/// Safe wrappers, ordinary and streaming, over one of the float conversions
/// here or in `x86_float` (`$inner::<NT>(src, dst)`, needing the CPU
/// features it enables, and a 16-byte aligned `dst` when `NT`). The
/// wrappers are handed out only where those features were detected: AVX2
/// and F16C (`avx2()`), and AVX-512F/BW too for `x86_float`'s AVX-512
/// conversion (`avx512()`, both in `simd`).
macro_rules! float_kernels {
    ($inner:ident, $out:ty, $plain:ident, $stream:ident) => {
        fn $plain(src: &[u8], dst: &mut [$out]) {
            // SAFETY: handed out only where `$inner`'s target features were
            // detected.
            unsafe { $inner::<false>(src, dst) }
        }

        fn $stream(src: &[u8], dst: &mut [$out]) {
            if !super::aligned16(dst) {
                return $plain(src, dst);
            }
            // SAFETY: `$inner`'s target features were detected, `dst` is
            // aligned.
            unsafe { $inner::<true>(src, dst) }
        }
    };
}

// For `x86_float`'s conversions.
pub(super) use float_kernels;

float_kernels!(f16_f32_avx, f32, f16_f32, f16_f32_stream);
float_kernels!(f16_bf16_avx, bf16, f16_bf16, f16_bf16_stream);
float_kernels!(bf16_f16_avx, f16, bf16_f16, bf16_f16_stream);
float_kernels!(bf16_f32_avx, f32, bf16_f32, bf16_f32_stream);
