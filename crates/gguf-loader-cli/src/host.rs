//! What the machine allows: how many threads, how much memory. (A FILE that
//! is not a regular file, which could block the open, is refused by the
//! library before anything is read.)

use std::path::{Path, PathBuf};

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

/// The memory this process can allocate without swapping or being killed,
/// in bytes: the machine's (`MemAvailable` in `/proc/meminfo`; on Windows
/// the available physical memory, `GlobalMemoryStatusEx`), or less where
/// the process's memory cgroup (a container's `--memory`) leaves less
/// ([`cgroup_available`]). On macOS, whose free-page count leaves out what
/// the system would reclaim or compress, an upper bound: the physical
/// memory (`hw.memsize`). `None` where none of these is known (the BSDs).
pub fn mem_available() -> Option<u64> {
    let machine = machine_available();
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|own| cgroup_available(Path::new("/sys/fs/cgroup"), &own));
    match (machine, cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

#[cfg(target_os = "macos")]
fn machine_available() -> Option<u64> {
    let mut bytes: u64 = 0;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: the name is NUL-terminated; `bytes` is a writable u64 and
    // `len` its size, which is what hw.memsize fills; nothing is set.
    let r = unsafe {
        libc::sysctlbyname(
            c"hw.memsize".as_ptr(),
            (&mut bytes as *mut u64).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (r == 0 && len == std::mem::size_of::<u64>() && bytes > 0).then_some(bytes)
}

#[cfg(not(any(windows, target_os = "macos")))]
fn machine_available() -> Option<u64> {
    crate::memory::kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

#[cfg(windows)]
fn machine_available() -> Option<u64> {
    use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
    // SAFETY: all-zero is a valid MEMORYSTATUSEX (integers).
    let mut status: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
    status.dwLength = std::mem::size_of::<MEMORYSTATUSEX>() as u32;
    // SAFETY: `status` is a writable MEMORYSTATUSEX whose dwLength says
    // its size, as the call requires.
    let ok = unsafe { GlobalMemoryStatusEx(&mut status) };
    (ok != 0).then_some(status.ullAvailPhys)
}

/// What the memory cgroup named in `own` (the text of `/proc/self/cgroup`)
/// and its ancestors still allow, under the cgroup mount `root`: the
/// smallest limit less usage, usage counted without the inactive file
/// pages the kernel reclaims before it kills (as `docker stats` counts
/// it). cgroup v2 (`0::/path`: `memory.max`, `memory.current`) or v1 (the
/// `memory` controller: `memory.limit_in_bytes`, `memory.usage_in_bytes`,
/// and `hierarchical_memory_limit` for the ancestors); `None` where no
/// limit is set or none can be read.
pub fn cgroup_available(root: &Path, own: &str) -> Option<u64> {
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    let number = |s: Option<String>| s.and_then(|s| s.trim().parse::<u64>().ok());
    let stat = |dir: &Path, key: &str| {
        read(dir.join("memory.stat")).and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        })
    };
    let mut least: Option<u64> = None;
    let mut take = |limit: u64, usage: u64, inactive: u64| {
        let left = limit.saturating_sub(usage.saturating_sub(inactive));
        least = Some(least.map_or(left, |l| l.min(left)));
    };
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            // v2: every level from the process's cgroup up to the root.
            let mut dir = root.join(path);
            while dir.starts_with(root) {
                if let (Some(max), Some(current)) = (
                    number(read(dir.join("memory.max"))),
                    number(read(dir.join("memory.current"))),
                ) {
                    take(max, current, stat(&dir, "inactive_file").unwrap_or(0));
                }
                if !dir.pop() {
                    break;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            // v1. Inside a container the mount's root is the process's
            // own cgroup, whatever the path says.
            let mount = root.join("memory");
            let dir = [mount.join(path), mount.clone()]
                .into_iter()
                .find(|d| d.join("memory.usage_in_bytes").exists())?;
            let usage = number(read(dir.join("memory.usage_in_bytes")))?;
            let limit = number(read(dir.join("memory.limit_in_bytes")));
            let hierarchical = stat(&dir, "hierarchical_memory_limit");
            // No limit is the largest page-aligned i64 (2^63 - 4096 on
            // x86-64): anything past 2^62 bytes is none.
            let limit = [limit, hierarchical]
                .into_iter()
                .flatten()
                .filter(|&l| l < 1 << 62)
                .min();
            if let Some(limit) = limit {
                take(limit, usage, stat(&dir, "total_inactive_file").unwrap_or(0));
            }
        }
    }
    least
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

    #[test]
    fn a_cgroups_limit_less_its_usage_is_whats_available() {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        // v2: the parent's limit is the smaller; inactive files count free.
        write("a/memory.max", "1000000\n");
        write("a/memory.current", "600000\n");
        write("a/memory.stat", "anon 1\ninactive_file 100000\n");
        write("a/b/memory.max", "max\n");
        write("a/b/memory.current", "500000\n");
        assert_eq!(
            cgroup_available(root.path(), "0::/a/b\n"),
            Some(1_000_000 - 500_000)
        );
        // v1, with no limit set at its level but one above it.
        write("memory/c/memory.limit_in_bytes", "9223372036854771712\n");
        write("memory/c/memory.usage_in_bytes", "300\n");
        write(
            "memory/c/memory.stat",
            "hierarchical_memory_limit 1000\ntotal_inactive_file 100\n",
        );
        let own = "4:memory:/c\n1:cpu:/\n";
        assert_eq!(cgroup_available(root.path(), own), Some(800));
        // None set: unknown, not zero.
        write("memory/d/memory.limit_in_bytes", "9223372036854771712\n");
        write("memory/d/memory.usage_in_bytes", "300\n");
        assert_eq!(cgroup_available(root.path(), "4:memory:/d\n"), None);
        assert_eq!(cgroup_available(root.path(), "garbage"), None);
    }
}
