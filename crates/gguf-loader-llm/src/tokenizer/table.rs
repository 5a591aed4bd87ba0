//! A vocabulary's strings end to end in one buffer, and found by their
//! text through a hash table of ids: five allocations for Gemma-3's
//! 262,144 tokens (texts and their ends, the table, pieces and their ends:
//! [`Packed<Vec<u8>>`] holds the decoded pieces the same way) instead of
//! one a token for the texts, one for a `HashMap<String, u32>`'s copies of
//! them and one for the pieces. Allocating those 786,000 small blocks, and
//! freeing them, was most of the time a tokenizer took to build.

use std::hash::{BuildHasher, RandomState};
use std::ops::{Index, Range};

use hashbrown::hash_table::{Entry, HashTable};

/// Strings (`String` text or `Vec<u8>` bytes) end to end: string `i` is
/// `buf[ends[i]..ends[i + 1]]`.
#[derive(Clone, Debug)]
pub(super) struct Packed<B> {
    buf: B,
    ends: Vec<usize>,
}

impl<B: Default> Packed<B> {
    /// Room for `n` strings; `buf` is what the caller reserved.
    fn with_buf(n: usize, buf: B) -> Self {
        let mut ends = Vec::with_capacity(n + 1);
        ends.push(0);
        Packed { buf, ends }
    }
}

impl<B> Packed<B>
where
    B: Index<Range<usize>>,
{
    /// The number of strings.
    pub(super) fn len(&self) -> usize {
        self.ends.len() - 1
    }

    /// String `i`.
    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&B::Output> {
        let (&start, &end) = (self.ends.get(i)?, self.ends.get(i + 1)?);
        Some(&self.buf[start..end])
    }

    /// The strings in order.
    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = &B::Output> + '_ {
        self.ends.windows(2).map(|w| &self.buf[w[0]..w[1]])
    }
}

impl Packed<String> {
    /// Room for `n` texts of `bytes` bytes in all.
    pub(super) fn with_capacity(n: usize, bytes: usize) -> Self {
        Self::with_buf(n, String::with_capacity(bytes))
    }

    /// Appends a text.
    pub(super) fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
    }

    /// The texts' bytes in all.
    pub(super) fn total_len(&self) -> usize {
        self.buf.len()
    }

    /// The texts end to end.
    pub(super) fn as_str(&self) -> &str {
        &self.buf
    }

    /// Where each text starts, and the last ends: text `i` is
    /// `as_str()[ends[i]..ends[i + 1]]`.
    pub(super) fn ends(&self) -> &[usize] {
        &self.ends
    }
}

impl Packed<Vec<u8>> {
    /// Room for `n` strings of `bytes` bytes in all.
    pub(super) fn with_capacity(n: usize, bytes: usize) -> Self {
        Self::with_buf(n, Vec::with_capacity(bytes))
    }

    /// Ends the string being written: what was appended to
    /// [`Packed::tail`] since the last end.
    pub(super) fn end(&mut self) {
        self.ends.push(self.buf.len());
    }

    /// The buffer, to append the next string's bytes to (then
    /// [`Packed::end`]).
    pub(super) fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Drops the bytes written since the last end.
    pub(super) fn discard_open(&mut self) {
        let end = self.ends.last().copied().unwrap_or(0);
        self.buf.truncate(end);
    }
}

impl<B> Index<usize> for Packed<B>
where
    B: Index<Range<usize>>,
{
    type Output = B::Output;

    /// String `i`; panics out of range, as a `Vec`'s index.
    #[inline]
    fn index(&self, i: usize) -> &B::Output {
        match self.get(i) {
            Some(s) => s,
            None => panic!("string {i} of {}", self.len()),
        }
    }
}

/// Which of the strings of one text an [`Indexed`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Duplicates {
    /// The first (merge ranks: the lowest).
    First,
    /// The last (token ids, as llama.cpp's `token_to_id` map keeps).
    Last,
}

/// Texts, and the index of each found by its text.
#[derive(Clone)]
pub(super) struct Indexed {
    texts: Packed<String>,
    /// Indices into `texts`, by the hash of their text.
    ids: HashTable<u32>,
    /// Keyed per table (SipHash): a file's texts cannot be chosen to
    /// collide.
    state: RandomState,
}

impl std::fmt::Debug for Indexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexed")
            .field("len", &self.texts.len())
            .finish_non_exhaustive()
    }
}

impl Indexed {
    /// `texts` indexed; `duplicates` says which of one text's indices its
    /// text finds. (Their number must fit a `u32`, as token ids do.)
    pub(super) fn new(texts: Packed<String>, duplicates: Duplicates) -> Self {
        let state = RandomState::new();
        let mut ids = HashTable::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let entry = ids.entry(
                state.hash_one(t),
                |&id: &u32| &texts[id as usize] == t,
                |&id: &u32| state.hash_one(&texts[id as usize]),
            );
            match entry {
                Entry::Occupied(mut e) => {
                    if duplicates == Duplicates::Last {
                        *e.get_mut() = i as u32;
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(i as u32);
                }
            }
        }
        Indexed { texts, ids, state }
    }

    /// The index `text` finds.
    #[inline]
    pub(super) fn id(&self, text: &str) -> Option<u32> {
        self.ids
            .find(self.state.hash_one(text), |&id| {
                &self.texts[id as usize] == text
            })
            .copied()
    }

