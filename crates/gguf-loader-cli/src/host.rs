//! What the machine allows: how many threads, how much memory, which paths
//! can be opened as a model without blocking.

use std::path::Path;

/// How many threads `--threads` may ask for per available core.
pub const THREADS_PER_CORE: usize = 4;

/// The cores this process may run on (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most threads `--threads` accepts: [`THREADS_PER_CORE`] per core.
pub fn max_threads() -> usize {
    cores().saturating_mul(THREADS_PER_CORE)
}

/// Parses `--threads`: a count from 1 to [`max_threads`]; the error is the
/// one line clap prints after the flag's name.
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("'{s}' is not a thread count"))?;
    let max = max_threads();
    match n {
        0 => Err("at least 1 thread is needed".to_string()),
        n if n > max => Err(format!(
            "{n} threads is more than {max} ({THREADS_PER_CORE} per available core, {} here)",
            cores()
        )),
        n => Ok(n),
    }
}

/// The memory the kernel reckons can be allocated without swapping
/// (`MemAvailable` in `/proc/meminfo`), in bytes; `None` where that file is
/// missing or unreadable (not Linux).
pub fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Refuses, before anything is read, to allocate `needed` bytes for `what`
/// when the machine reports less memory available; the error says how much
/// there is and which flag skips the check. Passes where the available
/// memory is unknown.
pub fn check_memory(needed: u64, what: &str) -> Result<(), String> {
    match mem_available() {
        Some(avail) if needed > avail => Err(format!(
            "{what} needs {needed} bytes ({:.1} GiB) but only {avail} bytes ({:.1} GiB) of memory \
             are available; pass --no-memory-check to try anyway",
            needed as f64 / GIB,
            avail as f64 / GIB
        )),
        _ => Ok(()),
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// Refuses a path that is not a regular file (or a block device) before it
/// is opened: a directory would fail later with a baffling "No such device",
/// and opening a FIFO with no writer would block forever. A path that
/// cannot be examined passes, so that opening it reports why.
///
/// The library refuses such paths itself where it opens them; this check
/// keeps the CLI's answer the same meanwhile.
pub fn check_input(path: &Path) -> Result<(), gguf_loader::Error> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let ft = meta.file_type();
    let what = if ft.is_dir() {
        Some("a directory")
    } else {
        special_kind(&ft)
    };
    match what {
        Some(what) => Err(gguf_loader::Error::NotAFile {
            path: path.to_path_buf(),
            what,
        }),
        None => Ok(()),
    }
}

#[cfg(unix)]
fn special_kind(ft: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_char_device() {
        Some("a character device")
    } else {
        None
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> Option<&'static str> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_between_one_and_the_cap() {
        assert_eq!(parse_threads("1"), Ok(1));
        assert_eq!(parse_threads(&max_threads().to_string()), Ok(max_threads()));
        assert!(parse_threads("0").unwrap_err().contains("at least 1"));
        let e = parse_threads(&(max_threads() + 1).to_string()).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        assert!(parse_threads("100000").is_err());
        assert!(parse_threads("-1").is_err());
        assert!(parse_threads("lots").is_err());
    }

    #[test]
    fn memory_check_refuses_the_impossible() {
        if mem_available().is_some() {
            let e = check_memory(u64::MAX, "the test").unwrap_err();
            assert!(e.contains("--no-memory-check"), "{e}");
        }
        assert!(check_memory(1, "one byte").is_ok());
    }

    #[test]
    fn a_directory_is_not_a_file() {
        let dir = std::env::temp_dir();
        let e = check_input(&dir).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert!(check_input(Path::new("/no/such/file")).is_ok());
    }
}
