//! The i-quants: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M,
//! IQ4_NL and IQ4_XS.
//!
//! Each routine mirrors the scalar `dequantize_row_iq*` of ggml-quants.c
//! (llama.cpp vendored in llama-cpp-python 0.3.36) statement for statement,
//! including the order of float operations: Rust never contracts `a * b + c`
//! into a fused multiply-add, like C compiled without contraction, so the
//! results are bit-identical to ggml's. The one departure: the `±1.f` sign
//! factor of the grid types is applied as a negation, so that a NaN output
//! has the same bits in every build (see `sign`).
//!
//! Every grid index is built from masked bit fields exactly as the C builds
//! it, so it is always below the table length and the lookups cannot panic.
//! The lookup tables are generated from gguf-py by `scripts/gen_iq_tables.py`.

#[path = "iq_tables.rs"]
pub(crate) mod tables;

use super::for_each_block;
use crate::format::blocks::{
    f16_le, iq1m_scale, u16_at, u32_at, BlockIQ1_M, BlockIQ1_S, BlockIQ2_S, BlockIQ2_XS,
    BlockIQ2_XXS, BlockIQ3_S, BlockIQ3_XXS, BlockIQ4_NL, BlockIQ4_XS, QK4_NL, QK_K,
};
use tables::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS,
    KSIGNS_IQ2XS, KVALUES_IQ4NL,
};

/// ggml-common.h `IQ1S_DELTA` (IQ1_M uses it too; `IQ1M_DELTA` is equal and unused).
const IQ1S_DELTA: f32 = 0.125;

/// `x * (signs & kmask_iq2xs[j] ? -1.f : 1.f)`, written as a negation.
///
/// For every non-NaN `x` that is the product exactly. For a NaN `x` the
/// product's sign is not specified (Rust, like LLVM, leaves the sign of a
/// NaN result of arithmetic open): an optimized build turned the multiply
/// into a sign flip, a debug build kept the `mulss`, which leaves a NaN's
/// sign alone, so the two builds disagreed on NaN outputs. `-x` always flips
/// the sign bit, so every build (and the SIMD kernels) give the same bits.
#[inline]
fn sign(x: f32, signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -x
    } else {
        x
    }
}

/// Byte `j` of a 4-byte grid entry, as `((const uint8_t *)(grid + idx))[j]`
/// reads it on a little-endian machine (8-byte entries use `to_le_bytes`).
#[inline]
fn byte32(v: u32, j: usize) -> u8 {
    v.to_le_bytes()[j]
}

/// IQ2_XXS, 66 bytes per 256 elements (`format::blocks::BlockIQ2_XXS`).
///
/// Each 32-element group holds two u32: the first four grid indices (one byte
/// each), then four 7-bit sign indices and a 4-bit scale in the top bits.
pub fn dequantize_row_iq2_xxs(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ2_XXS, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let qs = &x.qs;
        for ib32 in 0..QK_K / 32 {
            // memcpy(aux32, x[i].qs + 4*ib32, 2*sizeof(uint32_t));
            let aux8 = &qs[8 * ib32..8 * ib32 + 4];
            let aux1 = u32_at(qs, 8 * ib32 + 4);
            let db = d * (0.5f32 + (aux1 >> 28) as f32) * 0.25f32;
            for l in 0..4 {
                let grid = IQ2XXS_GRID[aux8[l] as usize];
                let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                let y = &mut y[32 * ib32 + 8 * l..32 * ib32 + 8 * l + 8];
                for (j, (v, g)) in y.iter_mut().zip(grid.to_le_bytes()).enumerate() {
                    *v = sign(db * g as f32, signs, j);
                }
            }
        }
    });
}

/// IQ2_XS, 74 bytes per 256 elements (`format::blocks::BlockIQ2_XS`).
///
/// Each u16 of `qs` is a 9-bit grid index and a 7-bit sign index.
pub fn dequantize_row_iq2_xs(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ2_XS, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let (qs, scales) = (&x.qs, &x.scales);
        for ib32 in 0..QK_K / 32 {
            let db = [
                d * (0.5f32 + (scales[ib32] & 0xf) as f32) * 0.25f32,
                d * (0.5f32 + (scales[ib32] >> 4) as f32) * 0.25f32,
            ];
            for l in 0..4 {
                let q = u16_at(qs, 2 * (4 * ib32 + l));
                let grid = IQ2XS_GRID[(q & 511) as usize];
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                let y = &mut y[32 * ib32 + 8 * l..32 * ib32 + 8 * l + 8];
                for (j, (v, g)) in y.iter_mut().zip(grid.to_le_bytes()).enumerate() {
                    *v = sign(db[l / 2] * g as f32, signs, j);
                }
            }
        }
    });
}

