//! libstdc++'s `std::sort`, step for step: llama.cpp orders its special
//! tokens with it (longest text first), and among texts of one length that
//! order is not the ids' once there are more than 16 of them (introsort is
//! not stable). Which of two overlapping specials of one length takes the
//! text follows from it.
//!
//! The port follows `bits/stl_algo.h` and `bits/stl_heap.h` (GCC; the
//! algorithm has not changed since GCC 4): introsort with a median-of-three
//! pivot moved to the front, an unguarded partition, a depth limit of
//! twice the floor of log2(n) and heap sort past it, then a final insertion
//! sort (guarded over the first 16, unguarded after). Checked against the
//! C++ library's own `std::sort` and `std::partial_sort` on random inputs
//! with many ties (tests/golden/std_sort.json, `scripts/std_sort_golden.py`).

/// Elements at most this many are left to the final insertion sort.
const THRESHOLD: usize = 16;

/// Sorts `v` as libstdc++'s `std::sort(v.begin(), v.end(), less)` does.
pub(crate) fn std_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let n = v.len();
    if n == 0 {
        return;
    }
    let lg = usize::BITS - 1 - n.leading_zeros();
    introsort_loop(v, 0, n, 2 * lg as usize, less);
    final_insertion_sort(v, less);
}

fn introsort_loop<T: Copy>(
    v: &mut [T],
    first: usize,
    mut last: usize,
    mut depth: usize,
    less: &impl Fn(&T, &T) -> bool,
) {
    while last - first > THRESHOLD {
        if depth == 0 {
            heap_sort(&mut v[first..last], less);
            return;
        }
        depth -= 1;
        let cut = unguarded_partition_pivot(v, first, last, less);
        introsort_loop(v, cut, last, depth, less);
        last = cut;
    }
}

fn unguarded_partition_pivot<T: Copy>(
    v: &mut [T],
    first: usize,
    last: usize,
    less: &impl Fn(&T, &T) -> bool,
) -> usize {
    let mid = first + (last - first) / 2;
    move_median_to_first(v, first, first + 1, mid, last - 1, less);
    unguarded_partition(v, first + 1, last, first, less)
}

fn move_median_to_first<T: Copy>(
    v: &mut [T],
    result: usize,
    a: usize,
    b: usize,
    c: usize,
    less: &impl Fn(&T, &T) -> bool,
) {
    let m = if less(&v[a], &v[b]) {
        if less(&v[b], &v[c]) {
            b
        } else if less(&v[a], &v[c]) {
            c
        } else {
            a
        }
    } else if less(&v[a], &v[c]) {
        a
    } else if less(&v[b], &v[c]) {
        c
    } else {
        b
    };
    v.swap(result, m);
}

/// The pivot at `pivot` (before `first`) bounds both scans, so neither
/// checks the range's ends.
fn unguarded_partition<T: Copy>(
    v: &mut [T],
    mut first: usize,
    mut last: usize,
    pivot: usize,
    less: &impl Fn(&T, &T) -> bool,
) -> usize {
    loop {
        // (The bounds, as above, only against a comparison that is not a
        // strict weak order.)
        while first + 1 < v.len() && less(&v[first], &v[pivot]) {
            first += 1;
        }
        last -= 1;
        while last > 0 && less(&v[pivot], &v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        v.swap(first, last);
        first += 1;
    }
}

fn final_insertion_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    if v.len() > THRESHOLD {
        insertion_sort(&mut v[..THRESHOLD], less);
        // Unguarded: the first THRESHOLD hold the least element.
        for i in THRESHOLD..v.len() {
            unguarded_linear_insert(v, i, less);
        }
    } else {
        insertion_sort(v, less);
    }
}

fn insertion_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        if less(&v[i], &v[0]) {
            let x = v[i];
            v.copy_within(0..i, 1);
            v[0] = x;
        } else {
            unguarded_linear_insert(v, i, less);
        }
    }
}

fn unguarded_linear_insert<T: Copy>(v: &mut [T], mut last: usize, less: &impl Fn(&T, &T) -> bool) {
    let x = v[last];
    // Unguarded in C++ (an element no greater lies to the left); the
    // bound only keeps a comparison that is not a strict weak order from
    // running off the slice.
    while last > 0 && less(&x, &v[last - 1]) {
        v[last] = v[last - 1];
        last -= 1;
    }
    v[last] = x;
}

/// `std::__partial_sort(first, last, last)`: make_heap, then sort_heap.
fn heap_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let len = v.len();
    if len >= 2 {
        let mut parent = (len - 2) / 2;
        loop {
            let x = v[parent];
            adjust_heap(v, parent, len, x, less);
            if parent == 0 {
                break;
            }
            parent -= 1;
        }
    }
    let mut last = len;
    while last > 1 {
        last -= 1;
        // __pop_heap(first, last, last): the top goes to `last`.
        let x = v[last];
        v[last] = v[0];
        adjust_heap(&mut v[..last], 0, last, x, less);
    }
}

fn adjust_heap<T: Copy>(
    v: &mut [T],
    mut hole: usize,
    len: usize,
    x: T,
    less: &impl Fn(&T, &T) -> bool,
) {
    let top = hole;
    let mut child = hole;
    while child < (len.wrapping_sub(1)) / 2 {
        child = 2 * (child + 1);
        if less(&v[child], &v[child - 1]) {
            child -= 1;
        }
        v[hole] = v[child];
        hole = child;
    }
    if len & 1 == 0 && child == (len.wrapping_sub(2)) / 2 {
        child = 2 * (child + 1);
        v[hole] = v[child - 1];
        hole = child - 1;
    }
    // __push_heap(first, hole, top, x).
    let mut parent = hole.wrapping_sub(1) / 2;
    while hole > top && less(&v[parent], &x) {
        v[hole] = v[parent];
        hole = parent;
        parent = hole.wrapping_sub(1) / 2;
    }
    v[hole] = x;
}

/// `std::partial_sort(v.begin(), v.end(), v.end(), less)`: the heap sort
/// introsort falls back to (for the tests).
#[cfg(test)]
pub(crate) fn std_heap_sort<T: Copy>(v: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    heap_sort(v, less);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C++ library's own orders (tests/golden/std_sort.json): ids in
    /// ascending order sorted by key, greater first, as llama.cpp sorts
    /// its special tokens by length.
    #[test]
    fn orders_are_libstdcxx() {
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
        if !golden.is_dir() {
            // Built from the crate's package, which carries no test data.
            eprintln!(
                "skipped: {} is not here (the repository's tests)",
                golden.display()
            );
            return;
        }
        let path = golden.join("std_sort.json");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let ints = |v: &serde_json::Value| -> Vec<usize> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        };
        let cases = doc["cases"].as_array().unwrap();
        assert!(cases.len() > 100);
        for (i, c) in cases.iter().enumerate() {
            let keys = ints(&c["keys"]);
            let greater = |a: &usize, b: &usize| keys[*a] > keys[*b];
            let mut s: Vec<usize> = (0..keys.len()).collect();
            std_sort(&mut s, &greater);
            assert_eq!(s, ints(&c["sort"]), "case {i}: sort");
            let mut h: Vec<usize> = (0..keys.len()).collect();
            std_heap_sort(&mut h, &greater);
            assert_eq!(h, ints(&c["heap"]), "case {i}: heap");
        }
    }
}
