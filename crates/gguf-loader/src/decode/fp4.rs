//! The 4-bit float (E2M1) block types MXFP4 and NVFP4.
//!
//! Both store two E2M1 codes per byte and decode them through ggml's
//! `kvalues_mxfp4` table, which holds the E2M1 values doubled
//! (`ggml-common.h`):
//!
//! ```c
//! GGML_TABLE_BEGIN(int8_t, kvalues_fp4, 16)
//!     0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12,
//! GGML_TABLE_END()
//! #define kvalues_mxfp4 kvalues_fp4
//! ```
//!
//! so the scale conversions return half the scale (`ggml-impl.h`:
//! `ggml_e8m0_to_fp32_half`, `ggml_ue4m3_to_fp32`). Each value is
//! `(float) kvalue * d`, as in `dequantize_row_mxfp4` / `dequantize_row_nvfp4`
//! of `ggml-quants.c`.

use super::for_each_block;
use crate::format::blocks::{BlockMXFP4, BlockNVFP4, QK_MXFP4, QK_NVFP4, QK_NVFP4_SUB};

/// E2M1 code -> doubled value (`kvalues_mxfp4`).
pub(crate) const KVALUES_MXFP4: [i8; 16] =
    [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

#[inline]
fn kvalue(code: u8) -> f32 {
    f32::from(KVALUES_MXFP4[usize::from(code & 0x0F)])
}

/// ggml's `ggml_e8m0_to_fp32_half`: `2^(x - 128)` built from bits, with the
/// two smallest exponents as denormals (`0x00200000 << x`). Like ggml, 0xFF is
/// not special-cased (it yields 2^127, not NaN).
#[inline]
pub fn e8m0_to_fp32_half(x: u8) -> f32 {
    let bits = if x < 2 {
        0x0020_0000u32 << x
    } else {
        u32::from(x - 1) << 23
    };
    f32::from_bits(bits)
}

/// ggml's `ggml_ue4m3_to_fp32`: unsigned E4M3 (bias 7, 3 mantissa bits),
/// halved. 0x00 and 0x7F give 0; the top bit is ignored (`(x >> 3) & 0xF`).
#[inline]
pub fn ue4m3_to_fp32(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let exp = i32::from((x >> 3) & 0xF);
    let man = i32::from(x & 0x7);
    // ldexpf(man, -9) and ldexpf(1 + man/8, exp - 7) are exact: both are
    // small powers of two times a 4-bit significand, well inside f32 range.
    let raw = if exp == 0 {
        man as f32 * exp2i(-9)
    } else {
        (1.0f32 + man as f32 / 8.0f32) * exp2i(exp - 7)
    };
    raw * 0.5f32
}

/// 2^e for the small exponents used above (normal f32 range only).
#[inline]
fn exp2i(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

/// MXFP4: one E8M0 scale per 32 values; `y[j] = kv[lo4(qs[j])] * d`,
/// `y[j + 16] = kv[hi4(qs[j])] * d` with `d = e8m0_to_fp32_half(e)`.
pub fn dequantize_row_mxfp4(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockMXFP4, y: &mut [f32; QK_MXFP4]| {
        let d = e8m0_to_fp32_half(x.e);
        let (lo, hi) = y.split_at_mut(QK_MXFP4 / 2);
        for ((q, y0), y1) in x.qs.iter().zip(lo).zip(hi) {
            *y0 = kvalue(q & 0x0F) * d;
            *y1 = kvalue(q >> 4) * d;
        }
    });
}

/// NVFP4: four 16-value sub-blocks, each with a UE4M3 scale; within sub-block
/// `s`, `y[j] = kv[lo4(qs[8s + j])] * d[s]` and `y[j + 8]` the high nibble.
pub fn dequantize_row_nvfp4(src: &[u8], dst: &mut [f32]) {
    for_each_block(src, dst, |x: &BlockNVFP4, y: &mut [f32; QK_NVFP4]| {
        for ((sc, qsub), ysub) in
            x.d.iter()
                .zip(x.qs.chunks_exact(QK_NVFP4_SUB / 2))
                .zip(y.chunks_exact_mut(QK_NVFP4_SUB))
        {
            let d = ue4m3_to_fp32(*sc);
            let (lo, hi) = ysub.split_at_mut(QK_NVFP4_SUB / 2);
            for ((q, y0), y1) in qsub.iter().zip(lo).zip(hi) {
                *y0 = kvalue(q & 0x0F) * d;
                *y1 = kvalue(q >> 4) * d;
            }
        }
    });
}
