//! The i-quants: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M,
//! IQ4_NL and IQ4_XS.
//!
//! Each routine mirrors the scalar `dequantize_row_iq*` of ggml-quants.c
//! (llama.cpp vendored in llama-cpp-python 0.3.36) statement for statement,
//! including the order of float operations: Rust never contracts `a * b + c`
//! into a fused multiply-add, like C compiled without contraction, so the
//! results are bit-identical to ggml's.
//!
//! Every grid index is built from masked bit fields exactly as the C builds
//! it, so it is always below the table length and the lookups cannot panic.
//! The lookup tables are generated from gguf-py by `scripts/gen_iq_tables.py`.

#[path = "iq_tables.rs"]
mod tables;

use tables::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS,
    KSIGNS_IQ2XS, KVALUES_IQ4NL,
};

/// ggml's `QK_K`: elements in a super-block.
const QK_K: usize = 256;
/// ggml's `QK4_NL`: elements in an IQ4_NL block.
const QK4_NL: usize = 32;
/// ggml-common.h `IQ1S_DELTA` (IQ1_M uses it too; `IQ1M_DELTA` is equal and unused).
const IQ1S_DELTA: f32 = 0.125;

/// Bytes of one block of each type (`sizeof(block_iq*)`).
pub const IQ2_XXS_TYPE_SIZE: usize = 2 + QK_K / 4;
pub const IQ2_XS_TYPE_SIZE: usize = 2 + QK_K / 4 + QK_K / 32;
pub const IQ2_S_TYPE_SIZE: usize = 2 + QK_K / 4 + QK_K / 16;
pub const IQ3_XXS_TYPE_SIZE: usize = 2 + 3 * (QK_K / 8);
pub const IQ3_S_TYPE_SIZE: usize = 2 + 13 * (QK_K / 32) + QK_K / 64;
pub const IQ1_S_TYPE_SIZE: usize = 2 + QK_K / 8 + QK_K / 16;
pub const IQ1_M_TYPE_SIZE: usize = QK_K / 8 + QK_K / 16 + QK_K / 32;
pub const IQ4_NL_TYPE_SIZE: usize = 2 + QK4_NL / 2;
pub const IQ4_XS_TYPE_SIZE: usize = 2 + 2 + QK_K / 64 + QK_K / 2;

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

#[inline]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `(signs & kmask_iq2xs[j] ? -1.f : 1.f)`
#[inline]
fn sign(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

/// Byte `j` of a 4-byte grid entry, as `((const uint8_t *)(grid + idx))[j]`
/// reads it on a little-endian machine (8-byte entries use `to_le_bytes`).
#[inline]
fn byte32(v: u32, j: usize) -> u8 {
    v.to_le_bytes()[j]
}

/// IQ2_XXS, 66 bytes per 256 elements:
///
/// ```c
/// typedef struct {
///     ggml_half d;
///     uint16_t qs[QK_K/8];
/// } block_iq2_xxs;
/// ```
///
/// Each 32-element group holds two u32: the first four grid indices (one byte
/// each), then four 7-bit sign indices and a 4-bit scale in the top bits.
pub fn dequantize_row_iq2_xxs(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(IQ2_XXS_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_at(x, 0);
        let qs = &x[2..];
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
                    *v = db * g as f32 * sign(signs, j);
                }
            }
        }
    }
}

/// IQ2_XS, 74 bytes per 256 elements:
///
/// ```c
/// typedef struct {
///     ggml_half d;
///     uint16_t qs[QK_K/8];
///     uint8_t  scales[QK_K/32];
/// } block_iq2_xs;
/// ```
///
/// Each u16 of `qs` is a 9-bit grid index and a 7-bit sign index.
pub fn dequantize_row_iq2_xs(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(IQ2_XS_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_at(x, 0);
        let qs = &x[2..2 + QK_K / 4];
        let scales = &x[2 + QK_K / 4..];
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
                    *v = db[l / 2] * g as f32 * sign(signs, j);
                }
            }
        }
    }
}

/// IQ2_S, 82 bytes per 256 elements:
///
/// ```c
/// typedef struct {
///     ggml_half d;
///     uint8_t qs[QK_K/4];     // QK_K/8 grid index low bytes, then QK_K/8 sign bytes
///     uint8_t qh[QK_K/32];
///     uint8_t scales[QK_K/32];
/// } block_iq2_s;
/// ```
pub fn dequantize_row_iq2_s(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(IQ2_S_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_at(x, 0);
        let qs = &x[2..2 + QK_K / 8];
        let signs = &x[2 + QK_K / 8..2 + QK_K / 4];
        let qh = &x[2 + QK_K / 4..2 + QK_K / 4 + QK_K / 32];
        let scales = &x[2 + QK_K / 4 + QK_K / 32..];
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
                    *v = dl * g as f32 * sign(s, j);
                }
            }
        }
    }
}

/// IQ3_XXS, 98 bytes per 256 elements:
///
/// ```c
/// typedef struct {
///     ggml_half d;
///     uint8_t qs[3*QK_K/8];   // QK_K/4 grid indices, then QK_K/32 u32 scales_and_signs
/// } block_iq3_xxs;
/// ```
pub fn dequantize_row_iq3_xxs(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(IQ3_XXS_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_at(x, 0);
        let qs = &x[2..2 + QK_K / 4];
        let scales_and_signs = &x[2 + QK_K / 4..];
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
                    y[j] = db * byte32(grid1, j) as f32 * sign(signs, j);
                    y[j + 4] = db * byte32(grid2, j) as f32 * sign(signs, j + 4);
                }
            }
        }
    }
}

