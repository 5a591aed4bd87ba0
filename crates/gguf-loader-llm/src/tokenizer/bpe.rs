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
        tok.merges.id(&key).map(Reverse)
    };
    // SentencePiece-style vocabularies (gemma4) write spaces as `▁` and
    // keep the text's own characters; byte-level ones map every byte to
    // GPT-2's alphabet.
    let escaped;
    let text = if pre.escape_spaces {
        escaped = text.replace(' ', "\u{2581}");
        escaped.as_str()
    } else {
        text
    };
    let mut word = String::new();
    for piece in pre.split(text) {
        word.clear();
        if pre.escape_spaces {
            word.push_str(piece);
        } else {
            for b in piece.bytes() {
                word.push(tok.byte_chars[b as usize]);
            }
        }
        let whole = pre.ignore_merges || (pre.newline_words && piece.bytes().all(|b| b == b'\n'));
        if whole {
            if let Some(id) = tok.token_id(&word) {
                out.push(id);
                continue;
            }
        }
        for piece in merge(&word, rank) {
            match tok.token_id(piece) {
                Some(id) => out.push(id),
                None => {
                    // llama.cpp looks each byte of the piece up, as a
                    // one-byte token (byte-level) or as `<0xXX>`, and drops
                    // those it does not find.
                    for b in piece.bytes() {
                        let id = if pre.escape_spaces {
                            tok.byte_token(b)
                        } else {
                            std::str::from_utf8(&[b]).ok().and_then(|s| tok.token_id(s))
                        };
                        out.extend(id);
                    }
                }
            }
        }
    }
}
