//! The ternary block types TQ1_0 and TQ2_0 (values in {-1, 0, +1} times a
//! per-block f16 scale), mirroring `dequantize_row_tq1_0` /
//! `dequantize_row_tq2_0` of ggml's `ggml-quants.c`.

use super::for_each_block;
use crate::format::blocks::{f16_le, BlockTQ1_0, BlockTQ2_0, QK_K};

const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// One base-3 digit of a TQ1_0 byte, as ggml extracts it:
/// `q = byte * 3^n` (wrapping in `uint8_t`), then `((uint16_t) q * 3) >> 8`,
/// minus 1, converted to float and multiplied by `d`.
#[inline]
fn trit(byte: u8, n: usize, d: f32) -> f32 {
    let q = byte.wrapping_mul(POW3[n]);
    let xi = ((u16::from(q) * 3) >> 8) as i16;
    f32::from(xi - 1) * d
}

/// TQ1_0: 240 values packed 5 per byte in `qs` (first 32 bytes, then 16
/// bytes), then 16 values packed 4 per byte in `qh`. Output order follows
/// ggml: for each group of bytes, digit `n` of every byte before digit `n + 1`.
pub fn dequantize_row_tq1_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockTQ1_0, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let mut out = y.iter_mut();
        // sizeof(qs) = 48: one group of 32 bytes, then one group of 16.
        let (head, tail) = x.qs.split_at(x.qs.len() - x.qs.len() % 32);
        for group in head.chunks_exact(32).chain(tail.chunks_exact(16)) {
            for n in 0..5 {
                for &b in group {
                    if let Some(o) = out.next() {
                        *o = trit(b, n, d);
                    }
                }
            }
        }
        for n in 0..4 {
            for &b in &x.qh {
                if let Some(o) = out.next() {
                    *o = trit(b, n, d);
                }
            }
        }
    });
}

/// TQ2_0: 2-bit codes `q` in {0, 1, 2, (3)}, `y = (float)(q - 1) * d`; for each
/// 32-byte group, bit pair `l` of every byte before bit pair `l + 1`.
pub fn dequantize_row_tq2_0(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockTQ2_0, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let mut out = y.iter_mut();
        for group in x.qs.chunks_exact(32) {
            for l in 0..4 {
                for &b in group {
                    let q = ((b >> (l * 2)) & 3) as i8;
                    if let Some(o) = out.next() {
                        *o = f32::from(q - 1) * d;
                    }
                }
            }
        }
    });
}
