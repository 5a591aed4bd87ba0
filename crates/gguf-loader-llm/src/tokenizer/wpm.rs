//! WordPiece (`tokenizer.ggml.model` `bert`), as llama.cpp's
//! `llm_tokenizer_wpm_session`: the text is normalized (accents stripped
//! through llama.cpp's one-code-point "NFD", lowercased) and cut into
//! words at whitespace, punctuation, ASCII symbols and CJK ideographs; each
//! word, with `▁` before it, is covered left to right by the longest token
//! that starts at each place, and a word that cannot be covered whole is
//! the unknown token. Code points are classified with llama.cpp's own
//! tables ([`super::unicode_data`]), not a newer Unicode's.
//!
//! The longest token at each place of a word comes from one pass of an
//! Aho-Corasick automaton of the reversed token texts over the reversed
//! word (the longest pattern ending at a place of the reversed word is the
//! longest token starting there), so a word costs its length whatever the
//! tokens' lengths; llama.cpp tries every length up to the longest token's
//! at each place (a hostile vocabulary's 64 KiB token makes that a hash of
//! 64 KiB, 64 Ki times, per byte of text). The automaton's texts are
//! bounded ([`super::MAX_WORDPIECE_TEXT`]).

use super::finder::{Finder, ROOT};
use super::table::Indexed;
use super::unicode_data::{FLAG_RANGES, LOWERCASE, NFD, WHITESPACE};
use super::Tokenizer;

const UNDEFINED: u8 = 0x01;
const ACCENT_MARK: u8 = 0x10;
const PUNCTUATION: u8 = 0x20;
const SYMBOL: u8 = 0x40;
const CONTROL: u8 = 0x80;

/// llama.cpp's category flags of `c` (`unicode_cpt_flags_from_cpt`, low
/// byte).
fn flags(c: u32) -> u8 {
    let i = FLAG_RANGES.partition_point(|r| r.0 <= c);
    if i == 0 || i == FLAG_RANGES.len() {
        return UNDEFINED;
    }
    FLAG_RANGES[i - 1].1
}

fn is_whitespace(c: u32) -> bool {
    WHITESPACE.binary_search(&c).is_ok()
}

/// `unicode_tolower`: one code point for one.
fn to_lower(c: u32) -> u32 {
    match LOWERCASE.binary_search_by_key(&c, |p| p.0) {
        Ok(i) => LOWERCASE[i].1,
        Err(_) => c,
    }
}

/// `unicode_cpts_normalize_nfd`: the first code point of `c`'s canonical
/// decomposition.
fn nfd(c: u32) -> u32 {
    let i = NFD.partition_point(|r| r.0 <= c);
    match i.checked_sub(1).map(|i| NFD[i]) {
        Some((first, last, to)) if first <= c && c <= last => to,
        _ => c,
    }
}

/// `is_chinese_char` of llama.cpp's WordPiece (the ranges as written
/// there, one of them as Hugging Face's Rust code has it).
fn is_chinese_char(c: u32) -> bool {
    matches!(c,
        0x04E00..=0x09FFF
        | 0x03400..=0x04DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0x0F900..=0x0FAFF
        | 0x2F800..=0x2FA1F)
}

/// BertNormalizer's options (`tokenizer.ggml.normalizer.*`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Normalizer {
    pub(super) lowercase: bool,
    pub(super) strip_accents: bool,
}

/// llama.cpp's `preprocess`: the words of `text`, normalized.
fn words(text: &str, opts: Normalizer) -> Vec<String> {
    let mut words = vec![String::new()];
    for ch in text.chars() {
        let mut c = ch as u32;
        if opts.strip_accents {
            c = nfd(c);
        }
        let f = flags(c);
        if is_whitespace(c) {
            if !words.last().is_some_and(String::is_empty) {
                words.push(String::new());
            }
            continue;
        }
        if c == 0 || c == 0xFFFD || f & CONTROL != 0 {
            continue;
        }
        if opts.strip_accents && f & ACCENT_MARK != 0 {
            continue;
        }
        let out = if opts.lowercase { to_lower(c) } else { c };
        // Every table value is a scalar value; one that is not is dropped.
        let Some(out) = char::from_u32(out) else {
            continue;
        };
        let last = words.last_mut().expect("never empty");
        if f & PUNCTUATION != 0 || (c < 0x7F && f & SYMBOL != 0) || is_chinese_char(c) {
            if !last.is_empty() {
                words.push(String::new());
            }
            let last = words.last_mut().expect("never empty");
            last.push(out);
            words.push(String::new());
        } else {
            last.push(out);
        }
    }
    if words.last().is_some_and(String::is_empty) {
        words.pop();
    }
    words
}

