//! The SIMD float conversions against `half`, bit for bit: the fused
//! F32 → f16 kernel (AVX2 + F16C on x86-64, and AVX-512 where present; NEON
//! on aarch64) equal to
//! `half::f16::from_f32` (any NaN where that is NaN); the fused F32 → bf16
//! and F16 → bf16 kernels (x86-64) and the f32 → bf16 slice conversion
//! behind the other bf16 outputs (each of its x86-64 paths: AVX2, and
//! AVX-512 where present) equal to `half::bf16::from_f32` exactly,
//! NaNs included; then the dispatcher's f16 and bf16 outputs of every type
//! equal to the reference rounded.

mod common;

use common::Lcg;

use gguf_loader::internals::{reference_row_fn, simd};
use gguf_loader::{bf16, f16, GgmlType};

/// f32 bit patterns around every rounding edge of both half formats: each
/// top-16-bit pattern with low halves at and around the bf16 halfway point,
/// and each f16 value's neighbourhood (the value, the halfway point to the
/// next and their neighbours), plus random bits.
fn edge_values(rng: &mut Lcg) -> Vec<f32> {
    let mut v = Vec::new();
    for hi in 0..=0xFFFFu32 {
        for lo in [0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF] {
            v.push(f32::from_bits(hi << 16 | lo));
        }
        v.push(f32::from_bits(hi << 16 | rng.next_u32() & 0xFFFF));
    }
    for bits in 0..0x7C00u16 {
        let x = f16::from_bits(bits).to_f32();
        let next = f16::from_bits(bits + 1).to_f32();
        let mid = if bits == 0x7BFF {
            65520.0
        } else {
            (x + next) / 2.0
        };
        let m = mid.to_bits();
        for y in [x, mid, f32::from_bits(m - 1), f32::from_bits(m + 1)] {
            v.extend([y, -y]);
        }
    }
    v.extend((0..10_000).map(|_| f32::from_bits(rng.next_u32())));
    v
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn assert_f16_eq(what: &str, got: &[f16], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let w16 = f16::from_f32(*w);
        assert!(
            g.to_bits() == w16.to_bits() || (g.is_nan() && w16.is_nan()),
            "{what}: element {i}: got {:#06x}, want {:#06x} (from {:#010x})",
            g.to_bits(),
            w16.to_bits(),
            w.to_bits()
        );
    }
}

fn assert_bf16_eq(what: &str, got: &[bf16], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            bf16::from_f32(*w).to_bits(),
            "{what}: element {i} (from {:#010x})",
            w.to_bits()
        );
    }
}

/// Every F32 kernel set this CPU runs (`simd::kernel_paths`: AVX2, and
/// AVX-512 where present and allowed), named; empty, saying so, where there
/// is none. Asserts that the list is what the CPU's features call for.
fn f32_kernels() -> Vec<(&'static str, simd::Kernels)> {
    let paths = simd::kernel_paths(GgmlType::F32);
    if paths.is_empty() {
        eprintln!("F32: no SIMD f16 kernel on this CPU, skipped");
    }
    #[cfg(target_arch = "x86_64")]
    if !paths.is_empty() {
        let names: Vec<_> = paths.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            common::wide_path_names(),
            "every path this CPU runs is tested"
        );
    }
    paths
}

#[test]
fn f32_to_f16_kernel_matches_half() {
    let values = edge_values(&mut Lcg(0xF16));
    let src = le_bytes(&values);
    for (path, k) in f32_kernels() {
        for (kind, f) in common::variants(k.f16, k.f16_stream) {
            let what = format!("F32 → f16 {path} {kind}");
            let fill = f16::from_bits(0x7E55);
            matches_placed(&what, f, (&src, &values), fill, assert_f16_eq);
        }
    }
}

/// A half-width float's bits.
trait Bits: Copy {
    fn bits(self) -> u16;
}

impl Bits for f16 {
    fn bits(self) -> u16 {
        self.to_bits()
    }
}

impl Bits for bf16 {
    fn bits(self) -> u16 {
        self.to_bits()
    }
}

