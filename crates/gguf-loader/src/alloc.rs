//! Output buffers: allocated once at their final size, untouched until the
//! decoders write them, so that page faults happen in parallel in the decode
//! threads, and backed by transparent huge pages where the kernel has them.
//! Every allocation here is fallible: a size taken from a file that asks for
//! more memory than there is gives an error, never an abort.

use std::marker::PhantomData;
use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};

use memmap2::{Mmap, MmapMut, MmapOptions};

use crate::element::Element;

/// A transparent huge page (x86-64 and aarch64 with 4 KiB base pages).
pub(crate) const HUGE: usize = 2 << 20;

/// An allocation that failed: the bytes asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AllocError {
    pub bytes: u64,
}

/// Bytes of `n` values of `T`, if that fits the address space.
fn bytes_of<T>(n: usize) -> Result<usize, AllocError> {
    n.checked_mul(std::mem::size_of::<T>())
        .filter(|b| *b <= isize::MAX as usize)
        .ok_or(AllocError {
            bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        })
}

/// A vector of `n` zeros whose pages have not been touched yet, or an error
/// when the memory cannot be had.
///
/// `vec![T::default(); n]` would write every element on this thread (for
/// `f16`, which std cannot prove all-zero), faulting in each 4 KiB page
/// serially at about 1 GB/s; the allocator's zeroed allocation gets fresh
/// pages from the kernel without writing them.
pub(crate) fn try_zeroed_vec<T: Element>(n: usize) -> Result<Vec<T>, AllocError> {
    let bytes = bytes_of::<T>(n)?;
    // The elements are `Pod` (all-zero bytes are +0.0); bytemuck asks the
    // allocator for zeroed memory, and a null pointer is its error.
    let v = bytemuck::allocation::try_zeroed_vec(n).map_err(|()| AllocError {
        bytes: bytes as u64,
    })?;
    advise_huge_pages(&v);
    Ok(v)
}

