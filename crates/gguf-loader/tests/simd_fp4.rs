//! The SIMD kernels of the 16-entry value-table types (IQ4_NL, IQ4_XS,
//! MXFP4, NVFP4; AVX2 + F16C on x86-64, NEON on aarch64) against the scalar
//! reference, bit for bit: f32 output exactly, fused f16 and (x86-64) bf16
//! output equal to the reference rounded by `half::f16::from_f32` /
//! `half::bf16::from_f32` (any NaN where the reference is NaN), plain and
//! streaming stores, aligned and misaligned outputs.
//! Skipped on x86 CPUs without AVX2 + F16C; never skipped on aarch64.

mod common;
#[path = "common/kernels.rs"]
mod kernels;

use common::Lcg;

use gguf_loader::internals::{reference_row_fn, simd};
use gguf_loader::GgmlType;
use gguf_loader::{bf16, f16};

/// Special f16 scales: ±0, negative, subnormals, max, ±inf, NaNs, 1.
const SPECIAL_F16: &[u16] = &[
    0x0000, 0x8000, 0xBC00, 0x0001, 0x8001, 0x03FF, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01,
    0xFE01, 0x3C00,
];

/// Special E8M0 exponents: the two denormal halves, 2^-1, 2^0, the largest.
const SPECIAL_E8M0: &[u8] = &[0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF];

/// Special UE4M3 scales: the two zeros (0x00, 0x7F), denormals, the top
/// bit (ignored), the largest.
const SPECIAL_UE4M3: &[u8] = &[0x00, 0x7F, 0x01, 0x07, 0x08, 0x80, 0xFF, 0xFE, 0x7E, 0x38];

/// A type, its golden-vector name and how to write a special scale into a
/// block (`r` picks which one).
struct Case {
    ty: GgmlType,
    name: &'static str,
    special: fn(&mut [u8], u32),
}

const CASES: [Case; 4] = [
    Case {
        ty: GgmlType::IQ4_NL,
        name: "iq4_nl",
        special: special_f16_d,
    },
    Case {
        ty: GgmlType::IQ4_XS,
        name: "iq4_xs",
        special: special_f16_d,
    },
    Case {
        ty: GgmlType::MXFP4,
        name: "mxfp4",
        special: |b, r| b[0] = SPECIAL_E8M0[r as usize % SPECIAL_E8M0.len()],
    },
    Case {
        ty: GgmlType::NVFP4,
        name: "nvfp4",
        special: |b, r| b[r as usize % 4] = SPECIAL_UE4M3[(r / 4) as usize % SPECIAL_UE4M3.len()],
    },
];

/// The f16 `d` at the block's start set to a special value.
fn special_f16_d(b: &mut [u8], r: u32) {
    let h = SPECIAL_F16[r as usize % SPECIAL_F16.len()];
    b[..2].copy_from_slice(&h.to_le_bytes());
}

/// `n` random blocks, a third of them with a special scale; f16 scales are
/// otherwise kept moderate (random bits would make most values huge).
fn random_blocks(c: &Case, n: usize, rng: &mut Lcg) -> Vec<u8> {
    let ts = c.ty.type_size() as usize;
    let mut v = rng.bytes(n * ts);
    for b in v.chunks_exact_mut(ts) {
        let r = rng.next_u32();
        if r.is_multiple_of(3) {
            (c.special)(b, r / 3);
        } else if matches!(c.ty, GgmlType::IQ4_NL | GgmlType::IQ4_XS) {
            let h = (rng.next_u32() as u16 & 0x3FFF) | ((r as u16 & 1) << 15);
            b[..2].copy_from_slice(&h.to_le_bytes());
        }
    }
    v
}

fn same_f16(got: f16, want: f32) -> bool {
    let w = f16::from_f32(want);
    got.to_bits() == w.to_bits() || (got.is_nan() && w.is_nan())
}