/// Runs kernel `f` (whole values of `width` input bytes from `src`, which
/// decode to `want`) on every pairing of input and output lengths: the values
/// that fit both equal `want` as `eq` judges, and nothing past them is
/// written.
fn stays_in_bounds<T: Bits>(
    what: &str,
    f: fn(&[u8], &mut [T]),
    (src, width, want): (&[u8], usize, &[f32]),
    fill: T,
    eq: fn(&str, &[T], &[f32]),
) {
    let n = want.len();
    let src = &src[..width * n];
    for src_len in [0, 1, width - 1, width, 31, 32, 33, 64, 100, 199, width * n] {
        for dst_len in [0, 1, 7, 8, 9, 17, 25, n, n + 10] {
            let src = &src[..src_len.min(src.len())];
            let done = (src.len() / width).min(dst_len);
            let mut got = vec![fill; dst_len];
            f(src, &mut got);
            let what = format!("{what} {src_len}/{dst_len}");
            eq(&what, &got[..done], &want[..done]);
            assert!(
                got[done..].iter().all(|h| h.bits() == fill.bits()),
                "{what}: wrote past {done} values"
            );
        }
    }
}

/// Runs the F32 kernel `f` on `src` (the little-endian bytes of `values`)
/// into outputs aligned and misaligned for streaming stores, then on every
/// length up to 40 (every remainder of the vector width) from a source not
/// 4-byte aligned: each output equals `values` as `eq` judges.
fn matches_placed<T: Bits>(
    what: &str,
    f: fn(&[u8], &mut [T]),
    (src, values): (&[u8], &[f32]),
    fill: T,
    eq: fn(&str, &[T], &[f32]),
) {
    for got in common::run_placed(values.len(), fill, |o| f(src, o)) {
        eq(what, &got, values);
    }
    let mut shifted = [0u8; 1 + 4 * 40];
    shifted[1..].copy_from_slice(&src[..4 * 40]);
    for n in 0..40 {
        let mut got = vec![fill; n];
        f(&shifted[1..1 + 4 * n], &mut got);
        eq(&format!("{what} {n} values"), &got, &values[..n]);
    }
}

#[test]
fn f32_to_f16_kernel_stays_in_bounds() {
    let values: Vec<f32> = (0..50).map(|i| i as f32 * 0.37 - 5.0).collect();
    let src = le_bytes(&values);
    for (path, k) in f32_kernels() {
        for (kind, f) in common::variants(k.f16, k.f16_stream) {
            let what = format!("F32 → f16 {path} {kind}");
            let fill = f16::from_bits(0x7E55);
            stays_in_bounds(&what, f, (&src, 4, &values), fill, assert_f16_eq);
        }
    }
}

/// The fused bf16 kernels of `ty` (x86-64), or `None`, saying so.
fn bf16_kernels(ty: GgmlType) -> Option<simd::Kernels> {
    let k = simd::kernels(ty);
    if k.bf16.is_none() {
        eprintln!("{ty}: no fused bf16 kernel on this CPU, skipped");
        return None;
    }
    assert!(k.bf16_stream.is_some(), "{ty}: no streaming bf16 kernel");
    Some(k)
}

#[test]
fn f32_to_bf16_kernel_matches_half_exactly() {
    if bf16_kernels(GgmlType::F32).is_none() {
        return;
    }
    let values = edge_values(&mut Lcg(0xBF32));
    let src = le_bytes(&values);
    for (path, k) in f32_kernels() {
        for (kind, f) in common::variants(k.bf16, k.bf16_stream) {
            let what = format!("F32 → bf16 {path} {kind}");
            let fill = bf16::from_bits(0x7E55);
            matches_placed(&what, f, (&src, &values), fill, assert_bf16_eq);
            stays_in_bounds(&what, f, (&src, 4, &values[..50]), fill, assert_bf16_eq);
        }
    }
}

