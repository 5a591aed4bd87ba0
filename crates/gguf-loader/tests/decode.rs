//! The decode entry points: every type, every output float, serial and
//! parallel, whole tensors and row ranges.

mod common;

use gguf_loader::internals::reference_row_fn;
use gguf_loader::{bf16, f16, GgmlType};
use gguf_loader::{
    dequantize, dequantize_into, dequantize_into_par, dequantize_rows_into, DecodeError,
};

fn golden_name(ty: GgmlType) -> String {
    ty.name().to_lowercase()
}

/// Every type has golden vectors; f32 output equals them bit for bit.
#[test]
fn every_type_has_golden_vectors_and_f32_matches() {
    for ty in GgmlType::ALL {
        let g = common::golden(&golden_name(ty));
        let got: Vec<f32> = dequantize(ty, &g.raw).unwrap();
        common::assert_bits_eq(ty.name(), &got, &g.expected);
    }
}

fn same_or_both_nan(a: u16, b: u16, nan: impl Fn(u16) -> bool) -> bool {
    a == b || (nan(a) && nan(b))
}

/// f16 and bf16 outputs are the f32 value rounded to nearest-even, except
/// F16 → f16 and BF16 → bf16, which copy the bits.
#[test]
fn f16_and_bf16_are_rounded_f32_or_copied_bits() {
    for ty in GgmlType::ALL {
        let g = common::golden(&golden_name(ty));
        let h: Vec<f16> = dequantize(ty, &g.raw).unwrap();
        let b: Vec<bf16> = dequantize(ty, &g.raw).unwrap();
        for (i, want) in g.expected.iter().enumerate() {
            let want_h = if ty == GgmlType::F16 {
                u16::from_le_bytes([g.raw[2 * i], g.raw[2 * i + 1]])
            } else {
                f16::from_f32(*want).to_bits()
            };
            let want_b = if ty == GgmlType::BF16 {
                u16::from_le_bytes([g.raw[2 * i], g.raw[2 * i + 1]])
            } else {
                bf16::from_f32(*want).to_bits()
            };
            assert!(
                same_or_both_nan(h[i].to_bits(), want_h, |x| f16::from_bits(x).is_nan()),
                "{ty} f16 element {i}: got {:#06x} want {want_h:#06x}",
                h[i].to_bits()
            );
            assert!(
                same_or_both_nan(b[i].to_bits(), want_b, |x| bf16::from_bits(x).is_nan()),
                "{ty} bf16 element {i}: got {:#06x} want {want_b:#06x}",
                b[i].to_bits()
            );
        }
    }
}

/// Parallel, serial and reference decoding agree on large inputs, for every
/// output float (SIMD paths included).
#[test]
fn parallel_serial_and_reference_agree() {
    let mut rng = common::Lcg(0x9e37_79b9_7f4a_7c15);
    for ty in GgmlType::ALL {
        // Random bytes, with the golden blocks' scales so values stay finite:
        // repeat the golden raw bytes up to a few hundred thousand elements.
        let g = common::golden(&golden_name(ty));
        let mut raw = Vec::new();
        while raw.len() < 300_000 {
            raw.extend_from_slice(&g.raw);
        }
        let ts = ty.type_size() as usize;
        raw.truncate(raw.len() / ts * ts);
        // Flip the low bit of a few bytes past each block's first four (where
        // most scale fields sit), so that values stay mostly finite.
        for _ in 0..64 {
            let i = (rng.step() >> 33) as usize % raw.len();
            if i % ts >= 4
                && !matches!(
                    ty,
                    GgmlType::F16 | GgmlType::BF16 | GgmlType::F32 | GgmlType::F64
                )
            {
                raw[i] ^= 1;
            }
        }
        let n = raw.len() / ts * ty.block_size() as usize;
        let mut reference = vec![0f32; n];
        reference_row_fn(ty)(&raw, &mut reference);

        let mut serial = vec![0f32; n];
        dequantize_into(ty, &raw, &mut serial).unwrap();
        common::assert_bits_eq(ty.name(), &serial, &reference);
        let mut par = vec![0f32; n];
        dequantize_into_par(ty, &raw, &mut par).unwrap();
        common::assert_bits_eq(ty.name(), &par, &reference);

        let mut h1 = vec![f16::ZERO; n];
        let mut h2 = vec![f16::ZERO; n];
        dequantize_into(ty, &raw, &mut h1).unwrap();
        dequantize_into_par(ty, &raw, &mut h2).unwrap();
        for i in 0..n {
            let want = if ty == GgmlType::F16 {
                u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]])
            } else {
                f16::from_f32(reference[i]).to_bits()
            };
            for got in [h1[i], h2[i]] {
                assert!(
                    same_or_both_nan(got.to_bits(), want, |x| f16::from_bits(x).is_nan()),
                    "{ty} f16 element {i}"
                );
            }
        }
    }
}

#[test]
fn length_errors() {
    let ty = GgmlType::Q4_0;
    let mut out = vec![0f32; 32];
    assert_eq!(
        dequantize_into(ty, &[0u8; 17], &mut out),
        Err(DecodeError::PartialBlock {
            ty,
            len: 17,
            type_size: 18
        })
    );
    assert_eq!(
        dequantize_into(ty, &[0u8; 36], &mut out),
        Err(DecodeError::OutputLength {
            ty,
            want: 64,
            got: 32
        })
    );
}

#[test]
fn row_ranges_decode_the_same_values() {
    let ty = GgmlType::Q8_0;
    let g = common::golden("q8_0");
    let row_len = 64; // two blocks per row
    let rows = g.raw.len() / 68;
    let all: Vec<f32> = dequantize(ty, &g.raw[..rows * 68]).unwrap();
    for (start, end) in [(0, 1), (1, 3), (0, rows), (rows, rows)] {
        let mut out = vec![0f32; (end - start) * row_len];
        dequantize_rows_into(ty, &g.raw[..rows * 68], row_len, start..end, &mut out).unwrap();
        common::assert_bits_eq("rows", &out, &all[start * row_len..end * row_len]);
    }
    let mut out = vec![0f32; 64];
    assert!(matches!(
        dequantize_rows_into(ty, &g.raw, row_len, rows..rows + 1, &mut out),
        Err(DecodeError::RowRange { .. })
    ));
    assert!(matches!(
        dequantize_rows_into(ty, &g.raw, 48, 0..1, &mut out),
        Err(DecodeError::RowRange { .. })
    ));
    // A row whose byte length overflows is no row of any slice (it once
    // wrapped around and decoded one value of a 4-byte F32 tensor).
    for (ty, row_len) in [
        (GgmlType::F32, (1usize << 62) + 1),
        (GgmlType::F64, usize::MAX),
        (ty, usize::MAX / 64 * 64),
    ] {
        let mut one = vec![0f32; 1];
        assert!(
            matches!(
                dequantize_rows_into(ty, &[0u8; 8], row_len, 0..1, &mut one),
                Err(DecodeError::RowRange { .. })
            ),
            "{ty} {row_len}"
        );
    }
}
