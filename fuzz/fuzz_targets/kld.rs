//! Arbitrary bytes as a file of log-probabilities (llama.cpp's
//! `--kl-divergence-base`), read as `gguf-loader perplexity
//! --kl-divergence` reads one: the header, the tokens, and each row that is
//! there compared with logits of the header's vocabulary, the statistics
//! and their lines made; and the bytes as a row of logits (any f32: NaN,
//! infinities, subnormals), encoded as a base row and compared with
//! itself. The only allowed outcomes are values or typed errors.
#![no_main]

use gguf_loader_llm::perplexity::kld::{
    chunk_line, compare_row, encode_row, row_bytes, Divergence, Header, HEADER_BYTES,
};
use libfuzzer_sys::fuzz_target;

/// The largest vocabulary whose rows are read (a header may name 2^31).
const MAX_VOCAB: usize = 1 << 12;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::parse(data) {
        let plan = h.plan();
        assert!(plan.first >= 1 && plan.per_chunk() >= 1);
        let _ = (h.chunk_bytes(), h.token_bytes());
        let len = h.file_bytes().expect("parse checks the size");
        assert!(len > HEADER_BYTES as u64);
        let rest = &data[HEADER_BYTES..];
        if let Some(n) = h.token_bytes().and_then(|n| usize::try_from(n).ok()) {
            if let Some(bytes) = rest.get(..n) {
                if let Ok(tokens) = h.tokens(bytes) {
                    assert!(tokens.iter().all(|&t| (t as usize) < h.n_vocab));
                }
            }
        }
        if h.n_vocab <= MAX_VOCAB {
            let logits: Vec<f32> = (0..h.n_vocab)
                .map(|i| (i * 7919 % 113) as f32 * 0.25 - 10.0)
                .collect();
            let mut d = Divergence::default();
            for (i, row) in rest.chunks_exact(row_bytes(h.n_vocab)).take(64).enumerate() {
                let token = (i * 31 % h.n_vocab) as u32;
                if let Ok(r) = compare_row(&logits, row, token) {
                    d.add(r);
                }
            }
            let _ = chunk_line(0, d.running());
            let _ = d.summary().to_string();
        }
    }

    let logits: Vec<f32> = data
        .chunks_exact(4)
        .take(MAX_VOCAB)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(&first) = data.first() {
        let token = u32::from(first) % (logits.len() as u32 + 1);
        let mut row = vec![0u8; row_bytes(logits.len())];
        if encode_row(&logits, token, &mut row).is_ok() {
            let r = compare_row(&logits, &row, token).expect("a row that encodes compares");
            let mut d = Divergence::default();
            d.add(r);
            let _ = d.summary().to_string();
        }
    }
});
