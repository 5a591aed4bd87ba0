//! The checks of the SIMD block kernels against the scalar reference, shared
//! by the `simd_*` tests of block types (included with `#[path]` beside `mod
//! common`, since it needs the `internals` feature, which the CLI tests that
//! include `common` lack).
//!
//! Bit for bit: f32 output exactly (`common::assert_bits_eq`), f16 and bf16
//! output equal to the reference rounded with `half::f16::from_f32` /
//! `half::bf16::from_f32` (any NaN where the reference is NaN); ordinary and
//! streaming variants, each into an output on a 16-byte boundary and one
//! element past it. A type without
//! kernels on this CPU (no AVX2 + F16C on x86-64) is skipped, saying so; on
//! aarch64 [`neon_present`] makes sure nothing was skipped there.

// Each test binary that includes this file uses some of it.
#![allow(dead_code, unused_macros, unused_imports)]

use gguf_loader::internals::{reference_row_fn, simd};
use gguf_loader::GgmlType;
use half::{bf16, f16};

use crate::common::{self, Lcg};

/// Where a block keeps one of its f16 scales.
#[derive(Clone, Copy, Debug)]
pub enum Scale {
    /// A little-endian f16 at this byte offset.
    At(usize),
    /// IQ1_M: the top nibbles of the four u16 words from this offset.
    Nibbles(usize),
}

/// A block type under test: its type, golden-vector name, and its f16 scale
/// fields.
pub type Case = (GgmlType, &'static str, &'static [Scale]);

/// Writes the f16 bits `h` into a block's scale field.
pub fn set_scale(block: &mut [u8], at: Scale, h: u16) {
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

/// Special f16 scales: ±0, negative, subnormals, ±max, ±inf, NaNs (quiet,
/// signalling, negative), 1 and a small normal.
pub const SPECIAL_F16: &[u16] = &[
    0x0000, 0x8000, 0xBC00, 0x0001, 0x8001, 0x03FF, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01,
    0xFE01, 0x3C00, 0x1400,
];

/// A scale: [`common::special_f16_scale`], or now and then one of
/// [`SPECIAL_F16`].
fn scale(rng: &mut Lcg) -> u16 {
    if rng.below(16) == 0 {
        SPECIAL_F16[rng.below(SPECIAL_F16.len())]
    } else {
        common::special_f16_scale(rng)
    }
}

/// `n` random blocks of `ty`, with a random (often special) scale at each
/// field of `scales`.
pub fn random_blocks(rng: &mut Lcg, n: usize, ty: GgmlType, scales: &[Scale]) -> Vec<u8> {
    let ts = ty.type_size() as usize;
    let mut v: Vec<u8> = (0..n * ts).map(|_| rng.next_u32() as u8).collect();
    for b in v.chunks_exact_mut(ts) {
        for &at in scales {
            let h = scale(rng);
            set_scale(b, at, h);
        }
    }
    v
}

/// Values the whole blocks of `src` decode to.
fn values(ty: GgmlType, src: &[u8]) -> usize {
    src.len() / ty.type_size() as usize * ty.block_size() as usize
}

/// Whether this CPU has a SIMD kernel for `ty`; says so where it has none.
fn has_kernels(ty: GgmlType, name: &str) -> bool {
    let k = simd::kernels(ty);
    let has = k.f32.is_some() || k.f16.is_some();
    if !has {
        eprintln!("{name}: no SIMD kernel on this CPU, skipped");
    }
    has
}

/// Checks every kernel of `ty` on `src` (whole blocks) against the
/// reference: every path this CPU has for `ty` (`simd::kernel_paths`).
pub fn check(ty: GgmlType, name: &str, src: &[u8]) {
    let n = values(ty, src);
    let mut want = vec![0f32; n];
    reference_row_fn(ty)(src, &mut want);
    for (path, k) in simd::kernel_paths(ty) {
        for (kind, f) in common::variants(k.f32, k.f32_stream) {
            for got in common::run_placed(n, f32::from_bits(0x7fc0_dead), |o| f(src, o)) {
                common::assert_bits_eq(&format!("{name} {path} f32 {kind}"), &got, &want);
            }
        }
        for (kind, f) in common::variants(k.f16, k.f16_stream) {
            for got in common::run_placed(n, f16::from_bits(0x7e55), |o| f(src, o)) {
                assert_f16_rounds(&format!("{name} {path} f16 {kind}"), &got, &want);
            }
        }
        for (kind, f) in common::variants(k.bf16, k.bf16_stream) {
            for got in common::run_placed(n, bf16::from_bits(0x7e55), |o| f(src, o)) {
                assert_bf16_rounds(&format!("{name} {path} bf16 {kind}"), &got, &want);
            }
        }
    }
}

/// Asserts `got` is `want` rounded by `half::bf16::from_f32` (any NaN where
/// `want` is NaN).
pub fn assert_bf16_rounds(what: &str, got: &[bf16], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let wb = bf16::from_f32(*w);
        assert!(
            g.to_bits() == wb.to_bits() || (w.is_nan() && g.is_nan()),
            "{what}: element {i}: got {g} ({:#06x}), want {wb} ({:#06x}, from {w:e})",
            g.to_bits(),
            wb.to_bits()
        );
    }
}

