//! The SIMD kernels of the 1- and 2-bit types (TQ1_0, TQ2_0, Q1_0, Q2_0)
//! must match the scalar reference bit for bit: f32 output exactly, f16
//! output equal to the reference rounded with `half::f16::from_f32` (any NaN
//! where the reference is NaN). Skipped where this CPU has no SIMD path for a type (AVX2 + F16C
//! on x86-64; NEON, always present, on aarch64). The checks themselves are
//! in `common/kernels.rs`.

mod common;
#[path = "common/kernels.rs"]
mod kernels;

use gguf_loader::GgmlType;
use kernels::Scale::At;

/// (type, golden name, f16 scales in a block).
const TYPES: &[kernels::Case] = &[
    (GgmlType::TQ1_0, "tq1_0", &[At(52)]),
    (GgmlType::TQ2_0, "tq2_0", &[At(64)]),
    (GgmlType::Q1_0, "q1_0", &[At(0)]),
    (GgmlType::Q2_0, "q2_0", &[At(0)]),
];

kernels::kernel_tests!(TYPES);
