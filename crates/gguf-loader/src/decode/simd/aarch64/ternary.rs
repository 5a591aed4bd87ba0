//! NEON kernels for the 1- and 2-bit types TQ1_0, TQ2_0, Q1_0 and Q2_0, to
//! f32 and fused to f16: the counterparts of `x86_ternary`.
//!
//! Each value is the reference's: the small integer quant converted exactly
//! to f32 and multiplied by the scale (one rounded multiply), or for Q1_0
//! the scale or its negation (`fneg`, a sign flip, as Rust's `-d`). See the
//! parent module on exactness.
//!
//! Every kernel handles `min(src.len() / type_size, dst.len() / block_size)`
//! whole blocks and ignores the rest of both slices.

use std::arch::aarch64::*;

use half::f16;

use super::{both, i8x16_to_f32, load16, mul, store, Kernels, Out};
use crate::decode::ternary::POW3;
use crate::format::blocks::{
    as_blocks, f16_le, Block, BlockQ1_0, BlockQ2_0, BlockTQ1_0, BlockTQ2_0, QK_K,
};
use crate::format::GgmlType;

/// The kernels for `ty`, where this module has some.
pub fn kernels(ty: GgmlType) -> Kernels {
    match ty {
        GgmlType::TQ1_0 => both(tq1_0_f32, tq1_0_f16),
        GgmlType::TQ2_0 => both(tq2_0_f32, tq2_0_f16),
        GgmlType::Q1_0 => both(q1_0_f32, q1_0_f16),
        GgmlType::Q2_0 => both(q2_0_f32, q2_0_f16),
        _ => Kernels::default(),
    }
}

neon_entry!(tq1_0_f32, f32, tq1_0::<f32>);
neon_entry!(tq1_0_f16, f16, tq1_0::<f16>);
neon_entry!(tq2_0_f32, f32, tq2_0::<f32>);
neon_entry!(tq2_0_f16, f16, tq2_0::<f16>);
neon_entry!(q1_0_f32, f32, q1_0::<f32>);
neon_entry!(q1_0_f16, f16, q1_0::<f16>);
neon_entry!(q2_0_f32, f32, q2_0::<f32>);
neon_entry!(q2_0_f16, f16, q2_0::<f16>);

/// `(q - 1) * d` for 16 unsigned codes `q` (0..=3, or 0..=2 for trits).
#[inline]
#[target_feature(enable = "neon")]
fn code_d(q: uint8x16_t, d: float32x4_t) -> [float32x4_t; 4] {
    let v = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(1));
    mul(i8x16_to_f32(v), d)
}

/// The base-3 digits of 16 bytes, lane `i` of `bytes` multiplied by lane `i`
/// of `pow` (a power of 3), as ggml's TQ1_0 extracts them: `q = byte * pow`
/// wrapping in 8 bits, then `(q * 3) >> 8` (in 0..=2).
#[inline]
#[target_feature(enable = "neon")]
fn trits(bytes: uint8x16_t, pow: uint8x16_t) -> uint8x16_t {
    let q = vmulq_u8(bytes, pow);
    let three = vdup_n_u8(3);
    let lo = vshrn_n_u16::<8>(vmull_u8(vget_low_u8(q), three));
    vshrn_high_n_u16::<8>(lo, vmull_high_u8(q, vdupq_n_u8(3)))
}

/// TQ1_0: values 0..160 are digit `k` of `qs` bytes 0..32 for values
/// `32k..32k + 32`; 160..240 digit `k` of `qs` bytes 32..48 for `160 +
/// 16k..`; 240..256 digit `k` of the four `qh` bytes for `240 + 4k..`.
#[target_feature(enable = "neon")]
fn tq1_0<T: Out>(src: &[u8], dst: &mut [T]) {
    // Lane i of the qh vector is byte i % 4, digit i / 4.
    let pow_h: [u8; 16] = std::array::from_fn(|i| POW3[i / 4]);
    let pow_h = load16(&pow_h, 0);
    for (x, y) in as_blocks::<BlockTQ1_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = vdupq_n_f32(f16_le(x.d));
        let (y32, rest) = y.split_at_mut(160);
        let (y16, yh) = rest.split_at_mut(80);
        let (q0, q1, q2) = (load16(&x.qs, 0), load16(&x.qs, 16), load16(&x.qs, 32));
        for ((&p, y32), y16) in POW3
            .iter()
            .zip(y32.chunks_exact_mut(32))
            .zip(y16.chunks_exact_mut(16))
        {
            let p = vdupq_n_u8(p);
            store(y32, code_d(trits(q0, p), d));
            store(&mut y32[16..], code_d(trits(q1, p), d));
            store(y16, code_d(trits(q2, p), d));
        }
        let qh = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_le_bytes(x.qh)));
        store(yh, code_d(trits(qh, pow_h), d));
    }
}

