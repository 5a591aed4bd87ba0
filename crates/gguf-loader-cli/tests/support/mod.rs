//! Helpers of the CLI tests: the binary, a tiny model, a run with a time
//! limit, and for the commands that write files (`convert`, `synth`) a run
//! with its peak memory, directory listings, FIFOs, tmpfs and unwritable
//! directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The `gguf-loader` binary under test.
pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gguf-loader"))
}

/// Writes the `tiny-test` preset (Q4_K weights) into `dir` with `synth`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.gguf");
    let out = cli()
        .args(["synth", "--preset", "tiny-test", "--type", "q4_k", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "synth: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Waits for `child` at most `limit`; kills it and panics, naming `what`,
/// when it takes longer (a hang fails the test instead of stalling it).
pub fn wait_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the binary with `args`, no input, standard output and error
/// pipes.
pub fn spawn_piped<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    cli()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs the binary with `args`, standard output and error captured,
/// within `limit`.
pub fn run_within(args: &[&std::ffi::OsStr], limit: Duration) -> Output {
    wait_within(spawn_piped(args), limit, &format!("{args:?}"))
}

/// Runs `cmd` and returns its output, but kills it and panics once its
/// standard output passes `cap` bytes, so that a regression that floods the
/// output cannot take the test's memory with it.
pub fn output_capped(cmd: &mut Command, cap: usize) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Vec::new();
    let mut pipe = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = pipe.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        stdout.extend_from_slice(&buf[..n]);
        if stdout.len() > cap {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?}: more than {cap} bytes of output");
        }
    }
    let mut out = child.wait_with_output().unwrap();
    out.stdout = stdout;
    out
}

/// True for the way a command may end when its reader went away: quietly,
/// 0 or 141 (as `cat` killed by SIGPIPE reads in a shell).
pub fn quiet_pipe_exit(status: ExitStatus) -> bool {
    matches!(status.code(), Some(0) | Some(141))
}

/// What a finished child did, with its peak resident memory.
pub struct Ran {
    /// Exit status, `None` when killed by a signal.
    pub code: Option<i32>,
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

/// Starts `argv[2:]`, waits for it and writes "EXIT MAXRSS_KIB" to argv[1].
const MEASURE: &str = r#"
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    f.write(f"{code} {usage.ru_maxrss}")
"#;

/// Runs `cmd` to its end and measures its peak RSS.
///
/// Through a small Python parent: a child spawned straight from this test
/// process would report the test process's own peak (Linux keeps the old
/// memory's high-water mark in `ru_maxrss` across `exec`, and `posix_spawn`
/// shares this process's memory until then), which the other tests running
/// beside this one make large.
/// Elsewhere than on Unix (no `wait4`), not measured: `max_rss` is 0.
pub fn run(cmd: &mut Command) -> Ran {
    if !cfg!(unix) {
        return run_with_stdin(cmd, b"");
    }
    let report = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(MEASURE)
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "python3: {out:?}");
    let report = std::fs::read_to_string(report.path()).unwrap();
    let (code, rss) = report.split_once(' ').unwrap();
    let code: i32 = code.parse().unwrap();
    Ran {
        code: (code >= 0).then_some(code),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        max_rss: rss.parse::<u64>().unwrap() * 1024,
    }
}

/// Runs `cmd` to its end with `stdin` as its standard input, standard
/// output and error captured. A refusal may exit before reading its input:
/// a broken pipe here is then expected, and the exit status and standard
/// error say the rest.
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// [`output_with_stdin`] as a [`Ran`]; its peak memory is not measured
/// (`max_rss` is 0).
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Ran {
    let out = output_with_stdin(cmd, stdin);
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        max_rss: 0,
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

/// What the system says of a missing file or directory, where it can be
/// told: Unix's words; Windows has others (and Wine others again).
pub const NO_SUCH_FILE: &str = if cfg!(unix) { "No such file" } else { "" };

/// A FIFO at `path`.
#[cfg(unix)]
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
        #[cfg(unix)]
        {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                return Tmpfs::mount("ro,size=1m").map(Unwritable::Mounted);
            }
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
            Some(Unwritable::Moded(dir))
        }
        #[cfg(not(unix))]
        None
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
        #[cfg(unix)]
        if let Unwritable::Moded(d) = self {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
}
