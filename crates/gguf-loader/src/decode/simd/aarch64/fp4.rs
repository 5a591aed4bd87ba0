//! NEON kernels for IQ4_NL, IQ4_XS, MXFP4 and NVFP4 (to f32 and fused to
//! f16): the counterparts of `x86_fp4`. Sixteen 4-bit codes are looked up at
//! once in the type's 16-entry table of signed bytes with one `tbl`
//! (`vqtbl1q_s8`), widened exactly to f32 and multiplied once by the scale
//! the scalar reference computes with its own code, so the f32 output is
//! bit-identical (see the parent module on exactness and on f16 rounding).
//!
//! Each kernel processes `min(src.len() / type_size, dst.len() / block_size)`
//! whole blocks (a `chunks_exact` zip) and touches nothing else.

use std::arch::aarch64::*;

use half::f16;

use super::legacy::{block_loop, cat, nibbles, QK};
use super::{both, i8x16_to_f32, load16, mul, splat_f16, store, Kernels, Out};
use crate::decode::fp4::{e8m0_to_fp32_half, ue4m3_to_fp32, KVALUES_MXFP4};
use crate::decode::iquants::iq4_xs_group_scale;
use crate::decode::iquants::tables::KVALUES_IQ4NL;
use crate::format::blocks::{
    as_blocks, f16_le, Block, BlockIQ4_NL, BlockIQ4_XS, BlockMXFP4, BlockNVFP4,
};
use crate::format::GgmlType;

/// The kernels for `ty`, where this module has some.
pub fn kernels(ty: GgmlType) -> Kernels {
    match ty {
        GgmlType::IQ4_NL => both(iq4_nl_f32, iq4_nl_f16),
        GgmlType::IQ4_XS => both(iq4_xs_f32, iq4_xs_f16),
        GgmlType::MXFP4 => both(mxfp4_f32, mxfp4_f16),
        GgmlType::NVFP4 => both(nvfp4_f32, nvfp4_f16),
        _ => Kernels::default(),
    }
}

neon_entry!(iq4_nl_f32, f32, iq4_nl::<f32>);
neon_entry!(iq4_nl_f16, f16, iq4_nl::<f16>);
neon_entry!(iq4_xs_f32, f32, iq4_xs::<f32>);
neon_entry!(iq4_xs_f16, f16, iq4_xs::<f16>);
neon_entry!(mxfp4_f32, f32, mxfp4::<f32>);
neon_entry!(mxfp4_f16, f16, mxfp4::<f16>);
neon_entry!(nvfp4_f32, f32, nvfp4::<f32>);
neon_entry!(nvfp4_f16, f16, nvfp4::<f16>);

block_loop!(iq4_nl, BlockIQ4_NL, block_iq4_nl);
block_loop!(iq4_xs, BlockIQ4_XS, groups group_iq4_xs);
block_loop!(mxfp4, BlockMXFP4, block_mxfp4);
block_loop!(nvfp4, BlockNVFP4, groups group_nvfp4);

/// A 16-entry table of signed bytes in one register.
#[inline]
#[target_feature(enable = "neon")]
fn table(t: &[i8; 16]) -> int8x16_t {
    // SAFETY: `t` is 16 readable bytes; `ld1 {v.16b}` needs no alignment.
    unsafe { vld1q_s8(t.as_ptr()) }
}

/// `v * d` for 32 signed bytes: `lo` holds values 0..16, scaled by `d_lo`,
/// `hi` values 16..32, scaled by `d_hi` (one rounded multiply each).
#[inline]
#[target_feature(enable = "neon")]
fn scale2(lo: int8x16_t, hi: int8x16_t, d_lo: float32x4_t, d_hi: float32x4_t) -> [float32x4_t; 8] {
    cat(mul(i8x16_to_f32(lo), d_lo), mul(i8x16_to_f32(hi), d_hi))
}

/// 32 values from 16 bytes of codes in ggml's usual order (value `j` the
/// low nibble of byte `j`, value `j + 16` its high nibble), all scaled by `d`.
#[inline]
#[target_feature(enable = "neon")]
fn split_halves(t: &[i8; 16], qs: &[u8], d: float32x4_t) -> [float32x4_t; 8] {
    let t = table(t);
    let (lo, hi) = nibbles(load16(qs, 0));
    scale2(vqtbl1q_s8(t, lo), vqtbl1q_s8(t, hi), d, d)
}

/// IQ4_NL block: `d * kvalues_iq4nl[code]`.
#[inline]
#[target_feature(enable = "neon")]
fn block_iq4_nl(x: &BlockIQ4_NL) -> [float32x4_t; 8] {
    split_halves(&KVALUES_IQ4NL, &x.qs, splat_f16(x.d))
}

/// IQ4_XS group `g` of 8: `kvalues_iq4nl[code]` times the group's scale.
#[inline]
#[target_feature(enable = "neon")]
fn group_iq4_xs(x: &BlockIQ4_XS, g: usize) -> [float32x4_t; 8] {
    let dl = iq4_xs_group_scale(x, f16_le(x.d), g);
    split_halves(&KVALUES_IQ4NL, &x.qs[16 * g..], vdupq_n_f32(dl))
}

/// MXFP4 block: `kvalues_mxfp4[code] * e8m0_to_fp32_half(e)`.
#[inline]
#[target_feature(enable = "neon")]
fn block_mxfp4(x: &BlockMXFP4) -> [float32x4_t; 8] {
    split_halves(&KVALUES_MXFP4, &x.qs, vdupq_n_f32(e8m0_to_fp32_half(x.e)))
}

/// NVFP4 group `g` of 2: sub-blocks `2g` and `2g + 1`, 16 values each from
/// 8 bytes of codes (value `j` the low nibble of byte `j`, value `j + 8` its
/// high nibble), times the sub-block's UE4M3 scale.
#[inline]
#[target_feature(enable = "neon")]
fn group_nvfp4(x: &BlockNVFP4, g: usize) -> [float32x4_t; 8] {
    let t = table(&KVALUES_MXFP4);
    let (lo, hi) = nibbles(load16(&x.qs, 16 * g));
    // Bytes 0..8 of `lo` then of `hi` are sub-block 2g; bytes 8..16, 2g + 1.
    let first = vcombine_u8(vget_low_u8(lo), vget_low_u8(hi));
    let second = vcombine_u8(vget_high_u8(lo), vget_high_u8(hi));
    let d0 = vdupq_n_f32(ue4m3_to_fp32(x.d[2 * g]));
    let d1 = vdupq_n_f32(ue4m3_to_fp32(x.d[2 * g + 1]));
    scale2(vqtbl1q_s8(t, first), vqtbl1q_s8(t, second), d0, d1)
}
