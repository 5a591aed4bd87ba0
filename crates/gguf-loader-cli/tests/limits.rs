//! What the machine allows: `--threads` between 1 and a cap, `--work-ms` at
//! most a minute, and a model
//! whose decoded size exceeds the available memory refused up front (by
//! `load`, `bench` and `generate`).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use support::{cli, tiny_model};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn threads_zero_or_absurd_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    for cmd in ["load", "bench"] {
        for n in ["0", "100000", "18446744073709551615", "1e9"] {
            let out = cli()
                .arg(cmd)
                .arg(&model)
                .args(["--threads", n])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{cmd} --threads {n}");
            let err = stderr(&out);
            assert!(
                err.lines().next().unwrap().contains("--threads"),
                "{cmd} --threads {n}: {err}"
            );
            assert!(out.stdout.is_empty(), "{cmd} --threads {n}");
        }
    }
    // One thread is fine, and said in the singular.
    let out = cli()
        .arg("load")
        .arg(&model)
        .args(["--threads", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `--work-ms` sleeps once per layer: a value of years would hang the walk,
/// so more than a minute is refused before anything is opened.
#[test]
fn lazy_work_of_more_than_a_minute_per_layer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    for ms in ["60001", "99999999999999", "1e3"] {
        let out = cli()
            .arg("load")
            .arg(&model)
            .args(["--lazy", "--work-ms", ms])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--work-ms {ms}");
        assert!(stderr(&out).contains("--work-ms"), "{}", stderr(&out));
        assert!(out.stdout.is_empty(), "--work-ms {ms}");
    }
    let out = cli()
        .arg("load")
        .arg(&model)
        .args(["--lazy", "--work-ms", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A file declaring one F32 tensor of 2^38 elements (1 TiB), its data a
/// hole: the file takes no disk, and nothing is allocated.
fn terabyte_model(dir: &Path) -> PathBuf {
    let n: u64 = 1 << 38;
    let name = b"huge";
    let mut h = Vec::new();
    h.extend_from_slice(b"GGUF");
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes()); // tensors
    h.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
    h.extend_from_slice(&(name.len() as u64).to_le_bytes());
    h.extend_from_slice(name);
    h.extend_from_slice(&1u32.to_le_bytes()); // dims
    h.extend_from_slice(&n.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // F32
    h.extend_from_slice(&0u64.to_le_bytes()); // offset
    h.resize(h.len().next_multiple_of(32), 0);
    let path = dir.join("huge.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&h).unwrap();
    f.set_len(h.len() as u64 + n * 4).unwrap();
    path
}

#[test]
fn a_model_larger_than_memory_is_refused_up_front() {
    if gguf_loader_cli::host::mem_available().is_none() {
        eprintln!("skipped: no MemAvailable on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = terabyte_model(dir.path());
    // `generate` once ran until the kernel killed it.
    let generate = &["generate", "--tokens", "1", "--ids", "--dtype", "f32"][..];
    for args in [&["load"][..], &["load", "--json"], &["bench"], generate] {
        let out = cli()
            .arg(args[0])
            .arg(&model)
            .args(&args[1..])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("of memory are available") && err.contains("--no-memory-check"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(err.contains("huge.gguf"), "{args:?}: {err}");
    }
    // f16 halves the need, still far too much.
    let out = cli()
        .arg("load")
        .arg(&model)
        .args(["--dtype", "f16"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("549755813888 bytes"),
        "{}",
        stderr(&out)
    );
}

/// `RAYON_NUM_THREADS` is capped as `--threads` is: ten thousand threads
/// once took most of a minute to start (and a pool that cannot start
/// panicked; it is now one line).
#[test]
fn rayon_num_threads_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    for cmd in ["load", "verify"] {
        let out = cli()
            .arg(cmd)
            .arg(&model)
            .env("RAYON_NUM_THREADS", "100000")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{cmd}: {err}");
        let max = gguf_loader::max_threads();
        assert!(
            err.contains(&format!("RAYON_NUM_THREADS=100000 is more than {max}")),
            "{cmd}: {err}"
        );
    }
    // A value that is no count is said to be ignored (rayon ignores it
    // silently).
    for v in ["abc", "-1"] {
        let out = cli()
            .arg("load")
            .arg(&model)
            .env("RAYON_NUM_THREADS", v)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{v}: {err}");
        assert!(
            err.contains(&format!("RAYON_NUM_THREADS={v} is not a thread count")),
            "{v}: {err}"
        );
    }
}
