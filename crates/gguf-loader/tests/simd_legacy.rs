//! The SIMD kernels of the legacy types (and F16/BF16 widening; AVX2 on
//! x86-64, NEON on aarch64) against the scalar reference, bit for bit: f32
//! output exactly, fused f16 output equal to the reference rounded by
//! `half::f16::from_f32`, fused bf16 output (x86-64) equal to it rounded by
//! `half::bf16::from_f32` (any NaN where the reference is NaN). Skipped on
//! x86 CPUs without AVX2 + F16C; never skipped on aarch64.

mod common;
#[path = "common/kernels.rs"]
mod kernels;

use common::Lcg;

use gguf_loader::internals::{reference_row_fn, simd};
use gguf_loader::GgmlType;
use gguf_loader::{bf16, f16};

const TYPES: &[GgmlType] = &[
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::F16,
    GgmlType::BF16,
];

/// Special scales: 0, -0, negative, subnormals, max, inf, -inf, NaNs.
const SPECIAL_F16: &[u16] = &[
    0x0000, 0x8000, 0xBC00, 0x0001, 0x8001, 0x03FF, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01,
    0xFE01, 0x3C00, 0x1400,
];

/// `blocks` random blocks of `ty`, every f16 header field (scales at the
/// block's start, and Q4_1's min) sometimes one of the special values.
fn random_blocks(ty: GgmlType, blocks: usize, rng: &mut Lcg) -> Vec<u8> {
    let ts = ty.type_size() as usize;
    let mut v: Vec<u8> = (0..blocks * ts).map(|_| rng.next_u32() as u8).collect();
    let header_halves = match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 => 2,
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => 1,
        _ => 0,
    };
    for b in v.chunks_exact_mut(ts) {
        for h in 0..header_halves {
            let r = rng.next_u32();
            let bits = if r.is_multiple_of(3) {
                SPECIAL_F16[(r as usize / 3) % SPECIAL_F16.len()]
            } else {
                // A finite, moderate scale most of the time.
                (rng.next_u32() as u16 & 0x3FFF) | ((r as u16 & 1) << 15)
            };
            b[2 * h..2 * h + 2].copy_from_slice(&bits.to_le_bytes());
        }
    }
    if header_halves == 0 {
        // Plain F16/BF16: sprinkle special values among the elements.
        for e in v.chunks_exact_mut(2) {
            let r = rng.next_u32();
            if r.is_multiple_of(5) {
                let bits = SPECIAL_F16[(r as usize / 5) % SPECIAL_F16.len()];
                e.copy_from_slice(&bits.to_le_bytes());
            }
        }
    }
    v
}

fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Compares the kernels of `ty` on `src` (whole blocks) with the reference.
fn check(ty: GgmlType, src: &[u8], what: &str) {
    let k = simd::kernels(ty);
    let bs = ty.block_size() as usize;
    let ts = ty.type_size() as usize;
    let n = src.len() / ts * bs;
    let mut want = vec![0f32; n];
    reference_row_fn(ty)(src, &mut want);
    for (kind, f) in common::variants(k.f32, k.f32_stream) {
        for got in common::run_placed(n, f32::from_bits(0x7FA0_0001), |o| f(src, o)) {
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    same_f32(*g, *w),
                    "{ty:?} f32 {kind} {what}: element {i}: got {:#010x}, want {:#010x}",
                    g.to_bits(),
                    w.to_bits()
                );
            }
        }
    }
    for (kind, f) in common::variants(k.f16, k.f16_stream) {
        for got in common::run_placed(n, f16::from_bits(0x7E55), |o| f(src, o)) {
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let w16 = f16::from_f32(*w);
                assert!(
                    g.to_bits() == w16.to_bits() || (g.is_nan() && w.is_nan()),
                    "{ty:?} f16 {kind} {what}: element {i}: got {:#06x}, want {:#06x} (from {:#010x})",
                    g.to_bits(),
                    w16.to_bits(),
                    w.to_bits()
                );
            }
        }
    }
    for (kind, f) in common::variants(k.bf16, k.bf16_stream) {
        for got in common::run_placed(n, bf16::from_bits(0x7E55), |o| f(src, o)) {
            kernels::assert_bf16_rounds(&format!("{ty:?} bf16 {kind} {what}"), &got, &want);
        }
    }
}

fn have_kernels() -> bool {
    let k = simd::kernels(GgmlType::Q4_0);
    k.f32.is_some()
}

#[test]
fn random_blocks_match_reference() {
    if !have_kernels() {
        return;
    }
    let mut rng = Lcg(0x1234_5678_9abc_def0);
    for &ty in TYPES {
        for blocks in 0..70 {
            // Plain types have one element per "block": use more of them.
            let blocks = if ty.block_size() == 1 {
                // Lengths of every residue mod 8 (vector width).
                blocks * 5 + blocks % 3
            } else {
                blocks
            };
            let src = random_blocks(ty, blocks, &mut rng);
            check(ty, &src, &format!("{blocks} blocks"));
        }
    }
}