/// Compares every kernel of `c.ty` on `src` (whole blocks) with the
/// reference, and the dispatcher's bf16 output with the reference rounded.
fn check(c: &Case, src: &[u8], what: &str) {
    let (ty, name) = (c.ty, c.name);
    let k = simd::kernels(ty);
    let n = src.len() / ty.type_size() as usize * ty.block_size() as usize;
    let mut want = vec![0f32; n];
    reference_row_fn(ty)(src, &mut want);
    for (kind, f) in common::variants(k.f32, k.f32_stream) {
        for got in common::run_placed(n, f32::from_bits(0x7FA0_0001), |o| f(src, o)) {
            common::assert_bits_eq(&format!("{name} f32 {kind} {what}"), &got, &want);
        }
    }
    for (kind, f) in common::variants(k.f16, k.f16_stream) {
        for got in common::run_placed(n, f16::from_bits(0x7E55), |o| f(src, o)) {
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    same_f16(*g, *w),
                    "{name} f16 {kind} {what}: element {i}: got {:#06x}, want {:#06x} (from {:#010x})",
                    g.to_bits(),
                    f16::from_f32(*w).to_bits(),
                    w.to_bits()
                );
            }
        }
    }
    for (kind, f) in common::variants(k.bf16, k.bf16_stream) {
        for got in common::run_placed(n, bf16::from_bits(0x7E55), |o| f(src, o)) {
            kernels::assert_bf16_rounds(&format!("{name} bf16 {kind} {what}"), &got, &want);
        }
    }
    let mut got = vec![bf16::ZERO; n];
    gguf_loader::dequantize_into(ty, src, &mut got).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let w = bf16::from_f32(*w);
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{name} bf16 {what}: element {i}: got {:#06x}, want {:#06x}",
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// Whether this CPU has the kernels (an x86 CPU without AVX2 + F16C has none).
fn have_kernels(ty: GgmlType) -> bool {
    let k = simd::kernels(ty);
    if k.f32.is_none() && k.f16.is_none() {
        eprintln!("{ty:?}: no SIMD kernel on this CPU, skipped");
        return false;
    }
    true
}

#[test]
fn random_blocks_match_reference() {
    for c in &CASES {
        if !have_kernels(c.ty) {
            continue;
        }
        let mut rng = Lcg(0xF4F4 ^ c.ty.type_size());
        for n in 0..40 {
            let src = random_blocks(c, n, &mut rng);
            check(c, &src, &format!("{n} blocks"));
        }
        // A run long enough for the dispatcher to work in several chunks.
        let src = random_blocks(c, 600, &mut rng);
        check(c, &src, "600 blocks");
    }
}

#[test]
fn every_code_under_every_special_scale() {
    for c in &CASES {
        if !have_kernels(c.ty) {
            continue;
        }
        let ts = c.ty.type_size() as usize;
        let specials = match c.ty {
            GgmlType::MXFP4 => SPECIAL_E8M0.len(),
            GgmlType::NVFP4 => 4 * SPECIAL_UE4M3.len(),
            _ => SPECIAL_F16.len(),
        };
        let mut src = Vec::new();
        for r in 0..specials as u32 {
            // Every byte value at every position of the codes, in turn.
            for start in (0..256).step_by(7) {
                let mut b: Vec<u8> = (0..ts).map(|j| (start + j * 13) as u8).collect();
                if c.ty == GgmlType::NVFP4 {
                    b[..4].fill(0x38);
                }
                (c.special)(&mut b, r);
                src.extend_from_slice(&b);
            }
        }
        check(c, &src, "special scales");
    }
}

#[test]
fn golden_blocks_match_reference_and_ggml() {
    for c in &CASES {
        if !have_kernels(c.ty) {
            continue;
        }
        let g = common::golden(c.name);
        check(c, &g.raw, "golden");
        let ts = c.ty.type_size() as usize;
        for n in 0..12.min(g.raw.len() / ts) {
            check(c, &g.raw[..n * ts], "golden prefix");
        }
        // The golden f32s are ggml's own output: the SIMD path matches them too.
        let k = simd::kernels(c.ty);
        for (kind, f) in common::variants(k.f32, k.f32_stream) {
            let mut got = vec![0f32; g.expected.len()];
            f(&g.raw, &mut got);
            common::assert_bits_eq(&format!("{} golden {kind}", c.name), &got, &g.expected);
        }
    }
}

#[test]
fn mismatched_lengths_stay_in_bounds() {
    for c in &CASES {
        if !have_kernels(c.ty) {
            continue;
        }
        let (ty, name) = (c.ty, c.name);
        let k = simd::kernels(ty);
        let (bs, ts) = (ty.block_size() as usize, ty.type_size() as usize);
        let mut rng = Lcg(7);
        let src = random_blocks(c, 5, &mut rng);
        let mut want = vec![0f32; 5 * bs];
        reference_row_fn(ty)(&src, &mut want);
        for src_len in [0, 1, ts - 1, ts, ts + 1, 3 * ts + 5, 5 * ts - 1, 5 * ts] {
            for dst_len in [0, 1, bs - 1, bs, bs + 3, 3 * bs - 1, 5 * bs, 5 * bs + 11] {
                let blocks = (src_len / ts).min(dst_len / bs);
                let done = blocks * bs;
                for (kind, f) in common::variants(k.f32, k.f32_stream) {
                    let mut got = vec![f32::from_bits(0x7FA0_0001); dst_len];
                    f(&src[..src_len], &mut got);
                    let what = format!("{name} f32 {kind} {src_len}/{dst_len}");
                    common::assert_bits_eq(&what, &got[..done], &want[..done]);
                    assert!(
                        got[done..].iter().all(|v| v.to_bits() == 0x7FA0_0001),
                        "{what}: wrote past {blocks} blocks"
                    );
                }
                for (kind, f) in common::variants(k.f16, k.f16_stream) {
                    let mut got = vec![f16::from_bits(0x7E55); dst_len];
                    f(&src[..src_len], &mut got);
                    let what = format!("{name} f16 {kind} {src_len}/{dst_len}");
                    for (i, (g, w)) in got[..done].iter().zip(&want).enumerate() {
                        assert!(same_f16(*g, *w), "{what}: element {i}");
                    }
                    assert!(
                        got[done..].iter().all(|v| v.to_bits() == 0x7E55),
                        "{what}: wrote past {blocks} blocks"
                    );
                }
                for (kind, f) in common::variants(k.bf16, k.bf16_stream) {
                    let mut got = vec![bf16::from_bits(0x7E55); dst_len];
                    f(&src[..src_len], &mut got);
                    let what = format!("{name} bf16 {kind} {src_len}/{dst_len}");
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
    for c in &CASES {
        let k = simd::kernels(c.ty);
        assert!(
            k.f32.is_some() && k.f16.is_some(),
            "{}: no NEON kernels",
            c.name
        );
    }
}

/// On x86-64 with AVX2 + F16C these types write bf16 fused.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_fused_bf16_kernels_present() {
    for c in &CASES {
        if !have_kernels(c.ty) {
            continue;
        }
        let k = simd::kernels(c.ty);
        assert!(
            k.bf16.is_some() && k.bf16_stream.is_some(),
            "{}: no fused bf16 kernels",
            c.name
        );
    }
}
