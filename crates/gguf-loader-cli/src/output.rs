//! Output files that never destroy an input or a file in use: everything is
//! written to a temporary file in the target's directory, synced, and renamed
//! into place only once complete. An output that is one of the inputs (same
//! device and inode, links followed) is refused, and so is an existing one
//! without `--force`. A run that fails, or is interrupted (Ctrl-C, SIGTERM),
//! removes its temporary file, and so does one ended by a fault (SIGBUS: a
//! mapped input truncated meanwhile), an abort (an allocation that fails)
//! or another signal that terminates (SIGUSR1, SIGALRM, SIGXFSZ, SIGPROF…);
//! only SIGKILL and the real-time signals (which nothing sends a loader)
//! leave it, and the next run writing the same output removes it (a run
//! holds a lock on its temporary file while it lives). A process that had
//! the old file open or mapped keeps reading the old file.

use std::fs::{File, Metadata};
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use tempfile::NamedTempFile;

use gguf_loader_cli::CliError;

/// Temporary files not yet renamed into place, removed by the Ctrl-C / SIGTERM
/// handler and the fatal-signal handler (which needs each path as a C
/// string, made beforehand: a signal handler may not allocate).
static PENDING: Mutex<Vec<(PathBuf, Option<std::ffi::CString>)>> = Mutex::new(Vec::new());

/// An output file being written; see the module documentation.
pub struct Output {
    /// The path as given, for messages.
    shown: PathBuf,
    /// Where the complete file goes (the file an existing link points at).
    target: PathBuf,
    /// Whether an existing `target` may be replaced.
    force: bool,
    temp: BufWriter<NamedTempFile>,
    /// Takes the temporary file off the pending list when dropped.
    _pending: Pending,
}

/// `text` without the ` at path "<temporary name>"` that tempfile puts
/// after the system's message: the output is named already, and the
/// temporary name tells nothing more.
fn without_temp_path(text: &str) -> &str {
    match text.rsplit_once(" at path \"") {
        Some((head, _)) if text.ends_with('"') => head,
        _ => text,
    }
}

