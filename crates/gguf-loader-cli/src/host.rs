//! What the machine allows: how many threads, how much memory. (A FILE that
//! is not a regular file, which could block the open, is refused by the
//! library before anything is read.)

pub use gguf_loader::{max_threads, THREADS_PER_CORE};

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
            max / THREADS_PER_CORE
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
}
