//! `gguf-loader synth` and `gguf-loader load`.

mod support;

use support::{cli, tiny_model};

#[test]
fn synth_then_load_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path());
    for extra in [
        &[][..],
        &["--mode", "read"],
        &["--lazy"],
        &["--threads", "1", "--dtype", "bf16"],
    ] {
        let out = cli()
            .arg("load")
            .arg(&path)
            .arg("--json")
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for key in [
            "tensors",
            "bytes_in",
            "bytes_out",
            "open_ms",
            "load_ms",
            "peak_rss_bytes",
        ] {
            assert!(j.get(key).is_some(), "{extra:?}: {key} missing in {j}");
        }
        assert_eq!(j["tensors"], 2 * 9 + 3);
        if extra.contains(&"--lazy") {
            assert_eq!(j["lazy"]["layers"], 2);
        }
    }
    let out = cli().arg("load").arg(&path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("GB/s") && text.contains("Q4_K"), "{text}");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli()
        .args(["synth", "--preset", "nope", "--type", "q4_0", "-o"])
        .arg(dir.path().join("x.gguf"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown preset"));
    let path = dir.path().join("t.gguf");
    assert!(cli()
        .args(["synth", "--preset", "tiny-test", "--type", "q8_0", "-o"])
        .arg(&path)
        .status()
        .unwrap()
        .success());
    let out = cli()
        .arg("load")
        .arg(&path)
        .args(["--device", "cuda:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cuda:0"));
}