impl Output {
    /// Prepares `path` for writing and creates its temporary file, so that
    /// an unwritable directory shows before any work is done.
    ///
    /// Errs, naming `path`, when it has no file name, when it exists and is
    /// not a regular file (a directory, a FIFO, a device), when it is one of
    /// `inputs` (same device and inode, after following links: the same
    /// path, a symbolic link to it or a hard link of it), when it exists and
    /// `force` is false, and when the temporary file cannot be created.
    pub fn create(path: &Path, inputs: &[&Path], force: bool) -> Result<Output, CliError> {
        let shown = path.to_path_buf();
        let fail = |msg: String| -> CliError { format!("{}: {msg}", path.display()).into() };
        if path.file_name().is_none() {
            return Err(fail("not a file name".into()));
        }
        // `x.gguf/` or `x.gguf/.` names a directory: said now, not at the
        // rename after all the work.
        let text = path.as_os_str().to_string_lossy();
        if text.ends_with(std::path::is_separator) || text.ends_with("/.") {
            return Err(fail("names a directory, not a file".into()));
        }
        let target = match std::fs::metadata(path) {
            Ok(meta) => {
                check_existing(path, &meta, inputs, force).map_err(fail)?;
                // Replace the file a link points at, not the link.
                path.canonicalize()
                    .map_err(|e| fail(format!("cannot resolve: {e}")))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !force && path.symlink_metadata().is_ok() {
                    return Err(fail(
                        "exists (a dangling link); use --force to replace it".into(),
                    ));
                }
                path.to_path_buf()
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        install_signal_handler();
        // The pending list is locked around the creation, so that the list
        // and the directory agree whenever the handler reads the list. This
        // thread takes none of the handled signals meanwhile: a signal goes
        // to another thread, whose handler waits for the lock.
        #[cfg(unix)]
        let blocked = fatal::Blocked::new();
        let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        // At most 128 bytes of the name: the temporary name is 33 longer,
        // and a name near the file system's limit (255) must still work.
        // The whole name's hash tells this output's files from those of
        // another whose name begins with the same 128 bytes, and the suffix
        // ours from other programs' (see `remove_stale`).
        let mut end = name.len().min(128);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let prefix = format!(".{}.", &name[..end]);
        let suffix = format!(".{:08x}{TEMP_SUFFIX}", fnv1a(name.as_bytes()));
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(&suffix);
        #[cfg(unix)]
        {
            // What `open` gives a new file (0666 less the umask), not
            // tempfile's 0600.
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temp = builder.tempfile_in(dir).map_err(|e| {
            // tempfile's message is the system's followed by ` at path
            // "<temporary name>"`, which tells nothing beside the directory.
            let text = e.to_string();
            fail(format!(
                "cannot create a file in {}: {}",
                dir.display(),
                without_temp_path(&text)
            ))
        })?;
        pending.push((temp.path().to_path_buf(), c_path(temp.path())));
        drop(pending);
        #[cfg(unix)]
        drop(blocked);
        // Held until the file is closed (renamed or removed): the mark of a
        // run still writing, which a later run's sweep leaves alone.
        let _ = temp.as_file().try_lock();
        remove_stale(dir, &prefix, &suffix, temp.path());
        Ok(Output {
            shown,
            target,
            force,
            _pending: Pending(temp.path().to_path_buf()),
            temp: BufWriter::with_capacity(1 << 20, temp),
        })
    }

    /// Reserves `bytes` of disk for the file where the file system can, so
    /// that a full disk shows before any work is done. Errs, naming the
    /// path, when there is not enough space.
    pub fn reserve(&mut self, bytes: u64) -> Result<(), CliError> {
        #[cfg(target_os = "linux")]
        if bytes > 0 {
            use rustix::fs::{fallocate, FallocateFlags};
            use rustix::io::Errno;
            // fallocate, not posix_fallocate: where the file system has no
            // preallocation, glibc's posix_fallocate would write the whole
            // length block by block; this just says so.
            match fallocate(
                self.temp.get_ref().as_file(),
                FallocateFlags::empty(),
                0,
                bytes,
            ) {
                // File systems without preallocation.
                Ok(()) | Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {}
                Err(e) => {
                    let e = io::Error::from(e);
                    return Err(self.error(format!("cannot reserve {bytes} bytes: {e}")));
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = bytes;
        Ok(())
    }

    /// The path as given, for messages.
    pub fn path(&self) -> &Path {
        &self.shown
    }

    /// A one-line error naming the output.
    pub fn error(&self, msg: impl std::fmt::Display) -> CliError {
        let msg = msg.to_string();
        format!("{}: {}", self.shown.display(), without_temp_path(&msg)).into()
    }

    /// Flushes, trims the file to what was written (undoing a larger
    /// reservation), syncs it to disk and renames it into place, then syncs
    /// the directory. Errs, naming the output, when a write fails, or when
    /// the output appeared meanwhile and `force` was not given; the
    /// temporary file is then removed.
    pub fn commit(self) -> Result<u64, CliError> {
        let Output {
            shown,
            target,
            force,
            temp,
            _pending,
        } = self;
        let fail = |what: &str, e: &dyn std::fmt::Display| -> CliError {
            format!("{}: {what}: {e}", shown.display()).into()
        };
        let mut temp = temp
            .into_inner()
            .map_err(|e| fail("cannot write", e.error()))?;
        let len = temp
            .stream_position()
            .map_err(|e| fail("cannot write", &e))?;
        let file = temp.as_file();
        file.set_len(len).map_err(|e| fail("cannot write", &e))?;
        file.sync_all().map_err(|e| fail("cannot write", &e))?;
        let placed = if force {
            temp.persist(&target).map(drop)
        } else {
            // Fails, rather than replaces, if the file appeared meanwhile.
            temp.persist_noclobber(&target).map(drop)
        };
        drop(_pending);
        placed.map_err(|e| fail("cannot rename into place", &e.error))?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Makes the rename durable; a directory that cannot be opened or
            // synced (some file systems) leaves the data written anyway.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(len)
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// A temporary file on the pending list, taken off when this is dropped:
/// after the rename, or when an output dropped without `commit` (an error)
/// has its temporary file removed by `NamedTempFile`.
struct Pending(PathBuf);

impl Drop for Pending {
    fn drop(&mut self) {
        let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|(p, _)| *p != self.0);
    }
}

/// How old a temporary file must be before a later run may take it for one
/// left by a run that was killed (SIGKILL, a power cut): a run locks its
/// file right after creating it, so only the moment between the two needs
/// this, and a minute also covers a network file system's clock.
#[cfg(unix)]
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// How a temporary output's name ends (after the random part and the
/// output name's hash).
const TEMP_SUFFIX: &str = ".gguf-loader.tmp";

/// The 32-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Removes, with a warning, the temporary files of this same output in `dir`
/// (`{prefix}XXXXXX{suffix}`, as [`Output::create`] names them: the
/// output's name, six random letters or digits, the hash of the name and
/// `.gguf-loader.tmp`; `own` excepted) that a run left when it was killed:
/// this user's, older than [`STALE_AFTER`] and locked by no process. A
/// file of another user, or one that cannot be opened or locked (a file
/// system without locks), is left as it is.
#[cfg(unix)]
fn remove_stale(dir: &Path, prefix: &str, suffix: &str, own: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(middle) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(suffix))
        else {
            continue;
        };
        let path = entry.path();
        if middle.len() != 6 || !middle.bytes().all(|b| b.is_ascii_alphanumeric()) || path == own {
            continue;
        }
        // Opened without following a link, and without blocking on a FIFO
        // put there meanwhile; then it must be a file old enough.
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        let me = rustix::process::geteuid().as_raw();
        let old = file.metadata().ok().filter(|m| m.is_file()).and_then(|m| {
            use std::os::unix::fs::MetadataExt;
            if m.uid() != me {
                return None;
            }
            let modified = m.modified().ok()?;
            Some(now.duration_since(modified).ok()? >= STALE_AFTER)
        });
        if old == Some(true) && file.try_lock().is_ok() && std::fs::remove_file(&path).is_ok() {
            gguf_loader_cli::warn(format_args!(
                "warning: removed {}, a temporary file left by an earlier run that was killed",
                path.display()
            ));
        }
    }
}

#[cfg(not(unix))]
fn remove_stale(_: &Path, _: &str, _: &str, _: &Path) {}

/// Why an existing output may not be written, if it may not.
fn check_existing(
    path: &Path,
    meta: &Metadata,
    inputs: &[&Path],
    force: bool,
) -> Result<(), String> {
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    if !meta.is_file() {
        return Err("exists and is not a regular file".into());
    }
    for input in inputs {
        if std::fs::metadata(input).is_ok_and(|m| same_file((input, &m), (path, meta))) {
            return Err(format!(
                "is the input {} (same file); choose another output",
                input.display()
            ));
        }
    }
    if !force {
        return Err("exists; use --force to replace it".into());
    }
    Ok(())
}

/// Whether two existing paths are one file: the same device and inode on
/// Unix (links of either kind); elsewhere the same canonical path (a
/// symbolic link, `..`, case), which misses hard links (Windows then
/// refuses the rename over the open input: an error, the input intact).
#[cfg(unix)]
fn same_file(a: (&Path, &Metadata), b: (&Path, &Metadata)) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.1.dev() == b.1.dev() && a.1.ino() == b.1.ino()
}

#[cfg(not(unix))]
fn same_file(a: (&Path, &Metadata), b: (&Path, &Metadata)) -> bool {
    match (a.0.canonicalize(), b.0.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// `path` as a C string, for the fatal-signal handler.
#[cfg(unix)]
fn c_path(path: &Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).ok()
}

#[cfg(not(unix))]
fn c_path(_: &Path) -> Option<std::ffi::CString> {
    None
}

/// On a signal that ends the process (Ctrl-C, SIGTERM, a fault…), removes
/// the temporary files, then lets the signal end the process, so that the
/// caller sees it (a shell loop stops on a Ctrl-C'd command).
fn install_signal_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(unix)]
        fatal::install();
        // Elsewhere, Ctrl-C's handler: without one an interrupt still ends
        // the process; only the temporary file stays behind.
        #[cfg(not(unix))]
        let _ = ctrlc::set_handler(|| {
            let pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
            for (p, _) in pending.iter() {
                let _ = std::fs::remove_file(p);
            }
            let _ = writeln!(io::stderr(), "gguf-loader: interrupted");
            std::process::exit(130);
        });
    });
}

/// The handler of the signals that end the process: it unlinks the pending
/// temporary files (and says "interrupted" for Ctrl-C, SIGTERM and
/// SIGHUP), then hands the signal to the handler there was before (std's,
/// which reports a stack overflow) or to the default action, so that the
/// process still ends by it.
#[cfg(unix)]
mod fatal {
    use std::sync::OnceLock;

