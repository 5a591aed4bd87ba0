//! SentencePiece (`tokenizer.ggml.model = llama`) as llama.cpp's
//! `llm_tokenizer_spm_session`: start from UTF-8 characters, repeatedly
//! merge the adjacent pair whose concatenation is the best-scoring token
//! (leftmost on ties), then write each symbol as its token or as
//! `<0xXX>` byte tokens. Greedy, not Viterbi.

use std::cmp::Ordering;

use super::merge::merge;
use super::table::{Packed, Recent};
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
///
/// llama.cpp merges the whole text at once; it is merged here in segments,
/// each starting at a `▁` (and a segment met lately gives the ids it gave
/// then), which changes no id: a text is cut before a `▁` only where no
/// token of the vocabulary holds the character before it followed by `▁`
/// ([`Tokenizer::spm_glue`]), so no symbol, and no pair of symbols, ever
/// spans the cut, and the merges on either side of it neither meet nor
/// change each other's order.
pub(super) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>, recent: &mut Recent) {
    let mut start = 0;
    for (i, _) in text.match_indices('\u{2581}') {
        if i > start
            && text[..i]
                .chars()
                .next_back()
                .is_some_and(|c| tok.spm_glue.binary_search(&c).is_err())
        {
            let segment = &text[start..i];
            recent.encode(segment, out, |out| merge_all(tok, segment, out));
            start = i;
        }
    }
    let segment = &text[start..];
    if !segment.is_empty() {
        recent.encode(segment, out, |out| merge_all(tok, segment, out));
    }
}

/// Appends the tokens of `text` merged as one, as llama.cpp.
fn merge_all(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
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

/// The characters that some text of `texts` holds followed by `▁`,
/// sorted (see [`tokenize`]).
pub(super) fn glue(texts: &Packed<String>) -> Vec<char> {
    // One SIMD search of all the texts end to end, each `▁` then placed in
    // its text: the ends are in order, as the matches are.
    let (all, ends) = (texts.as_str(), texts.ends());
    let mut glue = Vec::new();
    let mut k = 0;
    for p in memchr::memmem::find_iter(all.as_bytes(), super::SPACE) {
        while ends.get(k + 1).is_some_and(|&e| e <= p) {
            k += 1;
        }
        if p > ends[k] {
            glue.extend(all[..p].chars().next_back());
        }
    }
    glue.sort_unstable();
    glue.dedup();
    glue
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// A `llama` vocabulary over `ab<>é▁` (and `z`, which no token holds):
    /// every character, then random joins of two to five characters with
    /// random scores, among them some with a `▁` inside (`b▁a`, `>▁<`,
    /// `▁▁`, ...).
    fn vocab(rng: &mut rand_chacha::ChaCha8Rng) -> Tokenizer {
        let chars = ["a", "b", "<", ">", "é", "\u{2581}"];
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        tokens.extend(chars.iter().map(|c| c.to_string()));
        while tokens.len() < 300 {
            let len = 2 + rng.next_u32() as usize % 4;
            let t: String = (0..len)
                .map(|_| chars[rng.next_u32() as usize % chars.len()])
                .collect();
            // Mostly joins with `▁` only in front, as in real vocabularies.
            if t.chars().skip(1).any(|c| c == '\u{2581}') && !rng.next_u32().is_multiple_of(4) {
                continue;
            }
            if !tokens.contains(&t) {
                tokens.push(t);
            }
        }
        let n = tokens.len();
        let scores: Vec<f32> = (0..n)
            .map(|_| -((rng.next_u32() % 1000) as f32) / 10.0)
            .collect();
        let types = (0..n).map(|i| match i {
            0 => 2,
            1 | 2 => 3,
            _ => 1,
        });
        testing::tokenizer(
            "llama",
            vec![
                ("tokenizer.ggml.tokens", testing::strings(tokens)),
                ("tokenizer.ggml.scores", testing::floats(scores)),
                ("tokenizer.ggml.token_type", testing::ints(types)),
            ],
        )
        .unwrap()
    }

    /// Merging in segments (with the cache of recent segments) gives the
    /// ids of merging the whole text as llama.cpp does, on random
    /// vocabularies whose tokens hold `▁` after other characters, and
    /// random texts of up to 20,000 characters.
    #[test]
    fn segments_merge_as_the_whole_text() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let chars = ["a", "b", "<", ">", "é", "z", "\u{2581}", "\u{2581}"];
        for round in 0..40 {
            let tok = vocab(&mut rng);
            assert!(!tok.spm_glue.is_empty(), "round {round}: no token glues");
            for len in [1, 7, 100, 20_000] {
                let text: String = (0..len)
                    .map(|_| chars[rng.next_u32() as usize % chars.len()])
                    .collect();
                let (mut split, mut whole) = (Vec::new(), Vec::new());
                tokenize(&tok, &text, &mut split, &mut Recent::new(text.len()));
                merge_all(&tok, &text, &mut whole);
                assert_eq!(split, whole, "round {round}, {text:?}");
            }
        }
    }

    #[test]
    fn glue_is_what_precedes_an_inner_space() {
        let texts = [
            "\u{2581}a",
            "a\u{2581}b",
            ">\u{2581}<",
            "\u{2581}\u{2581}",
            "é\u{2581}",
            "x",
        ];
        let packed = |texts: &[&str]| {
            let mut p = Packed::<String>::with_capacity(texts.len(), 0);
            for t in texts {
                p.push(t);
            }
            p
        };
        assert_eq!(glue(&packed(&texts)), ['>', 'a', 'é', '\u{2581}']);
        // A `▁` that starts a text glues nothing, even after one that ends
        // the text before.
        let texts = ["\u{2581}the", "\u{2581}", "", "\u{2581}"];
        assert!(glue(&packed(&texts)).is_empty());
        assert!(glue(&packed(&[])).is_empty());
    }
}
