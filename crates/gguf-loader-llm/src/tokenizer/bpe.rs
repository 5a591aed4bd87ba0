//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) as llama.cpp's
//! `llm_tokenizer_bpe_session`: pre-tokenize, map bytes to GPT-2's
//! alphabet, then merge the lowest-ranked adjacent pair (leftmost first)
//! until no merge applies.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Tokenizer;

/// A run of bytes of the encoded word; `len == 0` once merged away.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    // BinaryHeap pops the greatest: the lowest rank, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn push_bigram(
    tok: &Tokenizer,
    word: &str,
    syms: &[Symbol],
    left: Option<usize>,
    right: Option<usize>,
    key: &mut String,
    heap: &mut BinaryHeap<Bigram>,
) {
    let (Some(l), Some(r)) = (left, right) else {
        return;
    };
    let (a, b) = (syms[l], syms[r]);
    key.clear();
    key.push_str(&word[a.start..a.start + a.len]);
    key.push(' ');
    key.push_str(&word[b.start..b.start + b.len]);
    if let Some(&rank) = tok.merges.get(key.as_str()) {
        heap.push(Bigram {
            rank,
            left: l,
            right: r,
            size: a.len + b.len,
        });
    }
}

/// Appends the tokens of `text` (a fragment with no special tokens) to `out`.
pub(super) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    let Some(pre) = tok.pre.as_ref() else {
        return;
    };
    let mut key = String::new();
    let mut heap = BinaryHeap::new();
    let mut syms: Vec<Symbol> = Vec::new();
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
        syms.clear();
        heap.clear();
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
        for i in 1..syms.len() {
            push_bigram(tok, &word, &syms, Some(i - 1), Some(i), &mut key, &mut heap);
        }
        while let Some(bg) = heap.pop() {
            let (l, r) = (syms[bg.left], syms[bg.right]);
            // A pair whose sides changed since it was queued is stale.
            if l.len == 0 || r.len == 0 || l.len + r.len != bg.size {
                continue;
            }
            syms[bg.left].len += r.len;
            syms[bg.right].len = 0;
            syms[bg.left].next = r.next;
            if let Some(n) = r.next {
                syms[n].prev = Some(bg.left);
            }
            let (prev, next) = (syms[bg.left].prev, syms[bg.left].next);
            push_bigram(tok, &word, &syms, prev, Some(bg.left), &mut key, &mut heap);
            push_bigram(tok, &word, &syms, Some(bg.left), next, &mut key, &mut heap);
        }
        for s in syms.iter().filter(|s| s.len > 0) {
            let piece = &word[s.start..s.start + s.len];
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
