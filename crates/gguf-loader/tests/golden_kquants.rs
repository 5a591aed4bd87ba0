//! Golden-vector tests for the k-quant decoders (Q2_K..Q6_K): the scalar
//! routines must reproduce ggml's `dequantize_row_*_K` bit for bit.
//! Vectors are written by `scripts/golden_kquants.py`.

mod common;

use common::Lcg;

use gguf_loader::internals::kquants::{
    dequantize_row_q2_k, dequantize_row_q3_k, dequantize_row_q4_k, dequantize_row_q5_k,
    dequantize_row_q6_k,
};

type Dequant = fn(&[u8], &mut [f32]);

const TYPES: [(&str, usize, Dequant); 5] = [
    ("q2_k", 84, dequantize_row_q2_k),
    ("q3_k", 110, dequantize_row_q3_k),
    ("q4_k", 144, dequantize_row_q4_k),
    ("q5_k", 176, dequantize_row_q5_k),
    ("q6_k", 210, dequantize_row_q6_k),
];

fn check_golden(name: &str, type_size: usize, f: Dequant) {
    let g = common::golden(name);
    assert_eq!(g.raw.len() % type_size, 0, "{name}.raw is not whole blocks");
    let n_blocks = g.raw.len() / type_size;
    assert!(n_blocks >= 24, "{name}: only {n_blocks} blocks");
    assert_eq!(g.expected.len(), n_blocks * 256, "{name}.f32 length");

    // Whole row at once.
    let mut got = vec![f32::from_bits(0x7fc0_dead); g.expected.len()];
    f(&g.raw, &mut got);
    common::assert_bits_eq(name, &got, &g.expected);

    // Block by block gives the same values (no state carried across blocks).
    let mut one = [0f32; 256];
    for (i, (b, want)) in g
        .raw
        .chunks_exact(type_size)
        .zip(g.expected.chunks_exact(256))
        .enumerate()
    {
        f(b, &mut one);
        common::assert_bits_eq(&format!("{name} block {i}"), &one, want);
    }
}

#[test]
fn q2_k_golden() {
    check_golden("q2_k", 84, dequantize_row_q2_k);
}

#[test]
fn q3_k_golden() {
    check_golden("q3_k", 110, dequantize_row_q3_k);
}

#[test]
fn q4_k_golden() {
    check_golden("q4_k", 144, dequantize_row_q4_k);
}

#[test]
fn q5_k_golden() {
    check_golden("q5_k", 176, dequantize_row_q5_k);
}

#[test]
fn q6_k_golden() {
    check_golden("q6_k", 210, dequantize_row_q6_k);
}

/// Arbitrary bytes, partial blocks and mismatched `dst` lengths never panic,
/// and only whole (block, 256-output) pairs are written.
#[test]
fn random_bytes_never_panic() {
    let mut rng = Lcg(0x6767_7566_6b71_7561);
    for &(name, ts, f) in &TYPES {
        for round in 0..200 {
            let src_len = rng.below(4 * ts + 7);
            let src: Vec<u8> = (0..src_len).map(|_| rng.byte()).collect();
            let whole = src_len / ts;
            // dst: exact, short, long, empty, or arbitrary.
            let dst_len = match round % 5 {
                0 => whole * 256,
                1 => (whole * 256).saturating_sub(1 + rng.below(300)),
                2 => whole * 256 + rng.below(600),
                3 => 0,
                _ => rng.below(5 * 256),
            };
            const SENTINEL: u32 = 0x7fc1_2345;
            let mut dst = vec![f32::from_bits(SENTINEL); dst_len];
            f(&src, &mut dst);
            let written = whole.min(dst_len / 256) * 256;
            assert!(
                dst[written..].iter().all(|v| v.to_bits() == SENTINEL),
                "{name}: wrote past the {written} values it owns"
            );
        }
        // Degenerate inputs.
        f(&[], &mut []);
        f(&[0xFF; 3], &mut [0.0; 256]);
        f(&vec![0xFF; ts], &mut [0.0; 255]);
    }
}
