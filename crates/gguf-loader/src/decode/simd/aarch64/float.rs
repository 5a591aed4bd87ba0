//! NEON float conversions, the counterparts of `x86_float`: F32 → f16 fused
//! (`fcvtn`, round to nearest-even as `half::f16::from_f32`), and f32 → bf16
//! for a slice, rounded to nearest-even exactly as `half::bf16::from_f32`,
//! NaNs included. F16 → f32 and BF16 → f32 / f16 live in `legacy`.

use std::arch::aarch64::*;

use half::{bf16, f16};

use super::{load16, store_f16, Kernels};
use crate::format::GgmlType;

/// The kernels for `ty`, where this module has some. F32 → f32 is a plain
/// copy, done before any kernel is asked for.
pub fn kernels(ty: GgmlType) -> Kernels {
    match ty {
        GgmlType::F32 => Kernels {
            f16: Some(f32_f16),
            ..Kernels::default()
        },
        _ => Kernels::default(),
    }
}

neon_entry!(f32_f16, f16, f32_f16_neon);

/// F32 → f16, 8 at a time, the tail by `half::f16::from_f32`; converts
/// `min(src.len() / 4, dst.len())` values.
#[target_feature(enable = "neon")]
fn f32_f16_neon(src: &[u8], dst: &mut [f16]) {
    let n = (src.len() / 4).min(dst.len());
    let (src, dst) = (&src[..4 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(32);
    let mut d = dst.chunks_exact_mut(8);
    for (b, y) in (&mut s).zip(&mut d) {
        let lo = vreinterpretq_f32_u8(load16(b, 0));
        let hi = vreinterpretq_f32_u8(load16(b, 16));
        store_f16(y, [lo, hi]);
    }
    for (b, y) in s.remainder().chunks_exact(4).zip(d.into_remainder()) {
        *y = f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    }
}

/// The bf16 bits of four f32s (given as their bits): NaNs keep their top
/// bits with the quiet bit set, everything else is rounded to nearest-even
/// (`bits + 0x7FFF + lsb`, then the top half), as `half::bf16::from_f32`.
#[inline]
#[target_feature(enable = "neon")]
fn bf16_bits(x: uint32x4_t) -> uint16x4_t {
    let lsb = vandq_u32(vshrq_n_u32::<16>(x), vdupq_n_u32(1));
    let rounded = vaddq_u32(x, vaddq_u32(lsb, vdupq_n_u32(0x7FFF)));
    let quiet = vorrq_u32(x, vdupq_n_u32(0x0040_0000));
    let magnitude = vandq_u32(x, vdupq_n_u32(0x7FFF_FFFF));
    let nan = vcgtq_u32(magnitude, vdupq_n_u32(0x7F80_0000));
    vshrn_n_u32::<16>(vbslq_u32(nan, quiet, rounded))
}

/// f32 → bf16, 8 at a time, the tail by `half::bf16::from_f32`.
#[target_feature(enable = "neon")]
fn f32_bf16_neon(src: &[f32], dst: &mut [bf16]) {
    let n = src.len().min(dst.len());
    let mut s = src[..n].chunks_exact(8);
    let mut d = dst[..n].chunks_exact_mut(8);
    for (x, y) in (&mut s).zip(&mut d) {
        let x: &[f32; 8] = x.try_into().expect("8 inputs");
        let y: &mut [bf16; 8] = y.try_into().expect("8 outputs");
        // SAFETY: `x` holds 8 f32s (two `ld1 {v.4s}`, f32 alignment), `y`
        // 8 bf16s (one `st1 {v.8h}`, u16 alignment: bf16 is a u16).
        unsafe {
            let a = vld1q_u32(x.as_ptr().cast());
            let b = vld1q_u32(x.as_ptr().add(4).cast());
            vst1q_u16(
                y.as_mut_ptr().cast(),
                vcombine_u16(bf16_bits(a), bf16_bits(b)),
            );
        }
    }
    for (x, y) in s.remainder().iter().zip(d.into_remainder()) {
        *y = bf16::from_f32(*x);
    }
}

/// f32 → bf16 for `min(src.len(), dst.len())` values.
pub fn f32_to_bf16(src: &[f32], dst: &mut [bf16]) {
    // SAFETY: `f32_bf16_neon` only requires NEON, which every aarch64 CPU
    // has: the aarch64 targets enable it for all code.
    unsafe { f32_bf16_neon(src, dst) }
}
