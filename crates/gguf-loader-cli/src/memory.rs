//! This process's memory as the system reports it, for the figures `load`
//! and `generate` print.
//!
//! | | resident now | peak resident | anonymous resident |
//! |---|---|---|---|
//! | Linux | `VmRSS` | `VmHWM` | `RssAnon` (`/proc/self/status`) |
//! | macOS | `proc_pidinfo`'s task info | `getrusage`'s `ru_maxrss` (bytes) | — |
//! | other Unix | — | `getrusage`'s `ru_maxrss` (KiB) | — |
//! | Windows | working set | peak working set (`GetProcessMemoryInfo`) | — |
//!
//! A figure the system does not give is `None`, printed as "unknown" (and
//! `null` in JSON), never 0.

/// Bytes resident now (file pages included), where the system tells it.
pub fn resident() -> Option<u64> {
    imp::resident()
}

/// The most bytes resident at once since the process started (file pages
/// included), where the system tells it.
pub fn peak_resident() -> Option<u64> {
    imp::peak_resident()
}

/// Anonymous bytes resident now (the heap and other private memory, not
/// the page cache's file pages): Linux only.
pub fn anonymous() -> Option<u64> {
    imp::anonymous()
}

/// `bytes` in MiB with one decimal, or "unknown".
pub fn mib(bytes: Option<u64>) -> String {
    match bytes {
        Some(b) => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        None => "unknown".to_string(),
    }
}

/// The value of the line starting with `key` (`"VmHWM:"`,
/// `"MemAvailable:"`…) in a `/proc` file's `text`, given there in KiB, in
/// bytes.
#[cfg(not(any(windows, target_os = "macos")))]
pub(crate) fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(target_os = "linux")]
mod imp {
    /// A field of /proc/self/status, in bytes.
    fn status_bytes(field: &str) -> Option<u64> {
        super::kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, field)
    }

    pub fn resident() -> Option<u64> {
        status_bytes("VmRSS:")
    }

    pub fn peak_resident() -> Option<u64> {
        status_bytes("VmHWM:")
    }

    pub fn anonymous() -> Option<u64> {
        status_bytes("RssAnon:")
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
mod imp {
    pub fn resident() -> Option<u64> {
        #[cfg(target_os = "macos")]
        {
            let mut info = std::mem::MaybeUninit::<libc::proc_taskinfo>::zeroed();
            let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
            // SAFETY: `info` is a writable `proc_taskinfo` of `size` bytes,
            // which is what PROC_PIDTASKINFO fills; the call returns the
            // bytes it wrote, and the value is read only if that is all.
            let wrote = unsafe {
                libc::proc_pidinfo(
                    libc::getpid(),
                    libc::PROC_PIDTASKINFO,
                    0,
                    info.as_mut_ptr().cast(),
                    size,
                )
            };
            if wrote != size {
                return None;
            }
            // SAFETY: fully written, checked above (and zeroed before).
            Some(unsafe { info.assume_init() }.pti_resident_size)
        }
        #[cfg(not(target_os = "macos"))]
        {
            None
        }
    }

    pub fn peak_resident() -> Option<u64> {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is a writable `rusage`, which getrusage fills on
        // success; it is read only then.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: written by the successful call (and zeroed before).
        let max = u64::try_from(unsafe { usage.assume_init() }.ru_maxrss).ok()?;
        // macOS gives bytes; the BSDs, like Linux, KiB.
        if cfg!(target_vendor = "apple") {
            Some(max)
        } else {
            max.checked_mul(1024)
        }
    }

    pub fn anonymous() -> Option<u64> {
        None
    }
}

#[cfg(windows)]
mod imp {
    use windows_sys::Win32::System::ProcessStatus::{
        GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::GetCurrentProcess;

    fn counters() -> Option<PROCESS_MEMORY_COUNTERS> {
        let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        // SAFETY: all-zero is a valid PROCESS_MEMORY_COUNTERS (integers).
        let mut c: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
        c.cb = size;
        // SAFETY: GetCurrentProcess's pseudo-handle needs no closing, and
        // `c` is a writable structure of the `size` bytes passed.
        let ok = unsafe { GetProcessMemoryInfo(GetCurrentProcess(), &mut c, size) };
        (ok != 0).then_some(c)
    }

    pub fn resident() -> Option<u64> {
        counters().map(|c| c.WorkingSetSize as u64)
    }

    pub fn peak_resident() -> Option<u64> {
        counters().map(|c| c.PeakWorkingSetSize as u64)
    }

    pub fn anonymous() -> Option<u64> {
        None
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    pub fn resident() -> Option<u64> {
        None
    }

    pub fn peak_resident() -> Option<u64> {
        None
    }

    pub fn anonymous() -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the system gives the figures, they are there and consistent:
    /// a page touched is resident, and the peak is at least the present.
    #[test]
    fn figures_are_given_where_the_system_has_them() {
        let block = vec![1u8; 32 << 20];
        std::hint::black_box(&block);
        let (now, peak) = (resident(), peak_resident());
        if cfg!(any(target_os = "linux", target_os = "macos", windows)) {
            let now = now.expect("resident");
            let peak = peak.expect("peak");
            assert!(now >= 32 << 20, "{now}");
            assert!(peak >= now, "{peak} < {now}");
        }
        if cfg!(target_os = "linux") {
            assert!(anonymous().expect("anonymous") >= 32 << 20);
        } else {
            assert_eq!(anonymous(), None);
        }
        assert_eq!(mib(Some(3 << 19)), "1.5 MiB");
        assert_eq!(mib(None), "unknown");
    }
}
