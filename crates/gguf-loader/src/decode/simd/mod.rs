//! SIMD decoding paths, chosen at run time, each tested equal to the scalar
//! reference of its type. A path may decode to f32 and, fused, straight to
//! f16 (skipping the f32 scratch round trip).

use half::f16;

use crate::format::GgmlType;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_kquants;
#[cfg(target_arch = "x86_64")]
mod x86_legacy;

/// Whole blocks to f32.
pub type F32Kernel = fn(&[u8], &mut [f32]);
/// Whole blocks straight to f16 (round to nearest-even).
pub type F16Kernel = fn(&[u8], &mut [f16]);

/// SIMD routines for one type; `None` where there is no SIMD path here.
#[derive(Clone, Copy, Default)]
pub struct Kernels {
    pub f32: Option<F32Kernel>,
    pub f16: Option<F16Kernel>,
}

/// The SIMD routines this CPU can run for `ty`.
pub fn kernels(ty: GgmlType) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        let k = x86_legacy::kernels(ty);
        if k.f32.is_some() || k.f16.is_some() {
            return k;
        }
        x86_kquants::kernels(ty)
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    {
        aarch64::kernels(ty)
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    )))]
    {
        let _ = ty;
        Kernels::default()
    }
}
