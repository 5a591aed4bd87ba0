//! Every command piped into a reader that goes away (`| head`) exits
//! quietly (`convert` too, which ends with a summary line); a closed or full standard error neither stops nor crashes it.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod support;

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::{cli, quiet_pipe_exit, spawn_piped, tiny_model, wait_within};

/// Every command that writes to standard output, on `model`.
fn commands(model: &Path) -> Vec<Vec<OsString>> {
    let m = model.as_os_str().to_owned();
    let with = |args: &[&str]| {
        let mut v: Vec<OsString> = args.iter().map(OsString::from).collect();
        v.insert(1, m.clone());
        v
    };
    vec![
        with(&["inspect"]),
        with(&["inspect", "--json"]),
        with(&["verify"]),
        with(&["verify", "--json"]),
        with(&["load"]),
        with(&["load", "--json"]),
        with(&["load", "--lazy"]),
        with(&["bench", "--threads", "1"]),
        with(&["bench", "--threads", "1", "--json"]),
        with(&["convert", "-o"]),
        vec!["--help".into()],
        vec!["inspect".into(), "--help".into()],
        vec!["--version".into()],
    ]
}

/// Runs `args` with standard output a pipe whose reader keeps `keep` bytes
/// and then closes it; returns the exit status and standard error.
fn reader_goes_away(args: &[OsString], keep: usize) -> (std::process::ExitStatus, String) {
    let mut child = spawn_piped(args);
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; keep];
    let _ = stdout.read(&mut buf);
    drop(stdout);
    let out = wait_within(child, Duration::from_secs(120), &format!("{args:?}"));
    (out.status, errors(&out.stderr))
}

/// Standard error without `load`'s progress lines (written when standard
/// error is not a terminal, as here).
fn errors(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.starts_with("loading: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn closed_stdout_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    for args in commands(&model) {
        // Closed before anything is written, and after the first bytes.
        for keep in [0, 10] {
            let mut args = args.clone();
            if args[0] == "convert" {
                // A new output each time (an existing one is refused).
                args.push(dir.path().join(format!("out{keep}.safetensors")).into());
            }
            let (status, err) = reader_goes_away(&args, keep);
            assert!(
                quiet_pipe_exit(status),
                "{args:?} (reader kept {keep} bytes): {status}, stderr {err}"
            );
            assert_eq!(err, "", "{args:?} (reader kept {keep} bytes)");
        }
    }
}

/// The large outputs of the real models break the pipe in mid-stream.
#[test]
fn real_models_into_head() {
    for model in common::real_models() {
        for json in [false, true] {
            let mut args: Vec<OsString> = vec!["inspect".into(), model.clone().into()];
            if json {
                args.push("--json".into());
            }
            let (status, err) = reader_goes_away(&args, 10);
            assert!(quiet_pipe_exit(status), "{args:?}: {status}, {err}");
            assert_eq!(err, "", "{args:?}");
        }
    }
}

/// `load` writes progress lines on standard error when it is not a
/// terminal: a closed pipe or a full device there changes nothing.
#[test]
fn closed_or_full_stderr_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };

    // A reader that went away.
    let mut child = cli()
        .arg("load")
        .arg(&model)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let out = wait_within(child, Duration::from_secs(60), "load 2>closed");
    assert_eq!(out.status.code(), Some(0), "load with stderr closed");

    // A full device.
    let out = cli()
        .arg("load")
        .arg(&model)
        .stdout(Stdio::null())
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "load 2>/dev/full");

    // An error to report, with nowhere to report it: still exit 2.
    let out = cli()
        .arg("inspect")
        .arg(dir.path().join("missing.gguf"))
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "inspect missing 2>/dev/full");
}

/// A full standard output is an error (exit 2, said on standard error), not
/// a panic and not a quiet exit.
#[test]
fn full_stdout_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    for args in [
        &["inspect"][..],
        &["inspect", "--json"],
        &["verify", "--json"],
        &["verify"],
        &["load"],
    ] {
        let out = cli()
            .args(&args[..1])
            .arg(&model)
            .args(&args[1..])
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .output()
            .unwrap();
        // verify's exit code is its verdict: 3 is "no report", not 2,
        // "malformed".
        let code = if args[0] == "verify" { 3 } else { 2 };
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = errors(&out.stderr);
        assert!(
            err.starts_with("gguf-loader: writing standard output: ") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
