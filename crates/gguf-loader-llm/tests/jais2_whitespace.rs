//! jais-2's whitespace alternatives (`\s{512}(?!\S)|…|\s{1,2}(?!\S)|\s{1}`)
//! on long runs of whitespace, through the public API: a vocabulary whose
//! merges make each run of 2^k spaces (k ≤ 9) one token, so the token ids
//! show where the pre-tokenizer cut.

mod common;

use gguf_loader::{MetaValue, MmapGGUFLoader, ValueType};
use gguf_loader_llm::tokenizer::Tokenizer;

/// GPT-2's byte alphabet, then `Ġ` × 2^k for k in 1..=9, with the merges
/// that build them.
fn tokenizer(pre: &str) -> Tokenizer {
    let mut tokens = common::gpt2_byte_alphabet();
    let mut merges = Vec::new();
    for k in 1..=9 {
        let half = "\u{120}".repeat(1 << (k - 1));
        merges.push(MetaValue::String(format!("{half} {half}")));
        tokens.push(half.repeat(2));
    }
    let mut w = common::vocab_writer("gpt2", tokens, None);
    w.add("tokenizer.ggml.pre", MetaValue::String(pre.into()));
    w.add(
        "tokenizer.ggml.merges",
        MetaValue::Array(ValueType::String, merges),
    );
    let file = common::temp_gguf(&w);
    Tokenizer::from_loader(&MmapGGUFLoader::new(file.path()).unwrap()).unwrap()
}

/// The ids of words of `sizes` spaces, each a power of two.
fn spaces(sizes: &[usize]) -> Vec<u32> {
    sizes
        .iter()
        .map(|&k| match k {
            1 => 32,
            k => 255 + k.ilog2(),
        })
        .collect()
}

#[test]
fn runs_of_whitespace_are_cut_as_llama_cpp_cuts_them() {
    let tok = tokenizer("jais-2");
    let cat = |parts: &[&[u32]]| parts.concat();
    // Before a non-space, the last space goes with it (or alone).
    assert_eq!(
        tok.encode("x     y", false, false),
        cat(&[&[120], &spaces(&[4]), &[32, 121]])
    );
    // At the end the run is cut whole.
    assert_eq!(
        tok.encode("x     ", false, false),
        cat(&[&[120], &spaces(&[4, 1])])
    );
    // 999 = 512 + 256 + 128 + 64 + 32 + 4 + 2 + 1, then ` !`.
    let text = format!("x{}!", " ".repeat(1000));
    assert_eq!(
        tok.encode(&text, false, false),
        cat(&[
            &[120],
            &spaces(&[512, 256, 128, 64, 32, 4, 2, 1]),
            &[32, 33]
        ])
    );
    // A run with a newline is `\s*[\r\n]+` up to its last newline.
    assert_eq!(
        tok.encode("   \n   x", false, false),
        [256, 32, 10, 256, 32, 120]
    );
    assert_eq!(tok.encode("\t\tx", false, false), [9, 9, 120]);
}

/// Eight million spaces, cut in words of 512. (The expression as written
/// took time quadratic in a run: 1.5 s for a million spaces, about 100 s
/// for these; now a second or two, docs/BENCHMARKS.md.)
#[test]
fn a_run_of_millions_of_spaces_is_cut_in_words_of_512() {
    let tok = tokenizer("jais-2");
    let n = 8 << 20;
    let ids = tok.encode(&format!("{}x", " ".repeat(n)), false, false);
    // n - 1 = 512·16383 + 511.
    let mut expected = spaces(&vec![512; 16383]);
    expected.extend(spaces(&[256, 128, 64, 32, 16, 8, 4, 2, 1]));
    expected.extend([32, 120]);
    assert_eq!(ids, expected);
    let ids = tok.encode(&" ".repeat(n), false, false);
    assert_eq!(ids, spaces(&vec![512; 16384]));
}
