//! `gguf-loader synth` and `gguf-loader load`.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
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
    let out = cli().arg("load").arg(&path).arg("--lazy").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("lazy:         2 layers: first ready in "),
        "{text}"
    );
    // A file with no layers says so, not "first layer ready in 0.0 ms".
    let none = dir.path().join("none.gguf");
    let mut w = gguf_loader::GgufWriter::new();
    w.add_tensor(
        "token_embd.weight",
        &[8, 4],
        gguf_loader::GgmlType::F32,
        vec![0; 128],
    )
    .unwrap();
    std::fs::write(&none, w.to_bytes().unwrap()).unwrap();
    let out = cli().arg("load").arg(&none).arg("--lazy").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("lazy:         no layers (no blk.N tensors) to walk"),
        "{text}"
    );
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

/// `load --tensors REGEX` loads the tensors it matches, in every mode, and
/// reports them (of how many); a bad expression, one that matches nothing,
/// and `--lazy` are one-line errors.
#[test]
fn load_some_tensors_by_regex() {
    let Some(model) = common::model_path() else {
        return;
    };
    let loader = gguf_loader::MmapGGUFLoader::new(&model).unwrap();
    let want: Vec<_> = loader
        .tensors()
        .filter(|t| t.name.contains(".attn_q.") || t.name.contains("output_norm"))
        .collect();
    let bytes_in: u64 = want.iter().map(|t| t.n_bytes).sum();
    let bytes_out: u64 = want.iter().map(|t| t.n_elements * 4).sum();
    for extra in [
        &[][..],
        &["--mode", "read"],
        &["--own-memory", "--threads", "1"],
    ] {
        let r = support::run(
            cli()
                .arg("load")
                .arg(&model)
                .args([
                    "--tensors",
                    r"attn_q\.|output_norm",
                    "--dtype",
                    "f32",
                    "--json",
                ])
                .args(extra),
        );
        let j: serde_json::Value = serde_json::from_str(r.ok()).unwrap();
        assert_eq!(j["tensors"], want.len(), "{extra:?}: {j}");
        assert_eq!(j["tensors_in_file"], loader.tensor_count());
        assert_eq!(j["bytes_in"], bytes_in);
        assert_eq!(j["bytes_out"], bytes_out);
        // The F32 norm is a view where views are allowed.
        let views = u64::from(extra.is_empty());
        assert_eq!(j["views"], views, "{extra:?}: {j}");
    }
    let text = support::run(cli().arg("load").arg(&model).args(["--tensors", "norm"]));
    assert!(
        text.ok().contains(&format!(
            "tensors:      61 of {} matching 'norm' (61 F32)",
            loader.tensor_count()
        )),
        "{}",
        text.stdout
    );
    for (args, says) in [
        (&["--tensors", "("][..], "--tensors: regex parse error"),
        (
            &["--tensors", "nothing"],
            "--tensors 'nothing' matches none of the 272 tensors",
        ),
        (
            &["--tensors", "norm", "--lazy"],
            "cannot be used with '--lazy'",
        ),
    ] {
        let r = support::run(cli().arg("load").arg(&model).args(args));
        if args.contains(&"--lazy") {
            // clap's own error: a usage block after the line.
            assert_eq!(r.code, Some(2));
            assert!(r.stderr.contains(says), "{}", r.stderr);
        } else {
            assert!(r.err().contains(says), "{}", r.stderr);
        }
    }
}

/// `load --lazy` decodes the tensors outside the layers too (the embedding
/// first), so that the bytes and speed it reports were decoded: it once
/// skipped them, and a 4 GB embedding counted as read in 6 ms. On a real
/// model the embedding's decoded size shows in the peak of anonymous memory.
#[test]
fn lazy_load_decodes_the_embedding_it_reports() {
    let Some(model) = common::model_path() else {
        return;
    };
    let r = support::run(
        cli()
            .arg("load")
            .arg(&model)
            .args(["--lazy", "--json", "--dtype", "f32"]),
    );
    let j: serde_json::Value = serde_json::from_str(r.ok()).unwrap();
    // SmolLM2's token_embd: 49152 × 576 f32 = 113 MB, against 14 MB a
    // layer (two with the prefetch); the peak is sampled, so half of it.
    let embedding = 49152 * 576 * 4;
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: no memory figures on this system (Linux's /proc)");
        return;
    }
    let grew = j["peak_anon_bytes"].as_u64().unwrap() - j["anon_bytes_before"].as_u64().unwrap();
    assert!(grew >= embedding / 2, "{grew} < {embedding} / 2: {j}");
}

/// A real model converted to F16: loaded as f16, its F16 matrices are views
/// of the file (no anonymous memory for them), in every mode that can view
/// it; `--own-memory` copies them, read mode never views; `generate` and
/// `perplexity` give the same text and figures either way.
#[test]
fn a_real_f16_model_loads_as_views_of_its_file() {
    let Some(model) = common::model_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f16 = dir.path().join("f16.gguf");
    support::run(cli().arg("convert").arg(&model).arg("-o").arg(&f16)).ok();
    let loader = gguf_loader::MmapGGUFLoader::new(&f16).unwrap();
    let (n_f16, f16_bytes) = loader
        .tensors()
        .filter(|t| t.ty == gguf_loader::GgmlType::F16)
        .fold((0, 0), |(n, b), t| (n + 1, b + t.n_bytes));
    assert!(n_f16 > 100);
    for (extra, views) in [
        (&[][..], n_f16),
        (&["--lazy"], n_f16),
        (&["--own-memory"], 0),
        (&["--mode", "read"], 0),
        (&["--lazy", "--own-memory"], 0),
    ] {
        let r = support::run(cli().arg("load").arg(&f16).arg("--json").args(extra));
        let j: serde_json::Value = serde_json::from_str(r.ok()).unwrap();
        assert_eq!(j["views"], views, "{extra:?}: {j}");
        let view_bytes = if views > 0 { f16_bytes } else { 0 };
        assert_eq!(j["view_bytes"], view_bytes, "{extra:?}: {j}");
        if !cfg!(target_os = "linux") || extra.contains(&"--lazy") {
            continue;
        }
        // Views take no anonymous memory; copies take the model's size
        // (sampled: half of it at least).
        let grew =
            j["peak_anon_bytes"].as_u64().unwrap() - j["anon_bytes_before"].as_u64().unwrap();
        if views > 0 {
            assert!(grew < f16_bytes / 8, "{extra:?}: {grew}: {j}");
        } else {
            assert!(grew >= f16_bytes / 2, "{extra:?}: {grew}: {j}");
        }
    }
    let text = support::run(cli().arg("load").arg(&f16));
    assert!(
        text.ok().contains(&format!(
            "  views:        {n_f16} tensors ({f16_bytes} bytes) of the file, read in, not copied"
        )),
        "{}",
        text.ok()
    );
    let license = common::repo_root().join("LICENSE-APACHE");
    let license = license.to_str().unwrap();
    for cmd in [
        &[
            "generate",
            "--prompt",
            "The capital of France is",
            "-n",
            "8",
        ][..],
        &["perplexity", "-f", license, "--ctx", "64", "--chunks", "2"],
    ] {
        let views = support::run(cli().arg(cmd[0]).arg(&f16).args(&cmd[1..]));
        let copies = support::run(
            cli()
                .arg(cmd[0])
                .arg(&f16)
                .args(&cmd[1..])
                .arg("--own-memory"),
        );
        assert_eq!(views.ok(), copies.ok(), "{cmd:?}");
        assert!(!views.ok().is_empty(), "{cmd:?}");
    }
}