    /// The texts, in order.
    pub(super) fn texts(&self) -> &Packed<String> {
        &self.texts
    }

    /// The number of texts.
    pub(super) fn len(&self) -> usize {
        self.texts.len()
    }

    /// Text `i`.
    pub(super) fn get(&self, i: usize) -> Option<&str> {
        self.texts.get(i)
    }

    /// The texts in order.
    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.texts.iter()
    }
}

impl Index<usize> for Indexed {
    type Output = str;

    /// Text `i`; panics out of range.
    #[inline]
    fn index(&self, i: usize) -> &str {
        &self.texts[i]
    }
}

/// The words met lately in a text, each with the range of the output its
/// ids took (a BPE word's, a SentencePiece segment's ids depend on its
/// text alone, and most words of a long text are repeats): a direct-mapped
/// cache (a word's slot is chosen by its hash, and holds the last word
/// that hashed there), so that however a text's words collide, a lookup is
/// one slot (a miss costs a hash and a compare: 2% of a text of all
/// distinct words). Up to 4096 slots, fewer for short texts; it lasts one
/// [`Tokenizer::encode`](super::Tokenizer::encode), across the fragments
/// between special tokens, all of whose ids go to one output.
pub(super) struct Recent {
    /// Each slot's word (its buffer kept from one word to the next), and
    /// the range of the output its ids took (`None`: empty).
    slots: Vec<(String, Option<(usize, usize)>)>,
}

impl Recent {
    /// The cache for a text of `text_len` bytes.
    pub(super) fn new(text_len: usize) -> Self {
        let n = (text_len / 8).clamp(16, 4096).next_power_of_two();
        Recent {
            slots: vec![(String::new(), None); n],
        }
    }

    /// No cache: every word encoded.
    #[cfg(test)]
    pub(super) fn off() -> Self {
        Recent { slots: Vec::new() }
    }

    /// Appends `word`'s ids to `out` (the output of every earlier call):
    /// those it gave when last met, where its slot still holds it, else
    /// `encode`'s (which the slot then keeps).
    pub(super) fn encode(
        &mut self,
        word: &str,
        out: &mut Vec<u32>,
        encode: impl FnOnce(&mut Vec<u32>),
    ) {
        if self.slots.is_empty() || word.is_empty() {
            encode(out);
            return;
        }
        // FxHash's step over the bytes, 8 at a time (no key: a collision
        // only evicts).
        let mut h = 0u64;
        let (chunks, tail) = word.as_bytes().as_chunks::<8>();
        let mut step = |w: u64| h = (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
        for &c in chunks {
            step(u64::from_le_bytes(c));
        }
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        step(u64::from_le_bytes(last) ^ (word.len() as u64) << 56);
        let mask = self.slots.len() - 1;
        // The high bits are the best mixed.
        let (key, range) = &mut self.slots[(h >> 40) as usize & mask];
        if let Some((a, b)) = *range {
            if key == word {
                out.extend_from_within(a..b);
                return;
            }
        }
        let start = out.len();
        encode(out);
        key.clear();
        key.push_str(word);
        *range = Some((start, out.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(words: &[&str]) -> Packed<String> {
        let mut p = Packed::<String>::with_capacity(words.len(), 0);
        for w in words {
            p.push(w);
        }
        p
    }

    #[test]
    fn packed_strings_come_back_in_order() {
        let p = packed(&["a", "", "▁bc", "a"]);
        assert_eq!(p.len(), 4);
        assert_eq!(p.iter().collect::<Vec<_>>(), ["a", "", "▁bc", "a"]);
        assert_eq!((p.get(2), p.get(4)), (Some("▁bc"), None));
        assert_eq!(&p[3], "a");
        assert_eq!(p.total_len(), 7);
        assert_eq!(packed(&[]).iter().count(), 0);

        let mut b = Packed::<Vec<u8>>::with_capacity(2, 0);
        b.tail().extend_from_slice(b"xy");
        b.discard_open();
        b.tail().push(b'z');
        b.end();
        b.end();
        assert_eq!(b.iter().collect::<Vec<_>>(), [&b"z"[..], b""]);
    }

    #[test]
    fn duplicates_find_the_first_or_the_last() {
        let words = ["a", "b", "a", "c", "b", "a"];
        let first = Indexed::new(packed(&words), Duplicates::First);
        let last = Indexed::new(packed(&words), Duplicates::Last);
        for (w, f, l) in [("a", 0, 5), ("b", 1, 4), ("c", 3, 3)] {
            assert_eq!((first.id(w), last.id(w)), (Some(f), Some(l)), "{w}");
        }
        assert_eq!(
            (first.id("d"), first.id(""), first.id("ab")),
            (None, None, None)
        );
        assert_eq!(last.texts().len(), 6);
    }

    /// Many texts, against a `HashMap`.
    #[test]
    fn a_large_table_is_a_hash_map() {
        let words: Vec<String> = (0..50_000u32)
            .map(|i| format!("{}", i.wrapping_mul(2_654_435_761) % 30_000))
            .collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let t = Indexed::new(packed(&refs), Duplicates::Last);
        let mut map = std::collections::HashMap::new();
        for (i, w) in words.iter().enumerate() {
            map.insert(w.as_str(), i as u32);
        }
        for k in 0..30_001u32 {
            let k = k.to_string();
            assert_eq!(t.id(&k), map.get(k.as_str()).copied(), "{k}");
        }
    }
}
