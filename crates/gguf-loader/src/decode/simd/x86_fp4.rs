//! x86-64 AVX2 (+F16C) kernels for the types whose 4-bit codes index a
//! 16-entry table of small integers: IQ4_NL and IQ4_XS (`kvalues_iq4nl`),
//! MXFP4 and NVFP4 (`kvalues_mxfp4`, the E2M1 values doubled), to f32 and
//! fused to f16 and bf16.
//!
//! The table fits one 16-byte register, so 16 codes are looked up at once
//! with a byte shuffle (`pshufb`), widened exactly to f32 and multiplied once
//! by their scale. Each scale is computed by the scalar reference's own code
//! (`f16_le`, `iq4_xs_group_scale`, `e8m0_to_fp32_half`, `ue4m3_to_fp32`), and
//! the product is the reference's one rounded multiply, so the f32 output is
//! bit-identical; the fused f16 output rounds it with F16C's
//! round-to-nearest-even `vcvtps2ph`, as `half::f16::from_f32` does, and
//! the fused bf16 output as `half::bf16::from_f32` does.
//!
//! The loops are `x86_legacy`'s (`block_kernels!`): each block is decoded as
//! groups of 32 values, and each kernel handles the
//! `min(src.len() / type_size, dst.len() / block_size)` whole blocks that fit
//! both slices and touches nothing else.

use std::arch::x86_64::*;

use half::{bf16, f16};

use super::x86_legacy::{
    block_kernels, i8x16_to_ps, load16, nibbles, quant_kernels, splat_f16, Group32, QK,
};
use super::Kernels;
use crate::decode::fp4::{e8m0_to_fp32_half, ue4m3_to_fp32, KVALUES_MXFP4};
use crate::decode::iquants::iq4_xs_group_scale;
use crate::decode::iquants::tables::KVALUES_IQ4NL;
use crate::format::blocks::{
    as_blocks, f16_le, Block, BlockIQ4_NL, BlockIQ4_XS, BlockMXFP4, BlockNVFP4,
};
use crate::format::GgmlType;

/// The AVX2 kernels for `ty`, where this CPU supports them.
pub fn kernels(ty: GgmlType) -> Kernels {
    if !super::avx2() {
        return Kernels::default();
    }
    match ty {
        GgmlType::IQ4_NL => quant_kernels!(iq4_nl),
        GgmlType::IQ4_XS => quant_kernels!(iq4_xs),
        GgmlType::MXFP4 => quant_kernels!(mxfp4),
        GgmlType::NVFP4 => quant_kernels!(nvfp4),
        _ => Kernels::default(),
    }
}

/// A 16-entry table of signed bytes in one register.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn table(t: &[i8; 16]) -> __m128i {
    // SAFETY: `t` is 16 readable bytes; `_mm_loadu_si128` needs no alignment.
    unsafe { _mm_loadu_si128(t.as_ptr().cast()) }
}

/// The table entries of 16 codes (each 0..16), as signed bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn lookup(t: __m128i, codes: __m128i) -> __m128i {
    _mm_shuffle_epi8(t, codes)
}

/// `v * d` for 32 signed bytes: `lo` holds values 0..16, scaled by `d_lo`,
/// `hi` values 16..32, scaled by `d_hi` (one rounded multiply each).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn scale2(lo: __m128i, hi: __m128i, d_lo: __m256, d_hi: __m256) -> [__m256; 4] {
    let (a0, a1) = i8x16_to_ps(lo);
    let (b0, b1) = i8x16_to_ps(hi);
    [
        _mm256_mul_ps(a0, d_lo),
        _mm256_mul_ps(a1, d_lo),
        _mm256_mul_ps(b0, d_hi),
        _mm256_mul_ps(b1, d_hi),
    ]
}

/// 32 values from 16 bytes of codes in ggml's usual order (value `j` the
/// low nibble of byte `j`, value `j + 16` its high nibble), all scaled by `d`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn split_halves(t: &[i8; 16], qs: &[u8], d: __m256) -> [__m256; 4] {
    let t = table(t);
    let (lo, hi) = nibbles(load16(qs, 0));
    scale2(lookup(t, lo), lookup(t, hi), d, d)
}

/// IQ4_NL block: `d * kvalues_iq4nl[code]`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn block_iq4_nl(x: &BlockIQ4_NL) -> [__m256; 4] {
    split_halves(&KVALUES_IQ4NL, &x.qs, splat_f16(x.d))
}

/// IQ4_XS group `g` of 8: `kvalues_iq4nl[code]` times the group's scale.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn group_iq4_xs(x: &BlockIQ4_XS, g: usize) -> [__m256; 4] {
    let dl = iq4_xs_group_scale(x, f16_le(x.d), g);
    split_halves(&KVALUES_IQ4NL, &x.qs[16 * g..], _mm256_set1_ps(dl))
}

/// MXFP4 block: `kvalues_mxfp4[code] * e8m0_to_fp32_half(e)`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn block_mxfp4(x: &BlockMXFP4) -> [__m256; 4] {
    let d = _mm256_set1_ps(e8m0_to_fp32_half(x.e));
    split_halves(&KVALUES_MXFP4, &x.qs, d)
}

/// NVFP4 group `g` of 2: sub-blocks `2g` and `2g + 1`, 16 values each from
/// 8 bytes of codes (value `j` the low nibble of byte `j`, value `j + 8` its
/// high nibble), times the sub-block's UE4M3 scale.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn group_nvfp4(x: &BlockNVFP4, g: usize) -> [__m256; 4] {
    let t = table(&KVALUES_MXFP4);
    let (lo, hi) = nibbles(load16(&x.qs, 16 * g));
    // Bytes 0..8 of `lo` then of `hi` are sub-block 2g; bytes 8..16, 2g + 1.
    let first = lookup(t, _mm_unpacklo_epi64(lo, hi));
    let second = lookup(t, _mm_unpackhi_epi64(lo, hi));
    let d0 = _mm256_set1_ps(ue4m3_to_fp32(x.d[2 * g]));
    let d1 = _mm256_set1_ps(ue4m3_to_fp32(x.d[2 * g + 1]));
    scale2(first, second, d0, d1)
}

block_kernels!(iq4_nl, BlockIQ4_NL, block_iq4_nl);
block_kernels!(iq4_xs, BlockIQ4_XS, groups group_iq4_xs);
block_kernels!(mxfp4, BlockMXFP4, block_mxfp4);
block_kernels!(nvfp4, BlockNVFP4, groups group_nvfp4);
