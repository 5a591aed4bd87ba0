//! aarch64 NEON kernels: the legacy types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0),
//! the K-quants (Q2_K to Q6_K), the 1- and 2-bit types (TQ1_0, TQ2_0,
//! Q1_0, Q2_0), the i-quant grid types (IQ1_S to IQ3_S) and the
//! 16-entry-table types (IQ4_NL, IQ4_XS, MXFP4, NVFP4)
//! to f32 and fused to f16, plus F16 → f32, BF16 → f32 / f16, F32 → f16
//! and f32 → bf16.
//!
//! NEON (Advanced SIMD) is part of every aarch64 target Rust supports, so
//! there is no run-time detection: the kernels are always handed out.
//!
//! Exactness, as for the x86 kernels: each value is computed with the same
//! f32 operations, in the same order, as the scalar reference (exact int →
//! f32 conversion with `scvtf`/`ucvtf`, `vmulq_f32` and then a separate
//! `vaddq_f32`/`vsubq_f32`; never a fused `fmla`/`fmls`), so the f32 output
//! is bit-identical. The fused f16 output rounds those f32 values with
//! `fcvtn`/`fcvtn2`, which round as FPCR says: round-to-nearest-even with
//! no flush-to-zero and IEEE (not "alternative") half precision, the state
//! Linux starts threads in and Rust requires (changing FPCR is undefined
//! behaviour in Rust). That is the result of `half::f16::from_f32`,
//! including infinities, subnormals and overflow to infinity; NaNs stay NaN.
//!
//! The f16 ↔ f32 vector conversions are written as inline `asm!`, since
//! Rust's `float16x4_t` intrinsics are not stable; everything else uses the
//! stable `core::arch::aarch64` intrinsics. Those are `#[target_feature(enable
//! = "neon")]` functions, which Rust lets safe code call only from functions
//! with the same attribute, so the helpers and loops carry it too and each
//! kernel handed out is a small safe wrapper (`neon_entry!`) around its loop.

use std::arch::aarch64::*;
use std::arch::asm;

use half::f16;

use super::{F16Kernel, F32Kernel, Kernels};
use crate::format::blocks::Half;
use crate::format::GgmlType;

/// The NEON kernel tables, one per family, asked in turn.
const FAMILIES: [fn(GgmlType) -> Kernels; 6] = [
    legacy::kernels,
    fp4::kernels,
    float::kernels,
    kquants::kernels,
    ternary::kernels,
    iquants::kernels,
];

/// The NEON kernels for `ty` (all [`Kernels`] fields not set here stay
/// `None`).
pub fn kernels(ty: GgmlType) -> Kernels {
    FAMILIES
        .iter()
        .map(|f| f(ty))
        .find(|k| k.f32.is_some() || k.f16.is_some())
        .unwrap_or_default()
}

/// Both kernels of a type; the streaming variants (x86 only) stay `None`.
fn both(f32: F32Kernel, f16: F16Kernel) -> Kernels {
    Kernels {
        f32: Some(f32),
        f16: Some(f16),
        ..Kernels::default()
    }
}

/// Defines `fn $name(src: &[u8], dst: &mut [$out])`, a safe kernel (of the
/// `Kernels` pointer types) running the NEON routine `$inner`.
macro_rules! neon_entry {
    ($name:ident, $out:ty, $inner:path) => {
        fn $name(src: &[u8], dst: &mut [$out]) {
            // SAFETY: `$inner` only requires NEON, which every aarch64 CPU
            // has: the aarch64 targets enable it for all code.
            unsafe { $inner(src, dst) }
        }
    };
}

// After the macro, so that it is in scope there.
mod float;
mod fp4;
mod iquants;
mod kquants;
mod legacy;
mod ternary;

pub use float::f32_to_bf16;

/// The kernels' element types: each routine writes through [`store`], which
/// stores f32 lanes as f32 or rounded to f16.
trait Out: Sized {
    fn slice(y: &mut [Self]) -> OutSlice<'_>;
}

