//! Bit-exact decoding of the legacy, fp4, ternary and plain number types
//! against golden vectors written by `scripts/golden_legacy.py` (gguf-py and
//! ggml's own C as oracles), plus robustness on arbitrary bytes.

mod common;

use common::Lcg;

use gguf_loader::internals::{float, fp4, legacy, ternary};
use gguf_loader::GgmlType;

type Decode = fn(&[u8], &mut [f32]);

/// Every type of this family with its decoder.
const DECODERS: &[(GgmlType, Decode)] = &[
    (GgmlType::Q4_0, legacy::dequantize_row_q4_0),
    (GgmlType::Q4_1, legacy::dequantize_row_q4_1),
    (GgmlType::Q5_0, legacy::dequantize_row_q5_0),
    (GgmlType::Q5_1, legacy::dequantize_row_q5_1),
    (GgmlType::Q8_0, legacy::dequantize_row_q8_0),
    (GgmlType::Q8_1, legacy::dequantize_row_q8_1),
    (GgmlType::Q1_0, legacy::dequantize_row_q1_0),
    (GgmlType::Q2_0, legacy::dequantize_row_q2_0),
    (GgmlType::Q8_K, legacy::dequantize_row_q8_k),
    (GgmlType::MXFP4, fp4::dequantize_row_mxfp4),
    (GgmlType::NVFP4, fp4::dequantize_row_nvfp4),
    (GgmlType::TQ1_0, ternary::dequantize_row_tq1_0),
    (GgmlType::TQ2_0, ternary::dequantize_row_tq2_0),
    (GgmlType::F32, float::dequantize_row_f32),
    (GgmlType::F16, float::dequantize_row_f16),
    (GgmlType::BF16, float::dequantize_row_bf16),
    (GgmlType::F64, float::dequantize_row_f64),
    (GgmlType::I8, float::dequantize_row_i8),
    (GgmlType::I16, float::dequantize_row_i16),
    (GgmlType::I32, float::dequantize_row_i32),
    (GgmlType::I64, float::dequantize_row_i64),
];

fn check_golden(t: GgmlType, f: Decode) {
    let name = t.name().to_ascii_lowercase();
    let g = common::golden(&name);
    let ts = t.type_size() as usize;
    let bs = t.block_size() as usize;
    assert_eq!(g.raw.len() % ts, 0, "{name}: raw is not whole blocks");
    assert!(!g.raw.is_empty(), "{name}: empty golden");
    assert_eq!(g.raw.len() / ts * bs, g.expected.len(), "{name}: sizes");
    let mut got = vec![f32::from_bits(0xDEAD_BEEF); g.expected.len()];
    f(&g.raw, &mut got);
    common::assert_bits_eq(&name, &got, &g.expected);
}

macro_rules! golden_tests {
    ($($test:ident: $t:ident => $f:path;)*) => {
        $(
            #[test]
            fn $test() {
                check_golden(GgmlType::$t, $f);
            }
        )*
    };
}

golden_tests! {
    golden_q4_0: Q4_0 => legacy::dequantize_row_q4_0;
    golden_q4_1: Q4_1 => legacy::dequantize_row_q4_1;
    golden_q5_0: Q5_0 => legacy::dequantize_row_q5_0;
    golden_q5_1: Q5_1 => legacy::dequantize_row_q5_1;
    golden_q8_0: Q8_0 => legacy::dequantize_row_q8_0;
    golden_q8_1: Q8_1 => legacy::dequantize_row_q8_1;
    golden_q1_0: Q1_0 => legacy::dequantize_row_q1_0;
    golden_q2_0: Q2_0 => legacy::dequantize_row_q2_0;
    golden_q8_k: Q8_K => legacy::dequantize_row_q8_k;
    golden_mxfp4: MXFP4 => fp4::dequantize_row_mxfp4;
    golden_nvfp4: NVFP4 => fp4::dequantize_row_nvfp4;
    golden_tq1_0: TQ1_0 => ternary::dequantize_row_tq1_0;
    golden_tq2_0: TQ2_0 => ternary::dequantize_row_tq2_0;
    golden_f32: F32 => float::dequantize_row_f32;
    golden_f16: F16 => float::dequantize_row_f16;
    golden_bf16: BF16 => float::dequantize_row_bf16;
    golden_f64: F64 => float::dequantize_row_f64;
    golden_i8: I8 => float::dequantize_row_i8;
    golden_i16: I16 => float::dequantize_row_i16;
    golden_i32: I32 => float::dequantize_row_i32;
    golden_i64: I64 => float::dequantize_row_i64;
}

