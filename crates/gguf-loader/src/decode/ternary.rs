//! The ternary block types TQ1_0 and TQ2_0 (values in {-1, 0, +1} times a
//! per-block f16 scale), mirroring `dequantize_row_tq1_0` /
//! `dequantize_row_tq2_0` of ggml's `ggml-quants.c`.

use half::f16;

const QK_K: usize = 256;

/// Reads the little-endian IEEE half at `b[0..2]` as ggml's `GGML_FP16_TO_FP32`.
#[inline]
fn f16_at(b: &[u8]) -> f32 {
    match b {
        [lo, hi, ..] => f16::from_bits(u16::from_le_bytes([*lo, *hi])).to_f32(),
        _ => 0.0,
    }
}

// // 1.6875 bpw
// typedef struct {
//     uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; // 5 elements per byte (3^5 = 243 < 256)
//     uint8_t qh[QK_K/64]; // 4 elements per byte
//     ggml_half d;
// } block_tq1_0;           // 48 + 4 + 2 = 54 bytes
const TQ1_0_QS: usize = (QK_K - 4 * QK_K / 64) / 5;
const TQ1_0_QH: usize = QK_K / 64;
const TQ1_0_SIZE: usize = TQ1_0_QS + TQ1_0_QH + 2;

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
    for (block, y) in src.chunks_exact(TQ1_0_SIZE).zip(dst.chunks_exact_mut(QK_K)) {
        let qs = block.get(..TQ1_0_QS).unwrap_or_default();
        let qh = block.get(TQ1_0_QS..TQ1_0_QS + TQ1_0_QH).unwrap_or_default();
        let d = f16_at(block.get(TQ1_0_QS + TQ1_0_QH..).unwrap_or_default());

        let mut out = y.iter_mut();
        // sizeof(qs) = 48: one group of 32 bytes, then one group of 16.
        let split = TQ1_0_QS - TQ1_0_QS % 32;
        for group in qs[..split.min(qs.len())]
            .chunks_exact(32)
            .chain(qs.get(split..).unwrap_or_default().chunks_exact(16))
        {
            for n in 0..5 {
                for &b in group {
                    if let Some(o) = out.next() {
                        *o = trit(b, n, d);
                    }
                }
            }
        }
        for n in 0..4 {
            for &b in qh {
                if let Some(o) = out.next() {
                    *o = trit(b, n, d);
                }
            }
        }
    }
}

// // 2.0625 bpw
// typedef struct {
//     uint8_t qs[QK_K/4]; // 2 bits per element
//     ggml_half d;
// } block_tq2_0;          // 64 + 2 = 66 bytes
const TQ2_0_QS: usize = QK_K / 4;
const TQ2_0_SIZE: usize = TQ2_0_QS + 2;

/// TQ2_0: 2-bit codes `q` in {0, 1, 2, (3)}, `y = (float)(q - 1) * d`; for each
/// 32-byte group, bit pair `l` of every byte before bit pair `l + 1`.
pub fn dequantize_row_tq2_0(src: &[u8], dst: &mut [f32]) {
    for (block, y) in src.chunks_exact(TQ2_0_SIZE).zip(dst.chunks_exact_mut(QK_K)) {
        let qs = block.get(..TQ2_0_QS).unwrap_or_default();
        let d = f16_at(block.get(TQ2_0_QS..).unwrap_or_default());
        let mut out = y.iter_mut();
        for group in qs.chunks_exact(32) {
            for l in 0..4 {
                for &b in group {
                    let q = ((b >> (l * 2)) & 3) as i8;
                    if let Some(o) = out.next() {
                        *o = f32::from(q - 1) * d;
                    }
                }
            }
        }
    }
}