/// An output slice of either element type.
enum OutSlice<'a> {
    F32(&'a mut [f32]),
    F16(&'a mut [f16]),
}

impl Out for f32 {
    #[inline(always)]
    fn slice(y: &mut [f32]) -> OutSlice<'_> {
        OutSlice::F32(y)
    }
}

impl Out for f16 {
    #[inline(always)]
    fn slice(y: &mut [f16]) -> OutSlice<'_> {
        OutSlice::F16(y)
    }
}

/// Stores the `4 * N` lanes of `v` as `y[0..4 * N]`: as they are for f32,
/// rounded to nearest-even for f16 (`N` even). Panics if `y` is shorter.
#[inline]
#[target_feature(enable = "neon")]
fn store<T: Out, const N: usize>(y: &mut [T], v: [float32x4_t; N]) {
    match T::slice(y) {
        OutSlice::F32(y) => store_f32(y, v),
        OutSlice::F16(y) => store_f16(y, v),
    }
}

/// Stores `v` as `y[0..4 * N]`.
#[inline]
#[target_feature(enable = "neon")]
fn store_f32<const N: usize>(y: &mut [f32], v: [float32x4_t; N]) {
    let y = &mut y[..4 * N];
    let p = y.as_mut_ptr();
    for (i, v) in v.into_iter().enumerate() {
        // SAFETY: `y` holds 4N f32s, so p[4i..4i + 4] is in bounds for
        // i < N; `st1 {v.4s}` needs only f32 alignment, which `y` has.
        unsafe { vst1q_f32(p.add(4 * i), v) };
    }
}

/// Stores `v` rounded to f16 (nearest-even) as `y[0..4 * N]`; `N` is even.
#[inline]
#[target_feature(enable = "neon")]
fn store_f16<const N: usize>(y: &mut [f16], v: [float32x4_t; N]) {
    const { assert!(N.is_multiple_of(2)) };
    let y = &mut y[..4 * N];
    let p = y.as_mut_ptr().cast::<u16>();
    for i in 0..N / 2 {
        let h = f32x8_to_f16(v[2 * i], v[2 * i + 1]);
        // SAFETY: `y` holds 4N f16s (2 bytes each, the layout of u16), so
        // p[8i..8i + 8] is in bounds for i < N / 2; `st1 {v.8h}` needs only
        // u16 alignment, which `y` has.
        unsafe { vst1q_u16(p.add(8 * i), h) };
    }
}

/// Four lanes of the f16 `h`, widened exactly (with `fcvtl`, the same value
/// as `half::f16::to_f32`, NaNs included: checked for every bit pattern by
/// the test below).
#[inline]
#[target_feature(enable = "neon")]
fn splat_f16(h: Half) -> float32x4_t {
    f16x4_to_f32(vdup_n_u16(u16::from_le_bytes(h)))
}

/// Loads the 16 bytes at `b[off..off + 16]`.
#[inline]
#[target_feature(enable = "neon")]
fn load16(b: &[u8], off: usize) -> uint8x16_t {
    let s: &[u8; 16] = b[off..off + 16].try_into().expect("16 bytes");
    // SAFETY: `s` is 16 readable bytes; `ld1 {v.16b}` needs no alignment.
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// `v[i] * d` for every vector (the reference's `q as f32 * d` or
/// `d * q`: one rounded multiply).
#[inline]
#[target_feature(enable = "neon")]
fn mul<const N: usize>(mut v: [float32x4_t; N], d: float32x4_t) -> [float32x4_t; N] {
    for x in &mut v {
        *x = vmulq_f32(*x, d);
    }
    v
}

/// Widens 16 signed bytes to four f32 vectors (elements 0..4, .., 12..16),
/// exactly.
#[inline]
#[target_feature(enable = "neon")]
fn i8x16_to_f32(q: int8x16_t) -> [float32x4_t; 4] {
    let lo = vmovl_s8(vget_low_s8(q));
    let hi = vmovl_high_s8(q);
    [
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
        vcvtq_f32_s32(vmovl_high_s16(lo)),
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
        vcvtq_f32_s32(vmovl_high_s16(hi)),
    ]
}

/// Widens 16 unsigned bytes to four f32 vectors, exactly.
#[inline]
#[target_feature(enable = "neon")]
fn u8x16_to_f32(q: uint8x16_t) -> [float32x4_t; 4] {
    let lo = vmovl_u8(vget_low_u8(q));
    let hi = vmovl_high_u8(q);
    [
        vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))),
        vcvtq_f32_u32(vmovl_high_u16(lo)),
        vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))),
        vcvtq_f32_u32(vmovl_high_u16(hi)),
    ]
}

