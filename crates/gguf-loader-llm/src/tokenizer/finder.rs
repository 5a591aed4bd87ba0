//! An Aho-Corasick automaton over the special tokens' texts, with memory
//! linear in the texts: each state keeps the one pattern that ends there
//! and a link to the longest proper suffix that is a pattern end (the
//! dictionary-suffix link), never a list of every pattern that is a suffix
//! of its text. (The `aho-corasick` crate's NFA keeps such lists for
//! overlapping search, so specials nested as `a`, `aa`, … beside one long
//! run of `a` took memory that grows with their product: 1.3 GB for 100 of
//! them and one of 1 MiB.)
//!
//! States are numbered in breadth-first order, so a state's children are
//! consecutive (found by a binary search of their bytes) and a state's
//! links point to lower numbers.

/// No state or pattern.
const NONE: u32 = u32::MAX;

/// The automaton. Patterns are numbered as given.
pub(super) struct Finder {
    /// Each state's first child (children are consecutive).
    first_child: Vec<u32>,
    /// Each state's number of children.
    n_children: Vec<u16>,
    /// The byte on the edge into each state (ascending among siblings).
    byte: Vec<u8>,
    /// Failure links.
    fail: Vec<u32>,
    /// The first pattern that ends at each state, or [`NONE`].
    out: Vec<u32>,
    /// The nearest state down the failure links (not itself) where a
    /// pattern ends, or [`NONE`].
    dict: Vec<u32>,
    /// The next pattern with the same text as each pattern, or [`NONE`].
    same_next: Vec<u32>,
    /// The root's children by byte.
    root_next: [u32; 256],
}

/// The root state.
pub(super) const ROOT: u32 = 0;

impl Finder {
    /// The automaton of `patterns` (non-empty texts); `None` where a count
    /// passes `u32` or memory cannot be had.
    pub fn new(patterns: &[&[u8]]) -> Option<Finder> {
        let n_pat = u32::try_from(patterns.len()).ok().filter(|&n| n < NONE)?;
        let total: usize = patterns.iter().map(|p| p.len()).sum();
        u32::try_from(total).ok().filter(|&n| n < NONE - 1)?;
        // The trie, built from the patterns in byte order: each new state
        // is its parent's last child so far, so children come in order.
        let mut order: Vec<u32> = (0..n_pat).collect();
        order.sort_unstable_by(|&a, &b| patterns[a as usize].cmp(patterns[b as usize]));
        let mut t = Trie::with_capacity(total + 1)?;
        t.push(0);
        let mut same_next: Vec<u32> = try_vec(patterns.len())?;
        same_next.resize(patterns.len(), NONE);
        let mut last_same: Vec<u32> = try_vec(patterns.len())?;
        last_same.resize(patterns.len(), NONE);
        // The states along the previous pattern (path[d]: depth d).
        let mut path: Vec<u32> = vec![ROOT];
        let mut prev: &[u8] = &[];
        for &k in &order {
            let p = patterns[k as usize];
            let common = p.iter().zip(prev).take_while(|(a, b)| a == b).count();
            path.truncate(common + 1);
            for &b in &p[common..] {
                let parent = *path.last()? as usize;
                let s = t.push(b);
                match t.last[parent] {
                    NONE => t.first[parent] = s,
                    l => t.next[l as usize] = s,
                }
                t.last[parent] = s;
                path.push(s);
            }
            let s = *path.last()? as usize;
            match t.out[s] {
                NONE => t.out[s] = k,
                first => {
                    let l = last_same[first as usize];
                    same_next[if l == NONE { first } else { l } as usize] = k;
                    last_same[first as usize] = k;
                }
            }
            prev = p;
        }
        let Trie {
            byte: t_byte,
            first: t_first,
            next: t_next,
            last: t_last,
            out: t_out,
        } = t;
        drop(t_last);
        drop(last_same);
        // Renumbered breadth first: a state's children consecutive.
        let n = t_byte.len();
        let mut old_of: Vec<u32> = try_vec(n)?;
        old_of.push(ROOT);
        let mut first_child: Vec<u32> = try_vec(n)?;
        let mut n_children: Vec<u16> = try_vec(n)?;
        let mut i = 0;
        while i < old_of.len() {
            let old = old_of[i] as usize;
            first_child.push(old_of.len() as u32);
            let mut c = t_first[old];
            let mut count = 0u16;
            while c != NONE {
                old_of.push(c);
                count += 1;
                c = t_next[c as usize];
            }
            n_children.push(count);
            i += 1;
        }
        drop((t_first, t_next));
        let mut byte: Vec<u8> = try_vec(n)?;
        let mut out: Vec<u32> = try_vec(n)?;
        for &old in &old_of {
            byte.push(t_byte[old as usize]);
            out.push(t_out[old as usize]);
        }
        drop((t_byte, t_out, old_of));
        let mut f = Finder {
            first_child,
            n_children,
            byte,
            fail: try_vec(n)?,
            out,
            dict: try_vec(n)?,
            same_next,
            root_next: [NONE; 256],
        };
        f.fail.resize(n, ROOT);
        f.dict.resize(n, NONE);
        for c in f.children(ROOT) {
            f.root_next[f.byte[c as usize] as usize] = c;
        }
        // Failure and dictionary links, breadth first (parents before
        // children, and every link to a lower number).
        for v in 0..n as u32 {
            for c in f.children(v) {
                let b = f.byte[c as usize];
                // The longest proper suffix of `c`'s text in the trie: what
                // `v`'s failure state reads `b` into (the root's children
                // fail to the root).
                let fc = if v == ROOT {
                    ROOT
                } else {
                    f.next(f.fail[v as usize], b)
                };
                f.fail[c as usize] = fc;
                f.dict[c as usize] = if f.out[fc as usize] != NONE {
                    fc
                } else {
                    f.dict[fc as usize]
                };
            }
        }
        Some(f)
    }

