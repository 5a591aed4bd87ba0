//! The plain number types (block size 1): F32, F16, BF16, F64 and the
//! integers I8, I16, I32, I64, converted to `f32` as numbers.
//!
//! F16 follows ggml's `ggml_fp16_to_fp32_row` (exact widening; NaNs keep their
//! payload and come out quiet), BF16 `ggml_bf16_to_fp32_row` (the 16 bits
//! become the top half of an f32, so NaN payloads are kept bit for bit). F64
//! and the integers are C casts `(float) x`, i.e. Rust's `as f32` (round to
//! nearest even). All values are little-endian.

use crate::format::blocks::{bf16_le, f16_le};

/// F32: the bits as stored.
pub fn dequantize_row_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(4).zip(dst.iter_mut()) {
        if let [a, b, c, d] = *b {
            *y = f32::from_bits(u32::from_le_bytes([a, b, c, d]));
        }
    }
}

/// F16: IEEE binary16 widened exactly (`GGML_FP16_TO_FP32`).
pub fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        if let [lo, hi] = *b {
            *y = f16_le([lo, hi]);
        }
    }
}

/// BF16: `bits << 16` reinterpreted as f32 (`GGML_BF16_TO_FP32`).
pub fn dequantize_row_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        if let [lo, hi] = *b {
            *y = bf16_le([lo, hi]);
        }
    }
}

/// F64: `(float) x`, round to nearest even (NaN stays NaN).
pub fn dequantize_row_f64(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(8).zip(dst.iter_mut()) {
        if let Ok(a) = <[u8; 8]>::try_from(b) {
            *y = f64::from_le_bytes(a) as f32;
        }
    }
}

/// I8: exact.
pub fn dequantize_row_i8(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.iter_mut()) {
        *y = f32::from(*b as i8);
    }
}

/// I16: exact.
pub fn dequantize_row_i16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        if let [lo, hi] = *b {
            *y = f32::from(i16::from_le_bytes([lo, hi]));
        }
    }
}

/// I32: `(float) x`, round to nearest even above 2^24.
pub fn dequantize_row_i32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(4).zip(dst.iter_mut()) {
        if let [a, b, c, d] = *b {
            *y = i32::from_le_bytes([a, b, c, d]) as f32;
        }
    }
}

/// I64: `(float) x`, round to nearest even above 2^24.
pub fn dequantize_row_i64(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(8).zip(dst.iter_mut()) {
        if let Ok(a) = <[u8; 8]>::try_from(b) {
            *y = i64::from_le_bytes(a) as f32;
        }
    }
}
