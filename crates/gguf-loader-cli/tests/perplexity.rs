//! `gguf-loader perplexity`: on both real models, the figures llama.cpp's
//! own `llama-perplexity` gives over the same text (tests/golden/
//! perplexity.json, from scripts/llama_cpp_perplexity.sh); lazy and eager
//! the same bits; f32 weights near; a tiny synthetic model offline; bad
//! requests refused in one line.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;
mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{cli, run, tiny_model, Ran};

fn golden() -> Value {
    let path = common::repo_root().join("tests/golden/perplexity.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn text() -> PathBuf {
    common::repo_root().join(golden()["text"].as_str().unwrap())
}

/// `perplexity MODEL -f TEXT --json` with `args`: its result.
fn json(model: &Path, text: &Path, args: &[&str]) -> (Value, Ran) {
    let r = run(cli()
        .arg("perplexity")
        .arg(model)
        .arg("-f")
        .arg(text)
        .arg("--json")
        .args(args));
    let v: Value = serde_json::from_str(r.ok().trim_end()).expect("one JSON object");
    (v, r)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Relative difference.
fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// Every chunk's running perplexity and the final estimate within 0.2% of
/// llama.cpp's (printed to 4 decimals), its error within 1%. Our logits
/// are within 1e-4 NMSE of llama.cpp's single-token path; llama-perplexity
/// runs each chunk as one batch, whose logits differ from that path by
/// about as much. Measured (f16 weights, all 17 chunks): at most 4.4e-4
/// apart on SmolLM2, 2.1e-4 on Gemma-3.
fn matches(name: &str, model: &Path, got: &Value, chunks: usize) {
    let g = &golden()["models"][name];
    let want = floats(&g["chunk_ppl"]);
    let have = floats(&got["chunk_ppl"]);
    assert_eq!(have.len(), chunks, "{name}");
    for (i, (h, w)) in have.iter().zip(&want).enumerate() {
        assert!(
            rel(*h, *w) < 2e-3,
            "{name} ({}): chunk {}: ours {h}, llama.cpp {w}",
            model.display(),
            i + 1
        );
    }
    if chunks == want.len() {
        let (p, e) = (
            got["ppl"].as_f64().unwrap(),
            got["ppl_error"].as_f64().unwrap(),
        );
        assert!(rel(p, g["ppl"].as_f64().unwrap()) < 2e-3, "{name}: {p} {g}");
        assert!(
            rel(e, g["ppl_error"].as_f64().unwrap()) < 1e-2,
            "{name}: {e} {g}"
        );
    }
}

#[test]
fn perplexity_matches_llama_cpp() {
    let ctx = golden()["ctx"].as_u64().unwrap().to_string();
    for (name, model) in [
        ("smollm2", common::model_path()),
        ("gemma3", common::gemma_path()),
    ] {
        let Some(model) = model else {
            continue;
        };
        let all = floats(&golden()["models"][name]["chunk_ppl"]).len();
        let (v, r) = json(&model, &text(), &["--ctx", &ctx]);
        matches(name, &model, &v, all);
        assert_eq!(v["ctx"], 128);
        assert_eq!(v["chunks"], all as u64);
        assert_eq!(v["scored"], (all * 63) as u64, "{v}");
        let figures = ["tokens scored", "tokens/s", "peak RSS"];
        assert!(figures.iter().all(|f| r.stderr.contains(f)), "{}", r.stderr);

        // Lazy: the same forward pass on the same weights, so the same bits.
        let (lazy, r) = json(&model, &text(), &["--ctx", &ctx, "--chunks", "2", "--lazy"]);
        assert!(r.stderr.contains("lazy"), "{}", r.stderr);
        assert_eq!(
            lazy["chunk_ppl"],
            Value::from(floats(&v["chunk_ppl"])[..2].to_vec())
        );

        // f32 weights: the Q4 values unrounded, near llama.cpp's f16 run.
        let (f32w, _) = json(
            &model,
            &text(),
            &["--ctx", &ctx, "--chunks", "2", "--dtype", "f32"],
        );
        matches(name, &model, &f32w, 2);
    }
}

/// The lines without --json: each chunk's running figure, then llama.cpp's
/// own last line, equal to the JSON's figures.
#[test]
fn lines_and_json_agree() {
    let Some(model) = common::model_path() else {
        return;
    };
    let args = ["--ctx", "64", "--chunks", "3"];
    let (v, _) = json(&model, &text(), &args);
    let r = run(cli()
        .arg("perplexity")
        .arg(&model)
        .arg("-f")
        .arg(text())
        .args(args));
    let lines: Vec<&str> = r.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    for (i, (line, p)) in lines.iter().zip(floats(&v["chunk_ppl"])).enumerate() {
        let want = format!("[{}/3] PPL {p:.4} (this chunk ", i + 1);
        assert!(line.starts_with(&want), "{line} / {want}");
    }
    let last = format!(
        "Final estimate: PPL = {:.4} +/- {:.5}",
        v["ppl"].as_f64().unwrap(),
        v["ppl_error"].as_f64().unwrap()
    );
    assert_eq!(lines[3], last);
    // The first chunk's own figure is its running one.
    assert!(lines[0].ends_with(&format!("{:.4})", floats(&v["chunk_ppl"])[0])));
}

/// The `tiny-test` model (512-token embedding) with a SentencePiece
/// vocabulary of as many tokens: `<unk>`, `<s>`, `</s>`, the 256 byte
/// tokens, `▁` and the letters, then fillers. BOS added, as llama's.
fn tiny_with_vocab(dir: &Path) -> PathBuf {
    use gguf_loader::{GgufWriter, MetaValue, MmapGGUFLoader, ValueType};
    let tiny = tiny_model(dir);
    let loader = MmapGGUFLoader::new(&tiny).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in loader.metadata().iter() {
        w.add_value(k, *v);
    }
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut types = vec![2i32, 3, 3];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.extend([6; 256]);
    tokens.extend(std::iter::once("\u{2581}".to_string()).chain(('a'..='z').map(String::from)));
    while tokens.len() < 512 {
        tokens.push(format!("filler{}", tokens.len()));
    }
    types.resize(512, 1);
    let strings = |v: Vec<String>| {
        MetaValue::Array(
            ValueType::String,
            v.into_iter().map(MetaValue::String).collect(),
        )
    };
    w.add("tokenizer.ggml.model", MetaValue::String("llama".into()));
    w.add("tokenizer.ggml.tokens", strings(tokens));
    w.add(
        "tokenizer.ggml.token_type",
        MetaValue::Array(
            ValueType::I32,
            types.into_iter().map(MetaValue::I32).collect(),
        ),
    );
    for t in loader.tensors() {
        let data = loader.get_tensor_data(t.name).unwrap();
        w.add_tensor(t.name, t.ne(), t.ty, data.to_vec()).unwrap();
    }
    let path = dir.join("tiny-vocab.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

/// Offline: the synthetic model's tokenizer and forward pass give a finite
/// perplexity, chunk after chunk from an empty cache (the same text twice
/// gives the same first chunk).
#[test]
fn tiny_model_offline() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_with_vocab(dir.path());
    let text = dir.path().join("text.txt");
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let (v, _) = json(&model, &text, &["--ctx", "32"]);
    let chunks = floats(&v["chunk_ppl"]);
    assert!(chunks.len() >= 2, "{v}");
    assert!(chunks.iter().all(|p| p.is_finite() && *p >= 1.0), "{v}");
    assert_eq!(v["scored"], (chunks.len() * 15) as u64);
    let (again, _) = json(&model, &text, &["--ctx", "32", "--chunks", "1"]);
    assert_eq!(again["chunk_ppl"][0], v["chunk_ppl"][0]);
}

#[test]
fn refusals_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_with_vocab(dir.path());
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "only a few words").unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"caf\xe9").unwrap();
    let ppl = |args: &[&std::ffi::OsStr]| run(cli().arg("perplexity").arg(&model).args(args));
    let os = |s: &'static str| std::ffi::OsStr::new(s);

    let e = ppl(&[os("-f"), short.as_os_str()]).err().to_string();
    assert!(
        e.contains("tokens; a context of 512 needs at least 1024"),
        "{e}"
    );
    let e = ppl(&[os("-f"), bad.as_os_str()]).err().to_string();
    assert!(e.contains("not UTF-8 (at byte offset 3)"), "{e}");
    let e = ppl(&[os("-f"), dir.path().as_os_str()]).err().to_string();
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    let e = ppl(&[os("-f"), os("/nonexistent/text")]).err().to_string();
    assert!(e.contains("/nonexistent/text"), "{e}");
    let e = ppl(&[
        os("-f"),
        short.as_os_str(),
        os("--gpu-matmul"),
        os("cublas"),
    ]);
    assert!(e.err().contains("--gpu-matmul is for a GPU"));
    if !cfg!(feature = "cuda") {
        let e = ppl(&[os("-f"), short.as_os_str(), os("--device"), os("cuda")]);
        assert!(e.err().contains("cuda"));
    }
    // clap's own refusals (exit 2, a usage message).
    for args in [["--ctx", "2"], ["--chunks", "0"], ["--ctx", "abc"]] {
        let mut a: Vec<&std::ffi::OsStr> = vec![os("-f"), short.as_os_str()];
        a.extend(args.iter().map(std::ffi::OsStr::new));
        let r = ppl(&a);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    let r = run(cli().arg("perplexity").arg(&model));
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("--text-file"), "{}", r.stderr);
}