    /// The children of `s`.
    fn children(&self, s: u32) -> std::ops::Range<u32> {
        let first = self.first_child[s as usize];
        first..first + self.n_children[s as usize] as u32
    }

    /// The child of `s` on byte `b`.
    pub fn child(&self, s: u32, b: u8) -> Option<u32> {
        if s == ROOT {
            return Some(self.root_next[b as usize]).filter(|&c| c != NONE);
        }
        let r = self.children(s);
        let bytes = &self.byte[r.start as usize..r.end as usize];
        bytes.binary_search(&b).ok().map(|i| r.start + i as u32)
    }

    /// The state after `s` reads `b`.
    pub fn next(&self, mut s: u32, b: u8) -> u32 {
        loop {
            if let Some(c) = self.child(s, b) {
                return c;
            }
            if s == ROOT {
                return ROOT;
            }
            s = self.fail[s as usize];
        }
    }

    /// The nearest state, `s` itself or down its dictionary links, where a
    /// pattern ends; `None` where no pattern is a suffix of `s`'s text.
    pub fn nearest_end(&self, s: u32) -> Option<u32> {
        let d = if self.out[s as usize] != NONE {
            s
        } else {
            self.dict[s as usize]
        };
        Some(d).filter(|&d| d != NONE)
    }

    /// The next state down the dictionary links from `s` where a pattern ends.
    pub fn next_end(&self, s: u32) -> Option<u32> {
        Some(self.dict[s as usize]).filter(|&d| d != NONE)
    }

    /// The patterns that end exactly at state `s` (the same text each).
    pub fn patterns_at(&self, s: u32) -> impl Iterator<Item = u32> + '_ {
        let mut k = self.out[s as usize];
        std::iter::from_fn(move || {
            let this = k;
            (this != NONE).then(|| {
                k = self.same_next[this as usize];
                this
            })
        })
    }

    /// How many states there are.
    #[cfg(test)]
    pub fn n_states(&self) -> usize {
        self.out.len()
    }
}

