//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) as llama.cpp's
//! `llm_tokenizer_bpe_session`: pre-tokenize, map bytes to GPT-2's
//! alphabet, then merge the lowest-ranked adjacent pair (leftmost first)
//! until no merge applies.

use std::cell::RefCell;
use std::cmp::Reverse;

use super::merge::merge;
use super::Tokenizer;

/// Appends the tokens of `text` (a fragment with no special tokens) to `out`.
pub(super) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    let Some(pre) = tok.pre.as_ref() else {
        return;
    };
    let key = RefCell::new(String::new());
    let rank = |left: &str, right: &str, _: &str| {
        let mut key = key.borrow_mut();
        key.clear();
        key.push_str(left);
        key.push(' ');
        key.push_str(right);
        tok.merges.get(key.as_str()).map(|&r| Reverse(r))
    };
    let mut word = String::new();
    for piece in pre.split(text) {
        word.clear();
        for b in piece.bytes() {
            word.push(tok.byte_chars[b as usize]);
        }
        if pre.ignore_merges {
            if let Some(id) = tok.token_id(&word) {
                out.push(id);
                continue;
            }
        }
        for piece in merge(&word, rank) {
            match tok.token_id(piece) {
                Some(id) => out.push(id),
                None => {
                    // llama.cpp looks each byte of the piece up as a
                    // one-byte token and drops those it does not find.
                    for b in piece.bytes() {
                        if let Some(id) =
                            std::str::from_utf8(&[b]).ok().and_then(|s| tok.token_id(s))
                        {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}
