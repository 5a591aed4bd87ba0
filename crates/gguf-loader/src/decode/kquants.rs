//! K-quants ("super-block" quantization): Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
//!
//! Each routine is a scalar port of the matching `dequantize_row_*_K`
//! reference routine in ggml's `ggml-quants.c`, with the block layouts of
//! `ggml-common.h` (for `QK_K = 256`). The float operations are done in the
//! same order and with the same intermediate types as the C code (for
//! instance `d1 * q - m1` with `d1 = d * sc` rounded to f32 first), so the
//! results are bit-identical to ggml built without `-ffp-contract` (Rust
//! never fuses a multiply and an add on its own).
//!
//! Precision note: every product in these routines is exact in f32. An f16
//! scale has 11 significant bits; the sub-block scales (at most 6 bits, or
//! |sc| <= 128 in Q6_K, 7 significant bits) and quants (at most 5 significant
//! bits, |q| <= 32 in Q6_K) add at most 12 more, which fits f32's 24 bits and
//! cannot overflow. So `d * sc * q` is the same in any association, and a
//! fused `fma(d1, q, -m1)` rounds like `d1 * q - m1`: the only rounding step
//! is the final subtraction of the min in Q2_K/Q4_K/Q5_K. (Checked against
//! ggml's C built with and without FMA contraction: identical.)
//!
//! Contract shared by every routine: `src` holds whole blocks and `dst`
//! receives 256 values per block. The routines walk the blocks viewed as
//! their structs (`format::blocks`) beside `dst.chunks_exact_mut(QK_K)`, so a
//! trailing partial block, or a `dst` of the wrong length, is ignored rather
//! than causing a panic. Any byte pattern is accepted: NaN and infinite f16
//! scales simply propagate as ggml would.

use super::for_each_block;
use crate::format::blocks::{
    f16_le, u32_at, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, K_SCALE_SIZE, QK_K,
};

/// Unpacks the `j`-th (0..8) 6-bit scale and 6-bit min from the 12 packed
/// bytes of a Q4_K/Q5_K block, exactly as ggml's `get_scale_min_k4`:
///
/// ```text
/// j < 4:  d = q[j] & 63;                          m = q[j + 4] & 63
/// j >= 4: d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)
///         m = (q[j + 4] >>  4) | ((q[j - 0] >> 6) << 4)
/// ```
///
/// `j` is meant to be in `0..8`; larger values never panic.
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        // Out-of-range `j` (>= 8) wraps into 4..8 rather than panicking.
        let j = 4 + (j & 3);
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The two `(d * sc, dmin * m)` pairs of the 32-element groups `2j` and
/// `2j + 1` of a Q4_K/Q5_K block, computed in f32 as ggml does. Shared by the
/// scalar routines and the SIMD kernels, so both scale alike.
#[inline(always)]
pub(crate) fn group_scales(
    d: f32,
    dmin: f32,
    scales: &[u8; K_SCALE_SIZE],
    j: usize,
) -> [(f32, f32); 2] {
    let (sc1, m1) = get_scale_min_k4(2 * j, scales);
    let (sc2, m2) = get_scale_min_k4(2 * j + 1, scales);
    [
        (d * f32::from(sc1), dmin * f32::from(m1)),
        (d * f32::from(sc2), dmin * f32::from(m2)),
    ]
}

// ---------------------------------------------------------------------------
// Q2_K
// ---------------------------------------------------------------------------

// 2-bit quantization
// weight is represented as x = a * q + b
// 16 blocks of 16 elements each
// Effectively 2.625 bits per weight
// Layout: `format::blocks::BlockQ2_K` (ggml's `block_q2_K`).

