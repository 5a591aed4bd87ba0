//! The first byte picks a ggml type; the rest, cut to whole blocks, is
//! decoded to f32, f16 and bf16 (no panic allowed), and every SIMD f32
//! kernel must match the scalar reference bit for bit (and the fused f16 and
//! bf16 kernels, and the bf16 output, the reference rounded), streaming
//! variants included, on every SIMD path this CPU has for the type;
//! kernels given mismatched lengths must stay in bounds. The NaN/Inf data
//! check reads the same bytes through the block layouts' scale fields: it
//! must not panic, and may report only fields of the type's layout, at most
//! one problem per field and block.
#![no_main]

use gguf_loader::internals::blocks::scale_fields;
use gguf_loader::internals::{reference_row_fn, simd};
use gguf_loader::GgmlType;
use gguf_loader::{bf16, f16};
use gguf_loader::{check_tensor_data, checked_fields, dequantize_into};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let ty = GgmlType::ALL[pick as usize % GgmlType::ALL.len()];
    let ts = ty.type_size() as usize;
    let src = &rest[..rest.len() / ts * ts];
    let n = src.len() / ts * ty.block_size() as usize;

    let mut out32 = vec![0f32; n];
    dequantize_into(ty, src, &mut out32).unwrap();
    let mut out16 = vec![f16::ZERO; n];
    dequantize_into(ty, src, &mut out16).unwrap();
    let mut outb = vec![bf16::ZERO; n];
    dequantize_into(ty, src, &mut outb).unwrap();

    let mut reference = vec![0f32; n];
    reference_row_fn(ty)(src, &mut reference);
    // Every SIMD path this CPU has for the type, not only the dispatcher's.
    let paths = simd::kernel_paths(ty);
    for (path, kernels) in &paths {
        for k in [kernels.f32, kernels.f32_stream].into_iter().flatten() {
            let mut fast = vec![0f32; n];
            k(src, &mut fast);
            for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{ty} {path}: SIMD {a:e} ({:#x}) != reference {b:e} ({:#x}) at {i}",
                    a.to_bits(),
                    b.to_bits()
                );
            }
        }
        for k in [kernels.f16, kernels.f16_stream].into_iter().flatten() {
            let mut fast = vec![f16::ZERO; n];
            k(src, &mut fast);
            for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
                let want = f16::from_f32(*b);
                assert!(
                    a.to_bits() == want.to_bits() || (a.is_nan() && want.is_nan()),
                    "{ty} {path}: fused f16 {a} != reference {want} at {i}"
                );
            }
        }

        for k in [kernels.bf16, kernels.bf16_stream].into_iter().flatten() {
            let mut fast = vec![bf16::ZERO; n];
            k(src, &mut fast);
            for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
                let want = bf16::from_f32(*b);
                assert!(
                    a.to_bits() == want.to_bits() || (a.is_nan() && want.is_nan()),
                    "{ty} {path}: fused bf16 {a} != reference {want} at {i}"
                );
            }
        }
    }

    // bf16 output: the reference rounded (a fused kernel, or the SIMD
    // f32 → bf16 conversion of an f32 scratch).
    for (i, (a, b)) in outb.iter().zip(&reference).enumerate() {
        let want = bf16::from_f32(*b);
        assert!(
            a.to_bits() == want.to_bits() || (a.is_nan() && want.is_nan()),
            "{ty}: bf16 {a} != reference {want} at {i}"
        );
    }

    // The data check, over the untrimmed bytes (a partial tail is ignored).
    let blocks = (rest.len() / ts) as u64;
    let fields = checked_fields(ty);
    let problems = check_tensor_data("fuzz", ty, rest, usize::MAX);
    let per_block = if ty.is_quantized() {
        fields.len() as u64
    } else {
        1
    };
    assert!(
        problems.len() as u64 <= blocks * per_block,
        "{ty}: too many problems"
    );
    for p in &problems {
        assert!(p.block < blocks, "{ty}: problem past the last block: {p}");
        assert!(
            fields.contains(&p.field),
            "{ty}: unchecked field {}",
            p.field
        );
        assert!(
            !ty.is_quantized() || scale_fields(ty).iter().any(|f| f.name == p.field),
            "{ty}: {} is not a scale field of the layout",
            p.field
        );
    }

    // The kernels are safe functions: any pair of lengths must be sound
    // (they decode the whole blocks that fit both; ASan checks the rest).
    let short = n.saturating_sub(usize::from(pick >> 6) * 7);
    let (untrimmed, long) = (rest, n + usize::from(pick & 0x1f));
    for len in [short, long] {
        for (_, kernels) in &paths {
            for f in [kernels.f32, kernels.f32_stream].into_iter().flatten() {
                f(untrimmed, &mut vec![0f32; len]);
            }
            for f in [kernels.f16, kernels.f16_stream].into_iter().flatten() {
                f(untrimmed, &mut vec![f16::ZERO; len]);
            }
            for f in [kernels.bf16, kernels.bf16_stream].into_iter().flatten() {
                f(untrimmed, &mut vec![bf16::ZERO; len]);
            }
        }
        reference_row_fn(ty)(untrimmed, &mut vec![0f32; len]);
    }
});