/// IQ3_S, 110 bytes per 256 elements:
///
/// ```c
/// typedef struct {
///     ggml_half d;
///     uint8_t qs[QK_K/4];
///     uint8_t qh[QK_K/32];
///     uint8_t signs[QK_K/8];
///     uint8_t scales[IQ3S_N_SCALE];   // QK_K/64
/// } block_iq3_s;
/// ```
pub fn dequantize_row_iq3_s(src: &[u8], dst: &mut [f32]) {
    const QS: usize = 2;
    const QH: usize = QS + QK_K / 4;
    const SIGNS: usize = QH + QK_K / 32;
    const SCALES: usize = SIGNS + QK_K / 8;
    for (x, y) in src
        .chunks_exact(IQ3_S_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_at(x, 0);
        let qs_all = &x[QS..QH];
        let qh_all = &x[QH..SIGNS];
        let signs_all = &x[SIGNS..SCALES];
        let scales = &x[SCALES..];
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
                        y[j] = db * byte32(grid1, j) as f32 * sign(s, j);
                        y[j + 4] = db * byte32(grid2, j) as f32 * sign(s, j + 4);
                    }
                    out += 8;
                }
                qs += 8;
                signs += 4;
            }
            qh += 2;
        }
    }
}

/// IQ1_S, 50 bytes per 256 elements:
///
/// ```c
/// typedef struct {
///     ggml_half d;
///     uint8_t  qs[QK_K/8];
///     uint16_t qh[QK_K/32];
/// } block_iq1_s;
/// ```
///
/// Each `qh` holds four 3-bit high index parts, a 3-bit scale (bits 12..15)
/// and the sign of the shift (bit 15).
pub fn dequantize_row_iq1_s(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(IQ1_S_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_at(x, 0);
        let qs = &x[2..2 + QK_K / 8];
        let qh_bytes = &x[2 + QK_K / 8..];
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
    }
}

/// IQ1_M, 56 bytes per 256 elements:
///
/// ```c
/// typedef struct {
///     uint8_t  qs[QK_K/8];      // grid index, low 8 bits
///     uint8_t  qh[QK_K/16];     // grid index, high 3 bits + grid shift bit (for two groups of 8)
///     uint8_t  scales[QK_K/32]; // 3-bit block scales (4-bit if QK_K == 64)
/// } block_iq1_m;
/// ```
///
/// There is no `d` field: the f16 super-block scale is assembled from the top
/// nibbles of the four u16 words of `scales` (word 0 gives bits 0..3, word 3
/// bits 12..15). The other 12 bits of each word are four 3-bit block scales.
pub fn dequantize_row_iq1_m(src: &[u8], dst: &mut [f32]) {
    const QH: usize = QK_K / 8;
    const SC: usize = QH + QK_K / 16;
    for (x, y) in src
        .chunks_exact(IQ1_M_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let sc = [
            u16_at(x, SC),
            u16_at(x, SC + 2),
            u16_at(x, SC + 4),
            u16_at(x, SC + 6),
        ];
        let scale =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let d = half::f16::from_bits(scale).to_f32();

        let qs = &x[..QH];
        let qh = &x[QH..SC];
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
    }
}

/// IQ4_NL, 18 bytes per 32 elements:
///
/// ```c
/// typedef struct {
///     ggml_half d;
///     uint8_t qs[QK4_NL/2];
/// } block_iq4_nl;
/// ```
pub fn dequantize_row_iq4_nl(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src
        .chunks_exact(IQ4_NL_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK4_NL))
    {
        let d = f16_at(x, 0);
        let qs = &x[2..];
        for j in 0..QK4_NL / 2 {
            y[j] = d * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
            y[j + QK4_NL / 2] = d * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
        }
    }
}

/// IQ4_XS, 136 bytes per 256 elements:
///
/// ```c
/// typedef struct {
///     ggml_half d;
///     uint16_t scales_h;
///     uint8_t  scales_l[QK_K/64];
///     uint8_t  qs[QK_K/2];
/// } block_iq4_xs;
/// ```
///
/// Block scale `ib` is 6 bits: low nibble from `scales_l`, top two bits from
/// `scales_h`, biased by 32.
pub fn dequantize_row_iq4_xs(src: &[u8], dst: &mut [f32]) {
    const SL: usize = 4;
    const QS: usize = SL + QK_K / 64;
    for (x, y) in src
        .chunks_exact(IQ4_XS_TYPE_SIZE)
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = f16_at(x, 0);
        let scales_h = u16_at(x, 2);
        let scales_l = &x[SL..QS];
        let qs_all = &x[QS..];
        for ib in 0..QK_K / 32 {
            let ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) as i32
                | (((scales_h >> (2 * ib)) & 3) as i32) << 4;
            let dl = d * (ls - 32) as f32;
            let qs = &qs_all[16 * ib..16 * ib + 16];
            let y = &mut y[32 * ib..32 * ib + 32];
            for j in 0..16 {
                y[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_sizes_match_ggml() {
        assert_eq!(IQ2_XXS_TYPE_SIZE, 66);
        assert_eq!(IQ2_XS_TYPE_SIZE, 74);
        assert_eq!(IQ2_S_TYPE_SIZE, 82);
        assert_eq!(IQ3_XXS_TYPE_SIZE, 98);
        assert_eq!(IQ3_S_TYPE_SIZE, 110);
        assert_eq!(IQ1_S_TYPE_SIZE, 50);
        assert_eq!(IQ1_M_TYPE_SIZE, 56);
        assert_eq!(IQ4_NL_TYPE_SIZE, 18);
        assert_eq!(IQ4_XS_TYPE_SIZE, 136);
    }
}
