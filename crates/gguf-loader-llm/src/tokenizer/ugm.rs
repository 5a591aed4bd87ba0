//! Unigram (`tokenizer.ggml.model` `t5`: T5, XLM-RoBERTa, bge-m3,
//! nomic-embed-v2), as llama.cpp's `llm_tokenizer_ugm_session`:
//!
//! 1. **Normalization.** The text is rewritten prefix by prefix: a prefix
//!    on the path of a user-defined token's text is kept as it is; else the
//!    longest prefix the precompiled charsmap (SentencePiece's normalizer,
//!    `tokenizer.ggml.precompiled_charsmap`) holds becomes its
//!    replacement; else one code point is kept (a malformed byte becomes
//!    U+FFFD). Spaces become `▁`: runs of them one `▁` before each word
//!    with `tokenizer.ggml.remove_extra_whitespaces`, and one `▁` before
//!    the text with `tokenizer.ggml.add_space_prefix`.
//! 2. **Viterbi.** The tokenization of the normalized text whose scores
//!    (`tokenizer.ggml.scores`, summed in f64; user-defined tokens 0) are
//!    highest, over normal, user-defined and unused tokens starting at code
//!    points; a code point no token covers alone may be the unknown token
//!    at the lowest normal score less 10, and runs of unknown tokens are
//!    one. Ties go to what llama.cpp finds first: the token starting
//!    earliest, then the unknown token.
//!
//! The lattice is walked by one Aho-Corasick pass ([`Finder`]) over the
//! token texts: each place's candidates are the tokens ending there, so a
//! text costs its length and its lattice's edges, whatever the longest
//! token (llama.cpp walks a trie from each code point, as far as the text
//! follows a token's path).
//!
//! The charsmap is a XOR-compressed double array (Kanda 2018) and
//! NUL-terminated replacement strings. Where llama.cpp would throw on an
//! index out of its bounds (for some text), the charsmap is refused when the
//! tokenizer is built: every state a walk can reach is checked once
//! ([`MAX_CHARSMAP`] bounds that work), and so is every replacement it can
//! give, which may be at most [`MAX_REPLACEMENT`] bytes (the lattice takes
//! 24 bytes a byte of normalized text).
//!
//! As in llama.cpp, the tables come from the token types alone (before
//! tokens are marked by their text), and tokens that share a text are one,
//! the last (llama.cpp refuses such a vocabulary).

use std::collections::hash_map::{Entry, HashMap};

use super::finder::{Finder, ROOT};
use super::table::Indexed;
use super::{attr, TokenizerError, SPACE};

/// The most bytes a precompiled charsmap may hold: 16 times SentencePiece's
/// (about 240 KB for its `nmt_nfkc` normalizer). Checking a charsmap takes
/// some 255 steps a unit (4 bytes).
pub const MAX_CHARSMAP: usize = 4 << 20;

const CHARSMAP_KEY: &str = "tokenizer.ggml.precompiled_charsmap";

/// The longest replacement a charsmap may give, in bytes: twice NFKC's
/// longest (U+FDFA, 33 bytes). The lattice takes 24 bytes a byte of
/// normalized text, so a file's replacements bound what a text costs.
pub const MAX_REPLACEMENT: usize = 64;

/// U+FFFD, for a byte that starts no valid code point.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// The precompiled charsmap, checked.
#[derive(Debug, Default)]
struct Charsmap {
    /// The double array's units (little-endian in the file, whatever its
    /// byte order, as llama.cpp reads them).
    units: Vec<u32>,
    /// The replacement strings, each ending in NUL.
    replacements: Vec<u8>,
}

impl Charsmap {
    fn base(&self, i: u32) -> u32 {
        let p = self.units[i as usize];
        (p >> 10) << ((p & (1 << 9)) >> 6)
    }

    fn lcheck(&self, i: u32) -> u32 {
        self.units[i as usize] & ((1 << 31) | 0xff)
    }

