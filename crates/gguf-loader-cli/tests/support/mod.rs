//! Helpers of the CLI tests: the binary, a tiny model, a run with a time
//! limit.
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