#[test]
fn random_bytes_never_panic_and_fill_every_value() {
    let mut rng = Lcg(0x5EED);
    for &(t, f) in DECODERS {
        let ts = t.type_size() as usize;
        let bs = t.block_size() as usize;
        for n_blocks in [1usize, 2, 7, 64] {
            let raw = rng.bytes(n_blocks * ts);
            let mut dst = vec![f32::from_bits(0x7FBA_DBAD); n_blocks * bs];
            f(&raw, &mut dst);
            // every output slot is written (the sentinel is a NaN payload no
            // decoder produces: none of them emits signalling NaNs with it)
            assert!(
                dst.iter().all(|v| v.to_bits() != 0x7FBA_DBAD),
                "{t}: an output was not written"
            );
        }
    }
}

#[test]
fn mismatched_lengths_never_panic() {
    let mut rng = Lcg(42);
    for &(t, f) in DECODERS {
        let ts = t.type_size() as usize;
        let bs = t.block_size() as usize;
        let raw = rng.bytes(3 * ts + ts / 2 + 1);
        let full = {
            let mut v = vec![0.0f32; 3 * bs];
            f(&raw, &mut v);
            v
        };
        for dst_len in [0, 1, bs.saturating_sub(1), bs, 2 * bs + 1, 3 * bs, 5 * bs] {
            let mut dst = vec![0.0f32; dst_len];
            f(&raw, &mut dst);
            // whole blocks that fit are decoded exactly as with a full dst
            let done = (dst_len / bs).min(3) * bs;
            for (i, (a, b)) in dst[..done].iter().zip(&full).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{t}: element {i}");
            }
        }
        for src_len in [0, 1, ts.saturating_sub(1)] {
            let mut dst = vec![0.0f32; 2 * bs];
            f(&raw[..src_len.min(raw.len())], &mut dst);
            if src_len < ts {
                assert!(dst.iter().all(|v| *v == 0.0), "{t}: wrote from a short src");
            }
        }
    }
}

#[test]
fn fp4_scale_helpers_match_ggml() {
    // ggml_e8m0_to_fp32_half: 2^(x-128), denormal for x < 2, no NaN at 0xFF
    assert_eq!(fp4::e8m0_to_fp32_half(0).to_bits(), 0x0020_0000);
    assert_eq!(fp4::e8m0_to_fp32_half(1).to_bits(), 0x0040_0000);
    assert_eq!(fp4::e8m0_to_fp32_half(127), 0.5);
    assert_eq!(fp4::e8m0_to_fp32_half(128), 1.0);
    assert_eq!(fp4::e8m0_to_fp32_half(255), 2f32.powi(127));
    // ggml_ue4m3_to_fp32: halved, 0 and 0x7F are zero, the sign bit is ignored
    assert_eq!(fp4::ue4m3_to_fp32(0x00), 0.0);
    assert_eq!(fp4::ue4m3_to_fp32(0x7F), 0.0);
    assert_eq!(fp4::ue4m3_to_fp32(0x38), 0.5);
    assert_eq!(fp4::ue4m3_to_fp32(0x7E), 224.0);
    assert_eq!(fp4::ue4m3_to_fp32(0x01), 2f32.powi(-10));
    assert_eq!(fp4::ue4m3_to_fp32(0xB8), 0.5);
    assert_eq!(fp4::ue4m3_to_fp32(0xFF), 240.0);
}