/// The automaton of the reversed token texts (pattern `k` is token `k`'s
/// text reversed); `None` where it cannot be built (memory).
pub(super) fn reversed_finder(tokens: &Indexed) -> Option<Finder> {
    let reversed: Vec<Vec<u8>> = tokens.iter().map(|t| t.bytes().rev().collect()).collect();
    let refs: Vec<&[u8]> = reversed.iter().map(Vec::as_slice).collect();
    Finder::new(&refs)
}

/// The length of the longest token that starts at each byte of `word`
/// (0: none), from the reversed automaton: the deepest pattern end of the
/// state after reading the word backwards down to a byte is the longest
/// pattern ending there in the reversed word, the longest token starting
/// there. (Without an automaton, which a WordPiece tokenizer always has,
/// none.)
fn longest_at(tok: &Tokenizer, word: &[u8]) -> Vec<usize> {
    let mut longest = vec![0; word.len()];
    if let Some(f) = &tok.wpm_finder {
        let mut s = ROOT;
        for (i, &b) in word.iter().enumerate().rev() {
            s = f.next(s, b);
            if let Some(d) = f.nearest_end(s) {
                if let Some(k) = f.patterns_at(d).next() {
                    longest[i] = tok.tokens[k as usize].len();
                }
            }
        }
    }
    longest
}