/// Asks for transparent huge pages over the whole 2 MiB pages inside `v`.
fn advise_huge_pages<T>(v: &[T]) {
    #[cfg(target_os = "linux")]
    {
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

/// Outputs of at least this many bytes get pages of their own (smaller ones
/// the heap): freed memory goes back to the system at once, where the C
/// allocator would keep a freed heap block resident for reuse.
const OWN_PAGES_MIN: usize = 64 << 10;

/// `n` zeroed values in an anonymous mapping of their own, returned to the
/// system when dropped. A mapping of a huge page or more starts on a
/// huge-page boundary, with the huge pages inside advised as such.
pub(crate) struct Pages<T> {
    /// `None` only while being dropped (handed back to its [`Bin`]).
    map: Option<MmapMut>,
    /// Offset of the first value in `map` (a page boundary).
    start: usize,
    /// Number of values.
    len: usize,
    /// Where the mapping goes when dropped, if that bin still exists;
    /// else back to the system.
    home: Option<Weak<Bin>>,
    _values: PhantomData<T>,
}

/// Mappings of dropped outputs kept for the next outputs of the same size
/// (a lazy model's layers, decoded again and again): written over rather
/// than faulted in afresh, page by page, each page zeroed by the kernel
/// first, which cost most of a lazy layer's decode. Holds at most `cap`
/// bytes; what does not fit goes back to the system.
pub(crate) struct Bin {
    cap: usize,
    kept: Mutex<Kept>,
}

/// What a [`Bin`] holds.
#[derive(Default)]
struct Kept {
    /// Bytes held: the sum of `maps`' sizes.
    bytes: usize,
    /// Each mapping with the byte size of its values and their offset.
    maps: Vec<(usize, MmapMut, usize)>,
}

impl Bin {
    /// A bin that keeps up to `cap` bytes of mappings.
    pub(crate) fn new(cap: usize) -> Bin {
        Bin {
            cap,
            kept: Mutex::new(Kept::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Nothing panics while holding it; a poisoned lock holds a whole state.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kept mapping whose values are `bytes` long, with their offset.
    fn take(&self, bytes: usize) -> Option<(MmapMut, usize)> {
        let mut kept = self.lock();
        let i = kept.maps.iter().position(|(b, ..)| *b == bytes)?;
        let (b, map, start) = kept.maps.swap_remove(i);
        kept.bytes -= b;
        Some((map, start))
    }

    /// Keeps `map` (values of `bytes` at `start`) if it fits under the cap;
    /// else it is unmapped (after the lock is released).
    fn give(&self, bytes: usize, map: MmapMut, start: usize) {
        let mut kept = self.lock();
        if kept.bytes.saturating_add(bytes) <= self.cap {
            kept.bytes += bytes;
            kept.maps.push((bytes, map, start));
        } else {
            drop(kept);
            drop(map);
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.lock().bytes
    }
}

impl<T> Drop for Pages<T> {
    fn drop(&mut self) {
        if let (Some(home), Some(map)) =
            (self.home.take().and_then(|w| w.upgrade()), self.map.take())
        {
            home.give(self.len * std::mem::size_of::<T>(), map, self.start);
        }
    }
}

impl<T: Element> Pages<T> {
    /// `n` zeros, untouched; [`AllocError`] when the memory cannot be had.
    pub(crate) fn zeroed(n: usize) -> Result<Pages<T>, AllocError> {
        let bytes = bytes_of::<T>(n)?;
        let fail = AllocError {
            bytes: bytes as u64,
        };
        // A huge page more than needed, to start on a boundary inside; the
        // pages before it are never touched and cost only address space.
        let slack = if bytes >= HUGE { HUGE } else { 0 };
        let map = MmapOptions::new()
            .len(bytes.checked_add(slack).ok_or(fail)?)
            .map_anon()
            .map_err(|_| fail)?;
        let base = map.as_ptr() as usize;
        let start = if bytes >= HUGE {
            base.next_multiple_of(HUGE) - base
        } else {
            0
        };
        #[cfg(target_os = "linux")]
        if bytes >= HUGE {
            // Advice only: without huge pages the values are the same.
            let _ = map.advise_range(memmap2::Advice::HugePage, start, bytes / HUGE * HUGE);
        }
        Ok(Pages {
            map: Some(map),
            start,
            len: n,
            home: None,
            _values: PhantomData,
        })
    }

    /// `n` values in a mapping from `bin` that held as many before, or else
    /// in a new one ([`Self::zeroed`]); handed back to `bin` when dropped.
    /// The values are whatever the mapping held: for outputs written whole.
    /// The flag says whether the mapping is a reused one.
    pub(crate) fn reused(n: usize, bin: &Arc<Bin>) -> Result<(Pages<T>, bool), AllocError> {
        let bytes = bytes_of::<T>(n)?;
        let home = Some(Arc::downgrade(bin));
        if let Some((map, start)) = bin.take(bytes) {
            let pages = Pages {
                map: Some(map),
                start,
                len: n,
                home,
                _values: PhantomData,
            };
            return Ok((pages, true));
        }
        let mut pages = Pages::zeroed(n)?;
        pages.home = home;
        Ok((pages, false))
    }

    fn byte_range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len * std::mem::size_of::<T>()
    }

    fn as_slice(&self) -> &[T] {
        // The range lies in the map and starts on a page boundary, so it is
        // aligned for T and a whole number of T: the cast always succeeds.
        let r = self.byte_range();
        self.map
            .as_ref()
            .and_then(|m| bytemuck::try_cast_slice(m.get(r)?).ok())
            .unwrap_or_default()
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        let r = self.byte_range();
        self.map
            .as_mut()
            .and_then(|m| bytemuck::try_cast_slice_mut(m.get_mut(r)?).ok())
            .unwrap_or_default()
    }
}

/// The values of one tensor, in memory of their own: dropping the tensor
/// frees them (or hands their mapping back to the [`Bin`] it came from),
/// whatever else was decoded with it.
pub(crate) enum Buffer<T> {
    /// A heap vector: small outputs, and vectors given by the caller.
    Heap(Vec<T>),
    /// Larger outputs: a mapping of their own, huge-page-aligned from a
    /// huge page up (a heap allocation of that size starts 16 bytes past a
    /// page, so neither its first nor its last 2 MiB could be a huge page).
    Pages(Pages<T>),
    /// A range of an arena shared by the small tensors of one model load
    /// (huge pages for them too, and one mapping instead of hundreds). Only
    /// a [`Model`](crate::Model) holds these: a tensor taken out of it gets
    /// its own copy ([`Buffer::into_own`]), so none can keep the arena alive.
    Shared(Arc<Pages<T>>, Range<usize>),
    /// A byte range of a file's read-only mapping that already holds the
    /// values as `T`'s (an f16 tensor of an F16 file): no copy and no
    /// memory of its own; the mapping lives as long as any view of it.
    /// Made only by [`Buffer::view`], which checks the range.
    Mapped(Arc<Mmap>, Range<usize>),
    /// Device memory of a GPU (feature `cuda`): no host view.
    #[cfg(feature = "cuda")]
    Cuda(cudarc::driver::CudaSlice<T>),
}

impl<T: Element> Buffer<T> {
    /// `n` zeros, untouched; [`AllocError`] when the memory cannot be had.
    pub fn zeroed(n: usize) -> Result<Buffer<T>, AllocError> {
        if Self::own_pages(n) {
            Ok(Buffer::Pages(Pages::zeroed(n)?))
        } else {
            Ok(Buffer::Heap(try_zeroed_vec(n)?))
        }
    }

    /// `n` values for an output written whole: from [`Pages::reused`]
    /// where it would get pages of its own, else as [`Self::zeroed`]. The
    /// flag says whether the memory was written before.
    pub fn reused(n: usize, bin: &Arc<Bin>) -> Result<(Buffer<T>, bool), AllocError> {
        if Self::own_pages(n) {
            let (pages, reused) = Pages::reused(n, bin)?;
            Ok((Buffer::Pages(pages), reused))
        } else {
            Ok((Buffer::Heap(try_zeroed_vec(n)?), false))
        }
    }

    /// Bytes `range` of `map` as `T`'s values, where the range lies in the
    /// map, starts at an address aligned for `T` and holds whole values.
    pub fn view(map: Arc<Mmap>, range: Range<usize>) -> Option<Buffer<T>> {
        let bytes = map.get(range.clone())?;
        bytemuck::try_cast_slice::<u8, T>(bytes).ok()?;
        Some(Buffer::Mapped(map, range))
    }

    /// Whether the values are a view of a file's mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Buffer::Mapped(..))
    }

    /// Whether an output of `n` values would get pages of its own (and so
    /// could come from, and go back to, a [`Bin`]); not where its size
    /// overflows (the heap's allocation then errs).
    pub fn own_pages(n: usize) -> bool {
        bytes_of::<T>(n).is_ok_and(|b| b >= OWN_PAGES_MIN)
    }

    /// The values.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Buffer::Heap(v) => v,
            Buffer::Pages(p) => p.as_slice(),
            Buffer::Shared(p, r) => p.as_slice().get(r.clone()).unwrap_or_default(),
            // Checked by `view`: in the map, aligned, whole values.
            Buffer::Mapped(m, r) => m
                .get(r.clone())
                .and_then(|b| bytemuck::try_cast_slice(b).ok())
                .unwrap_or_default(),
            #[cfg(feature = "cuda")]
            Buffer::Cuda(_) => &[],
        }
    }

    /// The values, to write (nothing for a shared range, which is written
    /// before it is shared, nor for a read-only view of a file).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Buffer::Heap(v) => v,
            Buffer::Pages(p) => p.as_mut_slice(),
            Buffer::Shared(..) | Buffer::Mapped(..) => &mut [],
            #[cfg(feature = "cuda")]
            Buffer::Cuda(_) => &mut [],
        }
    }

    /// The values as a vector (a copy when they are in pages).
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Buffer::Heap(v) => v,
            b => b.as_slice().to_vec(),
        }
    }

    /// The same values in memory of their own: a shared range is copied
    /// out (it is small: see [`ARENA_MAX`]), anything else moves (a view
    /// of a file stays one: it holds no memory of a model's).
    pub fn into_own(self) -> Buffer<T> {
        match self {
            Buffer::Shared(..) => Buffer::Heap(self.as_slice().to_vec()),
            b => b,
        }
    }
}