#[test]
fn f16_to_bf16_kernel_matches_half_exactly() {
    let Some(k) = bf16_kernels(GgmlType::F16) else {
        return;
    };
    // Every f16 bit pattern, NaNs and subnormals included.
    let src: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let mut want = vec![0f32; 1 << 16];
    reference_row_fn(GgmlType::F16)(&src, &mut want);
    for (kind, f) in common::variants(k.bf16, k.bf16_stream) {
        let fill = bf16::from_bits(0x7E55);
        for got in common::run_placed(want.len(), fill, |o| f(&src, o)) {
            assert_bf16_eq(&format!("F16 → bf16 {kind}"), &got, &want);
        }
        for n in 0..40 {
            let mut got = vec![fill; n];
            f(&src[0x7BF0 * 2..(0x7BF0 + n) * 2], &mut got);
            let what = format!("F16 → bf16 {kind} {n} values");
            assert_bf16_eq(&what, &got, &want[0x7BF0..0x7BF0 + n]);
        }
        let what = format!("F16 → bf16 {kind}");
        stays_in_bounds(&what, f, (&src, 2, &want[..60]), fill, assert_bf16_eq);
    }
}

/// The slice conversion the dispatcher uses, and every x86-64 path this CPU
/// can run whichever it picks (AVX2, and AVX-512 where present; ordinary and
/// streaming stores, which fall back to ordinary ones where the output is
/// not 16-byte aligned).
#[test]
fn f32_to_bf16_matches_half_exactly() {
    let values = edge_values(&mut Lcg(0xBF16));
    type Convert = Box<dyn Fn(&[f32], &mut [bf16])>;
    let mut paths: Vec<(String, Convert)> = vec![(String::new(), Box::new(simd::f32_to_bf16))];
    for (name, k) in simd::f32_to_bf16_paths() {
        paths.push((
            format!(" ({name})"),
            Box::new(move |s: &[f32], d: &mut [bf16]| k(&le_bytes(s), d)),
        ));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let has = |f: &[bool]| f.iter().all(|&b| b);
        use std::is_x86_feature_detected as x86;
        let (allow_avx2, allow_avx512) = common::simd_allowed();
        let avx2 = allow_avx2 && has(&[x86!("avx2"), x86!("f16c")]);
        let avx512 = avx2 && allow_avx512 && has(&[x86!("avx512f"), x86!("avx512bw")]);
        let want = 1 + 2 * usize::from(avx2) + 2 * usize::from(avx512);
        assert_eq!(paths.len(), want, "every path this CPU runs is tested");
    }
    for (how, f) in &paths {
        let mut got = vec![bf16::from_bits(0x7E55); values.len()];
        f(&values, &mut got);
        assert_bf16_eq(&format!("f32 → bf16{how}"), &got, &values);
        // Every length mod the vector width, at every offset of the output.
        for off in 0..12 {
            for n in 0..40 {
                let mut buf = vec![bf16::from_bits(0x7E55); off + n + 3];
                f(&values[off..off + n], &mut buf[off..off + n]);
                assert_bf16_eq(
                    &format!("{n} values{how}"),
                    &buf[off..off + n],
                    &values[off..off + n],
                );
                assert!(
                    buf[..off]
                        .iter()
                        .chain(&buf[off + n..])
                        .all(|h| h.to_bits() == 0x7E55),
                    "{n} values at {off}{how}: wrote outside"
                );
            }
        }
        // Mismatched lengths convert the values that fit both.
        let mut short = vec![bf16::ZERO; 20];
        f(&values[..37], &mut short);
        assert_bf16_eq(&format!("short output{how}"), &short, &values[..20]);
        let mut long = vec![bf16::from_bits(0x7E55); 37];
        f(&values[..20], &mut long);
        assert_bf16_eq(&format!("long output{how}"), &long[..20], &values[..20]);
        assert!(long[20..].iter().all(|h| h.to_bits() == 0x7E55));
    }
}