/// The trie as built, before it is numbered breadth first: children as
/// linked lists (`first`, `next`), `last` to append to them.
struct Trie {
    byte: Vec<u8>,
    first: Vec<u32>,
    next: Vec<u32>,
    last: Vec<u32>,
    out: Vec<u32>,
}

impl Trie {
    fn with_capacity(n: usize) -> Option<Trie> {
        Some(Trie {
            byte: try_vec(n)?,
            first: try_vec(n)?,
            next: try_vec(n)?,
            last: try_vec(n)?,
            out: try_vec(n)?,
        })
    }

    /// A new state on an edge of byte `b` (linked by the caller).
    fn push(&mut self, b: u8) -> u32 {
        self.byte.push(b);
        self.first.push(NONE);
        self.next.push(NONE);
        self.last.push(NONE);
        self.out.push(NONE);
        (self.byte.len() - 1) as u32
    }
}

/// An empty vector with room for `n`, or `None` where it cannot be had.
fn try_vec<T>(n: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::{Finder, ROOT};
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// Every occurrence (end, pattern), overlapping ones and patterns of
    /// the same text included, as a search of each pattern at each place
    /// finds them, on random patterns over small alphabets.
    #[test]
    fn every_occurrence_of_every_pattern() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut pick = |n: u32| (rng.next_u32() % n) as usize;
        for round in 0..500 {
            let sigma = 1 + pick(4) as u8;
            let word = |pick: &mut dyn FnMut(u32) -> usize, max: u32| -> Vec<u8> {
                let n = 1 + pick(max);
                (0..n).map(|_| b'a' + (pick(sigma as u32) as u8)).collect()
            };
            let n = 1 + pick(20);
            let mut patterns: Vec<Vec<u8>> = (0..n).map(|_| word(&mut pick, 6)).collect();
            if pick(3) == 0 {
                patterns.push(patterns[0].clone());
            }
            // A non-ASCII pattern and bytes now and then.
            if pick(4) == 0 {
                patterns.push("é".as_bytes().to_vec());
            }
            let refs: Vec<&[u8]> = patterns.iter().map(|p| p.as_slice()).collect();
            let f = Finder::new(&refs).unwrap();
            let mut text = word(&mut pick, 80);
            if pick(4) == 0 {
                text.extend_from_slice("éa".as_bytes());
            }
            let mut got = Vec::new();
            let mut s = ROOT;
            for (i, &b) in text.iter().enumerate() {
                s = f.next(s, b);
                let mut x = f.nearest_end(s);
                while let Some(d) = x {
                    got.extend(f.patterns_at(d).map(|k| (i + 1, k as usize)));
                    x = f.next_end(d);
                }
            }
            let mut want = Vec::new();
            for end in 1..=text.len() {
                for (k, p) in patterns.iter().enumerate() {
                    if end >= p.len() && text[end - p.len()..end] == p[..] {
                        want.push((end, k));
                    }
                }
            }
            got.sort_unstable();
            assert_eq!(got, want, "round {round}: {patterns:?} over {text:?}");
        }
    }

    /// Nested patterns beside a long one: memory linear in the texts (the
    /// crate's NFA took 1.3 GB for these), states one a byte at most.
    #[test]
    fn nested_patterns_take_memory_linear_in_their_texts() {
        let mut patterns: Vec<Vec<u8>> = (1..=100).map(|k| vec![b'a'; k]).collect();
        patterns.push(vec![b'a'; 1 << 20]);
        let refs: Vec<&[u8]> = patterns.iter().map(|p| p.as_slice()).collect();
        let f = Finder::new(&refs).unwrap();
        assert_eq!(f.n_states(), (1 << 20) + 1);
        // Every `a`×k for k ≤ 100 ends at the 100th `a` of a run.
        let mut s = ROOT;
        for _ in 0..100 {
            s = f.next(s, b'a');
        }
        let mut n = 0;
        let mut x = f.nearest_end(s);
        while let Some(d) = x {
            n += f.patterns_at(d).count();
            x = f.next_end(d);
        }
        assert_eq!(n, 100);
    }
}