/// Outputs of a whole-model load smaller than this share one arena; larger
/// ones get pages of their own. Copying one out of the arena (when a tensor
/// is taken from its model) costs at most this much.
pub(crate) const ARENA_MAX: usize = HUGE;

/// Where each output of a model load lives: the small ones at element
/// offsets of one arena (each on a 64-byte boundary, for the streaming
/// stores), the others in pages of their own.
pub(crate) struct ModelOutputs<T> {
    /// `None` when no output is small.
    arena: Option<Pages<T>>,
    /// Per output: its range in the arena, or its own buffer.
    slots: Vec<Result<Range<usize>, Buffer<T>>>,
}

impl<T: Element> ModelOutputs<T> {
    /// Untouched zeroed outputs of `lens[i]` values each. Errs with the
    /// index of the output that could not be had (the arena's error names
    /// the first small one) and the bytes asked.
    pub fn zeroed(lens: &[usize]) -> Result<ModelOutputs<T>, (usize, AllocError)> {
        let align = (64 / std::mem::size_of::<T>()).max(1);
        let mut offset = 0usize;
        let mut slots = Vec::with_capacity(lens.len());
        let mut first_small = None;
        for (i, &n) in lens.iter().enumerate() {
            let bytes = bytes_of::<T>(n).map_err(|e| (i, e))?;
            if bytes < ARENA_MAX {
                first_small.get_or_insert(i);
                let start = offset.next_multiple_of(align);
                // Below ARENA_MAX each, and at most usize::MAX outputs in all.
                offset = start + n;
                slots.push(Ok(start..offset));
            } else {
                slots.push(Err(Buffer::Pages(Pages::zeroed(n).map_err(|e| (i, e))?)));
            }
        }
        let arena = match first_small {
            Some(i) => Some(Pages::zeroed(offset).map_err(|e| (i, e))?),
            None => None,
        };
        Ok(ModelOutputs { arena, slots })
    }

