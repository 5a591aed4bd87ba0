//! What the loader asks of the operating system beyond `std`'s portable
//! surface, in one place: opening without blocking, positioned reads,
//! naming a file type, read-ahead advice. Unix (Linux, macOS) has them
//! all; Windows has positioned reads (`seek_read`) and read-ahead
//! (`PrefetchVirtualMemory`), and the rest is done without: a pipe or
//! device there is refused as "not a regular file" before any read.

use std::fs::{File, FileType};
use std::io;
use std::path::Path;

use memmap2::Mmap;

/// Opens `path` for reading. On Unix the open does not block
/// (`O_NONBLOCK`), so a FIFO with no writer is refused afterwards rather
/// than hanging the open.
pub(super) fn open_for_reading(path: &Path) -> io::Result<File> {
    let mut options = File::options();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options.open(path)
}

/// Fills `buf` from the file's bytes at `offset`, without moving a cursor
/// that another thread's read depends on (`pread` on Unix; on Windows
/// `seek_read`, which reads at its offset whatever the cursor).
pub(super) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(file, buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "positioned reads are not supported on this platform",
        ))
    }
}

/// What a file type that is not a regular file is, for
/// [`Error::NotAFile`](crate::Error::NotAFile).
pub(super) fn describe(t: FileType) -> &'static str {
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        } else if t.is_socket() {
            return "a socket";
        } else if t.is_block_device() {
            return "a block device";
        } else if t.is_char_device() {
            return "a character device";
        }
    }
    "a special file"
}

/// Reads `len` bytes of the map from `offset` into memory and maps them
/// into this process: `madvise(MADV_POPULATE_READ)` on Linux 5.14 and
/// later (one call, no fault per page), else a read of a byte of each page.
/// A range outside the map is left alone; errors are ignored (a page that
/// cannot be read faults again where it is used).
pub(super) fn populate(map: &Mmap, offset: usize, len: usize) {
    let Some(bytes) = offset.checked_add(len).and_then(|end| map.get(offset..end)) else {
        return;
    };
    #[cfg(target_os = "linux")]
    if len == 0
        || map
            .advise_range(memmap2::Advice::PopulateRead, offset, len)
            .is_ok()
    {
        return;
    }
    for page in bytes.chunks(4096) {
        std::hint::black_box(page[0]);
    }
}

/// Asks the kernel to read `len` bytes of the map from `offset` ahead
/// (the whole map with `None`): `madvise(MADV_WILLNEED)` on Unix,
/// `PrefetchVirtualMemory` on Windows (as llama.cpp asks it there). Advice
/// only: errors are ignored.
pub(super) fn will_need(map: &Mmap, range: Option<(usize, usize)>) {
    #[cfg(unix)]
    {
        let advice = memmap2::Advice::WillNeed;
        let _ = match range {
            None => map.advise(advice),
            Some((offset, len)) => map.advise_range(advice, offset, len),
        };
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Memory::{PrefetchVirtualMemory, WIN32_MEMORY_RANGE_ENTRY};
        use windows_sys::Win32::System::Threading::GetCurrentProcess;
        let (offset, len) = range.unwrap_or((0, map.len()));
        // Out of the map, or empty: nothing to ask.
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > map.len()) {
            return;
        }
        let entry = WIN32_MEMORY_RANGE_ENTRY {
            VirtualAddress: map.as_ptr().wrapping_add(offset) as *mut std::ffi::c_void,
            NumberOfBytes: len,
        };
        // SAFETY: the range lies inside the mapping (checked above), which
        // `map` keeps alive for the call; the call only schedules reads of
        // those pages and changes no memory. GetCurrentProcess's handle
        // needs no closing.
        unsafe { PrefetchVirtualMemory(GetCurrentProcess(), 1, &entry, 0) };
    }
    #[cfg(not(any(unix, windows)))]
    let _ = (map, range);
}
