//! SIMD decoding paths, chosen at run time, each tested equal to the scalar
//! reference of its type. A path may decode to f32 and, fused, straight to
//! f16 (skipping the f32 scratch round trip).
//!
//! Each path comes in two flavours that write the same values: with ordinary
//! stores, and with streaming (non-temporal) stores, which send whole cache
//! lines to memory without first reading them and without evicting the cache.
//! For outputs far larger than the cache (whole models) streaming saves the
//! read-for-ownership of every output line; measured, it raised 16-thread
//! Q4_0 → f16 from 46 to 105 GB/s on a 16-core Xeon (docs/BENCHMARKS.md).
//! A streaming kernel falls back to ordinary stores where the output is not
//! 16-byte aligned, and ends with a store fence, so its writes are visible to
//! whatever synchronizes with the caller afterwards.

use half::f16;

use crate::format::GgmlType;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod aarch64;
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod iq_groups;
#[cfg(target_arch = "x86_64")]
mod x86_iquants;
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
    /// Whole blocks to f32, bit-exact with the reference.
    pub f32: Option<F32Kernel>,
    /// Whole blocks straight to f16, equal to the reference rounded.
    pub f16: Option<F16Kernel>,
    /// `f32` with streaming stores.
    pub f32_stream: Option<F32Kernel>,
    /// `f16` with streaming stores.
    pub f16_stream: Option<F16Kernel>,
}

impl Kernels {
    /// The kernels to write an output with: the streaming variants in place
    /// of the ordinary ones when `stream` and the type has them.
    pub fn for_output(self, stream: bool) -> Kernels {
        if stream {
            Kernels {
                f32: self.f32_stream.or(self.f32),
                f16: self.f16_stream.or(self.f16),
                ..self
            }
        } else {
            self
        }
    }
}

/// The SIMD routines this CPU can run for `ty`.
pub fn kernels(ty: GgmlType) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        let k = x86_legacy::kernels(ty);
        if k.f32.is_some() || k.f16.is_some() {
            return k;
        }
        let k = x86_kquants::kernels(ty);
        if k.f32.is_some() || k.f16.is_some() {
            return k;
        }
        x86_iquants::kernels(ty)
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

/// Whether `s` starts on a 16-byte boundary (required by streaming stores).
#[allow(dead_code)] // unused where no streaming kernel exists
fn aligned16<T>(s: &[T]) -> bool {
    s.as_ptr() as usize % 16 == 0
}