/// IQ2_S, 82 bytes per 256 elements (`format::blocks::BlockIQ2_S`).
pub fn dequantize_row_iq2_s(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ2_S, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let (qs, signs) = x.qs.split_at(QK_K / 8);
        let (qh, scales) = (&x.qh, &x.scales);
        for ib32 in 0..QK_K / 32 {
            let db = [
                d * (0.5f32 + (scales[ib32] & 0xf) as f32) * 0.25f32,
                d * (0.5f32 + (scales[ib32] >> 4) as f32) * 0.25f32,
            ];
            for l in 0..4 {
                let dl = db[l / 2];
                // qs[l] | (qh[ib32] << (8-2*l) & 0x300)
                let idx =
                    qs[4 * ib32 + l] as usize | (((qh[ib32] as usize) << (8 - 2 * l)) & 0x300);
                let grid = IQ2S_GRID[idx];
                let s = signs[4 * ib32 + l];
                let y = &mut y[32 * ib32 + 8 * l..32 * ib32 + 8 * l + 8];
                for (j, (v, g)) in y.iter_mut().zip(grid.to_le_bytes()).enumerate() {
                    *v = sign(dl * g as f32, s, j);
                }
            }
        }
    });
}

/// IQ3_XXS, 98 bytes per 256 elements (`format::blocks::BlockIQ3_XXS`).
pub fn dequantize_row_iq3_xxs(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ3_XXS, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let (qs, scales_and_signs) = x.qs.split_at(QK_K / 4);
        for ib32 in 0..QK_K / 32 {
            let aux32 = u32_at(scales_and_signs, 4 * ib32);
            let db = d * (0.5f32 + (aux32 >> 28) as f32) * 0.5f32;
            let qs = &qs[8 * ib32..8 * ib32 + 8];
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[((aux32 >> (7 * l)) & 127) as usize];
                let grid1 = IQ3XXS_GRID[qs[2 * l] as usize];
                let grid2 = IQ3XXS_GRID[qs[2 * l + 1] as usize];
                let y = &mut y[32 * ib32 + 8 * l..32 * ib32 + 8 * l + 8];
                for j in 0..4 {
                    y[j] = sign(db * byte32(grid1, j) as f32, signs, j);
                    y[j + 4] = sign(db * byte32(grid2, j) as f32, signs, j + 4);
                }
            }
        }
    });
}

/// IQ3_S, 110 bytes per 256 elements (`format::blocks::BlockIQ3_S`).
pub fn dequantize_row_iq3_s(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ3_S, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let (qs_all, qh_all, signs_all, scales) = (&x.qs, &x.qh, &x.signs, &x.scales);
        let mut qs = 0usize;
        let mut qh = 0usize;
        let mut signs = 0usize;
        let mut out = 0usize;
        for ib32 in (0..QK_K / 32).step_by(2) {
            // d * (1 + 2*(scale & 0xf)): the int is converted, then multiplied.
            let db1 = d * (1 + 2 * (scales[ib32 / 2] & 0xf) as i32) as f32;
            let db2 = d * (1 + 2 * (scales[ib32 / 2] >> 4) as i32) as f32;
            for (db, h) in [(db1, qh_all[qh]), (db2, qh_all[qh + 1])] {
                let h = h as usize;
                for l in 0..4 {
                    let grid1 = IQ3S_GRID[qs_all[qs + 2 * l] as usize | ((h << (8 - 2 * l)) & 256)];
                    let grid2 =
                        IQ3S_GRID[qs_all[qs + 2 * l + 1] as usize | ((h << (7 - 2 * l)) & 256)];
                    let s = signs_all[signs + l];
                    let y = &mut y[out..out + 8];
                    for j in 0..4 {
                        y[j] = sign(db * byte32(grid1, j) as f32, s, j);
                        y[j + 4] = sign(db * byte32(grid2, j) as f32, s, j + 4);
                    }
                    out += 8;
                }
                qs += 8;
                signs += 4;
            }
            qh += 2;
        }
    });
}