/// Asserts `got` is `want` rounded by `half::f16::from_f32` (any NaN where
/// `want` is NaN).
pub fn assert_f16_rounds(what: &str, got: &[f16], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let wh = f16::from_f32(*w);
        if w.is_nan() {
            assert!(g.is_nan(), "{what}: element {i}: got {g}, want NaN");
        } else {
            assert_eq!(
                g.to_bits(),
                wh.to_bits(),
                "{what}: element {i}: got {g}, want {wh} (from {w:e})"
            );
        }
    }
}

/// Random blocks, 0 to 19 of them four times over, then 500 at once.
pub fn random(cases: &[Case]) {
    for &(ty, name, scales) in cases {
        if !has_kernels(ty, name) {
            continue;
        }
        let mut rng = Lcg(0x5eed ^ ty.type_size());
        for n in 0..20 {
            for _ in 0..4 {
                check(ty, name, &random_blocks(&mut rng, n, ty, scales));
            }
        }
        check(ty, name, &random_blocks(&mut rng, 500, ty, scales));
    }
}

/// Every byte value at every position of the quants, under every special
/// scale (each scale field taking each of them in turn).
pub fn every_byte_and_special_scale(cases: &[Case]) {
    for &(ty, name, scales) in cases {
        if !has_kernels(ty, name) {
            continue;
        }
        let ts = ty.type_size() as usize;
        let mut src = Vec::new();
        for (si, &s) in SPECIAL_F16.iter().enumerate() {
            for start in 0..256 {
                let mut b: Vec<u8> = (0..ts).map(|j| (start + j * 7 + si) as u8).collect();
                for (f, &at) in scales.iter().enumerate() {
                    let s = if f == 0 {
                        s
                    } else {
                        SPECIAL_F16[(si + start + f) % SPECIAL_F16.len()]
                    };
                    set_scale(&mut b, at, s);
                }
                src.extend_from_slice(&b);
            }
        }
        check(ty, name, &src);
    }
}

/// The golden vectors (whole, and prefixes of every block count), and the
/// f32 kernel against ggml's own values.
pub fn golden(cases: &[Case]) {
    for &(ty, name, _) in cases {
        let ts = ty.type_size() as usize;
        let g = common::golden(name);
        check(ty, name, &g.raw);
        for n in 0..20.min(g.raw.len() / ts) {
            check(ty, name, &g.raw[..n * ts]);
        }
        for (path, k) in simd::kernel_paths(ty) {
            if let Some(f) = k.f32 {
                let mut got = vec![0f32; g.expected.len()];
                f(&g.raw, &mut got);
                common::assert_bits_eq(&format!("{name} {path}"), &got, &g.expected);
            }
        }
    }
}

/// Inputs and outputs of mismatched lengths: the kernels decode the whole
/// blocks that fit both and write nothing past them.
pub fn mismatched_lengths(cases: &[Case]) {
    for &(ty, name, scales) in cases {
        for (_, k) in simd::kernel_paths(ty) {
            mismatched_lengths_of(ty, name, scales, k);
        }
    }
}

