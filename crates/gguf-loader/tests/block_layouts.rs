//! The block layouts (`format::blocks`) against ggml's: every block struct's
//! size and every field's offset as a C compiler lays out `ggml-common.h`'s
//! `block_*` structs, the sizes `GgmlType::layout` reports, gguf-py's
//! `GGML_QUANT_SIZES`, and the scale fields the data check and `synth` use.
//!
//! The numbers below were printed by `scripts/ggml-block-layouts.sh` (a C
//! program over `ggml-common.h` of the llama.cpp vendored in
//! llama-cpp-python 0.3.36), not derived from the Rust structs.

mod common;

use std::mem::{align_of, offset_of, size_of};

use gguf_loader::internals::blocks::{self, *};
use gguf_loader::GgmlType;

/// Asserts that block struct `$b` of type `$ty` has ggml's size and its
/// fields ggml's offsets, in ggml's order, covering the whole block.
macro_rules! ggml_layout {
    ($b:ident, $ty:ident, $elements:expr, size $size:expr, { $($field:ident = $off:expr),+ $(,)? }) => {{
        let fields: &[(&str, usize, usize)] = &[$((stringify!($field), offset_of!($b, $field), $off)),+];
        for (name, got, want) in fields {
            assert_eq!(got, want, "{}.{name}: offset", stringify!($b));
        }
        assert_eq!(size_of::<$b>(), $size, "sizeof(block of {})", stringify!($ty));
        assert_eq!(align_of::<$b>(), 1, "{}", stringify!($b));
        // No gaps: the fields end where the next begins (and the last at the end).
        let bytes = [0u8; $size];
        let block: &$b = &as_blocks::<$b>(&bytes)[0];
        let sizes = [$(std::mem::size_of_val(&block.$field)),+];
        let mut at = 0;
        for ((name, off, _), size) in fields.iter().zip(sizes) {
            assert_eq!(*off, at, "{}.{name}: gap before", stringify!($b));
            at += size;
        }
        assert_eq!(at, $size, "{}: fields cover the block", stringify!($b));
        let ty = GgmlType::$ty;
        assert_eq!(<$b as Block>::TYPE, ty);
        assert_eq!(<$b as Block>::ELEMENTS, $elements, "{ty}");
        assert_eq!(ty.type_size(), $size as u64, "{ty}: type_size");
        assert_eq!(ty.block_size(), $elements as u64, "{ty}: block_size");
        ty
    }};
}

/// Every quantized type, with ggml's numbers; returns the types seen.
fn ggml_layouts() -> Vec<GgmlType> {
    vec![
        ggml_layout!(BlockQ4_0, Q4_0, 32, size 18, { d = 0, qs = 2 }),
        ggml_layout!(BlockQ4_1, Q4_1, 32, size 20, { d = 0, m = 2, qs = 4 }),
        ggml_layout!(BlockQ5_0, Q5_0, 32, size 22, { d = 0, qh = 2, qs = 6 }),
        ggml_layout!(BlockQ5_1, Q5_1, 32, size 24, { d = 0, m = 2, qh = 4, qs = 8 }),
        ggml_layout!(BlockQ8_0, Q8_0, 32, size 34, { d = 0, qs = 2 }),
        ggml_layout!(BlockQ8_1, Q8_1, 32, size 36, { d = 0, s = 2, qs = 4 }),
        ggml_layout!(BlockQ1_0, Q1_0, 128, size 18, { d = 0, qs = 2 }),
        ggml_layout!(BlockQ2_0, Q2_0, 64, size 18, { d = 0, qs = 2 }),
        ggml_layout!(BlockMXFP4, MXFP4, 32, size 17, { e = 0, qs = 1 }),
        ggml_layout!(BlockNVFP4, NVFP4, 64, size 36, { d = 0, qs = 4 }),
        ggml_layout!(BlockTQ1_0, TQ1_0, 256, size 54, { qs = 0, qh = 48, d = 52 }),
        ggml_layout!(BlockTQ2_0, TQ2_0, 256, size 66, { qs = 0, d = 64 }),
        ggml_layout!(BlockQ2_K, Q2_K, 256, size 84, { scales = 0, qs = 16, d = 80, dmin = 82 }),
        ggml_layout!(BlockQ3_K, Q3_K, 256, size 110, { hmask = 0, qs = 32, scales = 96, d = 108 }),
        ggml_layout!(BlockQ4_K, Q4_K, 256, size 144, { d = 0, dmin = 2, scales = 4, qs = 16 }),
        ggml_layout!(BlockQ5_K, Q5_K, 256, size 176, { d = 0, dmin = 2, scales = 4, qh = 16, qs = 48 }),
        ggml_layout!(BlockQ6_K, Q6_K, 256, size 210, { ql = 0, qh = 128, scales = 192, d = 208 }),
        ggml_layout!(BlockQ8_K, Q8_K, 256, size 292, { d = 0, qs = 4, bsums = 260 }),
        ggml_layout!(BlockIQ2_XXS, IQ2_XXS, 256, size 66, { d = 0, qs = 2 }),
        ggml_layout!(BlockIQ2_XS, IQ2_XS, 256, size 74, { d = 0, qs = 2, scales = 66 }),
        ggml_layout!(BlockIQ2_S, IQ2_S, 256, size 82, { d = 0, qs = 2, qh = 66, scales = 74 }),
        ggml_layout!(BlockIQ3_XXS, IQ3_XXS, 256, size 98, { d = 0, qs = 2 }),
        ggml_layout!(BlockIQ3_S, IQ3_S, 256, size 110, { d = 0, qs = 2, qh = 66, signs = 74, scales = 106 }),
        ggml_layout!(BlockIQ1_S, IQ1_S, 256, size 50, { d = 0, qs = 2, qh = 34 }),
        ggml_layout!(BlockIQ1_M, IQ1_M, 256, size 56, { qs = 0, qh = 32, scales = 48 }),
        ggml_layout!(BlockIQ4_NL, IQ4_NL, 32, size 18, { d = 0, qs = 2 }),
        ggml_layout!(BlockIQ4_XS, IQ4_XS, 256, size 136, { d = 0, scales_h = 2, scales_l = 4, qs = 8 }),
    ]
}

