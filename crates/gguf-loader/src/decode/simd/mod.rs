//! SIMD decoding paths, chosen at run time, each tested equal to the scalar
//! reference of its type. A path may decode to f32 and, fused, straight to
//! f16 or bf16 (skipping the f32 scratch round trip). Fused bf16 kernels
//! exist on x86-64 for the legacy types, the 16-entry-table types (IQ4_NL,
//! IQ4_XS, MXFP4, NVFP4), F32 and F16, where they measured faster than
//! the scratch; the other types, and aarch64, decode to an f32 scratch in
//! cache and convert it (`f32_to_bf16`).
//!
//! On x86-64 every path needs AVX2 and F16C; where the CPU also has
//! AVX-512F/BW, the K-quants, the i-quants with grids and the F32 → bf16
//! rounding run sixteen lanes wide. [`SIMD_ENV`] caps the choice, and
//! [`kernels`] is the one place that makes it.
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

use std::sync::OnceLock;

use half::{bf16, f16};

use crate::format::GgmlType;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod aarch64;
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
mod iq_groups;
#[cfg(target_arch = "x86_64")]
mod x86_float;
#[cfg(target_arch = "x86_64")]
mod x86_fp4;
#[cfg(target_arch = "x86_64")]
mod x86_iquants;
#[cfg(target_arch = "x86_64")]
mod x86_kquants;
#[cfg(target_arch = "x86_64")]
mod x86_legacy;
#[cfg(target_arch = "x86_64")]
mod x86_ternary;

/// Whole blocks to f32.
pub type F32Kernel = fn(&[u8], &mut [f32]);
/// Whole blocks straight to f16 (round to nearest-even).
pub type F16Kernel = fn(&[u8], &mut [f16]);
/// Whole blocks straight to bf16 (round to nearest-even, as
/// `half::bf16::from_f32`).
pub type Bf16Kernel = fn(&[u8], &mut [bf16]);

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
    /// Whole blocks straight to bf16, equal to the reference rounded.
    pub bf16: Option<Bf16Kernel>,
    /// `bf16` with streaming stores.
    pub bf16_stream: Option<Bf16Kernel>,
}

impl Kernels {
    /// The kernels to write an output with: the streaming variants in place
    /// of the ordinary ones when `stream` and the type has them.
    pub fn for_output(self, stream: bool) -> Kernels {
        if stream {
            Kernels {
                f32: self.f32_stream.or(self.f32),
                f16: self.f16_stream.or(self.f16),
                bf16: self.bf16_stream.or(self.bf16),
                ..self
            }
        } else {
            self
        }
    }
}

/// The environment variable that caps the SIMD the decoders use, read once
/// per process (case aside, one of [`SIMD_CAPS`]): `scalar` (or `none`)
/// runs every type's scalar reference, `avx2` keeps x86-64 to AVX2 and F16C
/// (no AVX-512); `widest`, unset, empty or anything else, the widest the CPU
/// has. Every path gives the same bits; the cap is for measuring one path
/// against another, and for a CPU where a wider path runs slower.
pub const SIMD_ENV: &str = "GGUF_LOADER_SIMD";

/// The values [`SIMD_ENV`] understands (lowercase), with their caps.
const CAPS: [(&str, Ceiling); 4] = [
    ("widest", Ceiling::Widest),
    ("avx2", Ceiling::Avx2),
    ("scalar", Ceiling::Scalar),
    ("none", Ceiling::Scalar),
];

/// The values [`SIMD_ENV`] understands (lowercase).
pub const SIMD_CAPS: [&str; 4] = [CAPS[0].0, CAPS[1].0, CAPS[2].0, CAPS[3].0];

/// How wide the decoders may go ([`SIMD_ENV`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ceiling {
    /// The scalar references only.
    Scalar,
    /// At most AVX2 and F16C on x86-64.
    Avx2,
    /// Whatever the CPU has.
    Widest,
}

/// The cap from [`SIMD_ENV`], read once.
fn ceiling() -> Ceiling {
    static CEILING: OnceLock<Ceiling> = OnceLock::new();
    *CEILING.get_or_init(|| {
        let v = std::env::var(SIMD_ENV)
            .unwrap_or_default()
            .to_ascii_lowercase();
        CAPS.iter()
            .find(|&&(name, _)| name == v)
            .map_or(Ceiling::Widest, |&(_, cap)| cap)
    })
}

/// Orders a kernel's streaming stores before whatever follows (`sfence`):
/// every streaming kernel ends with it.
#[cfg(target_arch = "x86_64")]
#[inline]
fn sfence() {
    // A safe intrinsic in newer Rust, an unsafe one in 1.89 (the crate's
    // rust-version): one call site for both.
    #[allow(unused_unsafe)]
    // SAFETY: SSE is part of x86-64's baseline, and `sfence` takes nothing.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    }
}

