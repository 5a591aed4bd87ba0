//! NEON kernels for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (to f32 and fused to
//! f16), F16 → f32, and BF16 → f32 / f16: the counterparts of `x86_legacy`,
//! with the arithmetic of the scalar `decode::legacy` and `decode::float`
//! routines (see the parent module on exactness).
//!
//! Each block kernel processes `min(src.len() / type_size, dst.len() / 32)`
//! whole blocks (a `chunks_exact` zip), the F16/BF16 ones
//! `min(src.len() / 2, dst.len())` values; nothing else is touched.

use std::arch::aarch64::*;

use half::f16;

use super::{
    both, f16x8_to_f32, i8x16_to_f32, load16, mul, splat_f16, store, store_f32, u8x16_to_f32,
    Kernels, Out,
};
use crate::format::blocks::{
    as_blocks, bf16_le, Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QK4_0,
};
use crate::format::GgmlType;

/// The kernels for `ty`, where this module has some.
pub fn kernels(ty: GgmlType) -> Kernels {
    match ty {
        GgmlType::Q4_0 => both(q4_0_f32, q4_0_f16),
        GgmlType::Q4_1 => both(q4_1_f32, q4_1_f16),
        GgmlType::Q5_0 => both(q5_0_f32, q5_0_f16),
        GgmlType::Q5_1 => both(q5_1_f32, q5_1_f16),
        GgmlType::Q8_0 => both(q8_0_f32, q8_0_f16),
        // F16 → f16 is a plain copy, done before any kernel is asked for.
        GgmlType::F16 => Kernels {
            f32: Some(f16_f32),
            ..Kernels::default()
        },
        GgmlType::BF16 => both(bf16_f32, bf16_f16),
        _ => Kernels::default(),
    }
}

neon_entry!(q4_0_f32, f32, q4_0::<f32>);
neon_entry!(q4_0_f16, f16, q4_0::<f16>);
neon_entry!(q4_1_f32, f32, q4_1::<f32>);
neon_entry!(q4_1_f16, f16, q4_1::<f16>);
neon_entry!(q5_0_f32, f32, q5_0::<f32>);
neon_entry!(q5_0_f16, f16, q5_0::<f16>);
neon_entry!(q5_1_f32, f32, q5_1::<f32>);
neon_entry!(q5_1_f16, f16, q5_1::<f16>);
neon_entry!(q8_0_f32, f32, q8_0::<f32>);
neon_entry!(q8_0_f16, f16, q8_0::<f16>);
neon_entry!(f16_f32, f32, f16_f32_neon);
neon_entry!(bf16_f32, f32, bf16_f32_neon);
neon_entry!(bf16_f16, f16, bf16_f16_neon);

/// Elements per block of every legacy type here.
pub(super) const QK: usize = QK4_0;

/// Defines `fn $name<T: Out>(src, dst)`, storing `$block` of every whole
/// block of `src`, viewed as `$b`, as the matching 32 outputs of `dst`; with
/// `groups`, a block of any multiple of 32 values, `$group(x, g)` giving its
/// values `32 g..32 g + 32`.
macro_rules! block_loop {
    ($name:ident, $b:ty, $block:ident) => {
        const _: () = assert!(<$b as Block>::ELEMENTS == QK);
        block_loop!($name, $b, groups |x: &$b, _: usize| $block(x));
    };
    ($name:ident, $b:ty, groups $group:expr) => {
        #[target_feature(enable = "neon")]
        fn $name<T: Out>(src: &[u8], dst: &mut [T]) {
            const N: usize = <$b as Block>::ELEMENTS;
            const { assert!(N % QK == 0) };
            for (x, y) in as_blocks::<$b>(src).iter().zip(dst.chunks_exact_mut(N)) {
                for (g, y) in y.chunks_exact_mut(QK).enumerate() {
                    store(y, $group(x, g));
                }
            }
        }
    };
}

block_loop!(q4_0, BlockQ4_0, block_q4_0);
block_loop!(q4_1, BlockQ4_1, block_q4_1);
block_loop!(q5_0, BlockQ5_0, block_q5_0);
block_loop!(q5_1, BlockQ5_1, block_q5_1);
block_loop!(q8_0, BlockQ8_0, block_q8_0);

// For the other types built of 32-value groups (`fp4`).
pub(super) use block_loop;

/// `v * d + m` as a separate multiply and add (never fused).
#[inline]
#[target_feature(enable = "neon")]
fn mul_add(mut v: [float32x4_t; 8], d: float32x4_t, m: float32x4_t) -> [float32x4_t; 8] {
    for x in &mut v {
        *x = vaddq_f32(vmulq_f32(*x, d), m);
    }
    v
}

/// Elements 0..16 then 16..32 from two groups of four vectors.
#[inline]
pub(super) fn cat(a: [float32x4_t; 4], b: [float32x4_t; 4]) -> [float32x4_t; 8] {
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}

/// The low and high nibbles of 16 bytes.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn nibbles(q: uint8x16_t) -> (uint8x16_t, uint8x16_t) {
    (vandq_u8(q, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(q))
}