/// Every type's golden blocks through the dispatcher: f16 and bf16 outputs
/// equal to the reference rounded, on one thread and on several.
#[test]
fn every_type_f16_and_bf16_output_is_the_reference_rounded() {
    for ty in GgmlType::ALL {
        let g = common::golden(&ty.name().to_ascii_lowercase());
        let n = g.expected.len();
        let mut want = vec![0f32; n];
        reference_row_fn(ty)(&g.raw, &mut want);
        let name = ty.name();
        let mut h = vec![f16::ZERO; n];
        gguf_loader::dequantize_into(ty, &g.raw, &mut h).unwrap();
        let mut b = vec![bf16::ZERO; n];
        gguf_loader::dequantize_into(ty, &g.raw, &mut b).unwrap();
        // Streaming stores (the f32 scratch's conversion too) write the same.
        let mut bs = vec![bf16::ZERO; n];
        gguf_loader::dequantize_into_with(ty, &g.raw, &mut bs, gguf_loader::Stores::Streaming)
            .unwrap();
        let mut hs = vec![f16::ZERO; n];
        gguf_loader::dequantize_into_with(ty, &g.raw, &mut hs, gguf_loader::Stores::Streaming)
            .unwrap();
        assert!(
            bs.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{} → bf16 streamed",
            ty.name()
        );
        assert!(
            hs.iter().zip(&h).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{} → f16 streamed",
            ty.name()
        );
        let (hp, bp): (Vec<f16>, Vec<bf16>) = (
            gguf_loader::dequantize(ty, &g.raw).unwrap(),
            gguf_loader::dequantize(ty, &g.raw).unwrap(),
        );
        if ty == GgmlType::F16 {
            // F16 → f16 copies the bits.
            assert!(
                h.iter()
                    .chain(&hp)
                    .zip(g.raw.chunks_exact(2).cycle())
                    .all(|(h, r)| h.to_le_bytes() == r),
                "{name}"
            );
        } else {
            assert_f16_eq(&format!("{name} → f16"), &h, &want);
            assert_f16_eq(&format!("{name} → f16 par"), &hp, &want);
        }
        if ty == GgmlType::BF16 {
            assert!(
                b.iter()
                    .chain(&bp)
                    .zip(g.raw.chunks_exact(2).cycle())
                    .all(|(h, r)| h.to_le_bytes() == r),
                "{name}"
            );
        } else {
            assert_bf16_eq(&format!("{name} → bf16"), &b, &want);
            assert_bf16_eq(&format!("{name} → bf16 par"), &bp, &want);
        }
    }
}

/// Plain float tensors with special values everywhere, through the
/// dispatcher to each output float, in runs longer than its scratch.
#[test]
fn float_types_convert_between_each_other() {
    let values = edge_values(&mut Lcg(0xF1));
    let f32_src = le_bytes(&values);
    let f16_src: Vec<u8> = values
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect();
    let bf16_src: Vec<u8> = values
        .iter()
        .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
        .collect();
    for (ty, src) in [
        (GgmlType::F32, &f32_src),
        (GgmlType::F16, &f16_src),
        (GgmlType::BF16, &bf16_src),
    ] {
        let mut want = vec![0f32; values.len()];
        reference_row_fn(ty)(src, &mut want);
        let got: Vec<f32> = gguf_loader::dequantize(ty, src).unwrap();
        common::assert_bits_eq(&format!("{ty} → f32"), &got, &want);
        if ty != GgmlType::F16 {
            let got: Vec<f16> = gguf_loader::dequantize(ty, src).unwrap();
            assert_f16_eq(&format!("{ty} → f16"), &got, &want);
        }
        if ty != GgmlType::BF16 {
            let got: Vec<bf16> = gguf_loader::dequantize(ty, src).unwrap();
            assert_bf16_eq(&format!("{ty} → bf16"), &got, &want);
        }
    }
}

/// NEON is on every aarch64 CPU, so there the F32 → f16 kernel must exist
/// (the tests above would otherwise pass by skipping).
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
#[test]
fn neon_kernels_present() {
    assert!(
        simd::kernels(GgmlType::F32).f16.is_some(),
        "F32: no NEON f16 kernel"
    );
}