    use super::PENDING;

    /// The signals whose default action terminates the process everywhere.
    const COMMON: [libc::c_int; 18] = [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGBUS,
        libc::SIGSEGV,
        libc::SIGABRT,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGVTALRM,
        libc::SIGXFSZ,
        libc::SIGXCPU,
        libc::SIGPROF,
        libc::SIGSYS,
        libc::SIGTRAP,
    ];
    /// And on Linux (SIGIO is ignored by default elsewhere).
    #[cfg(target_os = "linux")]
    const LINUX: [libc::c_int; 3] = [libc::SIGIO, libc::SIGPWR, libc::SIGSTKFLT];
    #[cfg(not(target_os = "linux"))]
    const LINUX: [libc::c_int; 0] = [];

    /// Interrupts, faults, aborts and the other signals whose default action
    /// terminates the process (the real-time signals aside).
    const SIGNALS: [libc::c_int; COMMON.len() + LINUX.len()] = {
        let mut all = [0; COMMON.len() + LINUX.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = if i < COMMON.len() {
                COMMON[i]
            } else {
                LINUX[i - COMMON.len()]
            };
            i += 1;
        }
        all
    };

    /// The action each of [`SIGNALS`] had before (set once, before the
    /// handler is installed).
    static OLD: [OnceLock<libc::sigaction>; SIGNALS.len()] =
        [const { OnceLock::new() }; SIGNALS.len()];

