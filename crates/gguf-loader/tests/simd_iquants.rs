//! The SIMD kernels of the i-quants with grids (IQ2_XXS, IQ2_XS, IQ2_S,
//! IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) must match the scalar reference bit for
//! bit: f32 output exactly (NaN bits included), f16 output equal to the
//! reference rounded with `half::f16::from_f32` (any NaN where the reference
//! is NaN). Skipped where this CPU has no SIMD path (AVX2 + F16C on x86-64;
//! NEON, always present, on aarch64). The checks shared with the other block
//! types are in `common/kernels.rs`; the ones below are the i-quants' own.

mod common;
#[path = "common/kernels.rs"]
mod kernels;

use common::Lcg;
use kernels::{check, set_scale, Case, Scale};

use gguf_loader::internals::{reference_row_fn, simd};
use gguf_loader::GgmlType;

/// (type, golden name, scale field).
const TYPES: &[Case] = &[
    (GgmlType::IQ2_XXS, "iq2_xxs", &[Scale::At(0)]),
    (GgmlType::IQ2_XS, "iq2_xs", &[Scale::At(0)]),
    (GgmlType::IQ2_S, "iq2_s", &[Scale::At(0)]),
    (GgmlType::IQ3_XXS, "iq3_xxs", &[Scale::At(0)]),
    (GgmlType::IQ3_S, "iq3_s", &[Scale::At(0)]),
    (GgmlType::IQ1_S, "iq1_s", &[Scale::At(0)]),
    (GgmlType::IQ1_M, "iq1_m", &[Scale::Nibbles(48)]),
];

kernels::kernel_tests!(TYPES);

fn has_kernels(ty: GgmlType) -> bool {
    let k = simd::kernels(ty);
    k.f32.is_some() || k.f16.is_some()
}

/// Every special scale in every block, with all-ones and all-zero payloads
/// too (the largest block scales, every sign set, the highest grid indices).
#[test]
fn simd_iquants_special_scales_and_extreme_bits() {
    // The shared specials, and a large normal scale.
    let specials: Vec<u16> = kernels::SPECIAL_F16
        .iter()
        .copied()
        .chain([0x5bff])
        .collect();
    for &(ty, name, scales) in TYPES {
        if !has_kernels(ty) {
            continue;
        }
        let (ts, at) = (ty.type_size() as usize, scales[0]);
        let mut rng = Lcg(42);
        for fill in [None, Some(0x00u8), Some(0xff), Some(0x55), Some(0xaa)] {
            let mut src = match fill {
                Some(b) => vec![b; specials.len() * ts],
                None => rng.bytes(specials.len() * ts),
            };
            for (b, &h) in src.chunks_exact_mut(ts).zip(&specials) {
                set_scale(b, at, h);
            }
            check(ty, name, &src);
        }
    }
}

/// Where the CPU has a SIMD path at all, every one of these types has its
/// kernels: on aarch64 (NEON is always there) and on x86-64 with AVX2 and
/// F16C. Otherwise the tests above would pass by skipping.
#[test]
fn iquant_kernels_present() {
    let x86 = cfg!(target_arch = "x86_64") && simd::kernels(GgmlType::Q4_K).f16.is_some();
    let neon = cfg!(all(target_arch = "aarch64", target_endian = "little"));
    for &(ty, name, _) in TYPES {
        let k = simd::kernels(ty);
        if x86 || neon {
            assert!(k.f32.is_some() && k.f16.is_some(), "{name}: no kernels");
        }
        if x86 {
            assert!(
                k.f32_stream.is_some() && k.f16_stream.is_some(),
                "{name}: no streaming kernels"
            );
        }
    }
}

/// Where the CPU has AVX-512F/BW, each type has AVX-512 kernels besides its
/// AVX2 ones, and the checks above hold both to the reference.
#[cfg(target_arch = "x86_64")]
#[test]
fn iquant_avx512_and_avx2_paths_are_both_checked() {
    kernels::avx512_and_avx2_paths(TYPES);
}

/// The reference's `±1` sign factor flips the sign of a NaN output too, in
/// every build: a block with a NaN scale decodes to that NaN, negated exactly
/// where the same block with scale 1 decodes to a negative value. (A debug
/// build once kept the multiply by -1, which leaves a NaN's sign alone,
/// while a release build flipped it.)
#[test]
fn reference_negates_nan_outputs() {
    let nan = 0x7e01u16; // widens to the f32 0x7fc0_2000
    for &(ty, name, scales) in TYPES {
        if matches!(ty, GgmlType::IQ1_S | GgmlType::IQ1_M) {
            continue; // shifted grids: no sign factor
        }
        let (ts, at) = (ty.type_size() as usize, scales[0]);
        let mut rng = Lcg(0xa11 ^ ts as u64);
        let mut src = kernels::random_blocks(&mut rng, 8, ty, scales);
        let mut one = vec![0f32; 8 * 256];
        let mut got = vec![0f32; 8 * 256];
        for b in src.chunks_exact_mut(ts) {
            set_scale(b, at, 0x3c00);
        }
        reference_row_fn(ty)(&src, &mut one);
        for b in src.chunks_exact_mut(ts) {
            set_scale(b, at, nan);
        }
        reference_row_fn(ty)(&src, &mut got);
        for (i, (g, o)) in got.iter().zip(&one).enumerate() {
            let want = 0x7fc0_2000 | (o.to_bits() & 0x8000_0000);
            assert_eq!(g.to_bits(), want, "{name}: element {i} ({o} at scale 1)");
        }
    }
}
