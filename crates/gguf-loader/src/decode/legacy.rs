//! The "legacy" (pre-k-quant) block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! Q8_1, the 1-/2-bit Q1_0 and Q2_0, plus Q8_K (the k-quant intermediate type).
//!
//! Each routine mirrors the scalar reference `dequantize_row_*` of ggml's
//! `ggml-quants.c` (llama.cpp vendored in llama-cpp-python 0.3.36), with the
//! same `float` arithmetic in the same order: an integer quant is converted to
//! `f32` and multiplied by the f32 scale, and a min is added afterwards as a
//! separate operation (Rust never fuses `a * b + c` into an FMA).
//!
//! Layouts are those of `ggml-common.h`; multi-byte fields are little-endian.

use half::f16;

/// Reads the little-endian IEEE half at `b[0..2]` as ggml's `GGML_FP16_TO_FP32`.
#[inline]
fn f16_at(b: &[u8]) -> f32 {
    match b {
        [lo, hi, ..] => f16::from_bits(u16::from_le_bytes([*lo, *hi])).to_f32(),
        _ => 0.0,
    }
}

// #define QK1_0 128
// typedef struct {
//     ggml_half d;           // delta
//     uint8_t qs[QK1_0 / 8]; // bits / quants
// } block_q1_0;              // 18 bytes
const QK1_0: usize = 128;
const Q1_0_SIZE: usize = 2 + QK1_0 / 8;

/// Q1_0: one sign bit per element; `y = bit ? d : -d`.
pub fn dequantize_row_q1_0(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q1_0_SIZE).zip(dst.chunks_exact_mut(QK1_0)) {
        let d = f16_at(block);
        let neg_d = -d;
        let qs = block.get(2..).unwrap_or_default();
        for (j, out) in y.iter_mut().enumerate() {
            let byte = qs.get(j / 8).copied().unwrap_or(0);
            let bit = (byte >> (j % 8)) & 1;
            *out = if bit != 0 { d } else { neg_d };
        }
    }
}

// #define QK2_0 64
// typedef struct {
//     ggml_half d;              // delta (scale)
//     uint8_t qs[QK2_0 / 4];    // 2 bits per element
// } block_q2_0;                 // 18 bytes
const QK2_0: usize = 64;
const Q2_0_SIZE: usize = 2 + QK2_0 / 4;

/// Q2_0: 2-bit codes 00=-1, 01=0, 10=+1, 11=+2; `y = (q - 1) * d`.
pub fn dequantize_row_q2_0(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q2_0_SIZE).zip(dst.chunks_exact_mut(QK2_0)) {
        let d = f16_at(block);
        let qs = block.get(2..).unwrap_or_default();
        for (j, out) in y.iter_mut().enumerate() {
            let byte = qs.get(j / 4).copied().unwrap_or(0);
            let q = (byte >> ((j % 4) * 2)) & 0x03;
            *out = (i32::from(q) - 1) as f32 * d;
        }
    }
}

// #define QK4_0 32
// typedef struct {
//     ggml_half d;           // delta
//     uint8_t qs[QK4_0 / 2]; // nibbles / quants
// } block_q4_0;              // 18 bytes
pub(crate) const QK4_0: usize = 32;
pub(crate) const Q4_0_SIZE: usize = 2 + QK4_0 / 2;

/// Q4_0: `y[j] = (lo4(qs[j]) - 8) * d`, `y[j + 16] = (hi4(qs[j]) - 8) * d`.
pub fn dequantize_row_q4_0(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q4_0_SIZE).zip(dst.chunks_exact_mut(QK4_0)) {
        let d = f16_at(block);
        let qs = block.get(2..).unwrap_or_default();
        let (lo, hi) = y.split_at_mut(QK4_0 / 2);
        for ((q, y0), y1) in qs.iter().zip(lo).zip(hi) {
            let x0 = i32::from(q & 0x0F) - 8;
            let x1 = i32::from(q >> 4) - 8;
            *y0 = x0 as f32 * d;
            *y1 = x1 as f32 * d;
        }
    }
}

// #define QK4_1 32
// typedef struct {
//     ggml_half d;           // delta
//     ggml_half m;           // min
//     uint8_t qs[QK4_1 / 2]; // nibbles / quants
// } block_q4_1;              // 20 bytes
const QK4_1: usize = 32;
pub(crate) const Q4_1_SIZE: usize = 4 + QK4_1 / 2;

/// Q4_1: `y = x * d + m` with unsigned nibbles `x`.
pub fn dequantize_row_q4_1(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q4_1_SIZE).zip(dst.chunks_exact_mut(QK4_1)) {
        let d = f16_at(block);
        let m = f16_at(block.get(2..).unwrap_or_default());
        let qs = block.get(4..).unwrap_or_default();
        let (lo, hi) = y.split_at_mut(QK4_1 / 2);
        for ((q, y0), y1) in qs.iter().zip(lo).zip(hi) {
            let x0 = i32::from(q & 0x0F);
            let x1 = i32::from(q >> 4);
            *y0 = x0 as f32 * d + m;
            *y1 = x1 as f32 * d + m;
        }
    }
}

