//! The ternary block types TQ1_0 and TQ2_0 (values in {-1, 0, +1} times a
//! per-block f16 scale), mirroring `dequantize_row_tq1_0` /
//! `dequantize_row_tq2_0` of ggml's `ggml-quants.c`.

use super::for_each_block;
use crate::format::blocks::{f16_le, BlockTQ1_0, BlockTQ2_0, QK_K};

pub(crate) const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// One base-3 digit of a TQ1_0 byte, as ggml extracts it:
/// `q = byte * 3^n` (wrapping in `uint8_t`), then `((uint16_t) q * 3) >> 8`,
/// minus 1, converted to float and multiplied by `d`.
#[inline]
fn trit(byte: u8, n: usize, d: f32) -> f32 {
    let q = byte.wrapping_mul(POW3[n]);
    let xi = ((u16::from(q) * 3) >> 8) as i16;
    f32::from(xi - 1) * d
}

/// Digits `0..digits` of every byte of each `width`-byte group of `bytes`,
/// into `ys`: for each group, digit `n` of every byte before digit `n + 1`.
#[inline]
fn trits(bytes: &[u8], width: usize, digits: usize, ys: &mut [f32], d: f32) {
    for (group, ys) in bytes
        .chunks_exact(width)
        .zip(ys.chunks_exact_mut(width * digits))
    {
        for (n, ys) in ys.chunks_exact_mut(width).enumerate() {
            for (&b, out) in group.iter().zip(ys) {
                *out = trit(b, n, d);
            }
        }
    }
}

/// TQ1_0: 240 values packed 5 per byte in `qs` (first 32 bytes, then 16
/// bytes), then 16 values packed 4 per byte in `qh`. Output order follows
/// ggml: for each group of bytes, digit `n` of every byte before digit `n + 1`.
pub fn dequantize_row_tq1_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockTQ1_0, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        // sizeof(qs) = 48: groups of 32 bytes, then the rest in groups of 16.
        let (qs32, qs16) = x.qs.split_at(x.qs.len() - x.qs.len() % 32);
        let (y32, rest) = y.split_at_mut(5 * qs32.len());
        let (y16, yh) = rest.split_at_mut(5 * qs16.len());
        trits(qs32, 32, 5, y32, d);
        trits(qs16, 16, 5, y16, d);
        trits(&x.qh, x.qh.len(), 4, yh, d);
    });
}

/// TQ2_0: 2-bit codes `q` in {0, 1, 2, (3)}, `y = (float)(q - 1) * d`; for each
/// 32-byte group, bit pair `l` of every byte before bit pair `l + 1`.
pub fn dequantize_row_tq2_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockTQ2_0, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        for (group, ys) in x.qs.chunks_exact(32).zip(y.chunks_exact_mut(128)) {
            for (l, ys) in ys.chunks_exact_mut(32).enumerate() {
                for (&b, out) in group.iter().zip(ys) {
                    let q = ((b >> (l * 2)) & 3) as i8;
                    *out = f32::from(q - 1) * d;
                }
            }
        }
    });
}