#[test]
fn block_structs_match_ggml_common_h() {
    let seen = ggml_layouts();
    // Every quantized type has its struct here; the rest are plain numbers.
    for ty in GgmlType::ALL {
        assert_eq!(seen.contains(&ty), ty.is_quantized(), "{ty}");
    }
}

#[test]
fn plain_types_are_one_number() {
    use GgmlType::*;
    for (ty, size) in [
        (F32, 4),
        (F16, 2),
        (BF16, 2),
        (F64, 8),
        (I8, 1),
        (I16, 2),
        (I32, 4),
        (I64, 8),
    ] {
        assert_eq!((ty.block_size(), ty.type_size()), (1, size), "{ty}");
        assert!(blocks::scale_fields(ty).is_empty(), "{ty}");
    }
}

/// The scale fields name a field of the struct at its offset, with the width
/// of their encoding, and every quantized type but none of the plain ones
/// has one.
#[test]
fn scale_fields_match_ggml() {
    use GgmlType::*;
    let f16 = ScaleEnc::F16;
    /// Name, offset, size and encoding of one field.
    type Field = (&'static str, usize, usize, ScaleEnc);
    let want: &[(GgmlType, &[Field])] = &[
        (Q4_0, &[("d", 0, 2, f16)]),
        (Q4_1, &[("d", 0, 2, f16), ("m", 2, 2, f16)]),
        (Q5_0, &[("d", 0, 2, f16)]),
        (Q5_1, &[("d", 0, 2, f16), ("m", 2, 2, f16)]),
        (Q8_0, &[("d", 0, 2, f16)]),
        (Q8_1, &[("d", 0, 2, f16), ("s", 2, 2, f16)]),
        (Q1_0, &[("d", 0, 2, f16)]),
        (Q2_0, &[("d", 0, 2, f16)]),
        (MXFP4, &[("e", 0, 1, ScaleEnc::E8M0)]),
        (NVFP4, &[("d", 0, 4, ScaleEnc::UE4M3)]),
        (TQ1_0, &[("d", 52, 2, f16)]),
        (TQ2_0, &[("d", 64, 2, f16)]),
        (Q2_K, &[("d", 80, 2, f16), ("dmin", 82, 2, f16)]),
        (Q3_K, &[("d", 108, 2, f16)]),
        (Q4_K, &[("d", 0, 2, f16), ("dmin", 2, 2, f16)]),
        (Q5_K, &[("d", 0, 2, f16), ("dmin", 2, 2, f16)]),
        (Q6_K, &[("d", 208, 2, f16)]),
        (Q8_K, &[("d", 0, 4, ScaleEnc::F32)]),
        (IQ2_XXS, &[("d", 0, 2, f16)]),
        (IQ2_XS, &[("d", 0, 2, f16)]),
        (IQ2_S, &[("d", 0, 2, f16)]),
        (IQ3_XXS, &[("d", 0, 2, f16)]),
        (IQ3_S, &[("d", 0, 2, f16)]),
        (IQ1_S, &[("d", 0, 2, f16)]),
        (IQ1_M, &[("scale", 48, 8, ScaleEnc::Iq1mScale)]),
        (IQ4_NL, &[("d", 0, 2, f16)]),
        (IQ4_XS, &[("d", 0, 2, f16)]),
    ];
    for (ty, fields) in want {
        let got: Vec<_> = blocks::scale_fields(*ty)
            .iter()
            .map(|f| (f.name, f.offset, f.size, f.enc))
            .collect();
        assert_eq!(&got, fields, "{ty}");
    }
    let quantized = GgmlType::ALL.iter().filter(|t| t.is_quantized()).count();
    assert_eq!(want.len(), quantized);
}

/// gguf-py's `GGML_QUANT_SIZES` agrees with every size but Q8_1's (gguf-py
/// 0.19 says 40 bytes; ggml's `block_q8_1` is 36).
#[test]
fn sizes_agree_with_gguf_py() {
    let Some(out) = common::python_oracle("quant_sizes.py", std::path::Path::new("")) else {
        return;
    };
    let sizes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&out).expect("gguf-py sizes as JSON");
    let mut compared = 0;
    for (name, v) in &sizes {
        let Some(ty) = GgmlType::from_name(name) else {
            continue;
        };
        let py = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
        let ours = (ty.block_size(), ty.type_size());
        if ty == GgmlType::Q8_1 {
            assert_eq!(py, (32, 40), "gguf-py's Q8_1 changed");
            assert_eq!(ours, (32, 36));
        } else {
            assert_eq!(ours, py, "{ty}");
        }
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} types compared");
}