/// [`mismatched_lengths`] for the kernel set `k` of `ty`.
fn mismatched_lengths_of(ty: GgmlType, name: &str, scales: &[Scale], k: simd::Kernels) {
    let (ts, bs) = (ty.type_size() as usize, ty.block_size() as usize);
    let mut rng = Lcg(7);
    let src = random_blocks(&mut rng, 5, ty, scales);
    let mut want = vec![0f32; 5 * bs];
    reference_row_fn(ty)(&src, &mut want);
    for src_len in [0, 1, ts - 1, ts, ts + 7, 3 * ts + 1, 5 * ts] {
        for dst_len in [0, 1, bs - 1, bs, bs + 44, 2 * bs, 5 * bs + 13, 7 * bs] {
            let blocks = (src_len / ts).min(dst_len / bs);
            let done = blocks * bs;
            for (_, f) in common::variants(k.f32, k.f32_stream) {
                let mut got = vec![f32::from_bits(0x7fc0_beef); dst_len];
                f(&src[..src_len], &mut got);
                common::assert_bits_eq(name, &got[..done], &want[..done]);
                assert!(
                    got[done..].iter().all(|v| v.to_bits() == 0x7fc0_beef),
                    "{name}: wrote past {blocks} blocks"
                );
            }
            for (_, f) in common::variants(k.f16, k.f16_stream) {
                let mut got = vec![f16::from_bits(0x7e55); dst_len];
                f(&src[..src_len], &mut got);
                assert_f16_rounds(name, &got[..done], &want[..done]);
                assert!(
                    got[done..].iter().all(|v| v.to_bits() == 0x7e55),
                    "{name}: f16 wrote past {blocks} blocks"
                );
            }
            for (_, f) in common::variants(k.bf16, k.bf16_stream) {
                let mut got = vec![bf16::from_bits(0x7e55); dst_len];
                f(&src[..src_len], &mut got);
                assert_bf16_rounds(name, &got[..done], &want[..done]);
                assert!(
                    got[done..].iter().all(|v| v.to_bits() == 0x7e55),
                    "{name}: bf16 wrote past {blocks} blocks"
                );
            }
        }
    }
}

/// The public decoders (which pick the kernels, in chunks over threads) give
/// the reference's values.
pub fn dispatcher(cases: &[Case]) {
    for &(ty, name, scales) in cases {
        let mut rng = Lcg(99);
        // Enough blocks for the dispatcher to work in several chunks.
        let src = random_blocks(&mut rng, 333 * 256 / ty.block_size() as usize, ty, scales);
        let mut want = vec![0f32; values(ty, &src)];
        reference_row_fn(ty)(&src, &mut want);
        let got32: Vec<f32> = gguf_loader::dequantize(ty, &src).unwrap();
        common::assert_bits_eq(name, &got32, &want);
        let got16: Vec<f16> = gguf_loader::dequantize(ty, &src).unwrap();
        assert_f16_rounds(&format!("{name} f16"), &got16, &want);
        let got_bf16: Vec<bf16> = gguf_loader::dequantize(ty, &src).unwrap();
        assert_bf16_rounds(&format!("{name} bf16"), &got_bf16, &want);
    }
}

/// NEON is on every aarch64 CPU, so there the kernels must exist (the checks
/// above would otherwise pass by skipping).
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
pub fn neon_present(cases: &[Case]) {
    for &(ty, name, _) in cases {
        let k = simd::kernels(ty);
        assert!(
            k.f32.is_some() && k.f16.is_some(),
            "{name}: no NEON kernels"
        );
    }
}

/// For types with AVX-512 kernels besides AVX2 ones (the K-quants, the
/// i-quants with grids): where the CPU has AVX-512F/BW and
/// `GGUF_LOADER_SIMD` allows it, `simd::kernel_paths` names both, so the
/// checks above hold both to the reference; elsewhere the one it picks.
#[cfg(target_arch = "x86_64")]
pub fn avx512_and_avx2_paths(cases: &[Case]) {
    if simd::kernels(GgmlType::Q4_K).f16.is_none() {
        return; // no AVX2 here, or GGUF_LOADER_SIMD=scalar
    }
    let want = common::wide_path_names();
    for &(ty, name, _) in cases {
        let names: Vec<_> = simd::kernel_paths(ty).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, want, "{name}");
    }
}

/// Defines one `#[test]` per check above, over the cases `$cases`.
macro_rules! kernel_tests {
    ($cases:expr) => {
        #[test]
        fn match_reference_random() {
            $crate::kernels::random($cases);
        }

        #[test]
        fn every_byte_and_special_scale() {
            $crate::kernels::every_byte_and_special_scale($cases);
        }

        #[test]
        fn match_reference_golden() {
            $crate::kernels::golden($cases);
        }

        #[test]
        fn mismatched_lengths() {
            $crate::kernels::mismatched_lengths($cases);
        }

        #[test]
        fn dispatcher_uses_kernels_exactly() {
            $crate::kernels::dispatcher($cases);
        }

        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        #[test]
        fn neon_kernels_present() {
            $crate::kernels::neon_present($cases);
        }
    };
}

pub(crate) use kernel_tests;
