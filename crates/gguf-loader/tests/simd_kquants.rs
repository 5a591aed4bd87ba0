//! The SIMD K-quant kernels (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) must match the
//! scalar reference bit for bit: f32 output exactly, f16 output equal to the
//! reference rounded with `half::f16::from_f32` (any NaN where the reference
//! is NaN). Skipped where this CPU has no SIMD path for a type (AVX2 + F16C
//! on x86-64; NEON, always present, on aarch64). The checks themselves are
//! in `common/kernels.rs`.

mod common;
#[path = "common/kernels.rs"]
mod kernels;

use gguf_loader::GgmlType;
use kernels::Scale::At;

/// (type, golden name, f16 scales in a block).
const TYPES: &[kernels::Case] = &[
    (GgmlType::Q2_K, "q2_k", &[At(80), At(82)]),
    (GgmlType::Q3_K, "q3_k", &[At(108)]),
    (GgmlType::Q4_K, "q4_k", &[At(0), At(2)]),
    (GgmlType::Q6_K, "q6_k", &[At(208)]),
    (GgmlType::Q5_K, "q5_k", &[At(0), At(2)]),
];

kernels::kernel_tests!(TYPES);

/// Where the CPU has AVX-512F/BW, each K-quant has AVX-512 kernels besides
/// its AVX2 ones, and the checks above hold both to the reference.
#[cfg(target_arch = "x86_64")]
#[test]
fn kquant_avx512_and_avx2_paths_are_both_checked() {
    kernels::avx512_and_avx2_paths(TYPES);
}