/// 0x10 in byte `i` where bit `i` (first vector, elements 0..16) or bit
/// `16 + i` (second vector, elements 16..32) of `qh` is set, else 0: the
/// fifth bit of each Q5 quant, in place.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: u32) -> (uint8x16_t, uint8x16_t) {
    let v = vreinterpretq_u8_u32(vdupq_n_u32(qh));
    // Byte i takes byte i / 8 of qh (elements 0..16) or byte 2 + i / 8
    // (elements 16..32), tested against bit i % 8.
    let sel_lo = vcombine_u8(vdup_n_u8(0), vdup_n_u8(1));
    let sel_hi = vcombine_u8(vdup_n_u8(2), vdup_n_u8(3));
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let h = vdupq_n_u8(0x10);
    (
        vandq_u8(vtstq_u8(vqtbl1q_u8(v, sel_lo), bit), h),
        vandq_u8(vtstq_u8(vqtbl1q_u8(v, sel_hi), bit), h),
    )
}

/// Q4_0 block: `(nibble - 8) * d`.
#[inline]
#[target_feature(enable = "neon")]
fn block_q4_0(x: &BlockQ4_0) -> [float32x4_t; 8] {
    let d = splat_f16(x.d);
    let (lo, hi) = nibbles(load16(&x.qs, 0));
    let eight = vdupq_n_s8(8);
    let lo = vsubq_s8(vreinterpretq_s8_u8(lo), eight);
    let hi = vsubq_s8(vreinterpretq_s8_u8(hi), eight);
    mul(cat(i8x16_to_f32(lo), i8x16_to_f32(hi)), d)
}

/// Q4_1 block: `nibble * d + m`.
#[inline]
#[target_feature(enable = "neon")]
fn block_q4_1(x: &BlockQ4_1) -> [float32x4_t; 8] {
    let (d, m) = (splat_f16(x.d), splat_f16(x.m));
    let (lo, hi) = nibbles(load16(&x.qs, 0));
    mul_add(cat(u8x16_to_f32(lo), u8x16_to_f32(hi)), d, m)
}

/// Q5_0 block: `((nibble | fifth bit << 4) - 16) * d`.
#[inline]
#[target_feature(enable = "neon")]
fn block_q5_0(x: &BlockQ5_0) -> [float32x4_t; 8] {
    let d = splat_f16(x.d);
    let qh = u32::from_le_bytes(x.qh);
    let (lo, hi) = nibbles(load16(&x.qs, 0));
    let (h_lo, h_hi) = fifth_bits(qh);
    let sixteen = vdupq_n_s8(16);
    let lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, h_lo)), sixteen);
    let hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, h_hi)), sixteen);
    mul(cat(i8x16_to_f32(lo), i8x16_to_f32(hi)), d)
}

/// Q5_1 block: `(nibble | fifth bit << 4) * d + m`.
#[inline]
#[target_feature(enable = "neon")]
fn block_q5_1(x: &BlockQ5_1) -> [float32x4_t; 8] {
    let (d, m) = (splat_f16(x.d), splat_f16(x.m));
    let qh = u32::from_le_bytes(x.qh);
    let (lo, hi) = nibbles(load16(&x.qs, 0));
    let (h_lo, h_hi) = fifth_bits(qh);
    let lo = u8x16_to_f32(vorrq_u8(lo, h_lo));
    let hi = u8x16_to_f32(vorrq_u8(hi, h_hi));
    mul_add(cat(lo, hi), d, m)
}

/// Q8_0 block: `q * d` with signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn block_q8_0(x: &BlockQ8_0) -> [float32x4_t; 8] {
    let d = splat_f16(x.d);
    let lo = i8x16_to_f32(vreinterpretq_s8_u8(load16(&x.qs, 0)));
    let hi = i8x16_to_f32(vreinterpretq_s8_u8(load16(&x.qs, 16)));
    mul(cat(lo, hi), d)
}

/// F16 → f32, 8 at a time (exact widening), the tail by the reference.
#[target_feature(enable = "neon")]
fn f16_f32_neon(src: &[u8], dst: &mut [f32]) {
    let n = (src.len() / 2).min(dst.len());
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        let (lo, hi) = f16x8_to_f32(vreinterpretq_u16_u8(load16(b, 0)));
        store_f32(y, [lo, hi]);
    }
    crate::decode::float::dequantize_row_f16(s.remainder(), d.into_remainder());
}

/// The eight BF16s at `b[0..16]` as f32s: each 16 bits become the top half
/// of an f32 (interleaved with zero halves), bit for bit.
#[inline]
#[target_feature(enable = "neon")]
fn bf16x8_to_f32(b: &[u8]) -> [float32x4_t; 2] {
    let v = vreinterpretq_u16_u8(load16(b, 0));
    let z = vdupq_n_u16(0);
    [
        vreinterpretq_f32_u16(vzip1q_u16(z, v)),
        vreinterpretq_f32_u16(vzip2q_u16(z, v)),
    ]
}

/// BF16 → f32, 8 at a time, the tail by the reference.
#[target_feature(enable = "neon")]
fn bf16_f32_neon(src: &[u8], dst: &mut [f32]) {
    let n = (src.len() / 2).min(dst.len());
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        store_f32(y, bf16x8_to_f32(b));
    }
    crate::decode::float::dequantize_row_bf16(s.remainder(), d.into_remainder());
}

/// BF16 → f16 fused: exact widening to f32, then `fcvtn` round to nearest
/// even (the reference f32 rounded by `half::f16::from_f32`).
#[target_feature(enable = "neon")]
fn bf16_f16_neon(src: &[u8], dst: &mut [f16]) {
    let n = (src.len() / 2).min(dst.len());
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        store(y, bf16x8_to_f32(b));
    }
    for (b, y) in s.remainder().chunks_exact(2).zip(d.into_remainder()) {
        *y = f16::from_f32(bf16_le([b[0], b[1]]));
    }
}
