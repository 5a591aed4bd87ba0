//! A FILE that is not a regular file: a directory says so, a FIFO with no
//! writer is refused at once instead of blocking, a missing file is one
//! line; exit 2 for every subcommand that takes FILE.

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use support::run_within;

/// Every subcommand that takes FILE, with `path` as FILE.
fn with_file(path: &Path, out_dir: &Path) -> Vec<Vec<std::ffi::OsString>> {
    let out = out_dir.join("out.safetensors");
    let cases: [&[&OsStr]; 8] = [
        &["inspect".as_ref(), path.as_ref()],
        &["inspect".as_ref(), path.as_ref(), "--json".as_ref()],
        &["verify".as_ref(), path.as_ref()],
        &["verify".as_ref(), path.as_ref(), "--json".as_ref()],
        &["load".as_ref(), path.as_ref()],
        &["load".as_ref(), path.as_ref(), "--lazy".as_ref()],
        &["bench".as_ref(), path.as_ref()],
        &[
            "convert".as_ref(),
            path.as_ref(),
            "-o".as_ref(),
            out.as_ref(),
        ],
    ];
    cases
        .iter()
        .map(|c| c.iter().map(|a| a.to_os_string()).collect())
        .collect()
}

/// Runs every subcommand on `path` within a time limit, expecting exit 2 and
/// one error line on standard error that contains `says`.
fn refused(path: &Path, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    for args in with_file(path, dir.path()) {
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let out = run_within(&args, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("gguf-loader: ") && err.contains(says),
            "{args:?}: {err}"
        );
        assert!(!err.contains("os error 19"), "{args:?}: {err}");
        if args.contains(&OsStr::new("--json")) && args[0] == "verify" {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["structure"], "unreadable", "{args:?}");
            assert!(v["error"].as_str().unwrap().contains(says), "{args:?}");
        }
    }
}

#[test]
fn a_directory_says_it_is_one() {
    let dir = tempfile::tempdir().unwrap();
    refused(dir.path(), "is a directory, not a regular file");
}

/// Opening a FIFO with no writer blocks; each run is killed (and the test
/// fails) if it does not end within the limit.
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.gguf");
    support::mkfifo(&fifo);
    refused(&fifo, "is a FIFO, not a regular file");
}

#[test]
fn a_missing_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    refused(&dir.path().join("none.gguf"), support::NO_SUCH_FILE);
}
