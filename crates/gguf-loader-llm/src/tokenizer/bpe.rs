//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) as llama.cpp's
//! `llm_tokenizer_bpe_session`: pre-tokenize, map bytes to GPT-2's
//! alphabet, then merge the lowest-ranked adjacent pair (leftmost first)
//! until no merge applies.

use std::cell::RefCell;
use std::cmp::Reverse;

use super::merge::merge;
use super::pre::PreTokenizer;
use super::table::Recent;
use super::Tokenizer;

/// Appends the tokens of `text` (a fragment with no special tokens) to
/// `out`; a word met lately gives the ids it gave then (`recent`).
pub(super) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>, recent: &mut Recent) {
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
        recent.encode(piece, out, |out| {
            encode_word(tok, pre, piece, &mut word, &rank, out)
        });
    }
}

/// Appends the ids of one pre-tokenized word (`word` is scratch space).
fn encode_word<R: Ord>(
    tok: &Tokenizer,
    pre: &PreTokenizer,
    piece: &str,
    word: &mut String,
    rank: &impl Fn(&str, &str, &str) -> Option<R>,
    out: &mut Vec<u32>,
) {
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
        if let Some(id) = tok.token_id(word) {
            out.push(id);
            return;
        }
    }
    for piece in merge(word, rank) {
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

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use gguf_loader::MetaValue;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// A `gpt2` vocabulary: the byte alphabet, and the merges of the
    /// adjacent letters of `abcd` and of `Ġ` (a space) with each letter,
    /// then of those pairs with a letter.
    fn vocab() -> Tokenizer {
        let chars = super::super::pre::byte_to_char_table();
        let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        let mut merges = Vec::new();
        let letters = ["a", "b", "c", "d", "Ġ"];
        for l in letters {
            for r in &letters[..4] {
                merges.push(format!("{l} {r}"));
                tokens.push(format!("{l}{r}"));
            }
        }
        for l in ["ab", "Ġa", "cd", "Ġc"] {
            for r in &letters[..4] {
                merges.push(format!("{l} {r}"));
                tokens.push(format!("{l}{r}"));
            }
        }
        testing::tokenizer(
            "gpt2",
            vec![
                ("tokenizer.ggml.pre", MetaValue::String("gpt-2".into())),
                ("tokenizer.ggml.tokens", testing::strings(tokens)),
                ("tokenizer.ggml.merges", testing::strings(merges)),
            ],
        )
        .unwrap()
    }

    /// The cache of recent words changes no id: texts of 10 to 200,000
    /// bytes drawn from 10 to 20,000 distinct words (so that slots are hit,
    /// missed and taken over by a colliding word), with and without it.
    #[test]
    fn the_cache_of_recent_words_changes_nothing() {
        let tok = vocab();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let word = |rng: &mut rand_chacha::ChaCha8Rng| {
            let len = 1 + rng.next_u32() as usize % 9;
            (0..len)
                .map(|_| b"abcd!1"[rng.next_u32() as usize % 6] as char)
                .collect::<String>()
        };
        for (distinct, len) in [(10, 10), (50, 2_000), (3_000, 40_000), (20_000, 200_000)] {
            let words: Vec<String> = (0..distinct).map(|_| word(&mut rng)).collect();
            let mut text = String::new();
            while text.len() < len {
                // Some words far more often than others, as in a text.
                let r = rng.next_u32() as usize % distinct;
                let i = r * (rng.next_u32() as usize % distinct) / distinct;
                text.push_str(&words[i]);
                text.push(if rng.next_u32() % 8 == 0 { '\n' } else { ' ' });
            }
            let (mut cached, mut plain) = (Vec::new(), Vec::new());
            tokenize(&tok, &text, &mut cached, &mut Recent::new(text.len()));
            tokenize(&tok, &text, &mut plain, &mut Recent::off());
            assert_eq!(cached, plain, "{distinct} words, {len} bytes");
            assert!(plain.len() > len / 10);
        }
    }
}