    fn leaf(&self, i: u32) -> bool {
        (self.units[i as usize] >> 8) & 1 != 0
    }

    fn value(&self, i: u32) -> u32 {
        self.units[i as usize] & ((1 << 31) - 1)
    }

    /// The replacement at `off`, without its NUL (checked to exist).
    fn replacement(&self, off: u32) -> &[u8] {
        let rest = &self.replacements[off as usize..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Reads and checks the charsmap (the key's bytes).
    fn from_bytes(b: &[u8]) -> Result<Charsmap, TokenizerError> {
        let bad = |offset: usize, why: &'static str| TokenizerError::Charsmap { offset, why };
        if b.len() > MAX_CHARSMAP {
            return Err(bad(0, "larger than the 4 MiB taken"));
        }
        let Some(head) = b.get(..4) else {
            return Err(bad(0, "too small for its 4-byte length"));
        };
        let blob = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if blob + 4 >= b.len() {
            return Err(bad(0, "its double array's length passes its end"));
        }
        let units: Vec<u32> = b[4..4 + blob]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let map = Charsmap {
            units,
            replacements: b[4 + blob..].to_vec(),
        };
        map.check()?;
        Ok(map)
    }

    /// Every state a walk can reach, and every unit and replacement it can
    /// read, is within bounds (llama.cpp throws where one is not).
    fn check(&self) -> Result<(), TokenizerError> {
        let n = self.units.len();
        if n == 0 {
            return Ok(());
        }
        let unit_at = |i: u32| 4 + 4 * i as usize;
        let out_of_bounds = |i: u32, why| TokenizerError::Charsmap {
            offset: unit_at(i),
            why,
        };
        let mut seen = vec![false; n];
        let root = self.base(0);
        let mut stack = vec![(0u32, root)];
        while let Some((from, cur)) = stack.pop() {
            // The children of `cur` are `cur ^ c` for bytes 1..=255, all in
            // its aligned block of 256 units.
            if (cur | 0xff) as usize >= n {
                return Err(out_of_bounds(
                    from,
                    "a state's children pass the double array",
                ));
            }
            if std::mem::replace(&mut seen[cur as usize], true) {
                continue;
            }
            for c in 1..=255u32 {
                let i = cur ^ c;
                if self.lcheck(i) != c {
                    continue;
                }
                let next = i ^ self.base(i);
                if self.leaf(i) {
                    if next as usize >= n {
                        return Err(out_of_bounds(i, "a leaf's value passes the double array"));
                    }
                    let off = self.value(next) as usize;
                    let rest = self.replacements.get(off..).unwrap_or(&[]);
                    match rest.iter().position(|&b| b == 0) {
                        None => {
                            return Err(out_of_bounds(
                                next,
                                "a replacement string passes the charsmap's end",
                            ))
                        }
                        Some(len) if len > MAX_REPLACEMENT => {
                            return Err(out_of_bounds(
                                next,
                                "a replacement string is longer than the 64 bytes taken",
                            ))
                        }
                        Some(_) => {}
                    }
                }
                stack.push((i, next));
            }
        }
        Ok(())
    }

    /// The longest prefix of `input` the charsmap holds: its length and
    /// its replacement.
    fn longest(&self, input: &[u8]) -> Option<(usize, &[u8])> {
        if self.units.is_empty() {
            return None;
        }
        let mut best = None;
        let mut node = self.base(0);
        for (k, &c) in input.iter().enumerate() {
            if c == 0 {
                break;
            }
            // In bounds: `check` saw every reachable state's block.
            node ^= c as u32;
            if self.lcheck(node) != c as u32 {
                break;
            }
            let leaf = self.leaf(node);
            node ^= self.base(node);
            if leaf {
                best = Some((k + 1, self.value(node)));
            }
        }
        best.map(|(len, off)| (len, self.replacement(off)))
    }
}

/// llama.cpp's `unicode_len_utf8`: a code point's length from its first
/// byte (1 for a continuation byte).
fn len_utf8(b: u8) -> usize {
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4][(b >> 4) as usize]
}

/// The length of the code point at the start of `s` as llama.cpp's
/// `unicode_cpt_from_utf8` reads it (lead and continuation bits only);
/// `None` where it throws.
fn valid_cpt(s: &[u8]) -> Option<usize> {
    let b = *s.first()?;
    let n = match b {
        _ if b & 0x80 == 0 => return Some(1),
        _ if b & 0x40 == 0 => return None,
        _ if b & 0x20 == 0 => 2,
        _ if b & 0x10 == 0 => 3,
        _ if b & 0x08 == 0 => 4,
        _ => return None,
    };
    let cont = s.get(1..n)?;
    cont.iter().all(|&c| c & 0xc0 == 0x80).then_some(n)
}

/// The Unigram tokenizer's tables.
pub(super) struct Ugm {
    charsmap: Charsmap,
    /// User-defined tokens' texts, walked as a trie (llama.cpp's
    /// `user_defined_token_matcher`); `None` where there are none.
    user: Option<Finder>,
    /// Normal, user-defined and unused tokens; `None` where there are none.
    matcher: Option<Finder>,
    /// Pattern `k` of `matcher`: its token.
    ids: Vec<u32>,
    /// Pattern `k`: its text's length.
    lens: Vec<u32>,
    /// Pattern `k`: its score in the lattice.
    pattern_scores: Vec<f64>,
    unk: u32,
    unk_score: f32,
    prepend_space: bool,
    merge_spaces: bool,
}

impl std::fmt::Debug for Ugm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ugm")
            .field("charsmap_units", &self.charsmap.units.len())
            .field("tokens", &self.ids.len())
            .field("unk", &self.unk)
            .finish_non_exhaustive()
    }
}