/// Four f16s (as bits) widened exactly to f32 (`fcvtl`).
#[inline]
fn f16x4_to_f32(h: uint16x4_t) -> float32x4_t {
    let f: float32x4_t;
    // SAFETY: one register-only conversion (base Advanced SIMD, present on
    // every aarch64 CPU); no memory, stack or flags are touched.
    unsafe {
        asm!(
            "fcvtl {f:v}.4s, {h:v}.4h",
            h = in(vreg) h,
            f = lateout(vreg) f,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    f
}

/// Eight f16s (as bits) widened exactly to f32: lanes 0..4, then 4..8
/// (`fcvtl`/`fcvtl2`; NaN payloads kept, signalling NaNs quieted, as F16C).
#[inline]
fn f16x8_to_f32(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
    let lo: float32x4_t;
    let hi: float32x4_t;
    // SAFETY: two register-only conversions (base Advanced SIMD, present on
    // every aarch64 CPU); no memory, stack or flags are touched. `lo` is a
    // plain `out`, so it never shares a register with `h`, which the second
    // instruction still reads.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = lateout(vreg) hi,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    (lo, hi)
}

/// Eight f32s (`lo` then `hi`) rounded to f16 by FPCR's mode
/// (round-to-nearest-even), as bits (`fcvtn`/`fcvtn2`).
#[inline]
fn f32x8_to_f16(lo: float32x4_t, hi: float32x4_t) -> uint16x8_t {
    let h: uint16x8_t;
    // SAFETY: two register-only conversions (base Advanced SIMD); no
    // memory, stack or flags are touched. `h` is a plain `out` (not
    // `lateout`), so it never shares a register with `hi`, which is still
    // read after the first instruction writes `h`.
    unsafe {
        asm!(
            "fcvtn {h:v}.4h, {lo:v}.4s",
            "fcvtn2 {h:v}.8h, {hi:v}.4s",
            lo = in(vreg) lo,
            hi = in(vreg) hi,
            h = out(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(v: float32x4_t) -> [u32; 4] {
        let mut out = [0f32; 4];
        // SAFETY: `out` holds 4 f32s; `st1` needs only f32 alignment.
        unsafe { vst1q_f32(out.as_mut_ptr(), v) };
        out.map(f32::to_bits)
    }

    /// `fcvtl`/`fcvtl2` widen every f16 bit pattern to the f32 bits
    /// `half::f16::to_f32` gives (NaN payloads included).
    #[test]
    fn f16_widening_matches_half_for_every_pattern() {
        for bits in 0..=u16::MAX {
            let want = f16::from_bits(bits).to_f32().to_bits();
            let b = bits.to_le_bytes();
            // SAFETY: the test runs on aarch64, where NEON is always there.
            let (splat, (lo, hi)) = unsafe { (splat_f16(b), f16x8_to_f32(vdupq_n_u16(bits))) };
            for got in [lanes(splat), lanes(lo), lanes(hi)].concat() {
                assert_eq!(got, want, "f16 {bits:#06x}");
            }
        }
    }

    // The rounding of `f32x8_to_f16` (`fcvtn`/`fcvtn2`) near every f16
    // value and at the overflow and underflow edges is checked through the
    // F32 → f16 kernel by tests/simd_float.rs, which runs here under qemu.
}
