//! The fake device's memory: device allocations (host memory standing in
//! for VRAM, at addresses no other allocation shares), pinned host
//! buffers, and host ranges registered with the "driver", all in one table
//! so that every pointer the host code hands over can be checked.

use std::alloc::Layout;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Alignment of device allocations (the real driver's is at least 256).
pub const DEVICE_ALIGN: usize = 256;

/// What a range of the table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Device memory (`cuMemAlloc*`).
    Device,
    /// Pinned host memory the driver allocated (`cuMemHostAlloc`).
    Pinned,
    /// Host memory of the caller's, registered (`cuMemHostRegister`).
    Registered,
}

#[derive(Debug)]
struct Range {
    len: usize,
    kind: Kind,
}

/// Freed device memory, kept (poisoned) for a while before it goes back
/// to the allocator, so that a kernel or copy that uses it after its free
/// is caught by the table instead of touching reused memory.
const QUARANTINE_BYTES: usize = 512 << 20;

struct Table {
    ranges: BTreeMap<usize, Range>,
    device_bytes: usize,
    quarantine: VecDeque<(usize, usize)>,
    quarantine_bytes: usize,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    ranges: BTreeMap::new(),
    device_bytes: 0,
    quarantine: VecDeque::new(),
    quarantine_bytes: 0,
});

fn table() -> std::sync::MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn layout(len: usize, align: usize) -> Option<Layout> {
    Layout::from_size_align(len.max(1), align).ok()
}

/// Device memory in use, in bytes.
pub fn device_bytes() -> usize {
    table().device_bytes
}

/// Allocates `len` bytes of `kind` (`Device` or `Pinned`), filled with
/// `fill` (so that a value never written shows); `None` when the host
/// allocator refuses.
pub fn alloc(len: usize, kind: Kind, fill: u8) -> Option<usize> {
    let align = if kind == Kind::Device {
        DEVICE_ALIGN
    } else {
        4096
    };
    let l = layout(len, align)?;
    // SAFETY: `l` has a nonzero size.
    let p = unsafe { std::alloc::alloc(l) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a fresh allocation of at least `len` bytes.
    unsafe { std::ptr::write_bytes(p, fill, len.max(1)) };
    let mut t = table();
    t.ranges.insert(p as usize, Range { len, kind });
    if kind == Kind::Device {
        t.device_bytes += len;
    }
    Some(p as usize)
}

/// Frees the allocation of `kind` starting at `p`; false when there is
/// none there.
pub fn free(p: usize, kind: Kind) -> bool {
    let mut t = table();
    match t.ranges.get(&p) {
        Some(r) if r.kind == kind => {}
        _ => return false,
    }
    let r = t.ranges.remove(&p).expect("just found");
    if kind == Kind::Device {
        t.device_bytes -= r.len;
        // SAFETY: a live allocation of `r.len` bytes, now out of the table.
        unsafe { std::ptr::write_bytes(p as *mut u8, 0xDD, r.len) };
        t.quarantine.push_back((p, r.len));
        t.quarantine_bytes += r.len;
        while t.quarantine_bytes > QUARANTINE_BYTES {
            let (q, len) = t.quarantine.pop_front().expect("bytes left");
            t.quarantine_bytes -= len;
            // SAFETY: allocated by `alloc` with this layout, freed once.
            unsafe { std::alloc::dealloc(q as *mut u8, layout(len, DEVICE_ALIGN).expect("valid")) };
        }
    } else {
        // SAFETY: allocated by `alloc` with this layout, freed once.
        unsafe { std::alloc::dealloc(p as *mut u8, layout(r.len, 4096).expect("valid")) };
    }
    true
}

/// Records the caller's host range `[p, p + len)` as registered; false
/// when it overlaps a range already registered or pinned.
pub fn register(p: usize, len: usize) -> bool {
    let mut t = table();
    if len == 0 || overlapping(&t, p, len) {
        return false;
    }
    t.ranges.insert(
        p,
        Range {
            len,
            kind: Kind::Registered,
        },
    );
    true
}

/// Forgets the registration starting at `p`; false when there is none.
pub fn unregister(p: usize) -> bool {
    let mut t = table();
    match t.ranges.get(&p) {
        Some(r) if r.kind == Kind::Registered => {
            t.ranges.remove(&p);
            true
        }
        _ => false,
    }
}

fn overlapping(t: &Table, p: usize, len: usize) -> bool {
    t.ranges
        .range(..p.saturating_add(len))
        .next_back()
        .is_some_and(|(&s, r)| s + r.len.max(1) > p)
}

/// The kind of the table's range holding all of `[p, p + len)`, and the
/// bytes of it from `p` on; `None` when no one range holds it.
pub fn find(p: usize, len: usize) -> Option<(Kind, usize)> {
    let t = table();
    let (&start, r) = t.ranges.range(..=p).next_back()?;
    let end = start.checked_add(r.len)?;
    (p.checked_add(len)? <= end && (p < end || len == 0)).then_some((r.kind, end - p))
}

/// Whether `[p, p + len)` lies in device memory.
pub fn is_device(p: usize, len: usize) -> bool {
    matches!(find(p, len), Some((Kind::Device, _)))
}

/// Whether `[p, p + len)` lies in pinned or registered host memory.
pub fn is_page_locked(p: usize, len: usize) -> bool {
    matches!(find(p, len), Some((Kind::Pinned | Kind::Registered, _)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_checks_ranges_kinds_and_frees() {
        let d = alloc(1000, Kind::Device, 0x5A).unwrap();
        assert_eq!(d % DEVICE_ALIGN, 0);
        // SAFETY: a live allocation of 1000 bytes.
        assert_eq!(unsafe { *(d as *const u8).add(999) }, 0x5A);
        assert!(is_device(d, 1000) && is_device(d + 999, 1) && is_device(d + 1000, 0));
        assert!(!is_device(d, 1001) && !is_device(d + 1000, 1) && !is_device(d - 1, 2));
        assert_eq!(find(d + 10, 5), Some((Kind::Device, 990)));
        assert!(
            !free(d, Kind::Pinned),
            "a device allocation is not pinned memory"
        );
        assert!(free(d, Kind::Device));
        assert!(!free(d, Kind::Device), "freed twice");
        assert!(!is_device(d, 1), "a use after free is seen");

        let host = vec![0u8; 3 * 4096];
        let p = host.as_ptr() as usize;
        assert!(!is_page_locked(p, 10));
        assert!(register(p, 4096));
        assert!(is_page_locked(p + 100, 10) && !is_page_locked(p + 4000, 200));
        assert!(!register(p + 2048, 4096), "overlaps a registration");
        assert!(register(p + 4096, 4096), "touching is not overlapping");
        assert!(unregister(p) && unregister(p + 4096) && !unregister(p));
    }
}