/// Whether the x86-64 kernels may run: the CPU has AVX2 and F16C, and
/// [`SIMD_ENV`] allows them (checked once).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        ceiling() >= Ceiling::Avx2
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("f16c")
    })
}

/// Whether the AVX-512 kernels may run besides: [`avx2`], AVX-512F and
/// AVX-512BW, and no cap below the widest (checked once).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        ceiling() == Ceiling::Widest
            && avx2()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
    })
}

/// Whether the NEON kernels may run ([`SIMD_ENV`]; NEON itself is always
/// there on aarch64).
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
fn neon() -> bool {
    ceiling() > Ceiling::Scalar
}

/// The SIMD the decoders use in this process, for reports: `"AVX-512 +
/// AVX2"`, `"AVX2"` (both with F16C), `"NEON"` or `"scalar"` (no SIMD path
/// here, or [`SIMD_ENV`] set to `scalar`).
pub fn simd_features() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512() {
            "AVX-512 + AVX2"
        } else if avx2() {
            "AVX2"
        } else {
            "scalar"
        }
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    {
        if neon() {
            "NEON"
        } else {
            "scalar"
        }
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    )))]
    {
        "scalar"
    }
}

/// The x86-64 kernel tables, one per family, asked in turn: the first with
/// a kernel for the type gives all of them.
#[cfg(target_arch = "x86_64")]
const X86_FAMILIES: [fn(GgmlType) -> Kernels; 6] = [
    x86_legacy::kernels,
    x86_fp4::kernels,
    x86_float::kernels,
    x86_kquants::kernels,
    x86_ternary::kernels,
    x86_iquants::kernels,
];

/// The x86-64 families built both eight and sixteen lanes wide: their
/// kernel tables by width (`true`: AVX-512).
#[cfg(all(target_arch = "x86_64", any(test, feature = "internals")))]
const X86_WIDE_FAMILIES: [fn(GgmlType, bool) -> Kernels; 3] =
    [x86_kquants::table, x86_iquants::table, x86_float::table];

/// The SIMD routines this CPU can run for `ty`: the one place that picks.
pub fn kernels(ty: GgmlType) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        X86_FAMILIES
            .iter()
            .map(|f| f(ty))
            .find(|k| k.f32.is_some() || k.f16.is_some())
            .unwrap_or_default()
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    {
        if neon() {
            aarch64::kernels(ty)
        } else {
            Kernels::default()
        }
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

/// Converts `min(src.len(), dst.len())` f32s to bf16, rounded to
/// nearest-even exactly as `half::bf16::from_f32` (NaNs stay NaN, quiet, with
/// their top bits): with SIMD where this CPU has it.
pub fn f32_to_bf16(src: &[f32], dst: &mut [bf16]) {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    if neon() {
        return aarch64::f32_to_bf16(src, dst);
    }
    #[cfg(target_arch = "x86_64")]
    if x86_float::f32_to_bf16(src, dst).is_some() {
        return;
    }
    half::slice::HalfFloatSliceExt::convert_from_f32_slice(dst, src);
}

/// Every kernel set this CPU can run for `ty`, named: [`kernels`]'s pick,
/// and where a type has more than one path here (the K-quants, the i-quants
/// with grids and F32 on x86-64 with AVX-512: AVX2 and AVX-512), each of
/// them, so that the tests hold every path to the reference and not only
/// the one the dispatcher picks. Empty where `ty` has no SIMD path.
#[cfg(any(test, feature = "internals"))]
pub fn kernel_paths(ty: GgmlType) -> Vec<(&'static str, Kernels)> {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        for table in X86_WIDE_FAMILIES {
            let narrow = table(ty, false);
            if narrow.f32.is_some() || narrow.f16.is_some() {
                return vec![("avx2", table(ty, false)), ("avx512", table(ty, true))];
            }
        }
    }
    let k = kernels(ty);
    if k.f32.is_some() || k.f16.is_some() {
        vec![("simd", k)]
    } else {
        Vec::new()
    }
}

/// Every x86-64 F32 → bf16 path this CPU can run, named (AVX2, and AVX-512
/// where present; ordinary and streaming stores), from the values'
/// little-endian bytes: for the tests. Empty elsewhere.
#[cfg(any(test, feature = "internals"))]
pub fn f32_to_bf16_paths() -> Vec<(&'static str, Bf16Kernel)> {
    #[cfg(target_arch = "x86_64")]
    return x86_float::f32_to_bf16_paths();
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

/// Whether `s` starts on a 16-byte boundary (required by streaming stores).
#[allow(dead_code)] // unused where no streaming kernel exists
fn aligned16<T>(s: &[T]) -> bool {
    (s.as_ptr() as usize).is_multiple_of(16)
}