    /// Every output to write, in order, as disjoint slices.
    pub fn slices_mut(&mut self) -> Vec<&mut [T]> {
        let mut rest: &mut [T] = match &mut self.arena {
            Some(a) => a.as_mut_slice(),
            None => &mut [],
        };
        let mut taken = 0usize;
        let mut out = Vec::with_capacity(self.slots.len());
        for slot in &mut self.slots {
            match slot {
                Ok(r) => {
                    let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - taken);
                    let (this, tail) = tail.split_at_mut(r.len());
                    rest = tail;
                    taken = r.end;
                    out.push(this);
                }
                Err(b) => out.push(b.as_mut_slice()),
            }
        }
        out
    }

    /// The outputs as buffers, in order: the arena shared by the small ones.
    pub fn into_buffers(self) -> Vec<Buffer<T>> {
        let arena = self.arena.map(Arc::new);
        self.slots
            .into_iter()
            .map(|slot| match (slot, &arena) {
                (Ok(r), Some(a)) => Buffer::Shared(a.clone(), r),
                (Ok(_), None) => Buffer::Heap(Vec::new()),
                (Err(b), _) => b,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize, bin: &Arc<Bin>, value: f32) -> (Pages<f32>, bool) {
        let (mut p, reused) = Pages::<f32>::reused(n, bin).unwrap();
        p.as_mut_slice().fill(value);
        (p, reused)
    }

    #[test]
    fn a_bin_gives_back_mappings_of_the_same_size_up_to_its_cap() {
        let n = OWN_PAGES_MIN; // f32: 4 × OWN_PAGES_MIN bytes
        let bytes = 4 * n;
        let bin = Arc::new(Bin::new(2 * bytes + 4));
        let (a, reused) = filled(n, &bin, 1.0);
        assert!(!reused);
        let a_at = a.as_slice().as_ptr();
        drop(a);
        assert_eq!(bin.held(), bytes);
        // Another size: a new mapping; the kept one stays.
        let (b, reused) = filled(n + 1, &bin, 2.0);
        assert!(!reused);
        assert_eq!(bin.held(), bytes);
        // The same size: the kept mapping, as it was left.
        let (c, reused) = Pages::<f32>::reused(n, &bin).unwrap();
        assert!(reused);
        assert_eq!(c.as_slice().as_ptr(), a_at);
        assert!(c.as_slice().iter().all(|&v| v == 1.0));
        assert_eq!(bin.held(), 0);
        // Over the cap: b and c fit (2 × bytes + 4), d does not.
        let (d, _) = filled(n, &bin, 3.0);
        drop(c);
        drop(b);
        assert_eq!(bin.held(), bytes + 4 * (n + 1));
        drop(d);
        assert_eq!(bin.held(), bytes + 4 * (n + 1));
        // Once the bin is gone, a mapping is unmapped as any other.
        let (e, _) = filled(n, &bin, 4.0);
        drop(bin);
        drop(e);
    }

    #[test]
    fn a_reused_buffer_is_a_fresh_one_below_own_pages() {
        let bin = Arc::new(Bin::new(usize::MAX));
        let (b, reused) = Buffer::<f32>::reused(16, &bin).unwrap();
        assert!(!reused);
        assert!(matches!(b, Buffer::Heap(_)));
        assert!(b.as_slice().iter().all(|&v| v == 0.0));
        drop(b);
        assert_eq!(bin.held(), 0);
        assert!(!Buffer::<f32>::own_pages(16));
        assert!(Buffer::<f32>::own_pages(OWN_PAGES_MIN / 4));
        assert!(!Buffer::<f32>::own_pages(usize::MAX));
    }
}