/// TQ2_0: each 32-byte half of `qs` gives 128 values, bit pair `l` of every
/// byte for values `32l..32l + 32`.
#[target_feature(enable = "neon")]
fn tq2_0<T: Out>(src: &[u8], dst: &mut [T]) {
    let three = vdupq_n_u8(3);
    for (x, y) in as_blocks::<BlockTQ2_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = vdupq_n_f32(f16_le(x.d));
        for (g, y) in y.chunks_exact_mut(128).enumerate() {
            let q = [load16(&x.qs, 32 * g), load16(&x.qs, 32 * g + 16)];
            for (l, y) in y.chunks_exact_mut(32).enumerate() {
                let shift = vdupq_n_s8(-2 * l as i8);
                for (q, y) in q.into_iter().zip(y.chunks_exact_mut(16)) {
                    store(y, code_d(vandq_u8(vshlq_u8(q, shift), three), d));
                }
            }
        }
    }
}

/// Q1_0: value `j` is `d` where bit `j % 8` of byte `j / 8` is set, else
/// `-d`.
#[target_feature(enable = "neon")]
fn q1_0<T: Out>(src: &[u8], dst: &mut [T]) {
    // Lane k of vector i tests bit 4i + k of a 16-bit word.
    let bits: [uint32x4_t; 4] = std::array::from_fn(|i| {
        let b: [u8; 16] =
            std::array::from_fn(|j| ((1u32 << (4 * i + j / 4)) >> (8 * (j % 4))) as u8);
        vreinterpretq_u32_u8(load16(&b, 0))
    });
    for (x, y) in as_blocks::<BlockQ1_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(BlockQ1_0::ELEMENTS))
    {
        let d = vdupq_n_f32(f16_le(x.d));
        let neg = vnegq_f32(d);
        for (w, y) in x.qs.chunks_exact(2).zip(y.chunks_exact_mut(16)) {
            let v = vdupq_n_u32(u32::from(u16::from_le_bytes([w[0], w[1]])));
            store(y, bits.map(|b| vbslq_f32(vtstq_u32(v, b), d, neg)));
        }
    }
}

/// Q2_0: value `j` is `(q - 1) * d` with `q` the bit pair `j % 4` of byte
/// `j / 4`.
#[target_feature(enable = "neon")]
fn q2_0<T: Out>(src: &[u8], dst: &mut [T]) {
    // Byte i of a group of 16 values is byte i / 4 of the group's four,
    // shifted right by 2 * (i % 4).
    let spread: [u8; 16] = std::array::from_fn(|i| (i / 4) as u8);
    let spread = load16(&spread, 0);
    let shifts: [u8; 16] = std::array::from_fn(|i| (-2 * (i % 4) as i8) as u8);
    let shifts = vreinterpretq_s8_u8(load16(&shifts, 0));
    let three = vdupq_n_u8(3);
    for (x, y) in as_blocks::<BlockQ2_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(BlockQ2_0::ELEMENTS))
    {
        let d = vdupq_n_f32(f16_le(x.d));
        let qs = load16(&x.qs, 0);
        for (g, y) in y.chunks_exact_mut(16).enumerate() {
            let idx = vaddq_u8(spread, vdupq_n_u8(4 * g as u8));
            let q = vandq_u8(vshlq_u8(vqtbl1q_u8(qs, idx), shifts), three);
            store(y, code_d(q, d));
        }
    }
}
