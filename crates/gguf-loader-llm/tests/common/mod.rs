//! The tiny model the hostile-metadata tests build: its sizes and its
//! weights' bytes; GPT-2's byte alphabet and a writer for test
//! vocabularies. (Each test file uses some of it.)
#![allow(dead_code)]

use gguf_loader::{GgufWriter, MetaValue, ValueType};

pub const N_EMBD: u64 = 8;
pub const N_HEAD: u32 = 2;
pub const N_KV: u32 = 1;
pub const HEAD: u64 = 4;
pub const N_FF: u64 = 16;
pub const N_VOCAB: u64 = 16;

/// `n` small f32 values (in -0.1..0.1), as little-endian bytes, different
/// for each `seed`.
pub fn f32_bytes(n: u64, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .flat_map(|i| {
            (((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 5000.0 - 0.1).to_le_bytes()
        })
        .collect()
}

/// GPT-2's byte alphabet, the first 256 tokens of a `gpt2` vocabulary: the
/// printable bytes stand for themselves; the others are shifted past
/// U+0100, in byte order.
pub fn gpt2_byte_alphabet() -> Vec<String> {
    let mut shifted = 0u32;
    (0u32..256)
        .map(|b| {
            let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
            let c = if printable {
                b
            } else {
                shifted += 1;
                0xFF + shifted
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// A writer holding a vocabulary: `tokenizer.ggml.model` = `model`,
/// `tokens` and, where given, their `types` (`tokenizer.ggml.token_type`).
pub fn vocab_writer(
    model: &str,
    tokens: Vec<String>,
    types: Option<Vec<i32>>,
) -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.model", MetaValue::String(model.into()));
    w.add(
        "tokenizer.ggml.tokens",
        MetaValue::Array(
            ValueType::String,
            tokens.into_iter().map(MetaValue::String).collect(),
        ),
    );
    if let Some(types) = types {
        w.add(
            "tokenizer.ggml.token_type",
            MetaValue::Array(
                ValueType::I32,
                types.into_iter().map(MetaValue::I32).collect(),
            ),
        );
    }
    w
}

/// `w` written to a new temporary `.gguf` file.
pub fn temp_gguf(w: &GgufWriter<'_>) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    std::fs::write(file.path(), w.to_bytes().unwrap()).unwrap();
    file
}