/// Dequantizes Q2_K blocks (84 bytes → 256 values), as ggml's
/// `dequantize_row_q2_K`.
///
/// Each scale byte holds a 4-bit scale (low nibble) and 4-bit min (high
/// nibble) for one group of 16; each `qs` byte holds four 2-bit quants
/// belonging to four different groups (shifts 0, 2, 4, 6).
pub fn dequantize_row_q2_k(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ2_K, y: &mut [f32; QK_K]| {
        let (scales, qs) = (&x.scales, &x.qs);
        let d = f16_le(x.d);
        let min = f16_le(x.dmin);

        let mut is = 0;
        let mut out = 0;
        for n in 0..2 {
            let q = &qs[n * 32..n * 32 + 32];
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * f32::from(sc & 0xF);
                    let ml = min * f32::from(sc >> 4);
                    let ys = &mut y[out..out + 16];
                    for (yv, &qv) in ys.iter_mut().zip(&q[half * 16..half * 16 + 16]) {
                        *yv = dl * f32::from((qv >> shift) & 3) - ml;
                    }
                    out += 16;
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Q3_K
// ---------------------------------------------------------------------------

// 3-bit quantization
// weight is represented as x = a * q
// 16 blocks of 16 elements each
// Effectively 3.4375 bits per weight
// Layout: `format::blocks::BlockQ3_K` (ggml's `block_q3_K`).

const KMASK1: u32 = 0x0303_0303;
const KMASK2: u32 = 0x0f0f_0f0f;

/// Unpacks the sixteen 6-bit Q3_K scales (still biased by +32) from their 12
/// packed bytes, exactly as ggml does with `kmask1`/`kmask2` on three
/// little-endian `uint32_t` words.
///
/// Scale `j` has its low 4 bits in byte `j % 8` (low nibble for `j < 8`,
/// high nibble for `j >= 8`) and its high 2 bits in byte `8 + j % 4`, at bit
/// position `2 * (j / 4)`.
#[inline(always)]
pub(crate) fn q3_k_scales(packed: &[u8; 12]) -> [u8; 16] {
    let a0 = u32_at(packed, 0);
    let a1 = u32_at(packed, 4);
    let tmp = u32_at(packed, 8);
    let aux = [
        (a0 & KMASK2) | (((tmp) & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(aux) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Dequantizes Q3_K blocks (110 bytes → 256 values), as ggml's
/// `dequantize_row_q3_K`.
///
/// A quant is its 2 low bits from `qs` minus 4 when its `hmask` bit is
/// clear (so values lie in -4..=3); the group scale is the 6-bit scale
/// minus 32.
pub fn dequantize_row_q3_k(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ3_K, y: &mut [f32; QK_K]| {
        // Copies, not borrows: the loop below runs faster over local arrays
        // (measured; see docs/BENCHMARKS.md).
        let (hm, qs) = (x.hmask, x.qs);
        let scales = q3_k_scales(&x.scales);
        let d_all = f16_le(x.d);

        let mut is = 0;
        let mut out = 0;
        let mut m: u8 = 1;
        for n in 0..2 {
            let q = &qs[n * 32..n * 32 + 32];
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    // `scales` are int8 in C; their values are 0..=63 here.
                    let dl = d_all * (i32::from(scales[is]) - 32) as f32;
                    is += 1;
                    let r = half * 16..half * 16 + 16;
                    let ys = &mut y[out..out + 16];
                    for ((yv, &qv), &hv) in ys.iter_mut().zip(&q[r.clone()]).zip(&hm[r]) {
                        let low = i32::from((qv >> shift) & 3);
                        let high = if hv & m != 0 { 0 } else { 4 };
                        *yv = dl * (low - high) as f32;
                    }
                    out += 16;
                }
                m = m.wrapping_shl(1);
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Q4_K
// ---------------------------------------------------------------------------

// 4-bit quantization
// 8 blocks of 32 elements each
// weight is represented as x = a * q + b
// Effectively 4.5 bits per weight
// Layout: `format::blocks::BlockQ4_K` (ggml's `block_q4_K`).

/// Dequantizes Q4_K blocks (144 bytes → 256 values), as ggml's
/// `dequantize_row_q4_K`.
///
/// Each run of 32 `qs` bytes feeds two groups of 32: low nibbles first, then
/// high nibbles.
pub fn dequantize_row_q4_k(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ4_K, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let min = f16_le(x.dmin);
        let scales = &x.scales;

        for (j, (q, ys)) in
            x.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let [(d1, m1), (d2, m2)] = group_scales(d, min, scales, j);
            let (lo, hi) = ys.split_at_mut(32);
            for ((yl, yh), &qv) in lo.iter_mut().zip(hi.iter_mut()).zip(q) {
                *yl = d1 * f32::from(qv & 0xF) - m1;
                *yh = d2 * f32::from(qv >> 4) - m2;
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Q5_K
// ---------------------------------------------------------------------------

// 5-bit quantization
// 8 blocks of 32 elements each
// weight is represented as x = a * q + b
// Effectively 5.5 bits per weight
// Layout: `format::blocks::BlockQ5_K` (ggml's `block_q5_K`).

/// Dequantizes Q5_K blocks (176 bytes → 256 values), as ggml's
/// `dequantize_row_q5_K`.
///
/// Like Q4_K, plus a fifth bit from `qh`: group `g` (0..8) of 32 takes bit
/// `g` of `qh[l]` for its element `l`.
pub fn dequantize_row_q5_k(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ5_K, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let min = f16_le(x.dmin);
        let (scales, qh, qs) = (&x.scales, &x.qh, &x.qs);

        let mut u1: u8 = 1;
        let mut u2: u8 = 2;
        for (j, (ql, ys)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let [(d1, m1), (d2, m2)] = group_scales(d, min, scales, j);
            let (lo, hi) = ys.split_at_mut(32);
            for (((yl, yh), &qv), &hv) in lo.iter_mut().zip(hi.iter_mut()).zip(ql).zip(qh) {
                let h1 = if hv & u1 != 0 { 16 } else { 0 };
                let h2 = if hv & u2 != 0 { 16 } else { 0 };
                *yl = d1 * f32::from((qv & 0xF) + h1) - m1;
                *yh = d2 * f32::from((qv >> 4) + h2) - m2;
            }
            u1 = u1.wrapping_shl(2);
            u2 = u2.wrapping_shl(2);
        }
    });
}

// ---------------------------------------------------------------------------
// Q6_K
// ---------------------------------------------------------------------------

// 6-bit quantization
// weight is represented as x = a * q
// 16 blocks of 16 elements each
// Effectively 6.5625 bits per weight
// Layout: `format::blocks::BlockQ6_K` (ggml's `block_q6_K`).

/// Dequantizes Q6_K blocks (210 bytes → 256 values), as ggml's
/// `dequantize_row_q6_K`.
///
/// Each half of the block (128 values) uses 64 `ql` bytes, 32 `qh` bytes and
/// 8 signed scales; the value is `d * sc * q` evaluated left to right, i.e.
/// `(d * sc) * q` with `q` in -32..=31.
pub fn dequantize_row_q6_k(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockQ6_K, y: &mut [f32; QK_K]| {
        let (ql_all, qh_all, sc_all) = (&x.ql, &x.qh, &x.scales);
        let d = f16_le(x.d);

        for n in 0..2 {
            let ql = &ql_all[n * 64..n * 64 + 64];
            let qh = &qh_all[n * 32..n * 32 + 32];
            let sc = &sc_all[n * 8..n * 8 + 8];
            let ys = &mut y[n * 128..n * 128 + 128];
            for half in 0..2 {
                // `is = l / 16` in C: elements 0..16 use scales 0,2,4,6 and
                // elements 16..32 use scales 1,3,5,7.
                let s = |k: usize| d * f32::from(sc[half + k] as i8);
                let (s1, s2, s3, s4) = (s(0), s(2), s(4), s(6));
                for l in half * 16..half * 16 + 16 {
                    let h = qh[l];
                    let q1 = i32::from((ql[l] & 0xF) | ((h & 3) << 4)) - 32;
                    let q2 = i32::from((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                    let q3 = i32::from((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
                    let q4 = i32::from((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
                    ys[l] = s1 * q1 as f32;
                    ys[l + 32] = s2 * q2 as f32;
                    ys[l + 64] = s3 * q3 as f32;
                    ys[l + 96] = s4 * q4 as f32;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_k4_matches_bit_layout() {
        // Scale j < 4 in the low 6 bits of byte j; min in byte j + 4.
        let mut q = [0u8; 12];
        q[1] = 0b1100_0101;
        q[5] = 0b0100_0111;
        q[9] = 0xA3;
        assert_eq!(get_scale_min_k4(1, &q), (5, 7));
        // j = 5: low nibble of byte 9, high bits from byte 1's top two bits;
        // min: high nibble of byte 9, top bits of byte 5.
        assert_eq!(get_scale_min_k4(5, &q), (0x3 | (3 << 4), 0xA | (1 << 4)));
    }

    #[test]
    fn q3_k_scales_match_description() {
        let packed: [u8; 12] = [
            0x10,
            0x32,
            0x54,
            0x76,
            0x98,
            0xBA,
            0xDC,
            0xFE,
            0b1110_0100,
            0b0001_1011,
            0xFF,
            0x00,
        ];
        let s = q3_k_scales(&packed);
        for (j, &v) in s.iter().enumerate() {
            let low = if j < 8 {
                packed[j] & 0xF
            } else {
                packed[j - 8] >> 4
            };
            let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
            assert_eq!(v, low | (high << 4), "scale {j}");
        }
    }
}
