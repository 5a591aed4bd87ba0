//! The SIMD K-quant kernels (Q4_K, Q5_K, Q6_K) must match the scalar
//! reference bit for bit: f32 output exactly, f16 output equal to the
//! reference rounded with `half::f16::from_f32` (any NaN where the reference
//! is NaN). Skipped where this CPU has no SIMD path for a type (AVX2 + F16C
//! on x86-64; NEON, always present, on aarch64).

mod common;

use common::Lcg;

use gguf_loader::internals::{reference_row_fn, simd};
use gguf_loader::GgmlType;
use half::f16;

/// (type, golden name, bytes per block, byte offsets of the f16 scales).
const TYPES: [(GgmlType, &str, usize, &[usize]); 3] = [
    (GgmlType::Q4_K, "q4_k", 144, &[0, 2]),
    (GgmlType::Q6_K, "q6_k", 210, &[208]),
    (GgmlType::Q5_K, "q5_k", 176, &[0, 2]),
];

fn random_blocks(rng: &mut Lcg, n: usize, type_size: usize, scales: &[usize]) -> Vec<u8> {
    let mut v: Vec<u8> = (0..n * type_size).map(|_| rng.next_u32() as u8).collect();
    for b in v.chunks_exact_mut(type_size) {
        for &o in scales {
            b[o..o + 2].copy_from_slice(&common::special_f16_scale(rng).to_le_bytes());
        }
    }
    v
}

fn check(ty: GgmlType, name: &str, src: &[u8]) {
    let k = simd::kernels(ty);
    let n = src.len() / ty.type_size() as usize * 256;
    let mut want = vec![0f32; n];
    reference_row_fn(ty)(src, &mut want);
    for (kind, f) in common::variants(k.f32, k.f32_stream) {
        for got in common::run_placed(n, f32::from_bits(0x7fc0_dead), |o| f(src, o)) {
            common::assert_bits_eq(&format!("{name} f32 {kind}"), &got, &want);
        }
    }
    for (kind, f) in common::variants(k.f16, k.f16_stream) {
        for got in common::run_placed(n, f16::from_bits(0x7e55), |o| f(src, o)) {
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let wh = f16::from_f32(*w);
                if w.is_nan() {
                    assert!(
                        g.is_nan(),
                        "{name} f16 {kind}: element {i}: got {g}, want NaN"
                    );
                } else {
                    assert_eq!(
                        g.to_bits(),
                        wh.to_bits(),
                        "{name} f16 {kind}: element {i}: got {g}, want {wh} (from {w:e})"
                    );
                }
            }
        }
    }
}

#[test]
fn simd_kquants_match_reference_random() {
    for (ty, name, ts, scales) in TYPES {
        if simd::kernels(ty).f32.is_none() && simd::kernels(ty).f16.is_none() {
            eprintln!("{name}: no SIMD kernel on this CPU, skipped");
            continue;
        }
        let mut rng = Lcg(0x5eed ^ ts as u64);
        for n in 0..20 {
            for _ in 0..4 {
                let src = random_blocks(&mut rng, n, ts, scales);
                check(ty, name, &src);
            }
        }
        // A larger run with many special scales mixed in.
        let src = random_blocks(&mut rng, 500, ts, scales);
        check(ty, name, &src);
    }
}

#[test]
fn simd_kquants_match_reference_golden() {
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
fn simd_kquants_mismatched_lengths() {
    for (ty, name, ts, scales) in TYPES {
        let k = simd::kernels(ty);
        let mut rng = Lcg(7);
        let src = random_blocks(&mut rng, 5, ts, scales);
        let mut want = vec![0f32; 5 * 256];
        reference_row_fn(ty)(&src, &mut want);
        for src_len in [0, 1, ts - 1, ts, ts + 7, 3 * ts + 1, 5 * ts] {
            for dst_len in [0, 1, 255, 256, 300, 2 * 256, 5 * 256 + 13, 7 * 256] {
                let blocks = (src_len / ts).min(dst_len / 256);
                for (_, f) in common::variants(k.f32, k.f32_stream) {
                    let mut got = vec![f32::from_bits(0x7fc0_beef); dst_len];
                    f(&src[..src_len], &mut got);
                    common::assert_bits_eq(name, &got[..blocks * 256], &want[..blocks * 256]);
                    assert!(
                        got[blocks * 256..]
                            .iter()
                            .all(|v| v.to_bits() == 0x7fc0_beef),
                        "{name}: wrote past {blocks} blocks"
                    );
                }
                for (_, f) in common::variants(k.f16, k.f16_stream) {
                    let mut got = vec![f16::from_bits(0x7e55); dst_len];
                    f(&src[..src_len], &mut got);
                    assert!(
                        got[blocks * 256..].iter().all(|v| v.to_bits() == 0x7e55),
                        "{name}: f16 wrote past {blocks} blocks"
                    );
                }
            }
        }
    }
}

#[test]
fn dispatcher_uses_kernels_exactly() {
    for (ty, name, ts, scales) in TYPES {
        let mut rng = Lcg(99);
        // Enough blocks for the dispatcher to work in several chunks.
        let src = random_blocks(&mut rng, 333, ts, scales);
        let mut want = vec![0f32; 333 * 256];
        reference_row_fn(ty)(&src, &mut want);
        let got32: Vec<f32> = gguf_loader::dequantize(ty, &src).unwrap();
        common::assert_bits_eq(name, &got32, &want);
        let got16: Vec<f16> = gguf_loader::dequantize(ty, &src).unwrap();
        for (i, (g, w)) in got16.iter().zip(&want).enumerate() {
            if w.is_nan() {
                assert!(g.is_nan(), "{name} f16: element {i}");
            } else {
                assert_eq!(
                    g.to_bits(),
                    f16::from_f32(*w).to_bits(),
                    "{name} f16: element {i}"
                );
            }
        }
    }
}

/// NEON is on every aarch64 CPU, so there the kernels must exist (the tests
/// above would otherwise pass by skipping).
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[test]
fn neon_kernels_present() {
    for (ty, name, _, _) in TYPES {
        let k = simd::kernels(ty);
        assert!(
            k.f32.is_some() && k.f16.is_some(),
            "{name}: no NEON kernels"
        );
    }
}
