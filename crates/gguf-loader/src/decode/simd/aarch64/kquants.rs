//! NEON kernels for the K-quants Q2_K, Q3_K, Q4_K, Q5_K and Q6_K, to f32
//! and fused to f16: the counterparts of `x86_kquants`.
//!
//! The per-block scales are decoded with the scalar code of
//! [`crate::decode::kquants`] (`group_scales`, `q3_k_scales`, and `d * sc`
//! for Q2_K, Q3_K and Q6_K, in f32); the quants are then widened sixteen at
//! a time to f32 and combined with the reference's operations in its order:
//! `d1 * q - m1` as a separate multiply and subtract, or `(d * sc) * q` for
//! Q3_K and Q6_K. See the parent module on exactness.
//!
//! Every kernel handles `min(src.len() / type_size, dst.len() / 256)` whole
//! blocks and ignores the rest of both slices.

use std::arch::aarch64::*;

use half::f16;

use super::{both, i8x16_to_f32, load16, mul, store, u8x16_to_f32, Kernels, Out};
use crate::decode::kquants::{group_scales, q3_k_scales};
use crate::format::blocks::{
    as_blocks, f16_le, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, K_SCALE_SIZE, QK_K,
};
use crate::format::GgmlType;

/// The kernels for `ty`, where this module has some.
pub fn kernels(ty: GgmlType) -> Kernels {
    match ty {
        GgmlType::Q2_K => both(q2_k_f32, q2_k_f16),
        GgmlType::Q3_K => both(q3_k_f32, q3_k_f16),
        GgmlType::Q4_K => both(q4_k_f32, q4_k_f16),
        GgmlType::Q5_K => both(q5_k_f32, q5_k_f16),
        GgmlType::Q6_K => both(q6_k_f32, q6_k_f16),
        _ => Kernels::default(),
    }
}

neon_entry!(q2_k_f32, f32, q2_k::<f32>);
neon_entry!(q2_k_f16, f16, q2_k::<f16>);
neon_entry!(q3_k_f32, f32, q3_k::<f32>);
neon_entry!(q3_k_f16, f16, q3_k::<f16>);
neon_entry!(q4_k_f32, f32, q4_k::<f32>);
neon_entry!(q4_k_f16, f16, q4_k::<f16>);
neon_entry!(q5_k_f32, f32, q5_k::<f32>);
neon_entry!(q5_k_f16, f16, q5_k::<f16>);
neon_entry!(q6_k_f32, f32, q6_k::<f32>);
neon_entry!(q6_k_f16, f16, q6_k::<f16>);

/// `d * q - m` for 16 unsigned byte quants, as two separate rounded ops.
#[inline]
#[target_feature(enable = "neon")]
fn dqm(q: uint8x16_t, d: float32x4_t, m: float32x4_t) -> [float32x4_t; 4] {
    let mut v = u8x16_to_f32(q);
    for x in &mut v {
        *x = vsubq_f32(vmulq_f32(d, *x), m);
    }
    v
}

/// [`group_scales`] of group pair `j`, each value in all four lanes.
#[inline]
#[target_feature(enable = "neon")]
fn group_splats(
    d: f32,
    min: f32,
    scales: &[u8; K_SCALE_SIZE],
    j: usize,
) -> [(float32x4_t, float32x4_t); 2] {
    group_scales(d, min, scales, j).map(|(s, m)| (vdupq_n_f32(s), vdupq_n_f32(m)))
}