/// IQ1_S, 50 bytes per 256 elements (`format::blocks::BlockIQ1_S`).
///
/// Each `qh` holds four 3-bit high index parts, a 3-bit scale (bits 12..15)
/// and the sign of the shift (bit 15).
pub fn dequantize_row_iq1_s(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ1_S, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        let (qs, qh_bytes) = (&x.qs, &x.qh);
        for ib in 0..QK_K / 32 {
            let qh = u16_at(qh_bytes, 2 * ib);
            let dl = d * (2 * ((qh >> 12) & 7) as i32 + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for l in 0..4 {
                let idx = qs[4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                let grid = IQ1S_GRID[idx];
                let y = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                for (v, g) in y.iter_mut().zip(grid.to_le_bytes()) {
                    // (const int8_t *)(iq1s_grid + idx): bytes read as int8
                    *v = dl * (g as i8 as f32 + delta);
                }
            }
        }
    });
}

/// IQ1_M, 56 bytes per 256 elements (`format::blocks::BlockIQ1_M`).
///
/// There is no `d` field: the f16 super-block scale is assembled from the top
/// nibbles of the four u16 words of `scales` (word 0 gives bits 0..3, word 3
/// bits 12..15). The other 12 bits of each word are four 3-bit block scales.
pub fn dequantize_row_iq1_m(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ1_M, y: &mut [f32; QK_K]| {
        let sc = [0, 2, 4, 6].map(|at| u16_at(&x.scales, at));
        let d = f16_le(iq1m_scale(&x.scales).to_le_bytes());

        let (qs, qh) = (&x.qs, &x.qh);
        for ib in 0..QK_K / 32 {
            let s = sc[ib / 2];
            let dl1 = d * (2 * ((s >> (6 * (ib % 2))) & 0x7) as i32 + 1) as f32;
            let dl2 = d * (2 * ((s >> (6 * (ib % 2) + 3)) & 0x7) as i32 + 1) as f32;

            let (q, h0, h1) = (
                &qs[4 * ib..4 * ib + 4],
                qh[2 * ib] as usize,
                qh[2 * ib + 1] as usize,
            );
            let idx = [
                q[0] as usize | ((h0 << 8) & 0x700),
                q[1] as usize | ((h0 << 4) & 0x700),
                q[2] as usize | ((h1 << 8) & 0x700),
                q[3] as usize | ((h1 << 4) & 0x700),
            ];
            let dlt = |b: usize| if b != 0 { -IQ1S_DELTA } else { IQ1S_DELTA };
            let delta = [
                dlt(h0 & 0x08),
                dlt(h0 & 0x80),
                dlt(h1 & 0x08),
                dlt(h1 & 0x80),
            ];
            for l in 0..4 {
                let dl = if l < 2 { dl1 } else { dl2 };
                let grid = IQ1S_GRID[idx[l]];
                let y = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                for (v, g) in y.iter_mut().zip(grid.to_le_bytes()) {
                    // (const int8_t *)(iq1s_grid + idx): bytes read as int8
                    *v = dl * (g as i8 as f32 + delta[l]);
                }
            }
        }
    });
}

/// IQ4_NL, 18 bytes per 32 elements (`format::blocks::BlockIQ4_NL`).
pub fn dequantize_row_iq4_nl(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ4_NL, y: &mut [f32; QK4_NL]| {
        let d = f16_le(x.d);
        let qs = &x.qs;
        for j in 0..QK4_NL / 2 {
            y[j] = d * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
            y[j + QK4_NL / 2] = d * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
        }
    });
}

/// The scale of IQ4_XS group `ib` (values `32 ib..32 ib + 32`) of `x`, whose
/// `d` is `d`: `d * (ls - 32)`, where `ls` is 6 bits, the low nibble from
/// `scales_l`, the top two bits from `scales_h`.
#[inline]
pub(crate) fn iq4_xs_group_scale(x: &BlockIQ4_XS, d: f32, ib: usize) -> f32 {
    let scales_h = u16::from_le_bytes(x.scales_h);
    let ls = ((x.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) as i32
        | (((scales_h >> (2 * ib)) & 3) as i32) << 4;
    d * (ls - 32) as f32
}

/// IQ4_XS, 136 bytes per 256 elements (`format::blocks::BlockIQ4_XS`):
/// group `ib` is `kvalues_iq4nl` times `iq4_xs_group_scale`.
pub fn dequantize_row_iq4_xs(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockIQ4_XS, y: &mut [f32; QK_K]| {
        let d = f16_le(x.d);
        for ib in 0..QK_K / 32 {
            let dl = iq4_xs_group_scale(x, d, ib);
            let qs = &x.qs[16 * ib..16 * ib + 16];
            let y = &mut y[32 * ib..32 * ib + 32];
            for j in 0..16 {
                y[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    });
}
