//! The "legacy" (pre-k-quant) block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! Q8_1, the 1-/2-bit Q1_0 and Q2_0, plus Q8_K (the k-quant intermediate type).
//!
//! Each routine mirrors the scalar reference `dequantize_row_*` of ggml's
//! `ggml-quants.c` (llama.cpp vendored in llama-cpp-python 0.3.36), with the
//! same `float` arithmetic in the same order: an integer quant is converted to
//! `f32` and multiplied by the f32 scale, and a min is added afterwards as a
//! separate operation (Rust never fuses `a * b + c` into an FMA).
//!
//! The blocks are read through their structs in `format::blocks` (the
//! layouts of `ggml-common.h`); multi-byte fields are little-endian.

use super::for_each_block;
use crate::format::blocks::{
    f16_le, f32_le, BlockQ1_0, BlockQ2_0, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
    BlockQ8_1, BlockQ8_K, QK1_0, QK2_0, QK4_0, QK4_1, QK5_0, QK5_1, QK8_0, QK8_1, QK_K,
};

/// Q1_0: one sign bit per element; `y = bit ? d : -d`.
pub fn dequantize_row_q1_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ1_0, y: &mut [f32; QK1_0]| {
        let d = f16_le(x.d);
        let neg_d = -d;
        for (j, out) in y.iter_mut().enumerate() {
            let bit = (x.qs[j / 8] >> (j % 8)) & 1;
            *out = if bit != 0 { d } else { neg_d };
        }
    });
}

/// Q2_0: 2-bit codes 00=-1, 01=0, 10=+1, 11=+2; `y = (q - 1) * d`.
pub fn dequantize_row_q2_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ2_0, y: &mut [f32; QK2_0]| {
        let d = f16_le(x.d);
        for (j, out) in y.iter_mut().enumerate() {
            let q = (x.qs[j / 4] >> ((j % 4) * 2)) & 0x03;
            *out = (i32::from(q) - 1) as f32 * d;
        }
    });
}

/// Q4_0: `y[j] = (lo4(qs[j]) - 8) * d`, `y[j + 16] = (hi4(qs[j]) - 8) * d`.
pub fn dequantize_row_q4_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ4_0, y: &mut [f32; QK4_0]| {
        let d = f16_le(x.d);
        let (lo, hi) = y.split_at_mut(QK4_0 / 2);
        for ((q, y0), y1) in x.qs.iter().zip(lo).zip(hi) {
            let x0 = i32::from(q & 0x0F) - 8;
            let x1 = i32::from(q >> 4) - 8;
            *y0 = x0 as f32 * d;
            *y1 = x1 as f32 * d;
        }
    });
}

/// Q4_1: `y = x * d + m` with unsigned nibbles `x`.
pub fn dequantize_row_q4_1(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ4_1, y: &mut [f32; QK4_1]| {
        let d = f16_le(x.d);
        let m = f16_le(x.m);
        let (lo, hi) = y.split_at_mut(QK4_1 / 2);
        for ((q, y0), y1) in x.qs.iter().zip(lo).zip(hi) {
            let x0 = i32::from(q & 0x0F);
            let x1 = i32::from(q >> 4);
            *y0 = x0 as f32 * d + m;
            *y1 = x1 as f32 * d + m;
        }
    });
}

/// Q5_0: 5-bit quants (nibble | bit from `qh`), `y = (x - 16) * d`.
pub fn dequantize_row_q5_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ5_0, y: &mut [f32; QK5_0]| {
        let d = f16_le(x.d);
        let qh = u32::from_le_bytes(x.qh);
        let (lo, hi) = y.split_at_mut(QK5_0 / 2);
        for (j, ((q, y0), y1)) in x.qs.iter().zip(lo).zip(hi).enumerate() {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = i32::from((q & 0x0F) | xh_0) - 16;
            let x1 = i32::from((q >> 4) | xh_1) - 16;
            *y0 = x0 as f32 * d;
            *y1 = x1 as f32 * d;
        }
    });
}

/// Q5_1: unsigned 5-bit quants, `y = x * d + m`.
pub fn dequantize_row_q5_1(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ5_1, y: &mut [f32; QK5_1]| {
        let d = f16_le(x.d);
        let m = f16_le(x.m);
        let qh = u32::from_le_bytes(x.qh);
        let (lo, hi) = y.split_at_mut(QK5_1 / 2);
        for (j, ((q, y0), y1)) in x.qs.iter().zip(lo).zip(hi).enumerate() {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = i32::from((q & 0x0F) | xh_0);
            let x1 = i32::from((q >> 4) | xh_1);
            *y0 = x0 as f32 * d + m;
            *y1 = x1 as f32 * d + m;
        }
    });
}

/// Q8_0: `y = qs * d` with signed bytes.
pub fn dequantize_row_q8_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ8_0, y: &mut [f32; QK8_0]| {
        let d = f16_le(x.d);
        for (q, out) in x.qs.iter().zip(y) {
            *out = f32::from(*q as i8) * d;
        }
    });
}

/// Q8_1: `y = qs * d`; the stored sum `s` is not used.
///
/// ggml has no `dequantize_row_q8_1` (its prototype is commented out in
/// `ggml-quants.h`: Q8_1 is a dot-product intermediate); this applies
/// Q8_0's formula, which is what the block encodes (`quantize_row_q8_1_ref`
/// stores `qs = round(x / d)`).
pub fn dequantize_row_q8_1(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ8_1, y: &mut [f32; QK8_1]| {
        let d = f16_le(x.d);
        for (q, out) in x.qs.iter().zip(y) {
            *out = f32::from(*q as i8) * d;
        }
    });
}

// Q8_K is the k-quant intermediate type (the k-quants themselves live in
// `kquants.rs`); its decoder sits here with the other plain 8-bit types.

/// Q8_K: `y = d * qs` with an f32 scale; `bsums` is not used.
pub fn dequantize_row_q8_k(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ8_K, y: &mut [f32; QK_K]| {
        let d = f32_le(x.d);
        for (q, out) in x.qs.iter().zip(y) {
            *out = d * f32::from(*q as i8);
        }
    });
}
