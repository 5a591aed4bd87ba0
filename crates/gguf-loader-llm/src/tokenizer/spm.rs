//! SentencePiece (`tokenizer.ggml.model = llama`) as llama.cpp's
//! `llm_tokenizer_spm_session`: start from UTF-8 characters, repeatedly
//! merge the adjacent pair whose concatenation is the best-scoring token
//! (leftmost on ties), then write each symbol as its token or as
//! `<0xXX>` byte tokens. Greedy, not Viterbi.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Tokenizer;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

impl Ord for Bigram {
    // BinaryHeap pops the greatest: the highest score, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
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
    text: &str,
    syms: &[Symbol],
    left: Option<usize>,
    right: Option<usize>,
    heap: &mut BinaryHeap<Bigram>,
) {
    let (Some(l), Some(r)) = (left, right) else {
        return;
    };
    let start = syms[l].start;
    let size = syms[l].len + syms[r].len;
    if let Some(id) = tok.token_id(&text[start..start + size]) {
        heap.push(Bigram {
            score: tok.scores[id as usize],
            left: l,
            right: r,
            size,
        });
    }
}

/// Appends the tokens of `text` (spaces already escaped as `▁`) to `out`.
pub(super) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    let mut syms: Vec<Symbol> = Vec::with_capacity(text.len());
    let mut it = text.char_indices().peekable();
    while let Some((start, c)) = it.next() {
        let i = syms.len();
        syms.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: it.peek().map(|_| i + 1),
        });
    }
    let mut heap = BinaryHeap::new();
    for i in 1..syms.len() {
        push_bigram(tok, text, &syms, Some(i - 1), Some(i), &mut heap);
    }
    while let Some(bg) = heap.pop() {
        let (l, r) = (syms[bg.left], syms[bg.right]);
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
        push_bigram(tok, text, &syms, prev, Some(bg.left), &mut heap);
        push_bigram(tok, text, &syms, Some(bg.left), next, &mut heap);
    }
    let mut i = if syms.is_empty() { None } else { Some(0) };
    while let Some(k) = i {
        let s = syms[k];
        let piece = &text[s.start..s.start + s.len];
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
        i = s.next;
    }
}
