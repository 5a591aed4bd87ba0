//! Helpers of the tests of the commands that write files (`convert`, `synth`).
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The CLI binary.
pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
}

/// What a finished child did, with its peak resident memory.
pub struct Ran {
    /// Exit status, `None` when killed by a signal.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set (`ru_maxrss`) of the child, in bytes.
    pub max_rss: u64,
}

impl Ran {
    /// Asserts a clean success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        &self.stdout
    }

    /// Asserts the one-line error of exit status 2 and returns it.
    pub fn err(&self) -> &str {
        assert_eq!(
            self.code,
            Some(2),
            "stdout: {} stderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert_eq!(self.stderr.trim_end().lines().count(), 1, "{}", self.stderr);
        &self.stderr
    }
}

/// Runs `cmd` to its end and measures its peak RSS with `wait4`, which
/// reports that one child's, not the maximum over this process's children.
pub fn run(cmd: &mut Command) -> Ran {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for (the `Child` is never
    // waited on); `status` and `usage` are valid places for wait4 to write.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else {
        (None, Some(libc::WTERMSIG(status)))
    };
    Ran {
        code,
        signal,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        max_rss: usage.ru_maxrss as u64 * 1024,
    }
}

/// The files in `dir`, sorted (temporary files left behind show here).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A tmpfs mounted on a fresh directory with these options (e.g.
/// "size=1m", "ro"), unmounted on drop; `None` where mounting is not allowed
/// (not root).
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// A directory this process cannot create files in: a read-only tmpfs for
/// root (whom modes do not stop), else a directory of mode 0555. `None`
/// when neither can be had.
pub enum Unwritable {
    Mounted(Tmpfs),
    Moded(tempfile::TempDir),
}

impl Unwritable {
    pub fn new() -> Option<Unwritable> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return Tmpfs::mount("ro,size=1m").map(Unwritable::Mounted);
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        Some(Unwritable::Moded(dir))
    }

    pub fn path(&self) -> PathBuf {
        match self {
            Unwritable::Mounted(t) => t.path(),
            Unwritable::Moded(d) => d.path().to_path_buf(),
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if let Unwritable::Moded(d) = self {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
}