/// Q4_K: group `2j` takes the low nibbles of qs bytes `32j..32j + 32`, group
/// `2j + 1` their high nibbles.
#[target_feature(enable = "neon")]
fn q4_k<T: Out>(src: &[u8], dst: &mut [T]) {
    let mask = vdupq_n_u8(0x0F);
    for (x, y) in as_blocks::<BlockQ4_K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (d, min) = (f16_le(x.d), f16_le(x.dmin));
        for (j, y) in y.chunks_exact_mut(64).enumerate() {
            let [(d1, m1), (d2, m2)] = group_splats(d, min, &x.scales, j);
            for l in [0, 16] {
                let q = load16(&x.qs, 32 * j + l);
                let lo = vandq_u8(q, mask);
                let hi = vshrq_n_u8::<4>(q);
                store(&mut y[l..], dqm(lo, d1, m1));
                store(&mut y[32 + l..], dqm(hi, d2, m2));
            }
        }
    }
}

/// Q5_K: as Q4_K, plus 16 where bit `2j` (low nibbles) or `2j + 1` (high
/// nibbles) of the element's qh byte is set.
#[target_feature(enable = "neon")]
fn q5_k<T: Out>(src: &[u8], dst: &mut [T]) {
    let mask = vdupq_n_u8(0x0F);
    let sixteen = vdupq_n_u8(16);
    for (x, y) in as_blocks::<BlockQ5_K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (d, min) = (f16_le(x.d), f16_le(x.dmin));
        for (j, y) in y.chunks_exact_mut(64).enumerate() {
            let [(d1, m1), (d2, m2)] = group_splats(d, min, &x.scales, j);
            let u1 = vdupq_n_u8(1 << (2 * j));
            let u2 = vdupq_n_u8(2 << (2 * j));
            for l in [0, 16] {
                let qh = load16(&x.qh, l);
                let q = load16(&x.qs, 32 * j + l);
                let h1 = vandq_u8(vtstq_u8(qh, u1), sixteen);
                let h2 = vandq_u8(vtstq_u8(qh, u2), sixteen);
                let lo = vaddq_u8(vandq_u8(q, mask), h1);
                let hi = vaddq_u8(vshrq_n_u8::<4>(q), h2);
                store(&mut y[l..], dqm(lo, d1, m1));
                store(&mut y[32 + l..], dqm(hi, d2, m2));
            }
        }
    }
}

/// `(s * q)` for 16 signed byte quants: one rounded multiply each.
#[inline]
#[target_feature(enable = "neon")]
fn sq(q: int8x16_t, s: f32) -> [float32x4_t; 4] {
    mul(i8x16_to_f32(q), vdupq_n_f32(s))
}

/// A 6-bit Q6_K quant (`low | high`), minus its bias of 32.
#[inline]
#[target_feature(enable = "neon")]
fn unbias(low: uint8x16_t, high: uint8x16_t) -> int8x16_t {
    vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, high)), vdupq_n_s8(32))
}

/// Q6_K: per half of the block, 64 ql bytes (low 4 bits), 32 qh bytes (high
/// 2 bits of four elements each) and 8 signed scales.
#[target_feature(enable = "neon")]
fn q6_k<T: Out>(src: &[u8], dst: &mut [T]) {
    let mask = vdupq_n_u8(0x0F);
    let three = vdupq_n_u8(3);
    let top = vdupq_n_u8(0x30);
    for (x, y) in as_blocks::<BlockQ6_K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_le(x.d);
        for (n, y) in y.chunks_exact_mut(128).enumerate() {
            let (ql, qh) = (&x.ql[64 * n..], &x.qh[32 * n..]);
            let sc = &x.scales[8 * n..8 * n + 8];
            for l in [0, 16] {
                // `is = l / 16`: elements 0..16 use scales 0, 2, 4, 6 and
                // elements 16..32 scales 1, 3, 5, 7.
                let s = |k: usize| d * f32::from(sc[l / 16 + k] as i8);
                let a = load16(ql, l);
                let c = load16(ql, l + 32);
                let h = load16(qh, l);
                // The high bit pairs (h >> 2k) & 3, moved to bits 4..6.
                let h0 = vshlq_n_u8::<4>(vandq_u8(h, three));
                let h2 = vandq_u8(vshlq_n_u8::<2>(h), top);
                let h4 = vandq_u8(h, top);
                let h6 = vandq_u8(vshrq_n_u8::<2>(h), top);
                let q1 = unbias(vandq_u8(a, mask), h0);
                let q2 = unbias(vandq_u8(c, mask), h2);
                let q3 = unbias(vshrq_n_u8::<4>(a), h4);
                let q4 = unbias(vshrq_n_u8::<4>(c), h6);
                store(&mut y[l..], sq(q1, s(0)));
                store(&mut y[l + 32..], sq(q2, s(2)));
                store(&mut y[l + 64..], sq(q3, s(4)));
                store(&mut y[l + 96..], sq(q4, s(6)));
            }
        }
    }
}

