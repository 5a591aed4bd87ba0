//! `gguf-loader generate` on a model whose settings or weights would make
//! every logit NaN: a one-line error and exit status 2, never token 0
//! printed with exit status 0.

mod support;

use std::path::{Path, PathBuf};

use gguf_loader::{synthesize, GgmlType, GgufFile, MetaValue, Preset};
use support::{cli, run};

/// The `tiny-test` preset (F32 weights) with `meta` set, and with `nan`
/// written into the first value of that tensor.
fn model(dir: &Path, name: &str, meta: &[(&str, MetaValue)], nan: Option<&str>) -> PathBuf {
    let mut w = synthesize(&Preset::TINY_TEST, GgmlType::F32, 1).unwrap();
    for (k, v) in meta {
        w.add(*k, v.clone());
    }
    let mut bytes = w.to_bytes().unwrap();
    if let Some(t) = nan {
        let at = GgufFile::parse(&bytes)
            .unwrap()
            .tensor(t)
            .unwrap()
            .file_range()
            .start;
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn generate(model: &Path, extra: &[&str]) -> support::Ran {
    run(cli()
        .arg("generate")
        .arg(model)
        .args(["--tokens", "1,2,3", "-n", "3", "--ids"])
        .args(extra))
}

#[test]
fn unusable_settings_are_refused_naming_the_key_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let good = model(dir.path(), "good.gguf", &[], None);
    assert_eq!(generate(&good, &[]).ok().split_whitespace().count(), 3);
    for (key, v, said) in [
        ("llama.attention.layer_norm_rms_epsilon", f32::NAN, "NaN"),
        ("llama.attention.layer_norm_rms_epsilon", -1.0, "-1"),
        ("llama.rope.freq_base", f32::NAN, "NaN"),
        ("llama.rope.freq_base", 0.0, "0"),
        ("llama.rope.freq_base", -10_000.0, "-10000"),
        ("llama.rope.freq_base", f32::INFINITY, "inf"),
    ] {
        let path = model(dir.path(), "bad.gguf", &[(key, MetaValue::F32(v))], None);
        let r = generate(&path, &[]);
        let e = r.err();
        assert!(
            e.contains(&format!(
                "metadata key '{key}': {said} is not a finite number above 0"
            )),
            "{e}"
        );
        assert_eq!(r.stdout, "");
    }
}

#[test]
fn a_nan_weight_is_an_error_not_token_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = model(dir.path(), "nan.gguf", &[], Some("output_norm.weight"));
    for extra in [&[][..], &["--temp", "0.8", "--seed", "3"][..]] {
        let r = generate(&path, extra);
        let e = r.err();
        assert!(
            e.contains("nan.gguf: 512 of the 512 logits at position 2 are NaN")
                && e.contains("`gguf-loader verify FILE` checks the weights"),
            "{e}"
        );
        assert_eq!(r.stdout, "", "{extra:?}");
    }
}