/// Appends the ids of `text` (a fragment between special tokens).
pub(super) fn tokenize(tok: &Tokenizer, text: &str, opts: Normalizer, out: &mut Vec<u32>) {
    for word in words(text, opts) {
        let word1 = format!("\u{2581}{word}");
        let bytes = word1.as_bytes();
        let longest = longest_at(tok, bytes);
        let start = out.len();
        let mut i = 0;
        while i < bytes.len() {
            let l = longest[i];
            let id = (l > 0)
                .then(|| std::str::from_utf8(&bytes[i..i + l]).ok())
                .flatten()
                .and_then(|t| tok.tokens.id(t));
            match id {
                Some(id) => {
                    out.push(id);
                    i += l;
                }
                None => {
                    out.truncate(start);
                    break;
                }
            }
        }
        if out.len() == start {
            out.extend(tok.unk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use gguf_loader::MetaValue;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// A `bert` vocabulary of `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]` and
    /// `words` (all normal).
    fn bert(words: &[String]) -> Tokenizer {
        try_bert(words).unwrap()
    }

    fn try_bert(words: &[String]) -> Result<Tokenizer, super::super::TokenizerError> {
        let mut tokens: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        tokens.extend(words.iter().cloned());
        let types = (0..tokens.len()).map(|i| if i < 4 { 3 } else { 1 });
        testing::tokenizer(
            "bert",
            vec![
                ("tokenizer.ggml.tokens", testing::strings(tokens)),
                ("tokenizer.ggml.token_type", testing::ints(types)),
                ("tokenizer.ggml.unknown_token_id", MetaValue::U32(1)),
                ("tokenizer.ggml.bos_token_id", MetaValue::U32(2)),
                ("tokenizer.ggml.seperator_token_id", MetaValue::U32(3)),
            ],
        )
    }

    /// llama.cpp's search: every length at each place, longest first.
    fn every_length(tok: &Tokenizer, word: &[u8]) -> Vec<usize> {
        let max = tok.tokens.iter().map(str::len).max().unwrap_or(0);
        (0..word.len())
            .map(|i| {
                (i + 1..=word.len().min(i + max))
                    .rev()
                    .find(|&j| {
                        std::str::from_utf8(&word[i..j]).is_ok_and(|t| tok.tokens.id(t).is_some())
                    })
                    .map_or(0, |j| j - i)
            })
            .collect()
    }

    /// The automaton's longest token at each place is what trying every
    /// length gives (llama.cpp's loop), on random vocabularies and words
    /// over a small alphabet (with `▁` and a two-byte letter), and so are
    /// the ids; CLS and SEP come with `add_special`.
    #[test]
    fn the_automaton_finds_what_trying_every_length_finds() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut pick = |n: u32| (rng.next_u32() % n) as usize;
        const ALPHABET: [&str; 4] = ["a", "b", "\u{e9}", "\u{2581}"];
        for round in 0..300 {
            let word = |max: u32, pick: &mut dyn FnMut(u32) -> usize| -> String {
                (0..1 + pick(max)).map(|_| ALPHABET[pick(4)]).collect()
            };
            let n = 1 + pick(30);
            let words: Vec<String> = (0..n).map(|_| word(5, &mut pick)).collect();
            let tok = bert(&words);
            assert!(tok.wpm_finder.is_some());
            for _ in 0..20 {
                let w = word(30, &mut pick);
                let fast = longest_at(&tok, w.as_bytes());
                assert_eq!(
                    fast,
                    every_length(&tok, w.as_bytes()),
                    "round {round}: {words:?} over {w:?}"
                );
            }
        }
        let tok = bert(&["\u{2581}ab".into(), "c".into(), "\u{2581}a".into()]);
        assert_eq!(tok.encode("AB ac x", true, false), [2, 4, 6, 5, 1, 3]);
        assert_eq!(tok.encode("AB", false, false), [4]);
        assert_eq!(tok.sep(), Some(3));
        assert!(tok.add_bos() && !tok.add_eos());
    }

    /// Token texts past 64 MiB in all are refused: the automaton would
    /// take some 2 GB, and trying every length instead costs the cube of a
    /// word's length (a review measured 2.7 s for 4 000 letters).
    #[test]
    fn a_wordpiece_vocabulary_past_64_mib_is_refused() {
        let e = try_bert(&["a".repeat(super::super::MAX_WORDPIECE_TEXT)]).unwrap_err();
        assert!(
            matches!(e, super::super::TokenizerError::WordPieceText(n) if n > 64 << 20),
            "{e:?}"
        );
        assert!(e.to_string().contains("at most 64 MiB"), "{e}");
    }

    /// One 64 KiB token and a megabyte-long word of its letter: the word
    /// costs its length, not its length times the token's (llama.cpp's loop
    /// hashes 64 Ki substrings at each place).
    #[test]
    fn a_long_token_costs_nothing_per_place() {
        let tok = bert(&["\u{2581}".into(), "a".into(), "a".repeat(1 << 16)]);
        let text = "a".repeat(1 << 20);
        let ids = tok.encode(&text, false, false);
        // `▁`, then 16 tokens of 64 Ki `a`.
        assert_eq!(ids.len(), 17);
        assert_eq!(&ids[..2], &[4, 6]);
    }

    #[test]
    fn tables_classify_as_llama_cpp() {
        assert_eq!(flags('a' as u32), 0x04);
        assert_eq!(flags('!' as u32), PUNCTUATION);
        assert_eq!(flags('$' as u32), SYMBOL);
        assert_eq!(flags(0x0301), ACCENT_MARK);
        assert_eq!(flags(0x1F), CONTROL);
        assert_eq!(flags(0x10FFFF + 1), UNDEFINED);
        assert!(is_whitespace(0x3000) && !is_whitespace('a' as u32));
        assert_eq!(to_lower('Ä' as u32), 'ä' as u32);
        assert_eq!(nfd('Ä' as u32), 'A' as u32);
        assert_eq!(nfd('a' as u32), 'a' as u32);
    }

    #[test]
    fn words_split_and_normalize_as_llama_cpp() {
        let opts = Normalizer {
            lowercase: true,
            strip_accents: true,
        };
        assert_eq!(
            words(" Äpfel,  schön!\t中文x $5 a-b", opts),
            ["apfel", ",", "schon", "!", "中", "文", "x", "$", "5", "a", "-", "b"]
        );
        let keep = Normalizer {
            lowercase: false,
            strip_accents: false,
        };
        assert_eq!(words("Äpfel", keep), ["Äpfel"]);
        assert!(words(" \u{0}\u{1} ", opts).is_empty());
    }
}
