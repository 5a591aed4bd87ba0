//! The i-quant decoders against golden vectors from gguf-py
//! (`scripts/golden_iquants.py`), bit for bit, and a no-panic sweep.

mod common;

use common::Lcg;

use gguf_loader::internals::iquants::{
    dequantize_row_iq1_m, dequantize_row_iq1_s, dequantize_row_iq2_s, dequantize_row_iq2_xs,
    dequantize_row_iq2_xxs, dequantize_row_iq3_s, dequantize_row_iq3_xxs, dequantize_row_iq4_nl,
    dequantize_row_iq4_xs,
};

type Routine = fn(&[u8], &mut [f32]);

/// (name, routine, block_size, type_size)
const ROUTINES: [(&str, Routine, usize, usize); 9] = [
    ("iq2_xxs", dequantize_row_iq2_xxs, 256, 66),
    ("iq2_xs", dequantize_row_iq2_xs, 256, 74),
    ("iq2_s", dequantize_row_iq2_s, 256, 82),
    ("iq3_xxs", dequantize_row_iq3_xxs, 256, 98),
    ("iq3_s", dequantize_row_iq3_s, 256, 110),
    ("iq1_s", dequantize_row_iq1_s, 256, 50),
    ("iq1_m", dequantize_row_iq1_m, 256, 56),
    ("iq4_nl", dequantize_row_iq4_nl, 32, 18),
    ("iq4_xs", dequantize_row_iq4_xs, 256, 136),
];

fn check_golden(name: &str) {
    let (_, f, block_size, type_size) = *ROUTINES
        .iter()
        .find(|r| r.0 == name)
        .expect("known routine");
    let g = common::golden(name);
    assert_eq!(g.raw.len() % type_size, 0, "{name}.raw holds whole blocks");
    assert_eq!(
        g.expected.len(),
        g.raw.len() / type_size * block_size,
        "{name}: expected length"
    );
    // Poison the output so an element the routine forgets to write shows up.
    let mut got = vec![f32::from_bits(0x7fa5_a5a5); g.expected.len()];
    f(&g.raw, &mut got);
    common::assert_bits_eq(name, &got, &g.expected);
}

#[test]
fn iq2_xxs_golden() {
    check_golden("iq2_xxs");
}

#[test]
fn iq2_xs_golden() {
    check_golden("iq2_xs");
}

#[test]
fn iq2_s_golden() {
    check_golden("iq2_s");
}

#[test]
fn iq3_xxs_golden() {
    check_golden("iq3_xxs");
}

#[test]
fn iq3_s_golden() {
    check_golden("iq3_s");
}

#[test]
fn iq1_s_golden() {
    check_golden("iq1_s");
}

#[test]
fn iq1_m_golden() {
    check_golden("iq1_m");
}

#[test]
fn iq4_nl_golden() {
    check_golden("iq4_nl");
}

#[test]
fn iq4_xs_golden() {
    check_golden("iq4_xs");
}

#[test]
fn pseudo_random_bytes_never_panic() {
    let mut rng = Lcg(0x5eed_1c0a);
    for &(name, f, block_size, type_size) in &ROUTINES {
        for n_blocks in [0usize, 1, 2, 7] {
            let src: Vec<u8> = (0..n_blocks * type_size).map(|_| rng.byte()).collect();
            let exact = n_blocks * block_size;
            // Whole blocks with the exact destination length: every element written.
            let mut dst = vec![f32::from_bits(0x7fa5_a5a5); exact];
            f(&src, &mut dst);
            assert!(
                dst.iter().all(|v| v.to_bits() != 0x7fa5_a5a5),
                "{name}: element left unwritten"
            );
            // Mismatched lengths: short/long destination, ragged source.
            for dst_len in [
                0,
                exact.saturating_sub(1),
                exact + 1,
                exact + block_size + 3,
            ] {
                let mut dst = vec![0f32; dst_len];
                f(&src, &mut dst);
            }
            for cut in [1usize, type_size - 1, type_size + 1] {
                let ragged = &src[..src.len().saturating_sub(cut)];
                let mut dst = vec![0f32; exact];
                f(ragged, &mut dst);
                let mut extra = src.clone();
                extra.extend(std::iter::repeat_n(0xA5, cut));
                f(&extra, &mut dst);
            }
        }
        // Many random blocks so every grid index and sign pattern is likely hit.
        let src: Vec<u8> = (0..512 * type_size).map(|_| rng.byte()).collect();
        let mut dst = vec![0f32; 512 * block_size];
        f(&src, &mut dst);
    }
}

/// A NaN super-block scale (a fully-0xFF block has d = 0xFFFF; for IQ1_M the
/// assembled nibbles give the same) decodes to NaN everywhere. Only NaN-ness
/// is checked: IEEE 754 leaves a NaN result's sign and payload open, and
/// optimizing compilers (ggml's C ones included) fold `x * -1.0` into a
/// negation, so the bits differ between builds. The goldens hold no NaN.
#[test]
fn nan_scale_gives_nan() {
    for &(name, f, block_size, type_size) in &ROUTINES {
        let src = vec![0xFFu8; 2 * type_size];
        let mut dst = vec![0f32; 2 * block_size];
        f(&src, &mut dst);
        assert!(dst.iter().all(|v| v.is_nan()), "{name}: NaN scale");
    }
}