/// Calls `f(g, s, q, y)` for each group `g` (0..16) of 16 values of a
/// Q2_K/Q3_K block, in order: `s` is its scale byte, `q` its values' bit
/// pairs (0..=3) and `y` their outputs. Each half `h` of the block (128
/// values) reads its 32 `qs` bytes at bit shifts 0, 2, 4 and 6, each shift
/// giving two groups (`g = 8h + shift + 0 or 1`).
#[inline]
#[target_feature(enable = "neon")]
fn groups16<T: Out>(
    scales: &[u8; 16],
    qs: &[u8; 64],
    y: &mut [T],
    mut f: impl FnMut(usize, u8, uint8x16_t, &mut [T]),
) {
    let three = vdupq_n_u8(3);
    let halves = scales.chunks_exact(8).zip(y.chunks_exact_mut(128));
    for (h, (sc, y)) in halves.enumerate() {
        let q = [load16(qs, 32 * h), load16(qs, 32 * h + 16)];
        for (k, (sc, y)) in sc.chunks_exact(2).zip(y.chunks_exact_mut(32)).enumerate() {
            let shift = vdupq_n_s8(-2 * k as i8);
            for (half, ((&s, q), y)) in sc.iter().zip(q).zip(y.chunks_exact_mut(16)).enumerate() {
                let pairs = vandq_u8(vshlq_u8(q, shift), three);
                f(8 * h + 2 * k + half, s, pairs, y);
            }
        }
    }
}

/// Q2_K: group `g` is `d * (s & 15) * q - dmin * (s >> 4)` (the products
/// rounded to f32 first, as the reference) with scale byte `s`.
#[target_feature(enable = "neon")]
fn q2_k<T: Out>(src: &[u8], dst: &mut [T]) {
    for (x, y) in as_blocks::<BlockQ2_K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (d, min) = (f16_le(x.d), f16_le(x.dmin));
        groups16(&x.scales, &x.qs, y, |_, s, q, y| {
            let dl = vdupq_n_f32(d * f32::from(s & 0xF));
            let ml = vdupq_n_f32(min * f32::from(s >> 4));
            store(y, dqm(q, dl, ml));
        });
    }
}

/// Q3_K: Q2_K's layout of the low bit pairs, plus a high bit per value from
/// `hmask` (bit `g / 2` of byte `16 * (g % 2) + l` for value `l` of group
/// `g`; a clear bit subtracts 4); the value is `(d * (sc - 32)) * q`.
#[target_feature(enable = "neon")]
fn q3_k<T: Out>(src: &[u8], dst: &mut [T]) {
    let four = vdupq_n_u8(4);
    for (x, y) in as_blocks::<BlockQ3_K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_le(x.d);
        let hm = [load16(&x.hmask, 0), load16(&x.hmask, 16)];
        groups16(&q3_k_scales(&x.scales), &x.qs, y, |g, s, q, y| {
            // `scales` are int8 in C; their values are 0..=63 here.
            let dl = d * (i32::from(s) - 32) as f32;
            let high = vbicq_u8(four, vtstq_u8(hm[g % 2], vdupq_n_u8(1 << (g / 2))));
            store(y, sq(vreinterpretq_s8_u8(vsubq_u8(q, high)), dl));
        });
    }
}
