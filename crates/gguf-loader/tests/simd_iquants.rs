//! The SIMD kernels of the i-quants with grids (IQ2_XXS, IQ2_XS, IQ2_S,
//! IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) must match the scalar reference bit for
//! bit: f32 output exactly (NaN bits included), f16 output equal to the
//! reference rounded with `half::f16::from_f32` (any NaN where the reference
//! is NaN). Skipped where this CPU has no SIMD path (AVX2 + F16C on x86-64;
//! NEON, always present, on aarch64).

mod common;
#[path = "common/kernels.rs"]
mod kernels;

use common::Lcg;
use kernels::check;

use gguf_loader::internals::{reference_row_fn, simd};
use gguf_loader::GgmlType;
use half::f16;

/// Where a block keeps its f16 super-block scale.
#[derive(Clone, Copy)]
enum Scale {
    /// A little-endian f16 at this byte offset.
    At(usize),
    /// IQ1_M: the top nibbles of the four u16 words from this offset.
    Nibbles(usize),
}

/// (type, golden name, bytes per block, scale field).
const TYPES: [(GgmlType, &str, usize, Scale); 7] = [
    (GgmlType::IQ2_XXS, "iq2_xxs", 66, Scale::At(0)),
    (GgmlType::IQ2_XS, "iq2_xs", 74, Scale::At(0)),
    (GgmlType::IQ2_S, "iq2_s", 82, Scale::At(0)),
    (GgmlType::IQ3_XXS, "iq3_xxs", 98, Scale::At(0)),
    (GgmlType::IQ3_S, "iq3_s", 110, Scale::At(0)),
    (GgmlType::IQ1_S, "iq1_s", 50, Scale::At(0)),
    (GgmlType::IQ1_M, "iq1_m", 56, Scale::Nibbles(48)),
];

/// A scale: sane most of the time, sometimes a special value (zeros,
/// negative, subnormal, the largest, infinities, NaNs).
fn scale(rng: &mut Lcg) -> u16 {
    let r = rng.next_u32();
    match r % 16 {
        0 => 0x0000,
        1 => 0x8000,
        2 => 0x8000 | (rng.next_u32() as u16 & 0x3bff),
        3 => rng.next_u32() as u16 & 0x03ff,
        4 => 0x7c00 | 1 | (rng.next_u32() as u16 & 0x03ff),
        5 => 0xfc00 | (rng.next_u32() as u16 & 0x03ff),
        6 => [0x7c00, 0xfc00, 0x7bff, 0xfbff][(r >> 4) as usize % 4],
        7 => rng.next_u32() as u16,
        _ => f16::from_f32((r >> 8) as f32 / (1u32 << 24) as f32 * 0.1).to_bits(),
    }
}

/// Writes the f16 bits `h` into a block's scale field.
fn set_scale(block: &mut [u8], at: Scale, h: u16) {
    match at {
        Scale::At(o) => block[o..o + 2].copy_from_slice(&h.to_le_bytes()),
        Scale::Nibbles(o) => {
            for w in 0..4 {
                let p = o + 2 * w;
                let word = u16::from_le_bytes([block[p], block[p + 1]]) & 0x0fff;
                let nib = (h >> (4 * w)) & 0xf;
                block[p..p + 2].copy_from_slice(&(word | nib << 12).to_le_bytes());
            }
        }
    }
}

fn random_blocks(rng: &mut Lcg, n: usize, type_size: usize, at: Scale) -> Vec<u8> {
    let mut v = rng.bytes(n * type_size);
    for b in v.chunks_exact_mut(type_size) {
        let h = scale(rng);
        set_scale(b, at, h);
    }
    v
}

fn has_kernels(ty: GgmlType) -> bool {
    let k = simd::kernels(ty);
    k.f32.is_some() || k.f16.is_some()
}

#[test]
fn simd_iquants_match_reference_random() {
    for (ty, name, ts, at) in TYPES {
        if !has_kernels(ty) {
            eprintln!("{name}: no SIMD kernel on this CPU, skipped");
            continue;
        }
        let mut rng = Lcg(0x1e5eed ^ ts as u64);
        for n in 0..20 {
            for _ in 0..4 {
                let src = random_blocks(&mut rng, n, ts, at);
                check(ty, name, &src);
            }
        }
        // A larger run with many special scales mixed in.
        let src = random_blocks(&mut rng, 500, ts, at);
        check(ty, name, &src);
    }
}