#[test]
fn every_quant_and_special_scale() {
    if !have_kernels() {
        return;
    }
    // All 256 byte values in the quants, under every special scale.
    for &ty in &TYPES[..5] {
        let ts = ty.type_size() as usize;
        let mut src = Vec::new();
        for (si, &s) in SPECIAL_F16.iter().enumerate() {
            for start in (0..256).step_by(ts) {
                let mut b: Vec<u8> = (0..ts).map(|j| (start + j * 7 + si) as u8).collect();
                b[0..2].copy_from_slice(&s.to_le_bytes());
                if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                    let m = SPECIAL_F16[(si + start) % SPECIAL_F16.len()];
                    b[2..4].copy_from_slice(&m.to_le_bytes());
                }
                src.extend_from_slice(&b);
            }
        }
        check(ty, &src, "special scales");
    }
}

#[test]
fn golden_raw_blocks_match_reference() {
    if !have_kernels() {
        return;
    }
    for &ty in TYPES {
        let g = common::golden(&ty.name().to_ascii_lowercase());
        check(ty, &g.raw, "golden");
        // The golden f32s are ggml's own output: the SIMD path matches them too.
        if let Some(f) = simd::kernels(ty).f32 {
            let mut got = vec![0f32; g.expected.len()];
            f(&g.raw, &mut got);
            common::assert_bits_eq(&format!("{ty:?} golden"), &got, &g.expected);
        }
    }
}

#[test]
fn mismatched_lengths_stay_in_bounds() {
    if !have_kernels() {
        return;
    }
    let mut rng = Lcg(7);
    for &ty in TYPES {
        let k = simd::kernels(ty);
        let bs = ty.block_size() as usize;
        let ts = ty.type_size() as usize;
        let src = random_blocks(ty, 9, &mut rng);
        let mut want = vec![0f32; 9 * bs];
        reference_row_fn(ty)(&src, &mut want);
        for src_len in [0, 1, ts - 1, ts, ts + 1, 3 * ts + 5, 9 * ts - 1, 9 * ts] {
            for dst_len in [0, 1, bs - 1, bs, bs + 3, 5 * bs - 1, 9 * bs, 9 * bs + 11] {
                let blocks = (src_len / ts).min(dst_len / bs);
                let src = &src[..src_len.min(src.len())];
                for (_, f) in common::variants(k.f32, k.f32_stream) {
                    let mut got = vec![f32::from_bits(0x7FA0_0001); dst_len];
                    f(src, &mut got);
                    for (i, g) in got.iter().enumerate() {
                        if i < blocks * bs {
                            assert!(same_f32(*g, want[i]), "{ty:?} {src_len}/{dst_len} [{i}]");
                        } else {
                            assert_eq!(
                                g.to_bits(),
                                0x7FA0_0001,
                                "{ty:?} wrote past {blocks} blocks"
                            );
                        }
                    }
                }
                for (_, f) in common::variants(k.f16, k.f16_stream) {
                    let mut got = vec![f16::from_bits(0x7E55); dst_len];
                    f(src, &mut got);
                    for (i, g) in got.iter().enumerate() {
                        if i < blocks * bs {
                            let w = f16::from_f32(want[i]);
                            assert!(
                                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                                "{ty:?} f16 {src_len}/{dst_len} [{i}]"
                            );
                        } else {
                            assert_eq!(
                                g.to_bits(),
                                0x7E55,
                                "{ty:?} f16 wrote past {blocks} blocks"
                            );
                        }
                    }
                }
                for (_, f) in common::variants(k.bf16, k.bf16_stream) {
                    let mut got = vec![bf16::from_bits(0x7E55); dst_len];
                    f(src, &mut got);
                    let done = blocks * bs;
                    let what = format!("{ty:?} bf16 {src_len}/{dst_len}");
                    kernels::assert_bf16_rounds(&what, &got[..done], &want[..done]);
                    assert!(
                        got[done..].iter().all(|v| v.to_bits() == 0x7E55),
                        "{what}: wrote past {blocks} blocks"
                    );
                }
            }
        }
    }
}

/// NEON is on every aarch64 CPU, so there the kernels must exist (the tests
/// above would otherwise pass by skipping).
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[test]
fn neon_kernels_present() {
    for &ty in TYPES {
        let k = simd::kernels(ty);
        assert!(k.f32.is_some(), "{ty:?}: no NEON f32 kernel");
        // F16 → f16 is a copy and has no kernel.
        assert_eq!(
            k.f16.is_some(),
            ty != GgmlType::F16,
            "{ty:?}: NEON f16 kernel"
        );
    }
}

/// On x86-64 with AVX2 + F16C these types write bf16 fused (BF16 → bf16 is
/// a copy and has no kernel).
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_fused_bf16_kernels_present() {
    if !have_kernels() {
        return;
    }
    for &ty in TYPES {
        let k = simd::kernels(ty);
        let want = ty != GgmlType::BF16;
        assert_eq!(k.bf16.is_some(), want, "{ty:?}: fused bf16 kernel");
        assert_eq!(k.bf16_stream.is_some(), want, "{ty:?}: streaming bf16");
    }
}