// #define QK5_0 32
// typedef struct {
//     ggml_half d;           // delta
//     uint8_t qh[4];         // 5-th bit of quants
//     uint8_t qs[QK5_0 / 2]; // nibbles / quants
// } block_q5_0;              // 22 bytes
const QK5_0: usize = 32;
pub(crate) const Q5_0_SIZE: usize = 2 + 4 + QK5_0 / 2;

/// Reads the 4-byte little-endian `qh` word at `b[0..4]`.
#[inline]
fn u32_at(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// Q5_0: 5-bit quants (nibble | bit from `qh`), `y = (x - 16) * d`.
pub fn dequantize_row_q5_0(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q5_0_SIZE).zip(dst.chunks_exact_mut(QK5_0)) {
        let d = f16_at(block);
        let qh = u32_at(block.get(2..).unwrap_or_default());
        let qs = block.get(6..).unwrap_or_default();
        let (lo, hi) = y.split_at_mut(QK5_0 / 2);
        for (j, ((q, y0), y1)) in qs.iter().zip(lo).zip(hi).enumerate() {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = i32::from((q & 0x0F) | xh_0) - 16;
            let x1 = i32::from((q >> 4) | xh_1) - 16;
            *y0 = x0 as f32 * d;
            *y1 = x1 as f32 * d;
        }
    }
}

// #define QK5_1 32
// typedef struct {
//     ggml_half d;           // delta
//     ggml_half m;           // min
//     uint8_t qh[4];         // 5-th bit of quants
//     uint8_t qs[QK5_1 / 2]; // nibbles / quants
// } block_q5_1;              // 24 bytes
const QK5_1: usize = 32;
pub(crate) const Q5_1_SIZE: usize = 4 + 4 + QK5_1 / 2;

/// Q5_1: unsigned 5-bit quants, `y = x * d + m`.
pub fn dequantize_row_q5_1(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q5_1_SIZE).zip(dst.chunks_exact_mut(QK5_1)) {
        let d = f16_at(block);
        let m = f16_at(block.get(2..).unwrap_or_default());
        let qh = u32_at(block.get(4..).unwrap_or_default());
        let qs = block.get(8..).unwrap_or_default();
        let (lo, hi) = y.split_at_mut(QK5_1 / 2);
        for (j, ((q, y0), y1)) in qs.iter().zip(lo).zip(hi).enumerate() {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = i32::from((q & 0x0F) | xh_0);
            let x1 = i32::from((q >> 4) | xh_1);
            *y0 = x0 as f32 * d + m;
            *y1 = x1 as f32 * d + m;
        }
    }
}

// #define QK8_0 32
// typedef struct {
//     ggml_half d;       // delta
//     int8_t  qs[QK8_0]; // quants
// } block_q8_0;          // 34 bytes
const QK8_0: usize = 32;
pub(crate) const Q8_0_SIZE: usize = 2 + QK8_0;

/// Q8_0: `y = qs * d` with signed bytes.
pub fn dequantize_row_q8_0(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q8_0_SIZE).zip(dst.chunks_exact_mut(QK8_0)) {
        let d = f16_at(block);
        let qs = block.get(2..).unwrap_or_default();
        for (q, out) in qs.iter().zip(y) {
            *out = f32::from(*q as i8) * d;
        }
    }
}

// #define QK8_1 32
// typedef struct {
//     ggml_half d;       // delta
//     ggml_half s;       // d * sum(qs[i])
//     int8_t  qs[QK8_1]; // quants
// } block_q8_1;          // 36 bytes (gguf-py 0.19 wrongly says 40)
const QK8_1: usize = 32;
const Q8_1_SIZE: usize = 4 + QK8_1;

/// Q8_1: `y = qs * d`; the stored sum `s` is not used.
///
/// ggml has no `dequantize_row_q8_1` (its prototype is commented out in
/// `ggml-quants.h`: Q8_1 is a dot-product intermediate); this applies
/// Q8_0's formula, which is what the block encodes (`quantize_row_q8_1_ref`
/// stores `qs = round(x / d)`).
pub fn dequantize_row_q8_1(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q8_1_SIZE).zip(dst.chunks_exact_mut(QK8_1)) {
        let d = f16_at(block);
        let qs = block.get(4..).unwrap_or_default();
        for (q, out) in qs.iter().zip(y) {
            *out = f32::from(*q as i8) * d;
        }
    }
}

// Q8_K is the k-quant intermediate type (the k-quants themselves live in
// `kquants.rs`); its decoder sits here with the other plain 8-bit types.
//
// #define QK_K 256
// typedef struct {
//     float   d;              // delta
//     int8_t  qs[QK_K];       // quants
//     int16_t bsums[QK_K/16]; // sum of quants in groups of 16
// } block_q8_K;               // 292 bytes
const QK_K: usize = 256;
const Q8_K_SIZE: usize = 4 + QK_K + QK_K / 16 * 2;

/// Q8_K: `y = d * qs` with an f32 scale; `bsums` is not used.
pub fn dequantize_row_q8_k(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(Q8_K_SIZE).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f32::from_bits(u32_at(block));
        let qs = block.get(4..4 + QK_K).unwrap_or_default();
        for (q, out) in qs.iter().zip(y) {
            *out = d * f32::from(*q as i8);
        }
    }
}