/// Every special scale in every block, with all-ones and all-zero payloads
/// too (the largest block scales, every sign set, the highest grid indices).
#[test]
fn simd_iquants_special_scales_and_extreme_bits() {
    let specials = [
        0x0000u16, 0x8000, 0x0001, 0x8001, 0x03ff, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7c01,
        0xfe01, 0x3c00, 0x1400, 0x5bff,
    ];
    for (ty, name, ts, at) in TYPES {
        if !has_kernels(ty) {
            continue;
        }
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

#[test]
fn simd_iquants_match_reference_golden() {
    for (ty, name, ts, _) in TYPES {
        let g = common::golden(name);
        check(ty, name, &g.raw);
        // Prefixes of every block count too.
        for n in 0..20.min(g.raw.len() / ts) {
            check(ty, name, &g.raw[..n * ts]);
        }
        // Against ggml's own values as well.
        if let Some(f) = simd::kernels(ty).f32 {
            let mut got = vec![0f32; g.expected.len()];
            f(&g.raw, &mut got);
            common::assert_bits_eq(name, &got, &g.expected);
        }
    }
}

#[test]
fn simd_iquants_mismatched_lengths() {
    for (ty, name, ts, at) in TYPES {
        let k = simd::kernels(ty);
        let mut rng = Lcg(7);
        let src = random_blocks(&mut rng, 5, ts, at);
        let mut want = vec![0f32; 5 * 256];
        reference_row_fn(ty)(&src, &mut want);
        for src_len in [0, 1, ts - 1, ts, ts + 7, 3 * ts + 1, 5 * ts] {
            for dst_len in [0, 1, 255, 256, 300, 2 * 256, 5 * 256 + 13, 7 * 256] {
                let blocks = (src_len / ts).min(dst_len / 256);
                for (kind, f) in common::variants(k.f32, k.f32_stream) {
                    let mut got = vec![f32::from_bits(0x7fc0_beef); dst_len];
                    f(&src[..src_len], &mut got);
                    let what = format!("{name} f32 {kind}");
                    common::assert_bits_eq(&what, &got[..blocks * 256], &want[..blocks * 256]);
                    assert!(
                        got[blocks * 256..]
                            .iter()
                            .all(|v| v.to_bits() == 0x7fc0_beef),
                        "{what}: wrote past {blocks} blocks"
                    );
                }
                for (kind, f) in common::variants(k.f16, k.f16_stream) {
                    let mut got = vec![f16::from_bits(0x7e55); dst_len];
                    f(&src[..src_len], &mut got);
                    let what = format!("{name} f16 {kind}");
                    kernels::assert_f16_rounds(&what, &got[..blocks * 256], &want[..blocks * 256]);
                    assert!(
                        got[blocks * 256..].iter().all(|v| v.to_bits() == 0x7e55),
                        "{what}: wrote past {blocks} blocks"
                    );
                }
            }
        }
    }
}

#[test]
fn dispatcher_uses_iquant_kernels_exactly() {
    for (ty, name, ts, at) in TYPES {
        let mut rng = Lcg(99);
        // Enough blocks for the dispatcher to work in several chunks.
        let src = random_blocks(&mut rng, 333, ts, at);
        let mut want = vec![0f32; 333 * 256];
        reference_row_fn(ty)(&src, &mut want);
        let got32: Vec<f32> = gguf_loader::dequantize(ty, &src).unwrap();
        common::assert_bits_eq(name, &got32, &want);
        let got16: Vec<f16> = gguf_loader::dequantize(ty, &src).unwrap();
        kernels::assert_f16_rounds(&format!("{name} f16"), &got16, &want);
    }
}

/// Where the CPU has a SIMD path at all, every one of these types has its
/// kernels: on aarch64 (NEON is always there) and on x86-64 with AVX2 and
/// F16C. Otherwise the tests above would pass by skipping.
#[test]
fn iquant_kernels_present() {
    let x86 = cfg!(target_arch = "x86_64") && simd::kernels(GgmlType::Q4_K).f16.is_some();
    let neon = cfg!(all(target_arch = "aarch64", target_endian = "little"));
    for (ty, name, _, _) in TYPES {
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

/// The reference's `±1` sign factor flips the sign of a NaN output too, in
/// every build: a block with a NaN scale decodes to that NaN, negated exactly
/// where the same block with scale 1 decodes to a negative value. (A debug
/// build once kept the multiply by -1, which leaves a NaN's sign alone,
/// while a release build flipped it.)
#[test]
fn reference_negates_nan_outputs() {
    let nan = 0x7e01u16; // widens to the f32 0x7fc0_2000
    for (ty, name, ts, at) in TYPES {
        if matches!(ty, GgmlType::IQ1_S | GgmlType::IQ1_M) {
            continue; // shifted grids: no sign factor
        }
        let mut rng = Lcg(0xa11 ^ ts as u64);
        let mut src = random_blocks(&mut rng, 8, ts, at);
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
