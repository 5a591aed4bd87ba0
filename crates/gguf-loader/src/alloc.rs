//! Output buffers: allocated once at their final size, untouched until the
//! decoders write them, so that page faults happen in parallel in the decode
//! threads, and backed by transparent huge pages where the kernel has them.

use crate::element::Element;

/// A vector of `n` zeros whose pages have not been touched yet.
///
/// `vec![T::default(); n]` would write every element on this thread (for
/// `f16`, which std cannot prove all-zero), faulting in each 4 KiB page
/// serially at about 1 GB/s; the allocator's zeroed allocation gets fresh
/// pages from the kernel without writing them.
pub fn zeroed_vec<T: Element>(n: usize) -> Vec<T> {
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return Vec::new();
    }
    let Ok(layout) = std::alloc::Layout::array::<T>(n) else {
        // Too large for the address space: let Vec report it.
        return vec![T::default(); n];
    };
    // SAFETY: `layout` has a non-zero size. The elements (f32, f16, bf16) are
    // plain bit patterns for which all-zero bytes are a valid value (+0.0), so
    // the zeroed memory is `n` initialized `T`s. The pointer comes from the
    // global allocator with `Layout::array::<T>(n)`, exactly what `Vec<T>`
    // with capacity `n` frees it with.
    let v = unsafe {
        let ptr = std::alloc::alloc_zeroed(layout) as *mut T;
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Vec::from_raw_parts(ptr, n, n)
    };
    advise_huge_pages(&v);
    v
}

/// Asks for transparent huge pages over the whole 2 MiB pages inside `v`.
fn advise_huge_pages<T>(v: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + std::mem::size_of_val(v);
        let a = start.next_multiple_of(HUGE);
        let b = end / HUGE * HUGE;
        if b > a {
            // SAFETY: [a, b) lies inside the allocation behind `v`, which
            // this process owns; MADV_HUGEPAGE only changes how the kernel
            // backs those pages and never their contents. Its result is
            // advice: a failure changes nothing and is ignored.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}
