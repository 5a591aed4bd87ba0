//! The merge loop llama.cpp's BPE and SentencePiece sessions share: start
//! from the UTF-8 characters of a word, repeatedly merge the adjacent pair
//! of symbols with the best priority (leftmost on ties), re-queue the new
//! symbol's neighbours, until no pair is left.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A run of bytes of the word; `len == 0` once merged into its left
/// neighbour.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Pair<P> {
    priority: P,
    left: usize,
    right: usize,
    size: usize,
}

impl<P: Ord> PartialEq for Pair<P> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<P: Ord> Eq for Pair<P> {}
impl<P: Ord> Ord for Pair<P> {
    // BinaryHeap pops the greatest: the best priority, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl<P: Ord> PartialOrd for Pair<P> {
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
    let mut syms: Vec<Symbol> = Vec::with_capacity(word.len());
    let mut it = word.char_indices().peekable();
    while let Some((start, c)) = it.next() {
        let i = syms.len();
        syms.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: it.peek().map(|_| i + 1),
        });
    }
    let push =
        |syms: &[Symbol], heap: &mut BinaryHeap<Pair<P>>, l: Option<usize>, r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let (a, b) = (syms[l], syms[r]);
            let size = a.len + b.len;
            let left = &word[a.start..a.start + a.len];
            let right = &word[b.start..b.start + b.len];
            if let Some(p) = priority(left, right, &word[a.start..a.start + size]) {
                heap.push(Pair {
                    priority: p,
                    left: l,
                    right: r,
                    size,
                });
            }
        };
    let mut heap = BinaryHeap::new();
    for i in 1..syms.len() {
        push(&syms, &mut heap, Some(i - 1), Some(i));
    }
    while let Some(p) = heap.pop() {
        let (l, r) = (syms[p.left], syms[p.right]);
        // A pair whose sides changed since it was queued is stale (a left
        // symbol only grows by swallowing its right neighbour).
        if l.len == 0 || r.len == 0 || l.len + r.len != p.size {
            continue;
        }
        syms[p.left].len += r.len;
        syms[p.right].len = 0;
        syms[p.left].next = r.next;
        if let Some(n) = r.next {
            syms[n].prev = Some(p.left);
        }
        let (prev, next) = (syms[p.left].prev, syms[p.left].next);
        push(&syms, &mut heap, prev, Some(p.left));
        push(&syms, &mut heap, Some(p.left), next);
    }
    syms.iter()
        .filter(|s| s.len > 0)
        .map(|s| &word[s.start..s.start + s.len])
        .collect()
}
