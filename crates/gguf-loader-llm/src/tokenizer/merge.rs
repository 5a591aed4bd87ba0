//! The merge loop llama.cpp's BPE and SentencePiece sessions share: start
//! from the UTF-8 characters of a word, repeatedly merge the adjacent pair
//! of symbols with the best priority (leftmost on ties), re-queue the new
//! symbol's neighbours, until no pair is left.
//!
//! A word can be as long as its text (a run of a million spaces is one
//! pre-token), so the per-character state is kept small: byte offsets and
//! links are `u32` where the word is shorter than 4 GiB (16 bytes a symbol),
//! `usize` only beyond.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An index or byte offset into a word: `u32`, or `usize` for words of
/// 4 GiB or more. `NONE` marks a missing neighbour.
trait Idx: Copy + Eq + Ord {
    const NONE: Self;
    /// `i`, which the caller keeps below `NONE`.
    fn new(i: usize) -> Self;
    fn get(self) -> usize;
}

impl Idx for u32 {
    const NONE: u32 = u32::MAX;
    fn new(i: usize) -> u32 {
        debug_assert!(i < u32::MAX as usize);
        i as u32
    }
    fn get(self) -> usize {
        self as usize
    }
}

impl Idx for usize {
    const NONE: usize = usize::MAX;
    fn new(i: usize) -> usize {
        i
    }
    fn get(self) -> usize {
        self
    }
}

/// A run of bytes of the word; `len == 0` once merged into its left
/// neighbour.
#[derive(Clone, Copy)]
struct Symbol<I> {
    start: I,
    len: I,
    prev: I,
    next: I,
}

struct Pair<P, I> {
    priority: P,
    left: I,
    right: I,
    size: I,
}

impl<P: Ord, I: Idx> PartialEq for Pair<P, I> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<P: Ord, I: Idx> Eq for Pair<P, I> {}
impl<P: Ord, I: Idx> Ord for Pair<P, I> {
    // BinaryHeap pops the greatest: the best priority, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl<P: Ord, I: Idx> PartialOrd for Pair<P, I> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The pieces of `word` after merging, in order. `priority(left, right,
/// joined)` says whether two adjacent symbols may merge and how urgently
/// (greater first); `joined` is `left` followed by `right`.
pub(super) fn merge<P: Ord>(
    word: &str,
    priority: impl Fn(&str, &str, &str) -> Option<P>,
) -> Vec<&str> {
    if word.len() < u32::MAX as usize {
        merge_with::<P, u32>(word, priority)
    } else {
        merge_with::<P, usize>(word, priority)
    }
}

/// [`merge`] with offsets and links of type `I`, which must hold
/// `word.len()` below `I::NONE`.
fn merge_with<P: Ord, I: Idx>(
    word: &str,
    priority: impl Fn(&str, &str, &str) -> Option<P>,
) -> Vec<&str> {
    let some = |i: I| (i != I::NONE).then_some(i);
    let mut syms: Vec<Symbol<I>> = Vec::with_capacity(word.chars().count());
    let mut it = word.char_indices().peekable();
    while let Some((start, c)) = it.next() {
        let i = syms.len();
        syms.push(Symbol {
            start: I::new(start),
            len: I::new(c.len_utf8()),
            prev: i.checked_sub(1).map_or(I::NONE, I::new),
            next: it.peek().map_or(I::NONE, |_| I::new(i + 1)),
        });
    }
    let text = |s: usize, len: usize| &word[s..s + len];
    let push = |syms: &[Symbol<I>], heap: &mut BinaryHeap<Pair<P, I>>, l: I, r: I| {
        let (Some(l), Some(r)) = (some(l), some(r)) else {
            return;
        };
        let (a, b) = (syms[l.get()], syms[r.get()]);
        let size = a.len.get() + b.len.get();
        let left = text(a.start.get(), a.len.get());
        let right = text(b.start.get(), b.len.get());
        if let Some(p) = priority(left, right, text(a.start.get(), size)) {
            heap.push(Pair {
                priority: p,
                left: l,
                right: r,
                size: I::new(size),
            });
        }
    };
    let mut heap = BinaryHeap::new();
    for i in 1..syms.len() {
        push(&syms, &mut heap, I::new(i - 1), I::new(i));
    }
    while let Some(p) = heap.pop() {
        let (li, ri) = (p.left.get(), p.right.get());
        let (l, r) = (syms[li], syms[ri]);
        // A pair whose sides changed since it was queued is stale (a left
        // symbol only grows by swallowing its right neighbour).
        let (ll, rl) = (l.len.get(), r.len.get());
        if ll == 0 || rl == 0 || ll + rl != p.size.get() {
            continue;
        }
        syms[li].len = I::new(ll + rl);
        syms[ri].len = I::new(0);
        syms[li].next = r.next;
        if let Some(n) = some(r.next) {
            syms[n.get()].prev = p.left;
        }
        let (prev, next) = (syms[li].prev, syms[li].next);
        push(&syms, &mut heap, prev, p.left);
        push(&syms, &mut heap, p.left, next);
    }
    syms.iter()
        .filter(|s| s.len.get() > 0)
        .map(|s| text(s.start.get(), s.len.get()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merges any two adjacent symbols whose joined text is in `vocab`,
    /// the shortest join first (leftmost on ties).
    fn pieces<'a, I: Idx>(word: &'a str, vocab: &[&str]) -> Vec<&'a str> {
        merge_with::<_, I>(word, |_, _, joined| {
            vocab
                .contains(&joined)
                .then_some(std::cmp::Reverse(joined.len()))
        })
    }

    #[test]
    fn both_index_widths_merge_alike() {
        let vocab = ["ab", "abc", "bc", "cd", "éé", "ééé", "  ", "    "];
        for word in ["", "a", "abcd", "abcabcd", "xéééy", "          ", "ab cd"] {
            let narrow = pieces::<u32>(word, &vocab);
            assert_eq!(narrow, pieces::<usize>(word, &vocab), "{word:?}");
            assert_eq!(narrow.concat(), word);
        }
        assert_eq!(pieces::<u32>("abcd", &vocab), ["ab", "cd"]);
        assert_eq!(pieces::<u32>("      ", &vocab), ["    ", "  "]);
    }
}
