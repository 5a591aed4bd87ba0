//! NEON kernels for the i-quants with grids (IQ2_XXS, IQ2_XS, IQ2_S,
//! IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) to f32 and fused to f16: the counterparts
//! of `x86_iquants`.
//!
//! [`crate::decode::simd::iq_groups`] unpacks each block into groups of
//! eight grid bytes with their scale and negation mask or shift; here each
//! group is widened to f32 (exact) and scaled with the reference's float
//! operations: `scale * q` with the sign flipped where the mask says (for a
//! non-NaN scale by negating the grid bytes first, which gives the same
//! bits; for a NaN scale by negating the product, as the reference does),
//! or `scale * (q + delta)` as an add then a multiply (never an `fmla`). See
//! the parent module on exactness.
//!
//! Every kernel handles `min(src.len() / type_size, dst.len() / 256)` whole
//! blocks and ignores the rest of both slices.

use std::arch::aarch64::*;

use half::f16;

use super::{both, store, Kernels, Out};
use crate::decode::simd::iq_groups::{self, IqBlock, Tables, GROUPS};
use crate::format::blocks::{as_blocks, QK_K};
use crate::format::GgmlType;

/// The kernels for `ty`, where this module has some.
pub fn kernels(ty: GgmlType) -> Kernels {
    iq_groups::kernels::<Neon>(ty)
}

/// The NEON kernels.
struct Neon;

impl Tables for Neon {
    fn table<B: IqBlock>() -> Kernels {
        both(kernel::<B, f32>, kernel::<B, f16>)
    }
}

/// The safe kernel around [`blocks`].
fn kernel<B: IqBlock, T: Out>(src: &[u8], dst: &mut [T]) {
    // SAFETY: `blocks` only requires NEON, which every aarch64 CPU has: the
    // aarch64 targets enable it for all code.
    unsafe { blocks::<B, T>(src, dst) }
}

/// Eight signed bytes widened exactly to f32: elements 0..4, then 4..8.
#[inline]
#[target_feature(enable = "neon")]
fn i8x8_to_f32(q: int8x8_t) -> [float32x4_t; 2] {
    let w = vmovl_s8(q);
    [
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(w))),
        vcvtq_f32_s32(vmovl_high_s16(w)),
    ]
}

/// Decodes the whole blocks of `src` that fit `dst`.
#[target_feature(enable = "neon")]
fn blocks<B: IqBlock, T: Out>(src: &[u8], dst: &mut [T]) {
    for (x, y) in as_blocks::<B>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
        x.groups(|k, g| {
            let (grid, scale) = (vcreate_s8(g.grid), vdupq_n_f32(g.scale));
            let v = if B::SHIFTED {
                let delta = vdupq_n_f32(g.delta);
                i8x8_to_f32(grid).map(|q| vmulq_f32(scale, vaddq_f32(q, delta)))
            } else if g.scale.is_nan() {
                // The reference's negation flips a NaN's sign too: negate
                // the products where `neg` has 0xFF bytes.
                let m = vmovl_s8(vcreate_s8(g.neg));
                let m = [vmovl_s16(vget_low_s16(m)), vmovl_high_s16(m)];
                let p = i8x8_to_f32(grid).map(|q| vmulq_f32(scale, q));
                [0, 1].map(|i| vbslq_f32(vreinterpretq_u32_s32(m[i]), vnegq_f32(p[i]), p[i]))
            } else {
                // The grid bytes negated where `neg` is 0xFF: for a non-NaN
                // scale, `scale * -g` is `-(scale * g)`.
                let q = vbsl_s8(vcreate_u8(g.neg), vneg_s8(grid), grid);
                i8x8_to_f32(q).map(|q| vmulq_f32(scale, q))
            };
            store(&mut y[8 * (k % GROUPS)..], v);
        });
    }
}
