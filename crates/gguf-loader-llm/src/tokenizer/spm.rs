//! SentencePiece (`tokenizer.ggml.model = llama`) as llama.cpp's
//! `llm_tokenizer_spm_session`: start from UTF-8 characters, repeatedly
//! merge the adjacent pair whose concatenation is the best-scoring token
//! (leftmost on ties), then write each symbol as its token or as
//! `<0xXX>` byte tokens. Greedy, not Viterbi.

use std::cmp::Ordering;

use super::merge::merge;
use super::Tokenizer;

/// A score ordered by `f32::total_cmp`.
struct Score(f32);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Score {}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Appends the tokens of `text` (spaces already escaped as `▁`) to `out`.
pub(super) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    let score = |_: &str, _: &str, joined: &str| {
        tok.token_id(joined)
            .map(|id| Score(tok.scores[id as usize]))
    };
    for piece in merge(text, score) {
        match tok.token_id(piece) {
            Some(id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    // A vocabulary without byte tokens: the unknown token,
                    // or nothing.
                    if let Some(id) = tok.byte_token(b).or(tok.unk) {
                        out.push(id);
                    }
                }
            }
        }
    }
}