    /// The calling thread blocks the handled signals until dropped.
    pub(super) struct Blocked(libc::sigset_t);

    impl Blocked {
        pub(super) fn new() -> Blocked {
            // SAFETY: sigemptyset/sigaddset initialize the set;
            // pthread_sigmask writes the old mask into a valid sigset_t.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for &sig in &SIGNALS {
                    libc::sigaddset(&mut set, sig);
                }
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
                Blocked(old)
            }
        }
    }

    impl Drop for Blocked {
        fn drop(&mut self) {
            // SAFETY: restores the mask `new` read; a signal that came
            // meanwhile is delivered now.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
        }
    }

    pub(super) fn install() {
        for (i, &sig) in SIGNALS.iter().enumerate() {
            // SAFETY: sigaction with a null new action only reads the
            // current one into `old`, a zeroed (valid) struct.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
                continue;
            }
            if old.sa_sigaction == libc::SIG_IGN {
                continue; // ignored by whoever started us: left so
            }
            if OLD[i].set(old).is_err() {
                continue;
            }
            // SAFETY: a zeroed sigaction is valid; sigemptyset initializes
            // its mask. The handler only does what a signal handler may
            // (see `on_signal`).
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                libc::sigaction(sig, &new, std::ptr::null_mut());
            }
        }
    }

    /// Unlinks the pending temporary files (only if no thread holds the
    /// list at this instant: a handler must not wait on a lock), then
    /// passes the signal on. Only async-signal-safe calls: `unlink`,
    /// `signal`, `raise`, an atomic try-lock, the previous handler.
    extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // The lock is held only by a thread that blocks these signals
        // meanwhile (see `Blocked`), for one open(2): waited for by spinning
        // (no call), bounded in case a fault hit the holder itself.
        let mut pending = None;
        for _ in 0..(1u32 << 26) {
            match PENDING.try_lock() {
                Ok(p) => pending = Some(p),
                Err(std::sync::TryLockError::Poisoned(p)) => pending = Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::hint::spin_loop();
                    continue;
                }
            }
            break;
        }
        if let Some(pending) = pending {
            for c in pending.iter().filter_map(|(_, c)| c.as_ref()) {
                // SAFETY: a NUL-terminated path made before the signal.
                unsafe { libc::unlink(c.as_ptr()) };
            }
        }
        if matches!(sig, libc::SIGINT | libc::SIGTERM | libc::SIGHUP) {
            let said = b"gguf-loader: interrupted\n";
            // SAFETY: write(2) of a static buffer, async-signal-safe.
            unsafe { libc::write(2, said.as_ptr().cast(), said.len()) };
        }
        let old = SIGNALS
            .iter()
            .position(|&s| s == sig)
            .and_then(|i| OLD[i].get());
        if let Some(old) = old.filter(|o| o.sa_sigaction != libc::SIG_DFL) {
            // SAFETY: the handler installed before ours (std's, for SIGSEGV
            // and SIGBUS: it reports a stack overflow and aborts), with the
            // signature its flags say, called as the kernel would.
            unsafe {
                if old.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(old.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(old.sa_sigaction);
                    f(sig);
                }
            }
        }
        // SAFETY: signal and raise are async-signal-safe. With the default
        // action back, the signal ends the process: at once if sent by
        // another process (std's handler returns from those), or when the
        // handler returns for a fault, which recurs.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}