/// One place's best tokenization so far (llama.cpp's `best_tokenization`).
#[derive(Clone, Copy)]
struct Best {
    id: u32,
    from: usize,
    score: f64,
}

impl Ugm {
    /// The tables. As in llama.cpp, the lowest normal score and the tokens
    /// of the lattice and of the user-defined prefix walk come from the
    /// attributes `token_type` gives (`type_attrs`), before tokens are
    /// marked by their text (`unused` control tokens made unused, `</s>`
    /// made normal, ...); whether a token scores 0 as user-defined comes
    /// from the final ones (`attrs`), as llama.cpp asks it at each encode.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        md: &gguf_loader::Metadata<'_>,
        tokens: &Indexed,
        scores: &[f32],
        type_attrs: &[u32],
        attrs: &[u32],
        unk: Option<u32>,
        add_space_prefix: bool,
        remove_extra_whitespaces: bool,
    ) -> Result<Ugm, TokenizerError> {
        let unk = unk.ok_or(TokenizerError::MissingToken {
            key: "tokenizer.ggml.unknown_token_id",
            why: "a Unigram vocabulary needs its unknown token",
        })?;
        let charsmap = match md.get(CHARSMAP_KEY) {
            None => Charsmap::default(),
            Some(v) => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| gguf_loader::MetadataError::WrongType {
                        key: CHARSMAP_KEY.to_string(),
                        expected: "array of uint8",
                        found: v.value_type(),
                    })?;
                use gguf_loader::ValueType;
                if !matches!(arr.elem_type(), ValueType::U8 | ValueType::I8) {
                    return Err(gguf_loader::MetadataError::WrongElementType {
                        key: CHARSMAP_KEY.to_string(),
                        expected: "array of uint8",
                        found: arr.elem_type(),
                    }
                    .into());
                }
                Charsmap::from_bytes(arr.raw_bytes())?
            }
        };
        let mut min_score = f32::MAX;
        for (&a, &s) in type_attrs.iter().zip(scores) {
            // `std::min`: a NaN score leaves the minimum as it is.
            if a & attr::NORMAL != 0 && s < min_score {
                min_score = s;
            }
        }
        // One pattern a text, its last token (llama.cpp's trie keeps the
        // last one inserted; it refuses duplicate texts anyway): a state's
        // patterns are then one, however many tokens share a text.
        let mut ids: Vec<u32> = Vec::new();
        let mut slot_of: HashMap<&str, usize> = HashMap::new();
        let mut user_texts: Vec<&[u8]> = Vec::new();
        for (i, &a) in type_attrs.iter().enumerate() {
            if a & (attr::NORMAL | attr::USER_DEFINED | attr::UNUSED) != 0 {
                match slot_of.entry(&tokens[i]) {
                    Entry::Occupied(e) => ids[*e.get()] = i as u32,
                    Entry::Vacant(e) => {
                        e.insert(ids.len());
                        ids.push(i as u32);
                    }
                }
            }
            if a & attr::USER_DEFINED != 0 {
                user_texts.push(tokens[i].as_bytes());
            }
        }
        let oom = |texts: &[&[u8]]| {
            TokenizerError::OutOfMemory(texts.iter().map(|t| t.len()).sum::<usize>() * 32)
        };
        let texts: Vec<&[u8]> = ids.iter().map(|&i| tokens[i as usize].as_bytes()).collect();
        let matcher = if texts.is_empty() {
            None
        } else {
            Some(Finder::new(&texts).ok_or_else(|| oom(&texts))?)
        };
        let user = if user_texts.is_empty() {
            None
        } else {
            Some(Finder::new(&user_texts).ok_or_else(|| oom(&user_texts))?)
        };
        let lens = texts.iter().map(|t| t.len() as u32).collect();
        let pattern_scores = ids
            .iter()
            .map(|&i| {
                if attrs[i as usize] & attr::USER_DEFINED != 0 {
                    0.0
                } else {
                    scores[i as usize] as f64
                }
            })
            .collect();
        Ok(Ugm {
            charsmap,
            user,
            matcher,
            ids,
            lens,
            pattern_scores,
            unk,
            unk_score: min_score - 10.0,
            prepend_space: add_space_prefix,
            merge_spaces: remove_extra_whitespaces,
        })
    }

    /// llama.cpp's `normalize_prefix`: what the text at the start of
    /// `input` (not empty) becomes, and how many bytes that consumes.
    fn normalize_prefix<'a>(&'a self, input: &'a [u8]) -> (&'a [u8], usize) {
        // A prefix on the path of a user-defined token's text (not
        // necessarily a whole one) is kept.
        if let Some(user) = &self.user {
            let mut s = ROOT;
            let mut k = 0;
            while let Some(c) = input.get(k).and_then(|&b| user.child(s, b)) {
                s = c;
                k += 1;
            }
            if k > 0 {
                return (&input[..k], k);
            }
        }
        if let Some((len, repl)) = self.charsmap.longest(input) {
            return (repl, len);
        }
        match valid_cpt(input) {
            Some(n) => (&input[..n], n),
            None => (REPLACEMENT, 1),
        }
    }

    /// llama.cpp's `normalize`.
    fn normalize(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + input.len() / 2 + SPACE.len());
        let mut space_prepended = false;
        let mut in_word = false;
        let mut at = 0;
        while at < input.len() {
            let (norm, used) = self.normalize_prefix(&input[at..]);
            for &c in norm {
                if c != b' ' {
                    if !in_word {
                        in_word = true;
                        if (self.prepend_space && !space_prepended) || self.merge_spaces {
                            out.extend_from_slice(SPACE);
                            space_prepended = true;
                        }
                    }
                    out.push(c);
                } else {
                    in_word = false;
                    if !self.merge_spaces {
                        out.extend_from_slice(SPACE);
                    }
                }
            }
            at += used;
        }
        out
    }

    /// Appends the tokens of `text` (a fragment between special tokens).
    pub(super) fn tokenize(&self, text: &str, out: &mut Vec<u32>) {
        let s = self.normalize(text.as_bytes());
        let n = s.len();
        if n == 0 {
            return;
        }
        // Code point starts (llama.cpp steps by the lead byte's length).
        let mut start = vec![false; n + 1];
        let mut at = 0;
        while at < n {
            start[at] = true;
            at += len_utf8(s[at]).min(n - at);
        }
        let mut best = vec![
            Best {
                id: self.unk,
                from: 0,
                score: -f64::MAX,
            };
            n + 1
        ];
        best[0].score = 0.0;
        let mut state = ROOT;
        let mut cp = 0; // the code point ending at the next start
        for end in 1..=n {
            if let Some(m) = &self.matcher {
                state = m.next(state, s[end - 1]);
            }
            if end < n && !start[end] {
                continue;
            }
            // Candidates in llama.cpp's order: tokens ending here, the
            // earliest start first, then the unknown token for the code
            // point `cp..end` where no token is that code point alone.
            let mut single = false;
            if let Some(m) = &self.matcher {
                let mut e = m.nearest_end(state);
                while let Some(st) = e {
                    // (One pattern a text.)
                    if let Some(k) = m.patterns_at(st).next() {
                        let from = end - self.lens[k as usize] as usize;
                        if start[from] {
                            single |= from == cp;
                            let score = best[from].score + self.pattern_scores[k as usize];
                            if score > best[end].score {
                                best[end] = Best {
                                    id: self.ids[k as usize],
                                    from,
                                    score,
                                };
                            }
                        }
                    }
                    e = m.next_end(st);
                }
            }
            if !single {
                let score = best[cp].score + self.unk_score as f64;
                if score > best[end].score {
                    best[end] = Best {
                        id: self.unk,
                        from: cp,
                        score,
                    };
                }
            }
            cp = end;
        }
        // Back from the end; a run of unknown tokens is one.
        let first = out.len();
        let mut t = best[n];
        let mut prev_unk = false;
        loop {
            let unk = t.id == self.unk;
            if !(prev_unk && unk) {
                out.push(t.id);
            }
            if t.from == 0 {
                break;
            }
            prev_unk = unk;
            t = best[t.from];
        }
        out[first..].reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpt_lengths_as_llama_cpp() {
        assert_eq!(valid_cpt(b"a"), Some(1));
        assert_eq!(valid_cpt("é".as_bytes()), Some(2));
        assert_eq!(valid_cpt("€".as_bytes()), Some(3));
        assert_eq!(valid_cpt("🦙".as_bytes()), Some(4));
        assert_eq!(valid_cpt(&[0x80]), None);
        assert_eq!(valid_cpt(&[0xc3]), None);
        assert_eq!(valid_cpt(&[0xc3, 0x41]), None);
        assert_eq!(valid_cpt(&[0xf8, 0x80, 0x80, 0x80]), None);
        // Overlong forms pass, as there.
        assert_eq!(valid_cpt(&[0xc0, 0x80]), Some(2));
        assert_eq!(len_utf8(0x80), 1);
        assert_eq!(len_utf8(0xf0), 4);
    }

    #[test]
    fn charsmap_bounds_are_checked() {
        let bad = |b: &[u8]| Charsmap::from_bytes(b).unwrap_err().to_string();
        assert!(bad(&[1, 0]).contains("too small"), "{}", bad(&[1, 0]));
        assert!(bad(&[4, 0, 0, 0, 0, 0, 0, 0]).contains("passes its end"));
        // One unit whose root block passes the array.
        let mut b = vec![4, 0, 0, 0];
        b.extend_from_slice(&0u32.to_le_bytes());
        b.push(0);
        assert!(bad(&b).contains("children pass"), "{}", bad(&b));
        // An empty double array is no charsmap.
        assert!(Charsmap::from_bytes(&[0, 0, 0, 0, 0]).is_ok());
    }
}
